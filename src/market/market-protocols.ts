/** The market's wire protocols: asking a peer for its current offers, and negotiating an agreement. */
import { z } from 'zod'
import { signedSchema } from '../identity/signed.ts'
import { defineProtocol } from '../net/protocol.ts'
import { agreementTermsSchema } from './agreement.ts'
import { offerSchema } from './offer.ts'

/** A node that joins asks each peer for the offers it holds, instead of waiting for the next gossip round. */
export const offersSyncProtocol = defineProtocol({
  id: '/hearth/market/offers-sync/1',
  request: z.strictObject({}),
  response: z.strictObject({ offers: z.array(signedSchema(offerSchema)).max(1000) }),
  maxRequestBytes: 1024,
  maxResponseBytes: 4 * 1024 * 1024,
  timeoutMs: 5_000,
})

/**
 * The requestor sends terms it signed; the provider answers with the same terms signed by itself (an agreement) or
 * an error with code HEARTH_ERR_MARKET_AGREEMENT_REJECTED and the reason.
 */
export const negotiateProtocol = defineProtocol({
  id: '/hearth/market/negotiate/1',
  request: agreementTermsSchema,
  response: agreementTermsSchema,
  maxRequestBytes: 64 * 1024,
  maxResponseBytes: 64 * 1024,
  timeoutMs: 10_000,
  signed: true,
})
