/** The provider's claim policy on a real chain: claims mid-job past a threshold, and before an agreement expires. */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { parseEther } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { renderJob } from '../src/jobs/render-job.ts'
import { createHost } from '../src/net/host.ts'
import { createProviderAgent } from '../src/provider/provider-agent.ts'
import { escrowClaimGraceSec } from '../src/payment/escrow.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

test('a provider claims as soon as its unclaimed vouchers pass the threshold, and settles the rest at the end', async () => {
  const price = parseEther('0.001')
  const devnet = await startDevnet({ providers: 1, providerClaimPolicy: { thresholdWei: price * 2n } })
  after(() => devnet.stop())
  const { spec } = renderJob({ width: 24, height: 12, tiles: 6, wasm: await loadBuiltinWorkload('render'), providers: 1, maxPricePerTaskWei: parseEther('1') })
  const before = await devnet.balanceOf(devnet.providers[0]!.identity.address)
  // Debit notes with every result, so vouchers arrive as the work does.
  const outcome = await devnet.requestor.agent.runJob({ ...spec, debitNoteIntervalSec: 0 })
  const [agreement] = outcome.agreements
  assert.equal(agreement!.tasks, 6)
  const labels = devnet.transactions().map((tx) => tx.label)
  const midJob = labels.filter((l) => l === 'escrow.claim').length
  assert.ok(midJob >= 1, `claims during the job: ${labels.join(', ')}`)
  // Everything signed was paid exactly once, the rest went back, and the chain agrees.
  assert.equal(agreement!.paidWei, price * 6n)
  assert.equal(agreement!.depositWei, agreement!.paidWei + agreement!.refundedWei)
  assert.equal(await devnet.balanceOf(devnet.providers[0]!.identity.address), before + price * 6n)
})

