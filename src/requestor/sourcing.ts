/**
 * Sourcing a job's providers: from the offers this node knows to the slots its tasks run on. Offers are matched with
 * the job's demand, their providers' distance measured, ranked, sized to the budget and the wallet (pool-budget.ts),
 * negotiated with (negotiator.ts), backed by escrows, and probed where the job relies on claimed speed. `recruit`
 * does the same while the job runs, when some of its providers are gone.
 */
import type { Hex } from 'viem'
import { HearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { offeredRuntimes, proposeTerms, type AgreementTerms } from '../market/agreement.ts'
import { compileConstraints } from '../market/constraints/evaluate.ts'
import { matchDemandOffer } from '../market/constraints/match.ts'
import type { MarketNode } from '../market/market-node.ts'
import type { Offer, SignedOffer } from '../market/offer.ts'
import { maxTaskCostWei } from '../market/pricing.ts'
import { slaConstraints } from '../market/sla.ts'
import { rankOffers, type ScoredOffer } from '../market/strategy.ts'
import type { Host } from '../net/host.ts'
import { tokenBalanceOf, type EscrowContext } from '../payment/escrow.ts'
import type { Store } from '../store/store.ts'
import type { JobEventListener } from './events.ts'
import type { JobSpec } from './job-types.ts'
import { negotiateMany, offerTarget, type NegotiateManyResult, type Negotiated } from './negotiator.ts'
import { affordableMore, dearestDeposit, sizePool } from './pool-budget.ts'
import { maxProbeThreads } from './provider-probe.ts'
import type { ReputationBook } from './reputation.ts'
import type { RequestorAccounts } from './requestor-account.ts'
import type { Slot } from './slot.ts'

/** Pings per candidate provider before choosing, in rounds this far apart; the least counts. */
const latencyPings = 5
const latencyPingGapMs = 150
/** A distance this node measured (for an earlier job) stands this long for a provider it is still connected to. */
export const latencyFreshMs = 60_000

/** Distances measured by this node's jobs, by provider (lower-case address): jobs in a row measure each provider once. */
export type MeasuredLatencies = Map<string, { ms: number; atMs: number }>

export interface SourcingInit {
  host: Host
  /** Distances earlier jobs measured; those still fresh are taken as measured, and new ones are added. */
  latencies?: MeasuredLatencies
  identity: NodeIdentity
  store: Store
  payment: EscrowContext
  market: MarketNode
  accounts: RequestorAccounts
  reputation?: ReputationBook
  spec: JobSpec
  jobId: string
  /** Tasks an earlier run of the job accepted: the deposits cover only the rest. */
  resumedTasks: number
  /** Results wanted per task: at least this many agreements. */
  replicas: number
  emit: JobEventListener
  signal?: AbortSignal
  /** Lets a provider with a new agreement fetch the job's blobs. */
  allowFetcher(provider: string): void
  /** Runs once the offer book is synced, before offers are awaited (a resumed job settles its earlier agreements). */
  afterSync?(): Promise<void>
  /** Probes a new agreement's provider (provider-probe.ts); absent where this machine cannot (no wasi runtime). */
  probe?(slot: Slot): Promise<void>
}

export interface Sourced {
  /** The job's pool; dispatch adds the slots `recruit` returns to it. */
  slots: Slot[]
  /** Agreements the job wanted, as the budget allows. */
  agreementsWanted: number
  /**
   * Churn: more agreements while the job runs, when `missing` of its providers are gone (for now or for good).
   * Nothing is committed once `signal` aborts: an agreement without an escrow lapses on the provider's side.
   */
  recruit(missing: number, signal: AbortSignal): Promise<Slot[]>
}

/** What sourcing keeps over the job's life: the initial pool's and every recruit's. */
interface Sourcing {
  init: SourcingInit
  fits(offer: Offer): boolean
  /** The least round trip measured to each provider (lower-case address). */
  latencyMs: Map<string, number>
  stepMs: number
  /** Tasks each agreement's deposit covers. */
  maxTasks: number
  /** Tasks each provider is expected to run, for ranking. */
  tasksEach: number
  probing: boolean
  slots: Slot[]
  /** Providers that refused a mid-job agreement: not asked again in this job. */
  refusedMidJob: Set<string>
}

/** Finds, negotiates with and escrows the job's providers; throws when none can be had. */
export async function sourceSlots(init: SourcingInit): Promise<Sourced> {
  const { spec, emit } = init
  const fits = offerFilter(init)
  const offers = await collectOffers(init, fits)
  // Every agreement may have to carry every task of the job (the others may all fail), replicas and later phases
  // included: the deposit covers that, and what is not spent comes back at settlement.
  const plannedTasks = Math.max(1, (spec.plannedTasks ?? spec.tasks.length) - init.resumedTasks)
  const probing = spec.runtime === 'wasi' && (spec.verification?.probe ?? (spec.sla?.minThreads !== undefined || spec.sla?.minCpuScore !== undefined))
  // A probe runs up to 5 + 2 * maxProbeThreads tasks on each provider before the job's own (two measurements).
  const maxTasks = Math.min(1_000_000, plannedTasks * (init.replicas + 1) + (probing ? 5 + 2 * maxProbeThreads : 0))
  const sourcing: Sourcing = {
    init, fits, latencyMs: new Map(), stepMs: spec.stepTimeoutMs ?? 3_000, maxTasks, tasksEach: Math.ceil(plannedTasks / spec.providers), probing, slots: [], refusedMidJob: new Set(),
  }
  const candidates = await nearCandidates(sourcing, offers)
  const ranked = rank(sourcing, candidates)
  // Verification needs several providers: as many agreements as results wanted per task, at least.
  const wanted = Math.max(spec.providers, init.replicas)
  // A few spares beyond the need, so providers that stay silent or refuse cost no waiting.
  const chosen = ranked.slice(0, wanted + Math.max(2, Math.ceil(wanted / 2))).map((r) => r.item)
  const agreementsWanted = await affordPool(sourcing, chosen, ranked.map((r) => r.item), wanted, plannedTasks)

  // 2. Agreements with the chosen providers, all at once; the first to sign are kept.
  emit({ type: 'phase', message: `negotiating with ${chosen.length} providers for ${agreementsWanted} agreements` })
  const negotiated = await negotiate(sourcing, chosen, agreementsWanted, init.signal)
  for (const { offer } of negotiated.agreements) init.market.offerBook.markReached(offer.provider, 'answered')
  if (negotiated.agreements.length === 0) {
    throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'every provider refused or failed to sign an agreement', {
      hint: `reasons: ${negotiated.failures.map((f) => `${f.provider}: ${f.message}`).join('; ')}`,
    })
  }

  // 3. Escrow: the deposits of every agreement in one transaction, through their accounts.
  emit({ type: 'phase', message: 'opening escrows on chain' })
  sourcing.slots.push(...(await admit(sourcing, negotiated.agreements)))
  if (probing) {
    if (init.probe === undefined) emit({ type: 'phase', message: 'probes compare providers with this machine, which has no wasi runtime here: skipped' })
    else {
      emit({ type: 'phase', message: `probing ${sourcing.slots.length} providers: do they have the threads and speed they offer?` })
      for (const slot of sourcing.slots) await init.probe(slot)
    }
  }
  return { slots: sourcing.slots, agreementsWanted, recruit: (missing, signal) => recruit(sourcing, missing, signal) }
}

