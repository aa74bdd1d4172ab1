/**
 * The disk an owner's node rents: one or more holdings per provider, each a storage agreement (runtime `storage`,
 * `storageBytes` reserved, priced per GiB-hour; market/storage-terms.ts) made live by an activity that the provider
 * meters by time. Escrows are topped up as time passes and debit notes answered with vouchers by the node's accounts,
 * as for a service's replica. A holding that failed an audit is paid only up to the last audit it passed
 * (`justifiedLifeMs`), and ended.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Address } from 'viem'
import { HearthError } from '../errors.ts'
import { proposeTerms, type Agreement } from '../market/agreement.ts'
import type { Offer, SignedOffer } from '../market/offer.ts'
import type { OfferBook } from '../market/offer-book.ts'
import type { CompiledConstraints } from '../market/constraints/evaluate.ts'
import { matchDemandOffer } from '../market/constraints/match.ts'
import { offerStorageBytes, offerStoragePrice, storageRuntime } from '../market/storage-terms.ts'
import { terminalStates, type ActivityState } from '../exec/exescript.ts'
import { attachActivity, createActivity, type ActivityHandle } from './activity-client.ts'
import { negotiateMany, offerTarget } from './negotiator.ts'
import { offerRegion, type ReplicaDeps } from './service-replicas.ts'

export interface Holding {
  offer: Offer
  agreement: Agreement
  region: string | undefined
  /** Bytes the agreement reserves. */
  bytes: number
  activity: ActivityHandle | undefined
  createdAtMs: number
  /** When the holding last passed an audit (its creation until the first). */
  lastPassedMs: number
  /** Set once it failed an audit: paid up to lastPassedMs, then ended. */
  failedAtMs: number | undefined
}

export interface HoldingTerms {
  /** How long each storage agreement lasts (renewed before it ends). Default a day. */
  agreementSec: number
  /** How much time the escrow stays ahead of the holding. Default an hour. */
  escrowAheadSec: number
  /** The least a new holding reserves, so that small files do not each need an agreement. Default 256 MiB. */
  minReserveBytes: number
}

export const defaultHoldingTerms: HoldingTerms = { agreementSec: 24 * 3600, escrowAheadSec: 3600, minReserveBytes: 256 * 1024 * 1024 }

/** Where to look for disk: a region, providers to leave out, and a price cap. */
export interface StorageWhere {
  region?: string | undefined
  avoid?: ReadonlySet<string>
  /** Free disk the offer must lend, in bytes. */
  minBytes?: number
  maxPerGibHourWei?: bigint
  /** The owner's filter over offers (Golem's constraint language); the offers' own constraints are checked too. */
  constraints?: CompiledConstraints
}

/** Offers that lend disk, cheapest first, within `where`. */
export function storageOffers(offerBook: OfferBook, where: StorageWhere = {}): SignedOffer[] {
  const price = (offer: Offer): bigint => offerStoragePrice(offer) ?? 0n
  return offerBook
    .list((offer) => {
      const perGibHour = offerStoragePrice(offer)
      return perGibHour !== undefined &&
        (where.region === undefined || offerRegion(offer) === where.region) &&
        where.avoid?.has(offer.provider.toLowerCase()) !== true &&
        offerStorageBytes(offer) >= (where.minBytes ?? 0) &&
        (where.maxPerGibHourWei === undefined || perGibHour <= where.maxPerGibHourWei) &&
        matchDemandOffer({ properties: { 'golem.runtime.name': storageRuntime }, constraints: where.constraints ?? '' }, { properties: offer.properties, constraints: offer.constraints }) === 'yes'
    })
    .sort((a, b) => (price(a.payload) < price(b.payload) ? -1 : price(a.payload) > price(b.payload) ? 1 : 0))
}

/** Agreement terms besides price, as for a replica: one "task" per escrow step, notes often enough to hear of the work. */
function holdingTasks(terms: HoldingTerms): { maxTasks: number; taskTimeoutMs: number; escrowAhead: true; debitNoteIntervalSec: number; paymentTimeoutSec: number } {
  const aheadSec = Math.min(terms.agreementSec, terms.escrowAheadSec, 3600)
  return {
    maxTasks: Math.ceil(terms.agreementSec / aheadSec) + 4,
    taskTimeoutMs: aheadSec * 1000,
    escrowAhead: true,
    debitNoteIntervalSec: Math.min(60, Math.max(5, Math.floor(aheadSec / 6))),
    // The longest providers wait by default: the owner's node may be away this long before its holdings end.
    paymentTimeoutSec: 600,
  }
}

/** Makes a holding live: an activity under its agreement, paid only up to its last passed audit once one failed. */
export async function startHolding(deps: ReplicaDeps, holding: Holding): Promise<ActivityHandle> {
  return createActivity(
    { host: deps.host, identity: deps.identity, store: deps.store, accounts: deps.accounts, blobs: deps.blobs },
    { id: holding.agreement.id, provider: holding.offer.provider as Address, target: offerTarget(holding.offer) },
    { justifiedLifeMs: () => (holding.failedAtMs === undefined ? undefined : holding.lastPassedMs - holding.createdAtMs) },
  )
}