test('a provider whose requestor vanished claims what it holds before the agreement expires', async () => {
  const devnet = await startDevnet({ providers: 1, providerClaimPolicy: { beforeExpirySec: 24 * 3600, checkEveryMs: 50 } })
  after(() => devnet.stop())
  const provider = devnet.providers[0]!
  const { spec } = renderJob({ width: 8, height: 8, tiles: 4, wasm: await loadBuiltinWorkload('render'), providers: 1, maxPricePerTaskWei: parseEther('1') })
  const before = await devnet.balanceOf(provider.identity.address)
  let vanished: Promise<void> | undefined
  // The requestor disappears once the provider holds its first voucher: no more tasks, no settlement.
  await devnet.requestor.agent
    .runJob(spec, { onEvent: (e) => { if (e.type === 'voucher-delivered' && vanished === undefined) vanished = devnet.requestor.host.stop() } })
    .catch(() => undefined)
  await vanished
  const held = provider.store.vouchers.latest(provider.store.agreements.list({ state: 'approved' })[0]!.id)!.cumulativeWei
  // Agreements here expire within the policy's window, so the provider's timer claims without anyone asking.
  const deadline = Date.now() + 120_000
  while (provider.store.vouchers.unclaimed().length > 0) {
    assert.ok(Date.now() < deadline, 'the provider did not claim')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.ok(devnet.transactions().some((tx) => tx.label === 'escrow.claim'))
  assert.equal(await devnet.balanceOf(provider.identity.address), before + held)
})

test('a provider stops working under an agreement whose debit notes go unpaid past the payment timeout', async () => {
  // Tasks that take a fixed 0.6 s whatever the machine's speed: `sleep`, offered as a native program.
  const devnet = await startDevnet({ providers: 1, requestorIgnoresDebitNotes: true, nativePrograms: { sleep: '/usr/bin/sleep' } })
  after(() => devnet.stop())
  const outcome = await devnet.requestor.agent.runJob({
    name: 'sleeps',
    runtime: 'native',
    program: 'sleep',
    tasks: Array.from({ length: 15 }, () => ({ args: ['0.6'], env: {}, inputs: [], outputs: [] })),
    providers: 1,
    maxPricePerTaskWei: parseEther('1'),
    timeoutMs: 10_000,
    maxMemoryBytes: 64 << 20,
    maxOutputBytes: 1 << 20,
    debitNoteIntervalSec: 0,
    paymentTimeoutSec: 1,
    maxAttempts: 1,
  })
  // The first tasks' notes go unpaid; once the oldest is more than 1 s old (after two or three rounds of tasks, the
  // provider running as many at once as the requestor keeps there), every further task is refused.
  const overdue = outcome.failures.filter((f) => /unpaid for more than 1 s/.test(f.message))
  assert.ok(overdue.length >= 1, JSON.stringify(outcome.failures))
  const done = outcome.results.filter((r) => r !== undefined).length
  assert.ok(done >= 2 && done < 15, `${done} tasks ran`)
  assert.equal(done + outcome.failures.length, 15)
  // The provider kept its notes; what it delivered is still paid at settlement, by the final voucher.
  const provider = devnet.providers[0]!
  assert.equal(provider.store.paymentDocuments.list({ kind: 'debit-note' }).length, done)
  const [agreement] = outcome.agreements
  assert.equal(agreement!.tasks, done)
  assert.equal(agreement!.paidWei, agreement!.signedWei)
  assert.ok(agreement!.paidWei > 0n)
})

test('a provider restarted after it went away mid-job collects the vouchers signed meanwhile and claims them; the requestor refunds the rest only after expiry and the claim grace', async () => {
  const devnet = await startDevnet({ providers: 1 })
  after(() => devnet.stop())
  const provider = devnet.providers[0]!
  const { spec } = renderJob({ width: 16, height: 8, tiles: 4, wasm: await loadBuiltinWorkload('render'), providers: 1, maxPricePerTaskWei: parseEther('1') })
  // The provider goes down right after it holds its first voucher: it never settles. The job waits a second for it to
  // come back, not the default two minutes.
  let stopped: Promise<void> | undefined
  const outcome = await devnet.requestor.agent.runJob(
    { ...spec, debitNoteIntervalSec: 0, awayLimitMs: 1_000 },
    { onEvent: (e) => { if (e.type === 'voucher-delivered' && stopped === undefined) stopped = Promise.all([provider.agent.stop(), provider.host.stop()]).then(() => undefined) } },
  )
  await stopped
  const [agreement] = outcome.agreements
  assert.equal(agreement!.settled, false)
  const heldWhenStopped = provider.store.vouchers.latest(agreement!.agreementId)!.cumulativeWei
  // The requestor signed a final voucher for everything it accepted, which the stopped provider may never have received.
  const held = agreement!.signedWei
  assert.ok(held >= heldWhenStopped, `${held} >= ${heldWhenStopped}`)

  // A new agent over the same key, database and chain account: it asks the requestor for what it is owed (the
  // voucher signed while it was away) and claims it when it starts.
  const before = await devnet.balanceOf(provider.identity.address)
  const host = await createHost({ identity: provider.identity })
  await host.start()
  const workDir = await mkdtemp(join(tmpdir(), 'hearth-restart-'))
  const restarted = createProviderAgent({
    identity: provider.identity, host, store: provider.store, payment: provider.payment, runtime: provider.runtime,
    workDir, pricing: { model: 'per-task', perTaskWei: '1' }, threads: 1, memGib: 1,
  })
  await restarted.start()
  after(async () => {
    await restarted.stop()
    await host.stop()
    await rm(workDir, { recursive: true, force: true })
  })
  const deadline = Date.now() + 120_000
  while (provider.store.vouchers.unclaimed().length > 0) {
    assert.ok(Date.now() < deadline, 'the restarted provider did not claim')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.equal(await devnet.balanceOf(provider.identity.address), before + held)

  // Before expiry the requestor cannot take the rest back, nor during the contract's claim grace after it (the
  // provider's time to claim); after that it can, and every token is accounted for.
  assert.deepEqual(await devnet.requestor.agent.refundExpired(), [])
  await devnet.chain!.increaseTime(2 * 3600)
  assert.deepEqual(await devnet.requestor.agent.refundExpired(), [])
  await devnet.chain!.increaseTime(Number(await escrowClaimGraceSec(devnet.requestor.payment)))
  const refunds = await devnet.requestor.agent.refundExpired()
  assert.equal(refunds.length, 1)
  assert.equal(refunds[0]!.refundedWei + held, agreement!.depositWei)
  assert.equal(devnet.requestor.store.agreements.get(agreement!.agreementId)?.state, 'expired')
})