function offersProgram(offer: Offer, program: string | undefined): boolean {
  const programs = offer.properties['hearth.runtime.native.programs']
  return program !== undefined && Array.isArray(programs) && programs.includes(program)
}

/** Which offers the job can use: runtime, price cap, chain and escrow, and a match both ways with its demand. */
function offerFilter(init: SourcingInit): (offer: Offer) => boolean {
  const { spec, reputation, payment } = init
  const demandConstraints = [spec.demand?.constraints ?? '', spec.sla === undefined ? '' : slaConstraints(spec.sla).toString()]
    .filter((text) => text.trim() !== '')
    .join('')
  const demand = {
    properties: { 'golem.runtime.name': spec.runtime, ...spec.demand?.properties },
    // Checked here, before any offer is looked at: a malformed filter is the job's error, not a mismatch.
    constraints: demandConstraints === '' ? '' : compileConstraints(`(&${demandConstraints})`),
  }
  return (offer) =>
    !(reputation?.excluded(offer.provider) ?? false) &&
    offeredRuntimes(offer).includes(spec.runtime) &&
    (spec.runtime !== 'native' || offersProgram(offer, spec.program)) &&
    maxTaskCostWei(offer.pricing, spec.timeoutMs) <= spec.maxPricePerTaskWei &&
    offer.payment.chainId === payment.client.chainId &&
    offer.payment.escrow.toLowerCase() === payment.escrowAddress.toLowerCase() &&
    matchDemandOffer(demand, { properties: offer.properties, constraints: offer.constraints }) === 'yes'
}

