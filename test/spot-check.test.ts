/**
 * Spot checks: the requestor recomputes a share of wasi results on its own machine and compares. A provider that
 * returns wrong results is caught, not paid for them, and its tasks are redone elsewhere; a recomputation that fails
 * on the requestor's own machine says nothing about the provider and counts nothing against it.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { parseEther } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { renderJob } from '../src/jobs/render-job.ts'

const width = 32
const height = 24

test('spot checks catch a provider whose results are wrong: rejected, not paid, redone by the honest provider', async () => {
  const devnet = await startDevnet({ providers: 2, badProviders: 1, badProviderRate: 1, verificationSeed: 7 })
  after(() => devnet.stop())
  const [bad, honest] = devnet.providers
  const badBefore = await devnet.balanceOf(bad!.identity.address)
  const honestBefore = await devnet.balanceOf(honest!.identity.address)
  const { spec } = renderJob({ width, height, tiles: 6, wasm: await loadBuiltinWorkload('render'), providers: 2, maxPricePerTaskWei: parseEther('1') })
  // Every result is recomputed here; no replication, so only the spot checks can catch the cheat.
  const outcome = await devnet.requestor.agent.runJob({ ...spec, verification: { adaptive: false, replicas: 1, spotCheckRate: 1 } })
  assert.deepEqual(outcome.failures, [])
  assert.equal(outcome.figures.spotFailed, 0)
  assert.ok(outcome.figures.spotRejected >= 1, JSON.stringify(outcome.figures))
  // Every accepted result came from the honest provider, and the chain shows who was paid.
  assert.ok(outcome.results.every((result) => result?.provider.toLowerCase() === honest!.identity.address.toLowerCase()))
  const badAgreement = outcome.agreements.find((a) => a.provider.toLowerCase() === bad!.identity.address.toLowerCase())
  assert.equal(badAgreement?.tasks ?? 0, 0)
  assert.equal(await devnet.balanceOf(bad!.identity.address), badBefore)
  const honestAgreement = outcome.agreements.find((a) => a.provider.toLowerCase() === honest!.identity.address.toLowerCase())!
  assert.equal(honestAgreement.tasks, 6)
  assert.equal(await devnet.balanceOf(honest!.identity.address), honestBefore + honestAgreement.paidWei)
  assert.ok(honestAgreement.paidWei > 0n)
  // The cheat is on the requestor's record.
  const record = devnet.requestor.store.providerReputation.get(bad!.identity.address)
  assert.ok((record?.invalid ?? 0) >= 1, JSON.stringify(record))
})

test('a spot check that cannot run on the requestor\'s machine is not held against the provider', async () => {
  // The requestor's own runtime is closed: every recomputation fails here, and nothing is wrong with the provider.
  const broken = createWasiRuntime({ maxWorkers: 1 })
  await broken.close()
  const devnet = await startDevnet({ providers: 1, requestorLocalRuntime: broken, verificationSeed: 3 })
  after(() => devnet.stop())
  const [provider] = devnet.providers
  const before = await devnet.balanceOf(provider!.identity.address)
  const { spec } = renderJob({ width, height, tiles: 4, wasm: await loadBuiltinWorkload('render'), providers: 1, maxPricePerTaskWei: parseEther('1') })
  const outcome = await devnet.requestor.agent.runJob({ ...spec, verification: { adaptive: false, replicas: 1, spotCheckRate: 1 } })
  assert.deepEqual(outcome.failures, [])
  assert.equal(outcome.figures.spotChecks, 4)
  assert.equal(outcome.figures.spotFailed, 4)
  assert.equal(outcome.figures.spotRejected, 0)
  assert.equal(outcome.figures.rejected, 0)
  const [agreement] = outcome.agreements
  assert.equal(agreement!.tasks, 4)
  assert.equal(agreement!.rejected, 0)
  assert.equal(await devnet.balanceOf(provider!.identity.address), before + agreement!.paidWei)
  assert.ok(agreement!.paidWei > 0n)
  const record = devnet.requestor.store.providerReputation.get(provider!.identity.address)
  assert.equal(record?.invalid ?? 0, 0)
  assert.equal(record?.failed ?? 0, 0)
})
