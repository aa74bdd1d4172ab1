/**
 * Hostile providers, beside an honest one: one offers threads and speed it does not have, one meters more than ran,
 * one bills more than the work costs, one returns more than a task may, one never answers. Each is caught, its work
 * is redone by the honest provider where needed, the picture is right, and what each was paid is read from the chain.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { parseEther } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { assembleRender, renderJob } from '../src/jobs/render-job.ts'
import type { Tile } from '../src/jobs/render-tiles.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { costWei } from '../src/market/pricing.ts'
import type { ProviderAgentInit } from '../src/provider/provider-agent.ts'
import type { JobEvent } from '../src/requestor/events.ts'
import type { JobOutcome, JobSpec } from '../src/requestor/requestor.ts'

const width = 64
const height = 48
const linear = { model: 'linear' as const, startWei: parseEther('0.0001').toString(), perCpuSecWei: parseEther('0.01').toString(), perDurationSecWei: parseEther('0.001').toString() }

/** Provider 0 misbehaves as told, provider 1 is honest. */
async function network(misbehave: NonNullable<ProviderAgentInit['misbehave']>, options: { linear?: boolean } = {}): Promise<Devnet> {
  const devnet = await startDevnet({
    providers: 2,
    providerMisbehave: (index) => (index === 0 ? misbehave : undefined),
    ...(options.linear === true ? { providerPricing: () => linear } : {}),
  })
  after(() => devnet.stop())
  return devnet
}

async function renderSpec(count: number): Promise<JobSpec & { tiles: Tile[] }> {
  const { spec, tiles } = renderJob({ width, height, tiles: count, wasm: await loadBuiltinWorkload('render'), providers: 2, maxPricePerTaskWei: parseEther('1') })
  return { ...spec, tiles }
}

/** The job's picture equals a one-process render, and the hostile provider got nothing on chain. */
async function assertRightAndUnpaid(devnet: Devnet, outcome: JobOutcome, before: bigint, spec: JobSpec & { tiles: Tile[] }): Promise<void> {
  assert.deepEqual(outcome.failures, [])
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  const reference = await renderLocally({ runtime, width, height })
  assert.ok(Buffer.from(assembleRender(width, height, spec.tiles, outcome)).equals(Buffer.from(reference)), 'the picture is the one a single process renders')
  const hostile = devnet.providers[0]!.identity.address.toLowerCase()
  assert.ok(outcome.results.every((result) => result?.provider.toLowerCase() !== hostile), 'no result of the hostile provider was taken')
  assert.equal(await devnet.balanceOf(devnet.providers[0]!.identity.address), before)
  const honest = outcome.agreements.find((a) => a.provider.toLowerCase() === devnet.providers[1]!.identity.address.toLowerCase())!
  assert.equal(honest.tasks, spec.tasks.length)
  assert.ok(honest.paidWei > 0n)
}

test('a provider that offers threads and speed it does not have is caught by the probe: no work, no pay, a mark on its record', async () => {
  // It offers 8 threads and a CPU score of a million (no machine comes near: a desktop core scores a few hundred);
  // it runs one task at a time at its real speed.
  const devnet = await network({ overclaim: { threads: 8, cpuScore: 1_000_000 } })
  const before = await devnet.balanceOf(devnet.providers[0]!.identity.address)
  const spec = await renderSpec(6)
  const events: JobEvent[] = []
  const outcome = await devnet.requestor.agent.runJob({ ...spec, verification: { probe: true } }, { onEvent: (event) => events.push(event) })
  const probes = events.filter((e): e is Extract<JobEvent, { type: 'probe' }> => e.type === 'probe')
  const liar = probes.find((p) => p.provider.toLowerCase() === devnet.providers[0]!.identity.address.toLowerCase())
  assert.ok(liar?.overClaimed !== undefined, JSON.stringify(probes))
  assert.match(liar.overClaimed, /offers 8 threads and ran 8 probes at once as if it had/)
  assert.match(liar.overClaimed, /offers a CPU score of/)
  await assertRightAndUnpaid(devnet, outcome, before, spec)
  assert.ok((devnet.requestor.store.providerReputation.get(devnet.providers[0]!.identity.address)?.invalid ?? 0) >= 1)
})

test('a provider that meters more than ran is refused and not paid under linear prices', async () => {
  // A thousand times what ran: far more than any round trip the requestor measured (a provider can stretch short
  // tasks only up to the round trip, which the requestor sees).
  const devnet = await network({ inflateUsage: 1000 }, { linear: true })
  const before = await devnet.balanceOf(devnet.providers[0]!.identity.address)
  const spec = await renderSpec(6)
  const events: JobEvent[] = []
  const outcome = await devnet.requestor.agent.runJob(spec, { onEvent: (event) => events.push(event) })
  assert.ok(events.some((e) => e.type === 'task-failed' && /metering .* does not fit/.test(e.message)), 'the inflated metering was refused')
  await assertRightAndUnpaid(devnet, outcome, before, spec)
})

test('a provider that bills more than the work costs is paid only what the accepted results cost', async () => {
  // Its debit notes ask ten times what it delivered; it returns right results.
  const devnet = await network({ inflateNotes: 10 }, { linear: true })
  const provider = devnet.providers[0]!
  const before = await devnet.balanceOf(provider.identity.address)
  const spec = await renderSpec(8)
  const outcome = await devnet.requestor.agent.runJob({ ...spec, debitNoteIntervalSec: 0 })
  assert.deepEqual(outcome.failures, [])
  const agreement = outcome.agreements.find((a) => a.provider.toLowerCase() === provider.identity.address.toLowerCase())!
  const owed = costWei(linear, agreement.acceptedUsage)
  // Every voucher it received stays within what the accepted results cost, and the chain paid exactly that.
  for (const voucher of provider.store.vouchers.listFor(agreement.agreementId)) assert.ok(voucher.cumulativeWei <= owed, `${voucher.cumulativeWei} > ${owed}`)
  assert.equal(agreement.paidWei, owed)
  assert.equal(await devnet.balanceOf(provider.identity.address), before + owed)
})

test('a provider that returns more than the task may is refused and not paid', async () => {
  // Two MiB of stdout beyond a 1 MiB output limit on every result.
  const devnet = await network({ oversizeResults: 2 << 20 })
  const before = await devnet.balanceOf(devnet.providers[0]!.identity.address)
  const spec = { ...(await renderSpec(6)), maxOutputBytes: 1 << 20 }
  const events: JobEvent[] = []
  const outcome = await devnet.requestor.agent.runJob(spec, { onEvent: (event) => events.push(event) })
  assert.ok(events.some((e) => e.type === 'task-failed' && /more than the task's output limit allows/.test(e.message)), 'the oversized result was refused')
  await assertRightAndUnpaid(devnet, outcome, before, spec)
})

test('a provider that never answers holds up nothing: its tasks are redone elsewhere and it is not paid', async () => {
  const devnet = await network({ stallResults: true })
  const before = await devnet.balanceOf(devnet.providers[0]!.identity.address)
  const spec = await renderSpec(6)
  // Results are taken as they come (no checks), so the job needs nothing from the silent provider: its tasks are run
  // again as stragglers elsewhere, and its unanswered exchanges are given up once those tasks are done.
  const outcome = await devnet.requestor.agent.runJob({ ...spec, verification: { adaptive: false } })
  await assertRightAndUnpaid(devnet, outcome, before, spec)
})