/** 1. Offers: what this node knows plus a direct ask of every connected peer, until enough match or the wait ends. */
async function collectOffers(init: SourcingInit, fits: (offer: Offer) => boolean): Promise<SignedOffer[]> {
  const { spec, market, reputation, emit } = init
  emit({ type: 'phase', message: 'collecting offers' })
  await market.syncAll({ signal: init.signal })
  await init.afterSync?.()
  const wait = AbortSignal.timeout(spec.offerWaitMs ?? 3_000)
  const candidates = await market.offerBook.waitFor(spec.providers, fits, { signal: wait }).catch(() => market.offerBook.list(fits))
  const excludedProviders = new Set<string>()
  for (const signed of market.offerBook.list(() => true)) if (reputation?.excluded(signed.payload.provider) === true) excludedProviders.add(signed.payload.provider)
  if (candidates.length === 0) {
    throw new HearthError('HEARTH_ERR_MARKET_NO_OFFERS', `no provider offers runtime ${spec.runtime} at ${spec.maxPricePerTaskWei} wei per task or less that meets the job's requirements`, {
      hint: `raise the price cap or loosen the requirements, or start providers (hearth demo starts local ones)${excludedProviders.size > 0 ? `; ${excludedProviders.size} providers are excluded for invalid results` : ''}`,
    })
  }
  emit({ type: 'offers', count: candidates.length })
  return candidates
}

/**
 * Latency is a measurement, not a claim. Every candidate is dialled first (handshakes cost CPU on both sides, which
 * a ping taken meanwhile would count as distance), then pinged in a few rounds over about half a second; the least
 * of its pings is the distance, since one ping alone also measures whichever machine was busy at that moment. A
 * candidate that fails twice in a row (dial or ping; a ping dials again) is not asked any more: one failure may be
 * a busy moment, and a provider that is not measured ranks last on latency. Those whose pings went unanswered are
 * asked once more at the end with a longer deadline, since the busy machine may have been this one. A provider this node measured for an
 * earlier job less than latencyFreshMs ago, and is still connected to, keeps that measurement: jobs in a row do not
 * spend half a second each measuring the same providers again.
 */
