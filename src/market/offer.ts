/**
 * market/ owns offers, the offer book, and agreements: the documents through which a provider states what it lends
 * and at what price, and through which both sides bind themselves to terms before any money moves.
 *
 * An offer is signed by its provider and expires; its id is the hash of its canonical JSON, so two nodes agree on it.
 */
import { z } from 'zod'
import { addressSchema } from '../identity/wire-schemas.ts'
import { HearthError } from '../errors.ts'
import { pricingSchema, type Pricing } from './pricing.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { addressFromPeerId, type NodeIdentity } from '../identity/node-identity.ts'
import { signPayload, verifySigned, type Signed } from '../identity/signed.ts'

export const OFFERS_TOPIC = '/hearth/market/offers/1'

/**
 * The longest an offer may live from its issue (so from now, give or take the clock skew): twelve times the providers'
 * default TTL (5 min, republished at half-life), so a provider that misses several republications stays listed, while
 * an offer signed by a throwaway key leaves every book within the hour instead of squatting a slot for a century.
 */
export const maxOfferLifetimeMs = 60 * 60_000
/** How far ahead of this node's clock a provider's clock may run (an offer issued further ahead is refused). */
export const maxOfferClockSkewMs = 60_000

/** Flattened, typed properties under Golem's standard names (DESIGN.md), `hearth.*` for ours. */
export const propertiesSchema = z.record(
  z.string().min(1).max(200),
  z.union([z.string().max(1000), z.number(), z.boolean(), z.array(z.union([z.string().max(200), z.number(), z.boolean()])).max(64)]),
).refine((properties) => Object.keys(properties).length <= 256, 'expected at most 256 properties')

export const paymentPlatformSchema = z.strictObject({
  chainId: z.number().int().positive(),
  escrow: addressSchema,
  token: addressSchema,
})

export const offerSchema = z.strictObject({
  provider: addressSchema,
  peerId: z.string().min(1).max(200),
  multiaddrs: z.array(z.string().max(300)).max(16),
  properties: propertiesSchema,
  /** The provider's own conditions on demands, in the constraint language ('' for none). */
  constraints: z.string().max(64 * 1024),
  pricing: pricingSchema,
  payment: paymentPlatformSchema,
  issuedAtMs: z.number().int().nonnegative(),
  expiresAtMs: z.number().int().positive(),
})

export type Offer = z.output<typeof offerSchema>
export type PaymentPlatform = z.output<typeof paymentPlatformSchema>
export type SignedOffer = Signed<Offer>

export function offerId(offer: Offer): `0x${string}` {
  return hashCanonical(offer)
}

export interface CreateOfferParameters {
  identity: NodeIdentity
  multiaddrs: string[]
  properties: Offer['properties']
  constraints?: string
  pricing: Pricing
  payment: PaymentPlatform
  ttlMs: number
  nowMs?: number
}

export async function createOffer(parameters: CreateOfferParameters): Promise<SignedOffer> {
  const nowMs = parameters.nowMs ?? Date.now()
  if (!Number.isSafeInteger(parameters.ttlMs) || parameters.ttlMs <= 0 || parameters.ttlMs > maxOfferLifetimeMs) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `An offer's ttlMs must be a whole number of milliseconds from 1 to ${maxOfferLifetimeMs}, got ${parameters.ttlMs}`, {
      hint: 'other nodes refuse longer-lived offers; keep the TTL short and republish before it runs out',
      details: { ttlMs: parameters.ttlMs, maxOfferLifetimeMs },
    })
  }
  const offer: Offer = {
    provider: parameters.identity.address,
    peerId: parameters.identity.peerId.toString(),
    multiaddrs: parameters.multiaddrs,
    properties: parameters.properties,
    constraints: parameters.constraints ?? '',
    pricing: parameters.pricing,
    payment: parameters.payment,
    issuedAtMs: nowMs,
    expiresAtMs: nowMs + parameters.ttlMs,
  }
  return signPayload(parameters.identity, offer)
}

/**
 * Why an offer's times are refused, or undefined when they are fine: it is issued further ahead than the clock skew
 * allows, or lives longer than `maxLifetimeMs` from its issue. Together these keep its end within `maxLifetimeMs` of
 * now (plus the skew, so the longest TTL from a provider whose clock runs a little ahead still passes). Cheap (no
 * signature), so nodes ask it before checking a signature.
 */
export function offerLifetimeRefusal(offer: Pick<Offer, 'issuedAtMs' | 'expiresAtMs'>, nowMs = Date.now(), maxLifetimeMs = maxOfferLifetimeMs): string | undefined {
  if (offer.issuedAtMs > nowMs + maxOfferClockSkewMs) return `it is issued ${offer.issuedAtMs - nowMs} ms in the future`
  if (offer.expiresAtMs - offer.issuedAtMs > maxLifetimeMs) return `it lives ${offer.expiresAtMs - offer.issuedAtMs} ms from its issue, over the limit of ${maxLifetimeMs}`
  return undefined
}

/**
 * Checks the signature is the offer's provider's own, that the offer is live and that it does not outlive the cap;
 * returns the offer. A refusal for its times carries `details.reason` 'too-long'.
 */
export async function verifyOffer(signed: SignedOffer, nowMs = Date.now(), options: { maxLifetimeMs?: number } = {}): Promise<Offer> {
  const offer = await verifySigned(signed, { expectedSigner: signed.payload.provider as `0x${string}` })
  // The PeerId is where requestors will dial: it must be the provider's own key, or an offer could send them elsewhere.
  let peerAddress: string
  try {
    peerAddress = addressFromPeerId(peerIdFromString(offer.peerId))
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_MARKET_OFFER_INVALID', `offer from ${offer.provider} names an unusable PeerId`, { cause })
  }
  if (peerAddress.toLowerCase() !== offer.provider.toLowerCase()) {
    throw new HearthError('HEARTH_ERR_MARKET_OFFER_INVALID', `offer from ${offer.provider} names the PeerId of another key`)
  }
  if (offer.multiaddrs.some((address) => !address.endsWith(`/p2p/${offer.peerId}`))) {
    throw new HearthError('HEARTH_ERR_MARKET_OFFER_INVALID', `offer from ${offer.provider} lists an address of another peer`)
  }
  if (offer.expiresAtMs <= nowMs) {
    throw new HearthError('HEARTH_ERR_MARKET_OFFER_INVALID', `offer from ${offer.provider} expired at ${new Date(offer.expiresAtMs).toISOString()}`)
  }
  const tooLong = offerLifetimeRefusal(offer, nowMs, options.maxLifetimeMs)
  if (tooLong !== undefined) {
    throw new HearthError('HEARTH_ERR_MARKET_OFFER_INVALID', `offer from ${offer.provider} is refused: ${tooLong}`, {
      hint: `offers may live at most ${options.maxLifetimeMs ?? maxOfferLifetimeMs} ms, and a provider's clock may run at most ${maxOfferClockSkewMs} ms ahead`,
      details: { reason: 'too-long', issuedAtMs: offer.issuedAtMs, expiresAtMs: offer.expiresAtMs },
    })
  }
  return offer
}
