/**
 * Where a file's pieces go: distinct providers, spread over regions so that one region going dark takes at most `m`
 * pieces (then any k of the rest still give the file back), cheapest first within a region. Where the market has too
 * few regions for that, pieces are spread as evenly as it allows, and the caller is told.
 */
import { HearthError } from '../errors.ts'
import type { CompiledConstraints } from '../market/constraints/evaluate.ts'
import type { SignedOffer } from '../market/offer.ts'
import type { OfferBook } from '../market/offer-book.ts'
import { offerRegion } from './service-replicas.ts'
import { storageOffers, type StorageWhere } from './storage-holdings.ts'

export interface PlacementNeed {
  /** Pieces to place. */
  count: number
  /** Most pieces of the file one region may hold (the code's m). */
  perRegion: number
  /** Pieces of the file already placed, by region ('' for offers that name none): counted against `perRegion`. */
  placedByRegion?: ReadonlyMap<string, number>
  /** Providers that hold a piece of the file already, or must not be used. */
  avoid: ReadonlySet<string>
  /** Only these regions (all when absent). */
  regions?: readonly string[]
  /** Free disk each provider must lend, in bytes. */
  minBytes: number
  maxPerGibHourWei?: bigint
  /** The owner's filter over offers (see StorageWhere). */
  constraints?: CompiledConstraints
}

export interface PlacementChoice {
  offers: SignedOffer[]
  /** False when some region holds more than `perRegion` pieces: the market had too few regions. */
  spread: boolean
}

/** Chooses `need.count` offers, fewest pieces per region first, cheapest within a region. */
export function choosePlacements(offerBook: OfferBook, need: PlacementNeed): PlacementChoice {
  const where: StorageWhere = { avoid: need.avoid, minBytes: need.minBytes, ...(need.maxPerGibHourWei === undefined ? {} : { maxPerGibHourWei: need.maxPerGibHourWei }), ...(need.constraints === undefined ? {} : { constraints: need.constraints }) }
  const byRegion = new Map<string, SignedOffer[]>()
  const seen = new Set<string>()
  for (const offer of storageOffers(offerBook, where)) {
    const provider = offer.payload.provider.toLowerCase()
    if (seen.has(provider)) continue
    const region = offerRegion(offer.payload) ?? ''
    if (need.regions !== undefined && !need.regions.includes(region)) continue
    seen.add(provider)
    byRegion.set(region, [...(byRegion.get(region) ?? []), offer])
  }
  const count = new Map(need.placedByRegion ?? [])
  const chosen: SignedOffer[] = []
  let spread = true
  while (chosen.length < need.count) {
    const open = [...byRegion.entries()].filter(([, offers]) => offers.length > 0)
    if (open.length === 0) break
    // The region with the fewest pieces of the file so far; ties go to the cheaper first offer (lists are cheapest first).
    open.sort(([a, offersA], [b, offersB]) => (count.get(a) ?? 0) - (count.get(b) ?? 0) || priceOrder(offersA[0]!, offersB[0]!))
    const [region, offers] = open[0]!
    if ((count.get(region) ?? 0) >= need.perRegion) spread = false
    chosen.push(offers.shift()!)
    count.set(region, (count.get(region) ?? 0) + 1)
  }
  if (chosen.length < need.count) {
    throw new HearthError('HEARTH_ERR_STORAGE_UNAVAILABLE', `${need.count} storage providers are needed and ${chosen.length} offer ${need.minBytes} bytes or more${need.avoid.size > 0 ? ` beyond the ${need.avoid.size} already used` : ''}`, {
      hint: 'wait for more providers to offer storage (hearth market offers), or store with a smaller code (fewer pieces)',
    })
  }
  return { offers: chosen, spread }
}

function priceOrder(a: SignedOffer, b: SignedOffer): number {
  const price = (offer: SignedOffer): bigint => BigInt(String(offer.payload.properties['hearth.storage.perGibHourWei'] ?? '0'))
  return price(a) < price(b) ? -1 : price(a) > price(b) ? 1 : 0
}
