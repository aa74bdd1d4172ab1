/**
 * The devnet's bad-actor mode: a provider that returns wrong results signs them like right ones. Its results differ
 * from the honest render while every signature verifies and every output matches the hash that was signed — which is
 * why verification has to recompute or compare, never just check signatures.
 */
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import { after, test } from 'node:test'
import { parseEther, type Address } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { sha256Hex } from '../src/exec/content-hash.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { renderJob, tileOutputPath } from '../src/jobs/render-job.ts'
import { renderLocally, type Tile } from '../src/jobs/render-tiles.ts'
import { isHearthError } from '../src/errors.ts'
import { main } from '../src/cli/main.ts'
import { createReputationBook } from '../src/requestor/reputation.ts'
import { storedTaskResult, verifyStoredResult } from '../src/requestor/stored-result.ts'

/** A tile's RGB bytes cut out of the whole image. */
function cut(image: Uint8Array, width: number, tile: Tile): Buffer {
  const rows: Buffer[] = []
  for (let row = tile.y; row < tile.y + tile.h; row++) rows.push(Buffer.from(image.subarray((row * width + tile.x) * 3, (row * width + tile.x + tile.w) * 3)))
  return Buffer.concat(rows)
}

test('a bad provider\'s results differ from the honest render, yet are signed by it and match their signed hashes', async () => {
  // The requestor trusts every signed result here, so the wrong ones come through to be looked at.
  const devnet = await startDevnet({ providers: 2, badProviders: 1, badProviderRate: 1, trustAllResults: true })
  after(() => devnet.stop())
  const [bad, honest] = devnet.providers
  const wasm = await loadBuiltinWorkload('render')
  const { spec, tiles } = renderJob({ width: 48, height: 36, tiles: 8, wasm, providers: 2, maxPricePerTaskWei: parseEther('1') })
  const outcome = await devnet.requestor.agent.runJob(spec)
  assert.deepEqual(outcome.failures, [])

  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  const reference = await renderLocally({ runtime, width: 48, height: 36 })
  const byProvider = new Map<string, { right: number; wrong: number }>()
  for (const tile of tiles) {
    const result = outcome.results[tile.index]!
    const rgb = Buffer.from(result.outputs.find((o) => o.path === tileOutputPath)!.data)
    const tally = byProvider.get(result.provider) ?? { right: 0, wrong: 0 }
    if (rgb.equals(cut(reference, 48, tile))) tally.right++
    else tally.wrong++
    byProvider.set(result.provider, tally)
  }
  const badTally = byProvider.get(bad!.identity.address)
  const honestTally = byProvider.get(honest!.identity.address)
  // Both providers took tiles; at rate 1 every one of the bad provider's tiles is wrong, and none of the honest one's.
  assert.ok(badTally !== undefined && honestTally !== undefined, JSON.stringify([...byProvider]))
  assert.deepEqual(badTally, { right: 0, wrong: badTally.wrong })
  assert.deepEqual(honestTally, { right: honestTally.right, wrong: 0 })
  assert.equal(bad!.agent.stats().wrongResults, badTally.wrong)
  assert.equal(honest!.agent.stats().wrongResults, 0)

  // The requestor kept each result as the provider signed it: the signature verifies and names the provider, and the
  // wrong bytes are the ones that were hashed and signed.
  const stored = devnet.requestor.store.taskResults.listByJob(outcome.jobId)
  assert.equal(stored.length, tiles.length)
  for (const record of stored) {
    // alone or in a batch, the stored answer carries the provider's signature over this result
    const result = await verifyStoredResult(record.document, record.provider as Address)
    const output = result.outputs.find((o) => o.path === tileOutputPath)!
    const bytes = Buffer.from(output.dataBase64, 'base64')
    assert.equal(sha256Hex(bytes), output.contentId)
    assert.ok(bytes.equals(Buffer.from(outcome.results[record.taskIndex]!.outputs[0]!.data)))
  }
  // A forged change after signing is caught by the signature: the corruption happened before it.
  const first = stored.find((r) => r.provider.toLowerCase() === bad!.identity.address.toLowerCase())!.document
  const tampered = JSON.parse(JSON.stringify(first)) as unknown
  storedTaskResult(tampered).exitCode += 1
  await assert.rejects(verifyStoredResult(tampered, bad!.identity.address), (e) => isHearthError(e, 'HEARTH_ERR_SIGNATURE_INVALID'))
})

test('more bad providers than providers is refused before anything starts', async () => {
  await assert.rejects(startDevnet({ providers: 1, badProviders: 2 }), (e) => isHearthError(e, 'HEARTH_ERR_CONFIG_INVALID') && /badProviders/.test(e.message))
})

test('hearth demo and hearth devnet refuse a bad --bad-providers with exit code 2', async () => {
  for (const argv of [['demo', '--bad-providers', '-1'], ['devnet', '--bad-providers', 'two'], ['demo', '--providers', '1', '--bad-providers', '2']]) {
    const stderr = new PassThrough()
    const chunks: Buffer[] = []
    stderr.on('data', (c: Buffer) => chunks.push(c))
    const code = await main(argv, { stdout: new PassThrough(), stderr })
    assert.equal(code, 2, argv.join(' '))
    assert.match(Buffer.concat(chunks).toString(), /bad-providers|badProviders/)
  }
})

test('with verification on, a bad provider cannot spoil the render: its results are rejected, unpaid, and it is excluded', async () => {
  const devnet = await startDevnet({ providers: 3, badProviders: 1, badProviderRate: 1, verificationSeed: 1 })
  after(() => devnet.stop())
  const bad = devnet.providers[0]!.identity.address
  const wasm = await loadBuiltinWorkload('render')
  const { spec, tiles } = renderJob({ width: 48, height: 36, tiles: 12, wasm, providers: 3, maxPricePerTaskWei: parseEther('1') })
  const outcome = await devnet.requestor.agent.runJob(spec)
  assert.deepEqual(outcome.failures, [])

  // Every tile equals the one-process render, whoever delivered it.
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  const reference = await renderLocally({ runtime, width: 48, height: 36 })
  for (const tile of tiles) {
    const result = outcome.results[tile.index]!
    assert.ok(Buffer.from(result.outputs.find((o) => o.path === tileOutputPath)!.data).equals(cut(reference, 48, tile)), `tile ${tile.index}`)
    assert.notEqual(result.provider.toLowerCase(), bad.toLowerCase())
  }
  // The bad provider's answers were caught (every new provider is checked) and not paid for.
  const badAgreement = outcome.agreements.find((a) => a.provider.toLowerCase() === bad.toLowerCase())
  assert.ok(badAgreement !== undefined && badAgreement.rejected > 0, JSON.stringify(outcome.figures))
  assert.equal(badAgreement.tasks, 0)
  assert.equal(badAgreement.paidWei, 0n)
  assert.equal(outcome.figures.rejected, outcome.agreements.reduce((n, a) => n + a.rejected, 0))
  // Two wrong results exclude it, on record for the next job too.
  const record = createReputationBook(devnet.requestor.store).get(bad)
  assert.ok(record !== undefined && record.invalid === badAgreement.rejected)
  if (badAgreement.rejected >= 2) assert.ok(record.excluded)
  // Honest providers' checked results raise their standing.
  for (const honest of devnet.providers.slice(1)) assert.ok((createReputationBook(devnet.requestor.store).get(honest.identity.address)?.valid ?? 0) > 0)
})