/** Rents `bytes` from the provider of `offer`: agreement, escrow, activity. */
export async function rentHolding(deps: ReplicaDeps, offer: SignedOffer, bytes: number, terms: HoldingTerms = defaultHoldingTerms): Promise<Holding> {
  const reserve = Math.max(terms.minReserveBytes, Math.ceil((bytes * 1.25) / 2 ** 20) * 2 ** 20)
  const negotiated = await negotiateMany({ host: deps.host, identity: deps.identity, store: deps.store }, [offer], {
    need: 1,
    termsFor: (o) => proposeTerms({ offer: o, requestor: deps.identity.address, runtime: storageRuntime, storageBytes: reserve, ...holdingTasks(terms), jobName: 'storage', durationSec: terms.agreementSec }),
    limits: { maxPerTaskWei: 10n ** 30n, minDurationSec: 60, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 },
    // A holding lasts a day: no race to win, so a provider slow to answer (a busy machine, a far region) is waited for.
    stepTimeoutMs: 15_000,
  })
  const first = negotiated.agreements[0]
  if (first === undefined) {
    const why = negotiated.failures.map((failure) => failure.message).join('; ')
    throw new HearthError('HEARTH_ERR_STORAGE_UNAVAILABLE', `provider ${offer.payload.provider} did not agree to hold ${reserve} bytes${why === '' ? '' : `: ${why}`}`)
  }
  await deps.accounts.open([{ agreement: first.agreement, offer: first.offer }])
  const nowMs = Date.now()
  const holding: Holding = { offer: first.offer, agreement: first.agreement, region: offerRegion(first.offer), bytes: reserve, activity: undefined, createdAtMs: nowMs, lastPassedMs: nowMs, failedAtMs: undefined }
  holding.activity = await startHolding(deps, holding)
  return holding
}

/** Ends a holding and settles its agreement: the provider claims what it earned, the rest comes back. */
export async function endHolding(deps: ReplicaDeps, holding: Holding): Promise<void> {
  await holding.activity?.terminate().catch(() => undefined)
  holding.activity = undefined
  await deps.accounts.account(holding.agreement.id).settle().catch(() => undefined)
}

interface SavedHolding {
  offer: Offer
  agreementId: string
  activityId: string | undefined
  bytes: number
  createdAtMs: number
  lastPassedMs: number
}

/** Writes the live holdings to `path` (mode 0600), so a restarted node takes them up again. */
export async function saveHoldings(path: string, holdings: readonly Holding[]): Promise<void> {
  const saved: SavedHolding[] = holdings.filter((h) => h.failedAtMs === undefined).map((h) => ({
    offer: h.offer, agreementId: h.agreement.id, activityId: h.activity?.id, bytes: h.bytes, createdAtMs: h.createdAtMs, lastPassedMs: h.lastPassedMs,
  }))
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  await writeFile(`${path}.next`, JSON.stringify(saved), { mode: 0o600 })
  await rename(`${path}.next`, path)
}

/**
 * The holdings saved at `path` whose agreements still run, with the activity each had when the node stopped (when
 * this node still knows it as live; else none, and the upkeep makes the holding live again).
 */
export async function loadHoldings(deps: ReplicaDeps, path: string): Promise<Holding[]> {
  const text = await readFile(path, 'utf8').catch(() => undefined)
  if (text === undefined) return []
  const holdings: Holding[] = []
  for (const saved of JSON.parse(text) as SavedHolding[]) {
    const record = deps.store.agreements.get(saved.agreementId)
    const agreement = record?.document as Agreement | undefined
    if (record?.state !== 'approved' || agreement === undefined || agreement.terms.expiresAtSec * 1000 <= Date.now()) continue
    const holding: Holding = { offer: saved.offer, agreement, region: offerRegion(saved.offer), bytes: saved.bytes, activity: undefined, createdAtMs: saved.createdAtMs, lastPassedMs: saved.lastPassedMs, failedAtMs: undefined }
    const activity = saved.activityId === undefined ? undefined : deps.store.activities.get('requestor', saved.activityId)
    if (activity !== undefined && !terminalStates.includes(activity.state as ActivityState)) {
      holding.activity = attachActivity(
        { host: deps.host, identity: deps.identity, store: deps.store, accounts: deps.accounts, blobs: deps.blobs },
        { id: agreement.id, provider: saved.offer.provider as Address, target: offerTarget(saved.offer) },
        { id: activity.id, createdAtMs: activity.createdAtMs, state: activity.state as ActivityState },
        { justifiedLifeMs: () => (holding.failedAtMs === undefined ? undefined : holding.lastPassedMs - holding.createdAtMs) },
      )
    }
    holdings.push(holding)
  }
  return holdings
}
