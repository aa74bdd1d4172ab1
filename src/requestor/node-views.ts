/**
 * What the requestor node's dashboard and API read of the market and the money: the offers in its book (filtered with
 * the constraint language), the providers with their regions and measured round trips, and every agreement's money
 * from this node's records beside what the chain says (escrow events and state, read fresh).
 */
import type { Address, Hex } from 'viem'
import { HearthError } from '../errors.ts'
import { compileConstraints } from '../market/constraints/evaluate.ts'
import type { Agreement } from '../market/agreement.ts'
import type { Offer, SignedOffer } from '../market/offer.ts'
import { offerId } from '../market/offer.ts'
import type { Host } from '../net/host.ts'
import { auditEscrows } from '../payment/escrow-audit.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import { paymentsOf } from '../payment/payments-view.ts'
import type { Store } from '../store/store.ts'
import { offerTarget } from './negotiator.ts'
import type { ReputationBook } from './reputation.ts'
import type { MeasuredLatencies } from './sourcing.ts'

export interface NodeViewSources {
  host: Host
  store: Store
  payment: EscrowContext
  address: Address
  offers(): SignedOffer[]
  latencies: MeasuredLatencies
  reputation?: ReputationBook
}

const numberOf = (value: unknown): number | null => (typeof value === 'number' && Number.isFinite(value) ? value : null)
const stringOf = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? value : null)
const stringsOf = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : typeof value === 'string' ? [value] : [])

function describeOffer(signed: SignedOffer, sources: NodeViewSources) {
  const offer: Offer = signed.payload
  const p = offer.properties
  const measured = sources.latencies.get(offer.provider.toLowerCase())
  const record = sources.reputation?.get(offer.provider)
  return {
    offerId: offerId(offer),
    provider: offer.provider,
    peerId: offer.peerId,
    region: stringOf(p['hearth.geo.region']),
    countryCode: stringOf(p['golem.node.geo.country_code']),
    lat: numberOf(p['hearth.geo.lat']),
    lon: numberOf(p['hearth.geo.lon']),
    runtimes: stringsOf(p['golem.runtime.name']),
    threads: numberOf(p['golem.inf.cpu.threads']),
    memoryGib: numberOf(p['golem.inf.mem.gib']),
    diskGib: numberOf(p['golem.inf.storage.gib']),
    cpuScore: numberOf(p['hearth.inf.cpu.score']),
    gpus: numberOf(p['hearth.inf.gpu.count']) ?? 0,
    pricing: offer.pricing,
    expiresAtMs: offer.expiresAtMs,
    latencyMs: measured === undefined ? null : measured.ms,
    reputation: record === undefined ? null : { valid: record.valid, invalid: record.invalid, failed: record.failed, excluded: record.excluded },
  }
}

/**
 * The offers in the book that `filter` (constraint language, over each offer's properties) admits. An empty filter
 * is refused, as yagna refuses one: to list every offer, leave the filter out.
 */
export function offersView(sources: NodeViewSources, filter: string | undefined) {
  const all = sources.offers()
  if (filter !== undefined && filter.trim() === '') {
    throw new HearthError('HEARTH_ERR_MARKET_CONSTRAINTS_INVALID', 'the filter is empty', { hint: 'write a filter such as (golem.inf.cpu.threads>=4), or leave it out to list every offer' })
  }
  const compiled = filter === undefined ? undefined : compileConstraints(filter)
  const chosen = compiled === undefined ? all : all.filter((signed) => compiled.evaluate(signed.payload.properties) === true)
  return { total: all.length, offers: chosen.map((signed) => describeOffer(signed, sources)) }
}

const measureEveryMs = 60_000

/** Providers pinged per call at most: a book of thousands is measured over several calls, not in one long answer. */
const pingsPerCall = 32

/**
 * Each provider with a live offer: its region and position as offered, and the round trip measured to it (pinged
 * again when the last measure is older than a minute, the least recently measured first, at most 32 per call, eight
 * at a time, each given 3 s).
 */
