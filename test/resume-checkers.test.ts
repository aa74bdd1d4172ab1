/**
 * A requestor that crashes mid-job owes every provider whose results it accepted, the providers that checked another's
 * result included: when it resumes (or simply starts again), each earlier agreement is settled for exactly the results
 * accepted from that provider, read back from what the requestor kept, and paid on chain.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { parseEther, type Address, type Hex } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { renderJob } from '../src/jobs/render-job.ts'
import { createHost } from '../src/net/host.ts'
import { getEscrow } from '../src/payment/escrow.ts'
import { createReputationBook } from '../src/requestor/reputation.ts'
import { createRequestor } from '../src/requestor/requestor.ts'
import type { Agreement } from '../src/market/agreement.ts'

test('after a crash, every provider is paid for exactly the results accepted from it, checking providers included', async () => {
  const perTaskWei = parseEther('0.001')
  const devnet = await startDevnet({ providers: 2, providerPricing: () => ({ model: 'per-task', perTaskWei: perTaskWei.toString() }) })
  after(() => devnet.stop())
  const { spec } = renderJob({ width: 96, height: 72, tiles: 24, wasm: await loadBuiltinWorkload('render'), providers: 2, maxPricePerTaskWei: parseEther('1') })

  // New providers are checked: each of their results runs on the other provider too, and both results are accepted.
  const acceptedFrom = new Map<string, number>()
  let jobId: string | undefined
  let done = 0
  let crashed: Promise<void> | undefined
  await devnet.requestor.agent
    .runJob(spec, {
      onEvent: (event) => {
        if (event.type === 'job') jobId = event.jobId
        if (event.type !== 'task-done') return
        for (const provider of event.agreeing ?? [event.provider]) acceptedFrom.set(provider.toLowerCase(), (acceptedFrom.get(provider.toLowerCase()) ?? 0) + 1)
        // The requestor's node goes down after a few results: no more vouchers, no settlement.
        if (++done === 6) crashed = devnet.requestor.host.stop()
      },
    })
    .catch(() => undefined)
  await crashed
  assert.ok(jobId !== undefined)
  const checked = [...acceptedFrom.values()].reduce((sum, n) => sum + n, 0)
  assert.ok(checked > done, `results were checked by a second provider: ${checked} accepted for ${done} tasks`)

  // The same requestor (key, store, chain account) starts again on a new host and resumes the job.
  const host = await createHost({ identity: devnet.requestor.identity })
  await host.start()
  after(() => host.stop())
  const again = createRequestor({ identity: devnet.requestor.identity, host, store: devnet.requestor.store, payment: devnet.requestor.payment, reputation: createReputationBook(devnet.requestor.store) })
  await again.start()
  after(() => again.stop())
  await host.dial(devnet.providers[0]!.host.multiaddrs()[0]!)
  await again.market.syncAll()
  const resumedAtMs = Date.now()
  const resumed = await again.runJob({ ...spec, resumeJobId: jobId })
  assert.deepEqual(resumed.failures, [])

  // The first run's agreements, one per provider: each paid on chain exactly for the results accepted from it.
  const first = devnet.requestor.store.agreements.list().filter((r) => r.role === 'requestor' && r.createdAtMs < resumedAtMs && r.state !== 'cancelled' && (r.document as Agreement).terms?.jobName.endsWith(`(${jobId})`) && devnet.requestor.store.escrows.get(r.id) !== undefined)
  assert.equal(first.length, 2)
  for (const record of first) {
    const terms = (record.document as Agreement).terms
    const escrow = await getEscrow(devnet.requestor.payment, { requestorAddress: devnet.requestor.identity.address as Address, agreementId: record.id as Hex })
    const expected = BigInt(acceptedFrom.get(terms.provider.toLowerCase()) ?? 0) * perTaskWei
    assert.equal(escrow?.claimedWei, expected, `provider ${terms.provider}: ${escrow?.claimedWei} claimed, ${expected} accepted`)
    assert.equal(escrow?.closed, true)
  }
})
