/**
 * Storage in the market: a provider lends disk as the runtime `storage`, offering `golem.inf.storage.gib` (Golem's
 * standard property) at a price per GiB-hour (`hearth.storage.perGibHourWei`, exact, in wei; also
 * `hearth.com.pricing.storage.per_gib_hour` in tokens for constraints). An agreement for storage reserves
 * `storageBytes` for its life and is paid by time: its pricing is `linear` with only a price per second, derived from
 * the reservation (the price per GiB-hour times the GiB reserved, per second, rounded up), so the one agreement
 * account of compute (escrow topped up as time passes, debit notes, vouchers, claims) pays for disk too.
 */
import type { Offer } from './offer.ts'
import type { Pricing } from './pricing.ts'

export const storageRuntime = 'storage'

const gib = 1024n ** 3n

/** The offer properties of a provider that lends `offeredGib` of disk at `perGibHourWei`. */
export function storageOfferProperties(offer: { offeredGib: number; perGibHourWei: string }): Offer['properties'] {
  return {
    'golem.inf.storage.gib': offer.offeredGib,
    'hearth.storage.perGibHourWei': offer.perGibHourWei,
    'hearth.com.pricing.storage.per_gib_hour': Number(BigInt(offer.perGibHourWei)) / 1e18,
  }
}

/** What an offer asks per GiB-hour of storage, or undefined when it offers none. */
export function offerStoragePrice(offer: Offer): bigint | undefined {
  const runtimes = [offer.properties['golem.runtime.name']].flat()
  const price = offer.properties['hearth.storage.perGibHourWei']
  if (!runtimes.includes(storageRuntime) || typeof price !== 'string' || !/^\d{1,40}$/.test(price)) return undefined
  return BigInt(price)
}

/** The disk an offer lends, in bytes (0 when it states none). */
export function offerStorageBytes(offer: Offer): number {
  const offered = offer.properties['golem.inf.storage.gib']
  return typeof offered === 'number' && Number.isFinite(offered) && offered > 0 ? Math.floor(offered * Number(gib)) : 0
}

/** The linear pricing of a reservation of `bytes` at `perGibHourWei`: a price per second, nothing per CPU second or to start. */
export function storagePricingFor(perGibHourWei: bigint, bytes: number): Pricing {
  return { model: 'linear', startWei: '0', perCpuSecWei: '0', perDurationSecWei: perSecondWei(perGibHourWei, bytes).toString() }
}

function perSecondWei(perGibHourWei: bigint, bytes: number): bigint {
  return (perGibHourWei * BigInt(bytes) + gib * 3600n - 1n) / (gib * 3600n)
}

/** What holding `bytes` for `hours` costs at `perGibHourWei`, rounded up to the wei. */
export function storageCostWei(perGibHourWei: bigint, bytes: number, hours: number): bigint {
  return perSecondWei(perGibHourWei, bytes) * BigInt(Math.ceil(hours * 3600))
}
