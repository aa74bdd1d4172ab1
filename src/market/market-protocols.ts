/** The market's wire protocols: asking a peer for its current offers, and negotiating an agreement. */
import { z } from 'zod'
import { hexSchema } from '../identity/wire-schemas.ts'
import { signedSchema } from '../identity/signed.ts'
import { defineProtocol } from '../net/protocol.ts'
import { agreementTermsSchema } from './agreement.ts'
import { offerSchema } from './offer.ts'

/**
 * Offer sync: a node asks a peer for the offers it holds instead of waiting for the next gossip round, and hands over
 * its own offers in the same request, so a provider that publishes after connecting reaches its peers at once.
 */
export const offersSyncProtocol = defineProtocol({
  id: '/hearth/market/offers-sync/1',
  request: z.strictObject({ offers: z.array(signedSchema(offerSchema)).max(16) }),
  response: z.strictObject({ offers: z.array(signedSchema(offerSchema)).max(1000) }),
  maxRequestBytes: 64 * 1024,
  maxResponseBytes: 4 * 1024 * 1024,
  timeoutMs: 5_000,
})


/**
 * The requestor sends terms with its signature over them. The provider answers `approve` with its own signature over
 * exactly those terms (the two signatures over one set of terms are the agreement), or `counter` with the terms it
 * would sign instead (the requestor may sign those and send them as a new proposal), or an error
 * HEARTH_ERR_MARKET_AGREEMENT_REJECTED with the reason. The signatures travel inside the messages rather than as
 * envelopes: an envelope would only sign the same terms a second time.
 */
export const negotiateProtocol = defineProtocol({
  id: '/hearth/market/negotiate/1',
  request: z.strictObject({ terms: agreementTermsSchema, requestorSignature: hexSchema }),
  response: z.discriminatedUnion('decision', [
    z.strictObject({ decision: z.literal('approve'), terms: agreementTermsSchema, providerSignature: hexSchema }),
    z.strictObject({ decision: z.literal('counter'), terms: agreementTermsSchema, reasons: z.array(z.string().max(500)).max(16) }),
  ]),
  maxRequestBytes: 64 * 1024,
  maxResponseBytes: 64 * 1024,
  timeoutMs: 10_000,
})

/** The requestor withdraws from an agreement it no longer needs (it found enough providers) before any escrow. */
export const cancelAgreementProtocol = defineProtocol({
  id: '/hearth/market/cancel/1',
  request: z.strictObject({ agreementId: hexSchema, reason: z.string().max(500) }),
  response: z.strictObject({ agreementId: hexSchema, state: z.string() }),
  maxRequestBytes: 4 * 1024,
  maxResponseBytes: 4 * 1024,
  timeoutMs: 5_000,
  signed: true,
})