async function measure(sourcing: Sourcing, all: readonly SignedOffer[]): Promise<void> {
  const { host, latencies } = sourcing.init
  const { latencyMs, stepMs } = sourcing
  // Measured by an earlier job within latencyFreshMs, and still connected: that measurement stands.
  const connected = new Set(host.peers().map((peer) => peer.toString()))
  const nowMs = Date.now()
  const offers = all.filter((signed) => {
    const known = latencies?.get(signed.payload.provider.toLowerCase())
    if (known === undefined || nowMs - known.atMs > latencyFreshMs || !connected.has(signed.payload.peerId)) return true
    latencyMs.set(signed.payload.provider.toLowerCase(), known.ms)
    return false
  })
  if (offers.length === 0) return
  const failures = new Map<string, number>()
  const failed = (key: string, ok: boolean): void => void failures.set(key, ok ? 0 : (failures.get(key) ?? 0) + 1)
  // Dials run to their own end (libp2p bounds each to 10 s): on a busy machine twenty handshakes at once can outlast a
  // step, and a dial cut short is work thrown away that the next round would start over. Each ping round waits up to
  // one step for a dial still under way.
  const dials = new Map<string, Promise<void>>()
  const dialling = new Set<string>()
  for (const signed of offers) {
    const key = signed.payload.provider.toLowerCase()
    dialling.add(key)
    dials.set(key, host.dial(offerTarget(signed.payload)).then(() => true, () => false).then((ok) => {
      dialling.delete(key)
      failed(key, ok)
    }))
  }
  /** Providers whose ping went unanswered in time (not a failed dial): this node may have been the busy one. */
  const unanswered = new Set<string>()
  const pingRound = async (round: readonly SignedOffer[], timeoutMs = stepMs): Promise<void> => {
    const pinging = AbortSignal.timeout(timeoutMs)
    const stepOver = new Promise<void>((resolve) => pinging.addEventListener('abort', () => resolve(), { once: true }))
    await Promise.all(
      round.map(async (signed) => {
        const key = signed.payload.provider.toLowerCase()
        if ((failures.get(key) ?? 0) >= 2) return
        if (dialling.has(key)) await Promise.race([dials.get(key), stepOver])
        // Still dialling after a step (a busy machine, many handshakes at once): not a failure, since the dial has
        // not failed; pinged in a later round, or once the dials have ended.
        if (dialling.has(key) || (failures.get(key) ?? 0) >= 2) return
        const rtt = await host.ping(offerTarget(signed.payload), { signal: pinging }).catch(() => undefined)
        failed(key, rtt !== undefined)
        if (rtt === undefined) unanswered.add(key)
        if (rtt !== undefined) latencyMs.set(key, Math.min(latencyMs.get(key) ?? Infinity, rtt))
        if (rtt !== undefined) latencies?.set(key, { ms: latencyMs.get(key)!, atMs: Date.now() })
      }),
    )
  }
  for (let round = 0; round < latencyPings; round++) {
    // Apart in time, so that one busy spell (new connections sync their offers at first) does not mark every ping.
    if (round > 0) await new Promise((resolve) => setTimeout(resolve, latencyPingGapMs))
    await pingRound(offers)
  }
  // Those whose dial outlasted every round: once the dials have ended (libp2p bounds each), one more round for them.
  const late = offers.filter((signed) => !latencyMs.has(signed.payload.provider.toLowerCase()) && dialling.has(signed.payload.provider.toLowerCase()))
  if (late.length > 0) {
    await Promise.all(late.map((signed) => dials.get(signed.payload.provider.toLowerCase())))
    await pingRound(late)
  }
  // Still unmeasured after pings that went unanswered: once more, with three steps to answer, since on a starved
  // machine the wait may have been this node's own.
  const again = offers.filter((signed) => !latencyMs.has(signed.payload.provider.toLowerCase()) && unanswered.has(signed.payload.provider.toLowerCase()))
  if (again.length > 0) {
    for (const signed of again) failures.delete(signed.payload.provider.toLowerCase())
    await pingRound(again, 3 * stepMs)
  }
}

function nearEnough(sourcing: Sourcing, signed: SignedOffer): boolean {
  return (sourcing.latencyMs.get(signed.payload.provider.toLowerCase()) ?? Infinity) <= (sourcing.init.spec.sla?.maxLatencyMs ?? Infinity)
}

/** The candidates measured; those beyond the SLA's latency left out (none left: the job stops). */
async function nearCandidates(sourcing: Sourcing, offers: SignedOffer[]): Promise<SignedOffer[]> {
  const { spec, market, emit } = sourcing.init
  const { latencyMs } = sourcing
  await measure(sourcing, offers)
  const nearest = Math.min(...latencyMs.values())
  emit({ type: 'phase', message: `measured the distance to ${latencyMs.size} of ${offers.length} providers${latencyMs.size === 0 ? '' : ` (nearest ${nearest.toFixed(1)} ms)`}` })
  // Reached directly: their offers outrank offers only relayed by others when the book is full.
  for (const signed of offers) if (latencyMs.has(signed.payload.provider.toLowerCase())) market.offerBook.markReached(signed.payload.provider)
  if (spec.sla?.maxLatencyMs === undefined) return offers
  const limit = spec.sla.maxLatencyMs
  const near = offers.filter((signed) => nearEnough(sourcing, signed))
  if (near.length === 0) {
    throw new HearthError('HEARTH_ERR_MARKET_NO_OFFERS', `no matching provider answers within ${limit} ms`, { hint: 'raise maxLatencyMs' })
  }
  return near
}

