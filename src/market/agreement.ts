/**
 * Agreements: terms that the requestor proposes and signs and the provider checks against its own offer and policy and
 * signs in turn. Both signatures are over the same canonical JSON, whose hash is the agreement id: the escrow on chain
 * is opened under that id, so the chain's public record points at exactly these terms.
 */
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import { verifySigned, type Signed } from '../identity/signed.ts'
import { decimalWeiSchema, paymentPlatformSchema, type Offer } from './offer.ts'

const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'expected a 0x-prefixed 20-byte address')
const hex = z.string().regex(/^0x[0-9a-fA-F]*$/, 'expected 0x-prefixed hex')

export const agreementTermsSchema = z.strictObject({
  offerId: hex,
  requestor: address,
  provider: address,
  runtime: z.string().min(1).max(64),
  pricing: z.strictObject({ model: z.literal('per-task'), perTaskWei: decimalWeiSchema }),
  /** Most tasks the requestor will pay for under this agreement; the deposit covers them all. */
  maxTasks: z.number().int().positive().max(1_000_000),
  depositWei: decimalWeiSchema,
  payment: paymentPlatformSchema,
  expiresAtSec: z.number().int().positive(),
  jobName: z.string().max(200),
  /** Random, so two agreements with otherwise equal terms still get distinct ids (and escrows). */
  nonce: hex,
  createdAtMs: z.number().int().nonnegative(),
})

export type AgreementTerms = z.output<typeof agreementTermsSchema>

export const agreementSchema = z.strictObject({
  id: hex,
  terms: agreementTermsSchema,
  requestorSignature: hex,
  providerSignature: hex,
})

export type Agreement = z.output<typeof agreementSchema>

export type AgreementState = 'pending' | 'approved' | 'rejected' | 'terminated' | 'expired'

export function agreementId(terms: AgreementTerms): `0x${string}` {
  return hashCanonical(terms)
}

/** Joins the requestor's signed proposal and the provider's signature over the same terms. */
export function assembleAgreement(proposal: Signed<AgreementTerms>, providerSigned: Signed<AgreementTerms>): Agreement {
  if (hashCanonical(proposal.payload) !== hashCanonical(providerSigned.payload)) {
    throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', 'the provider signed different terms from those proposed')
  }
  return {
    id: agreementId(proposal.payload),
    terms: proposal.payload,
    requestorSignature: proposal.signature,
    providerSignature: providerSigned.signature,
  }
}

/** Verifies both signatures and the id; returns the terms. */
export async function verifyAgreement(agreement: Agreement): Promise<AgreementTerms> {
  const { terms } = agreement
  if (agreementId(terms) !== agreement.id) {
    throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `agreement id ${agreement.id} is not the hash of its terms`)
  }
  await verifySigned({ payload: terms, signer: terms.requestor as `0x${string}`, signature: agreement.requestorSignature as `0x${string}` }, { expectedSigner: terms.requestor as `0x${string}` })
  await verifySigned({ payload: terms, signer: terms.provider as `0x${string}`, signature: agreement.providerSignature as `0x${string}` }, { expectedSigner: terms.provider as `0x${string}` })
  return terms
}

export interface ProviderPolicy {
  /** Agreements this provider holds at once. */
  maxConcurrentAgreements: number
  /** Longest agreement it accepts. */
  maxAgreementSec: number
  /** Requestors it refuses outright (lower-case addresses). */
  deniedRequestors?: ReadonlySet<string>
}

/**
 * The provider's decision on a proposal: undefined to approve, else the reason to reject.
 * Pure, so the same rules hold in tests, the daemon and the devnet.
 */
export function reviewProposal(
  terms: AgreementTerms,
  context: { offer: Offer; offerIds: ReadonlySet<string>; policy: ProviderPolicy; activeAgreements: number; nowMs: number },
): string | undefined {
  const { offer, policy, nowMs } = context
  if (terms.provider.toLowerCase() !== offer.provider.toLowerCase()) return 'the proposal names another provider'
  if (!context.offerIds.has(terms.offerId)) return 'the proposal refers to an offer this provider did not make or that expired'
  if (policy.deniedRequestors?.has(terms.requestor.toLowerCase()) === true) return 'this provider does not work for this requestor'
  if (terms.runtime !== offer.properties['golem.runtime.name']) return `runtime ${terms.runtime} is not offered`
  if (BigInt(terms.pricing.perTaskWei) < BigInt(offer.pricing.perTaskWei)) {
    return `price per task ${terms.pricing.perTaskWei} wei is below the offered ${offer.pricing.perTaskWei} wei`
  }
  if (BigInt(terms.depositWei) < BigInt(terms.pricing.perTaskWei) * BigInt(terms.maxTasks)) {
    return 'the deposit does not cover maxTasks at the agreed price'
  }
  const p = terms.payment
  if (p.chainId !== offer.payment.chainId || p.escrow.toLowerCase() !== offer.payment.escrow.toLowerCase() || p.token.toLowerCase() !== offer.payment.token.toLowerCase()) {
    return 'the proposal settles on a chain, escrow or token this provider does not accept'
  }
  const nowSec = Math.floor(nowMs / 1000)
  if (terms.expiresAtSec <= nowSec + 60) return 'the agreement expires too soon to do any work'
  if (terms.expiresAtSec > nowSec + policy.maxAgreementSec) return `the agreement runs longer than this provider's limit of ${policy.maxAgreementSec} s`
  if (context.activeAgreements >= policy.maxConcurrentAgreements) return 'this provider is at its limit of concurrent agreements'
  return undefined
}
