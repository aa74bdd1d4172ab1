/**
 * The job engine against real failures on a real local network: a provider that vanishes mid-job, a job no provider
 * can take, and a requestor that cannot pay.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { parseEther } from 'viem'
import { isHearthError } from '../src/errors.ts'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { assembleRender, renderJob } from '../src/jobs/render-job.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { costWei } from '../src/market/pricing.ts'

let wasm: Uint8Array
before(async () => {
  wasm = await loadBuiltinWorkload('render')
})

test('a provider that vanishes mid-job: its tiles are redone elsewhere, and it can still claim what it was signed for', async () => {
  const devnet: Devnet = await startDevnet({ providers: 3 })
  after(() => devnet.stop())
  const leaver = devnet.providers[0]!
  const { spec, tiles } = renderJob({ width: 48, height: 36, tiles: 12, wasm, providers: 3, maxPricePerTaskWei: parseEther('1') })
  let stopped: Promise<void> | undefined
  const outcome = await devnet.requestor.agent.runJob(spec, {
    onEvent: (event) => {
      // It leaves as soon as it holds its first voucher.
      if (event.type === 'voucher-delivered' && event.provider === leaver.identity.address && stopped === undefined) stopped = leaver.host.stop()
    },
  })
  await stopped

  // Every tile arrived, from the providers that stayed, and the picture is right.
  assert.deepEqual(outcome.failures, [])
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  assert.deepEqual(assembleRender(48, 36, tiles, outcome), await renderLocally({ runtime, width: 48, height: 36 }))

  const left = outcome.agreements.find((a) => a.provider === leaver.identity.address)!
  assert.ok(left.tasks >= 1)
  assert.equal(left.settled, false)
  const held = leaver.store.vouchers.latest(left.agreementId)!.cumulativeWei
  assert.equal(left.paidWei, 0n)
  assert.equal(left.lockedWei, left.depositWei)
  assert.equal(left.signedWei, costWei(left.pricing, { tasks: left.tasks, cpuMs: 0, durationMs: 0 }))
  // It may have left before a later voucher reached it; it can claim what it holds, never more than was signed.
  assert.ok(held >= costWei(left.pricing, { tasks: 1, cpuMs: 0, durationMs: 0 }) && held <= left.signedWei)
  for (const stayed of outcome.agreements.filter((a) => a !== left)) {
    assert.equal(stayed.settled, true)
    assert.equal(stayed.paidWei, stayed.signedWei)
    assert.equal(stayed.depositWei, stayed.paidWei + stayed.refundedWei)
  }

  // The provider comes back: its stored voucher is still good on chain.
  const balance = await devnet.balanceOf(leaver.identity.address)
  const claims = await leaver.agent.claimOutstanding()
  assert.equal(claims.length, 1)
  assert.equal(claims[0]!.paidWei, held)
  assert.equal(await devnet.balanceOf(leaver.identity.address), balance + held)
  // Claiming again finds nothing new.
  assert.deepEqual(await leaver.agent.claimOutstanding(), [])
})

test('when every provider of a job is gone, the requestor makes a new agreement mid-job and the job completes', async () => {
  const devnet: Devnet = await startDevnet({ providers: 3 })
  after(() => devnet.stop())
  const { spec, tiles } = renderJob({ width: 96, height: 72, tiles: 36, wasm, providers: 2, maxPricePerTaskWei: parseEther('1') })
  // Two agreements; the third provider is known but not hired. Both hired providers leave at the first result.
  const hired: string[] = []
  let left: Promise<void[]> | undefined
  const phases: string[] = []
  const balances = new Map(await Promise.all(devnet.providers.map(async (p) => [p.identity.address, await devnet.balanceOf(p.identity.address)] as const)))
  const outcome = await devnet.requestor.agent.runJob(spec, {
    onEvent: (event) => {
      if (event.type === 'escrow-opened' && left === undefined) hired.push(event.provider)
      if (event.type === 'phase') phases.push(event.message)
      if (event.type === 'task-done' && left === undefined) left = Promise.all(devnet.providers.filter((p) => hired.includes(p.identity.address)).map((p) => p.host.stop()))
    },
  })
  await left
  assert.equal(hired.length, 2)
  assert.equal(outcome.failures.length, 0, phases.join('\n'))
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  assert.deepEqual(assembleRender(96, 72, tiles, outcome), await renderLocally({ runtime, width: 96, height: 72 }))

  // The newcomer did the rest under its own agreement, and was paid on chain for exactly what was accepted from it.
  const newcomer = devnet.providers.find((p) => !hired.includes(p.identity.address))!
  const agreement = outcome.agreements.find((a) => a.provider === newcomer.identity.address)
  assert.ok(agreement !== undefined, phases.join('\n'))
  // Every tile the leavers did not deliver before they went, it did.
  const byLeavers = outcome.agreements.filter((a) => hired.includes(a.provider)).reduce((sum, a) => sum + a.tasks, 0)
  assert.ok(agreement.tasks > 0 && agreement.tasks >= 36 - byLeavers, `${agreement.tasks} tasks, ${byLeavers} by the providers that left`)
  assert.equal(agreement.settled, true)
  assert.equal(agreement.paidWei, costWei(agreement.pricing, agreement.acceptedUsage))
  assert.equal(await devnet.balanceOf(newcomer.identity.address), balances.get(newcomer.identity.address)! + agreement.paidWei)
  assert.ok(phases.some((message) => /providers are gone: negotiating with 1 others for \d agreements/.test(message)), phases.join('\n'))
})

test('no offer within the price cap: refused before any money is locked', async () => {
  const devnet = await startDevnet({ providers: 1 })
  after(() => devnet.stop())
  const { spec } = renderJob({ width: 8, height: 8, tiles: 1, wasm, providers: 1, maxPricePerTaskWei: 1n })
  const balance = await devnet.balanceOf(devnet.requestor.identity.address)
  await assert.rejects(devnet.requestor.agent.runJob({ ...spec, offerWaitMs: 200 }), (e) => isHearthError(e, 'HEARTH_ERR_MARKET_NO_OFFERS') && /raise the price cap/.test(e.message))
  assert.equal(await devnet.balanceOf(devnet.requestor.identity.address), balance)
  assert.equal(devnet.transactions().filter((tx) => tx.label.startsWith('escrow')).length, 0)
})

test('a requestor too poor for the deposits is refused before anything is signed or sent', async () => {
  const devnet = await startDevnet({ providers: 2, requestorFundsWei: parseEther('0.001') })
  after(() => devnet.stop())
  const { spec } = renderJob({ width: 8, height: 8, tiles: 4, wasm, providers: 2, maxPricePerTaskWei: parseEther('1') })
  await assert.rejects(devnet.requestor.agent.runJob(spec), (e) => isHearthError(e, 'HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS') && /fund the requestor wallet/.test(e.message))
  assert.equal(devnet.requestor.store.agreements.list().length, 0)
  for (const provider of devnet.providers) assert.equal(provider.agent.stats().agreements, 0)
})

test('demands and offers match both ways: the requestor\'s constraints pick providers, providers\' constraints pick requestors', async () => {
  const countries = ['DE', 'PL', 'US']
  const devnet = await startDevnet({
    providers: 3,
    providerProperties: (i) => ({ 'golem.node.geo.country_code': countries[i]! }),
    // The Polish provider works only for render jobs.
    providerConstraints: (i) => (i === 1 ? '(hearth.job.kind=render)' : ''),
  })
  after(() => devnet.stop())
  const { spec } = renderJob({ width: 16, height: 8, tiles: 4, wasm, providers: 3, maxPricePerTaskWei: parseEther('1') })
  const euOnly = { ...spec, offerWaitMs: 300, demand: { constraints: '(|(golem.node.geo.country_code=DE)(golem.node.geo.country_code=PL))' } }

  // Without saying it is a render job, the Polish provider's constraint is undefined: only Germany remains.
  const plain = await devnet.requestor.agent.runJob(euOnly)
  assert.deepEqual(plain.agreements.map((a) => a.provider), [devnet.providers[0]!.identity.address])
  assert.deepEqual(plain.failures, [])

  const render = await devnet.requestor.agent.runJob({ ...euOnly, demand: { ...euOnly.demand, properties: { 'hearth.job.kind': 'render' } } })
  assert.deepEqual(render.agreements.map((a) => a.provider).sort(), [devnet.providers[0]!.identity.address, devnet.providers[1]!.identity.address].sort())

  // The same through an SLA: countries become constraints.
  const sla = await devnet.requestor.agent.runJob({ ...spec, offerWaitMs: 300, sla: { countries: ['us'], maxLatencyMs: 5_000 } })
  assert.deepEqual(sla.agreements.map((a) => a.provider), [devnet.providers[2]!.identity.address])

  // A malformed demand is the job's error, raised before any money moves.
  await assert.rejects(devnet.requestor.agent.runJob({ ...spec, demand: { constraints: '(golem.node.geo.country_code=' } }), (e) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID'))
})

test('under linear pricing providers are paid for what their signed metering says, within what the requestor saw', async () => {
  const linear = { model: 'linear' as const, startWei: parseEther('0.0001').toString(), perCpuSecWei: parseEther('0.01').toString(), perDurationSecWei: parseEther('0.005').toString() }
  const devnet = await startDevnet({ providers: 2, providerPricing: () => linear })
  after(() => devnet.stop())
  const { spec } = renderJob({ width: 64, height: 32, tiles: 6, wasm, providers: 2, maxPricePerTaskWei: parseEther('1') })
  const outcome = await devnet.requestor.agent.runJob(spec)
  assert.deepEqual(outcome.failures, [])
  // Every accepted result is paid, including those that confirmed another provider's (new providers are checked).
  const paidTasks = outcome.agreements.reduce((n, a) => n + a.tasks, 0)
  assert.ok(paidTasks >= outcome.results.length + outcome.figures.checks && paidTasks <= outcome.results.length + outcome.figures.checks + outcome.figures.stragglers)
  assert.ok(outcome.figures.checks > 0)
  for (const agreement of outcome.agreements) {
    const results = outcome.results.filter((r) => r?.agreementId === agreement.agreementId)
    const usage = results.reduce((u, r) => ({ tasks: u.tasks + 1, cpuMs: u.cpuMs + r!.usage.cpuMs, durationMs: u.durationMs + r!.usage.durationMs }), { tasks: 0, cpuMs: 0, durationMs: 0 })
    // the results this provider won are part of what it is paid for
    assert.ok(agreement.acceptedUsage.tasks >= usage.tasks && agreement.acceptedUsage.cpuMs >= usage.cpuMs - 1e-9)
    assert.equal(agreement.signedWei, costWei(linear, agreement.acceptedUsage))
    assert.equal(agreement.paidWei, agreement.signedWei)
    assert.equal(agreement.depositWei, agreement.paidWei + agreement.refundedWei)
    // Metering never claims more than the round trip the requestor measured.
    for (const r of results) assert.ok(r!.usage.durationMs <= r!.roundTripMs + 1)
  }
})

test('the budget sizes the pool, and a budget too small for one deposit stops the job before any money is locked', async () => {
  const devnet = await startDevnet({ providers: 3 })
  after(() => devnet.stop())
  const { spec } = renderJob({ width: 32, height: 16, tiles: 4, wasm, providers: 3, maxPricePerTaskWei: parseEther('1') })
  const balanceBefore = await devnet.balanceOf(devnet.requestor.identity.address)
  await assert.rejects(devnet.requestor.agent.runJob({ ...spec, budgetWei: 1n }), (error) => {
    assert.ok(isHearthError(error, 'HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS'), String(error))
    assert.match(error.message, /budget of 1 wei is too small/)
    assert.match(error.hint ?? '', /raise the budget to at least \d+ wei/)
    return true
  })
  assert.equal(await devnet.balanceOf(devnet.requestor.identity.address), balanceBefore)
  assert.deepEqual(devnet.requestor.store.escrows.list(), [])

  // Enough for two deposits of the three wanted: two agreements, and the job still completes.
  const events: string[] = []
  const probe = await devnet.requestor.agent.runJob({ ...spec, budgetWei: 10n ** 30n })
  const deposit = probe.agreements.reduce((max, a) => (a.depositWei > max ? a.depositWei : max), 0n)
  const outcome = await devnet.requestor.agent.runJob({ ...spec, budgetWei: deposit * 2n + deposit / 2n }, { onEvent: (e) => e.type === 'phase' && events.push(e.message) })
  assert.deepEqual(outcome.failures, [])
  assert.equal(outcome.agreements.length, 2)
  assert.ok(events.some((m) => /budget allows 2 of 3 agreements/.test(m)), events.join('\n'))
})

test('jobs in a row measure the distance to each provider once: a later job takes the earlier measurement', async () => {
  const devnet = await startDevnet({ providers: 2 })
  after(() => devnet.stop())
  const { spec } = renderJob({ width: 16, height: 8, tiles: 2, wasm, providers: 2, maxPricePerTaskWei: parseEther('1') })
  const host = devnet.requestor.host
  const ping = host.ping.bind(host)
  let pings = 0
  host.ping = (target, options) => {
    pings++
    return ping(target, options)
  }
  const first = await devnet.requestor.agent.runJob(spec)
  assert.ok(pings > 0, 'the first job measures')
  const measured = new Map(first.agreements.map((a) => [a.provider, a.latencyMs]))
  pings = 0
  const second = await devnet.requestor.agent.runJob(spec)
  assert.deepEqual(second.failures, [])
  assert.equal(pings, 0, 'the second job pings nobody')
  for (const agreement of second.agreements) {
    assert.notEqual(agreement.latencyMs, null)
    if (measured.has(agreement.provider)) assert.equal(agreement.latencyMs, measured.get(agreement.provider))
  }
})