function rank(sourcing: Sourcing, offers: readonly SignedOffer[]): ScoredOffer<SignedOffer>[] {
  const { spec, reputation } = sourcing.init
  return rankOffers(offers, (signed) => signed.payload, {
    tasks: sourcing.tasksEach,
    taskTimeoutMs: spec.timeoutMs,
    weights: spec.weights,
    latencyMs: sourcing.latencyMs,
    near: spec.near,
    ...(reputation === undefined ? {} : { reputation: (provider: string) => reputation.score(provider) }),
  })
}

/** Money check before anything is signed or locked: the dearest chosen offer, for every agreement wanted. */
async function affordPool(sourcing: Sourcing, chosen: readonly SignedOffer[], ranked: readonly SignedOffer[], wanted: number, plannedTasks: number): Promise<number> {
  const { spec, payment, identity, emit } = sourcing.init
  const pool = sizePool({
    chosen: chosen.map((signed) => signed.payload.pricing),
    ranked: ranked.map((signed) => signed.payload.pricing),
    wanted,
    replicas: sourcing.init.replicas,
    maxTasks: sourcing.maxTasks,
    plannedTasks,
    timeoutMs: spec.timeoutMs,
    ...(spec.budgetWei === undefined ? {} : { budgetWei: spec.budgetWei }),
  })
  if (pool.cutFrom !== undefined) emit({ type: 'phase', message: `the budget allows ${pool.agreements} of ${pool.cutFrom} agreements` })
  const depositsWei = pool.dearestWei * BigInt(pool.agreements)
  const balanceWei = await tokenBalanceOf(payment, identity.address)
  if (balanceWei < depositsWei) {
    throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `the deposits need up to ${depositsWei} wei but the wallet holds ${balanceWei} wei`, {
      hint: 'fund the requestor wallet, use fewer providers, or lower the price cap',
    })
  }
  return pool.agreements
}

function termsFor(sourcing: Sourcing, offer: Offer): AgreementTerms {
  const { spec, identity, jobId } = sourcing.init
  return proposeTerms({
    offer,
    requestor: identity.address,
    runtime: spec.runtime,
    maxTasks: sourcing.maxTasks,
    taskTimeoutMs: spec.timeoutMs,
    jobName: `${spec.name} (${jobId})`,
    ...(spec.sla?.minGpus === undefined ? {} : { gpus: spec.sla.minGpus }),
    ...(spec.debitNoteIntervalSec === undefined ? {} : { debitNoteIntervalSec: spec.debitNoteIntervalSec }),
    ...(spec.paymentTimeoutSec === undefined ? {} : { paymentTimeoutSec: spec.paymentTimeoutSec }),
  })
}

function negotiate(sourcing: Sourcing, offers: readonly SignedOffer[], need: number, signal: AbortSignal | undefined): Promise<NegotiateManyResult> {
  const { host, identity, store, emit, spec } = sourcing.init
  const limits = { maxPerTaskWei: spec.maxPricePerTaskWei, minDurationSec: 600, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 }
  return negotiateMany({ host, identity, store, onEvent: emit }, offers, {
    need,
    termsFor: (offer) => termsFor(sourcing, offer),
    limits,
    stepTimeoutMs: spec.stepTimeoutMs,
    signal,
  })
}

/** Opens the escrows of new agreements in one transaction; their slots, once the path to each provider is known. */
async function admit(sourcing: Sourcing, agreements: Negotiated[]): Promise<Slot[]> {
  const opened = await sourcing.init.accounts.open(agreements)
  const added = agreements.map((signed) => slotFor(sourcing, signed, opened.txHash))
  await awaitPaths(sourcing, added)
  return added
}

