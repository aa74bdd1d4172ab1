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

/** Checks the signature is the offer's provider's own and that the offer is live; returns the offer. */
export async function verifyOffer(signed: SignedOffer, nowMs = Date.now()): Promise<Offer> {
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
  if (offer.issuedAtMs > nowMs + 60_000) {
    throw new HearthError('HEARTH_ERR_MARKET_OFFER_INVALID', `offer from ${offer.provider} is issued in the future`, {
      hint: 'the provider\'s clock is more than a minute ahead',
    })
  }
  return offer
}