export async function providersView(sources: NodeViewSources) {
  const offers = sources.offers()
  const measuredAt = (signed: SignedOffer): number => sources.latencies.get(signed.payload.provider.toLowerCase())?.atMs ?? 0
  const stale = offers
    .filter((signed) => Date.now() - measuredAt(signed) > measureEveryMs)
    .sort((a, b) => measuredAt(a) - measuredAt(b))
    .slice(0, pingsPerCall)
  for (let i = 0; i < stale.length; i += 8) {
    await Promise.all(
      stale.slice(i, i + 8).map(async (signed) => {
        const ms = await sources.host.ping(offerTarget(signed.payload), { signal: AbortSignal.timeout(3_000) }).catch(() => undefined)
        if (ms !== undefined) sources.latencies.set(signed.payload.provider.toLowerCase(), { ms, atMs: Date.now() })
      }),
    )
  }
  const connections = new Map(sources.host.connections().map((c) => [c.peerId, c.kind]))
  return {
    providers: offers.map((signed) => {
      const view = describeOffer(signed, sources)
      const measured = sources.latencies.get(signed.payload.provider.toLowerCase())
      return {
        provider: view.provider,
        peerId: view.peerId,
        region: view.region,
        lat: view.lat,
        lon: view.lon,
        latencyMs: measured?.ms ?? null,
        measuredAtMs: measured?.atMs ?? null,
        connection: connections.get(view.peerId) ?? null,
      }
    }),
  }
}

/**
 * Every agreement this node paid under: its own records (deposit, vouchers signed and delivered) beside the chain's
 * (deposited, paid to the provider, refunded, still locked, from the escrow's events and state), and whether they
 * agree: the chain balances, and no more was paid out than the newest voucher this node signed.
 */
export async function moneyView(sources: NodeViewSources) {
  const mine = paymentsOf(sources.store).filter((a) => a.role === 'requestor')
  const withEscrow = mine.filter((a) => a.escrow !== null)
  const audit = await auditEscrows(sources.payment, {
    requestorAddress: sources.address,
    agreementIds: withEscrow.map((a) => a.id as Hex),
    openTxHashes: withEscrow.flatMap((a) => (a.escrow?.openTx === null || a.escrow?.openTx === undefined ? [] : [a.escrow.openTx as Hex])),
  })
  const onChain = new Map(audit.agreements.map((a) => [a.agreementId.toLowerCase(), a]))
  const agreements = mine.map((a) => {
    const chain = onChain.get(a.id.toLowerCase())
    const signedWei = a.vouchers.reduce((max, v) => (BigInt(v.cumulativeWei) > max ? BigInt(v.cumulativeWei) : max), 0n)
    const terms = (sources.store.agreements.get(a.id)?.document as Agreement | undefined)?.terms
    return {
      agreementId: a.id,
      provider: a.counterparty,
      state: a.state,
      jobName: terms?.jobName ?? null,
      local: a.escrow === null ? null : { depositedWei: a.escrow.depositedWei, vouchers: a.vouchers, closed: a.escrow.closed, openTx: a.escrow.openTx },
      chain:
        chain === undefined || chain.provider === null
          ? null
          : {
              depositedWei: chain.depositedWei.toString(), paidWei: chain.paidWei.toString(), refundedWei: chain.refundedWei.toString(), lockedWei: chain.lockedWei.toString(),
              closed: chain.closed, openTx: chain.openTx, claimTxs: chain.claimTxs, closeTx: chain.closeTx, balanced: chain.balanced,
            },
      agrees: chain === undefined || chain.provider === null ? a.escrow === null : chain.balanced && chain.paidWei <= signedWei,
    }
  })
  const t = audit.totals
  return {
    requestor: sources.address,
    chainBlock: audit.blockNumber.toString(),
    agreements,
    totals: { depositedWei: t.depositedWei.toString(), paidWei: t.paidWei.toString(), refundedWei: t.refundedWei.toString(), lockedWei: t.lockedWei.toString() },
    balanced: audit.balanced && agreements.every((a) => a.agrees),
    problems: [...audit.problems, ...agreements.filter((a) => !a.agrees).map((a) => `agreement ${a.agreementId}: the chain and this node's records disagree`)],
  }
}