function slotFor(sourcing: Sourcing, { agreement, offer }: Negotiated, openTx: Hex): Slot {
  const { accounts, emit } = sourcing.init
  const depositWei = BigInt(agreement.terms.depositWei)
  sourcing.init.allowFetcher(offer.provider)
  emit({ type: 'escrow-opened', provider: offer.provider, agreementId: agreement.id, depositWei: depositWei.toString(), txHash: openTx })
  const threads = Number(offer.properties['golem.inf.cpu.threads'] ?? 1)
  return {
    provider: offer.provider,
    // One task more than the provider has threads: the next one waits there while a result travels back, so a
    // provider does not idle for a round trip between tasks.
    capacity: Math.max(1, Math.min(Number.isFinite(threads) ? threads : 1, 8)) + 1,
    retired: false,
    agreement,
    offer,
    peer: offerTarget(offer),
    account: accounts.account(agreement.id),
    accepted: 0,
    rejected: 0,
    failures: 0,
    latencyMs: sourcing.latencyMs.get(offer.provider.toLowerCase()) ?? null,
    openTx,
  }
}

/**
 * Providers reached through a relay: a hole punch to them may be under way (hole-punch.ts). Tasks wait for it, so
 * they go over the punched connection, not through the relay, and outlive it.
 */
async function awaitPaths(sourcing: Sourcing, fresh: readonly Slot[]): Promise<void> {
  const { host, emit, signal } = sourcing.init
  await Promise.all(fresh.map(async (slot) => {
    const kind = await host.reachedBy(slot.peer, signal === undefined ? {} : { signal }).catch(() => undefined)
    if (kind === 'hole-punched') emit({ type: 'phase', message: `${slot.provider} is reached directly, hole-punched through both NATs` })
    else if (kind === 'relayed') emit({ type: 'phase', message: `${slot.provider} is reached through a relay` })
  }))
}

/**
 * Churn: more agreements while the job runs, when some of its providers are gone (for now or for good). From the
 * offers that match now (providers that appeared since, or were not chosen), ranked as at the start, within the
 * budget; providers that refused once are not asked again in this job. Nothing is committed once `signal` aborts:
 * an agreement without an escrow lapses on the provider's side.
 */
async function recruit(sourcing: Sourcing, missing: number, signal: AbortSignal): Promise<Slot[]> {
  const { spec, market, payment, identity, emit } = sourcing.init
  const inPool = new Set(sourcing.slots.map((slot) => slot.provider.toLowerCase()))
  let fresh = market.offerBook.list(sourcing.fits).filter((signed) => !inPool.has(signed.payload.provider.toLowerCase()) && !sourcing.refusedMidJob.has(signed.payload.provider.toLowerCase()))
  if (fresh.length === 0) return []
  await measure(sourcing, fresh)
  fresh = fresh.filter((signed) => nearEnough(sourcing, signed))
  const picked = rank(sourcing, fresh).slice(0, missing + 1).map((r) => r.item)
  if (picked.length === 0 || signal.aborted) return []
  const dearest = dearestDeposit(picked.map((signed) => signed.payload.pricing), sourcing.maxTasks, spec.timeoutMs)
  const lockedWei = sourcing.slots.reduce((sum, slot) => sum + BigInt(slot.agreement.terms.depositWei), 0n)
  let need = affordableMore(missing, picked.length, dearest, lockedWei, spec.budgetWei)
  if (need > 0 && (await tokenBalanceOf(payment, identity.address)) < dearest * BigInt(need)) need = 0
  if (need <= 0) {
    emit({ type: 'phase', message: `${missing} providers are gone, and the budget or the wallet allows no new agreement` })
    return []
  }
  emit({ type: 'phase', message: `${missing} providers are gone: negotiating with ${picked.length} others for ${need} agreements` })
  const more = await negotiate(sourcing, picked, need, sourcing.init.signal === undefined ? signal : AbortSignal.any([signal, sourcing.init.signal]))
  for (const failure of more.failures) sourcing.refusedMidJob.add(failure.provider.toLowerCase())
  if (more.agreements.length === 0 || signal.aborted) return []
  for (const { offer } of more.agreements) market.offerBook.markReached(offer.provider, 'answered')
  const added = await admit(sourcing, more.agreements)
  if (sourcing.probing && sourcing.init.probe !== undefined) for (const slot of added) await sourcing.init.probe(slot)
  return added
}
