/**
 * Agreements: terms that the requestor proposes and signs and the provider checks against its own offer and policy and
 * signs in turn. Both signatures are over the same canonical JSON, whose hash is the agreement id: the escrow on chain
 * is opened under that id, so the chain's public record points at exactly these terms.
 */
import { z } from 'zod'
import { addressSchema, hexSchema, decimalWeiSchema } from '../identity/wire-schemas.ts'
import { HearthError } from '../errors.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import { verifySigned, type Signed } from '../identity/signed.ts'
import { randomBytes } from 'node:crypto'
import { offerId, paymentPlatformSchema, type Offer } from './offer.ts'
import { escrowAheadWeiFor } from './escrow-ahead.ts'
import { coversPricing, maxCostWei, maxTaskCostWei, pricingSchema, type Pricing } from './pricing.ts'
import { offerStorageBytes, offerStoragePrice, storagePricingFor, storageRuntime } from './storage-terms.ts'


export const agreementTermsSchema = z.strictObject({
  offerId: hexSchema,
  requestor: addressSchema,
  provider: addressSchema,
  runtime: z.string().min(1).max(64),
  pricing: pricingSchema,
  /** Most tasks the requestor will pay for under this agreement; the deposit covers them all. */
  maxTasks: z.number().int().positive().max(1_000_000),
  /** The longest one task may run: bounds what a task can cost under `linear` pricing. */
  taskTimeoutMs: z.number().int().positive().max(3_600_000),
  depositWei: decimalWeiSchema,
  /**
   * When set, the escrow is topped up as work goes rather than filled up front: it opens with twice this and stays at
   * least half of it ahead of the work delivered (see escrow-ahead.ts); `depositWei` stays the cap. At least one task
   * at its longest.
   */
  escrowAheadWei: decimalWeiSchema.optional(),
  payment: paymentPlatformSchema,
  expiresAtSec: z.number().int().positive(),
  /** How often the provider sends debit notes (0: with every task's result); the requestor pays on them. */
  debitNoteIntervalSec: z.number().int().nonnegative().max(86_400),
  /** How long the requestor has to accept a debit note before the provider stops working. */
  paymentTimeoutSec: z.number().int().positive().max(86_400),
  jobName: z.string().max(200),
  /** GPUs the provider grants to every task of the agreement (native and docker runtimes); absent: none. */
  gpus: z.number().int().min(1).max(64).optional(),
  /** Runtime `storage` only: the disk reserved for the requestor's pieces (storage-terms.ts), priced per GiB-hour. */
  storageBytes: z.number().int().positive().max(2 ** 50).optional(),
  /** Random, so two agreements with otherwise equal terms still get distinct ids (and escrows). */
  nonce: hexSchema,
  createdAtMs: z.number().int().nonnegative(),
})

export type AgreementTerms = z.output<typeof agreementTermsSchema>

export const agreementSchema = z.strictObject({
  id: hexSchema,
  terms: agreementTermsSchema,
  requestorSignature: hexSchema,
  providerSignature: hexSchema,
})

export type Agreement = z.output<typeof agreementSchema>

/**
 * How long an agreement's escrow must outlive the agreement: the requestor opens it to expire this much after the
 * agreement does, and a provider works only for an escrow that does. Work stops with the agreement; the margin (and
 * the contract's claim grace after it) is the provider's time to claim what the last tasks earned.
 */
export const escrowExpiryMarginSec = 600

/** Persisted on both sides; see docs/design.md for the transitions. */
export type AgreementState = 'proposal' | 'pending' | 'approved' | 'rejected' | 'cancelled' | 'expired' | 'terminated'

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
  /** Shortest interval between debit notes it will send (more often costs it messages and signatures). */
  minDebitNoteIntervalSec: number
  /** Longest interval it lets pass between debit notes: unpaid work piles up between them. */
  maxDebitNoteIntervalSec: number
  /** Longest it lets a debit note wait for the requestor's voucher before it stops working (its money at risk). */
  maxPaymentTimeoutSec: number
  /** Requestors it refuses outright (lower-case addresses). */
  deniedRequestors?: ReadonlySet<string>
  /** When set, the only requestors it works for (lower-case addresses). */
  allowedRequestors?: ReadonlySet<string>
}

export type ProposalDecision =
  | { decision: 'approve' }
  | { decision: 'counter'; terms: AgreementTerms; reasons: string[] }
  | { decision: 'reject'; reason: string }

export interface ReviewContext {
  offer: Offer
  offerIds: ReadonlySet<string>
  policy: ProviderPolicy
  activeAgreements: number
  /** Storage proposals: the disk the provider's other storage agreements reserve now. */
  reservedStorageBytes?: number
  nowMs: number
}

/**
 * The prices a proposal must meet: the offer's, or for storage those that follow from the reservation (and then the
 * reservation must fit the disk offered beside what other agreements reserve). A string is the reason to reject.
 */
function offeredPricingFor(terms: AgreementTerms, context: ReviewContext): Pricing | string {
  const { offer } = context
  if (terms.runtime !== storageRuntime) return terms.storageBytes === undefined ? offer.pricing : 'storageBytes belongs to storage agreements only'
  const price = offerStoragePrice(offer)
  if (price === undefined) return 'this provider offers no storage'
  if (terms.storageBytes === undefined) return 'a storage proposal must state storageBytes, the disk it reserves'
  const free = offerStorageBytes(offer) - (context.reservedStorageBytes ?? 0)
  if (terms.storageBytes > free) return `the proposal reserves ${terms.storageBytes} bytes and this provider has ${Math.max(0, free)} bytes of disk left to lend`
  return storagePricingFor(price, terms.storageBytes)
}

/**
 * The provider's answer to a proposal. Terms it cannot accept but could (price below its offer, an agreement longer
 * than it allows, debit notes more often than it sends them, a payment timeout longer than it waits) get a
 * counter-proposal with those terms changed and
 * nothing else; anything else is rejected with the reason. Pure, so the same rules hold in tests, the daemon and the
 * devnet.
 */
export function reviewProposal(terms: AgreementTerms, context: ReviewContext): ProposalDecision {
  const { offer, policy, nowMs } = context
  const reject = (reason: string): ProposalDecision => ({ decision: 'reject', reason })
  const requestor = terms.requestor.toLowerCase()
  if (terms.provider.toLowerCase() !== offer.provider.toLowerCase()) return reject('the proposal names another provider')
  if (!context.offerIds.has(terms.offerId)) return reject('the proposal refers to an offer this provider did not make or that expired')
  if (policy.deniedRequestors?.has(requestor) === true) return reject('this provider does not work for this requestor')
  if (policy.allowedRequestors !== undefined && !policy.allowedRequestors.has(requestor)) {
    return reject('this provider works only for requestors on its allow list')
  }
  if (!offeredRuntimes(offer).includes(terms.runtime)) return reject(`runtime ${terms.runtime} is not offered`)
  const offeredPricing = offeredPricingFor(terms, context)
  if (typeof offeredPricing === 'string') return reject(offeredPricing)
  if (terms.gpus !== undefined) {
    const offered = Number(offer.properties['hearth.inf.gpu.count'] ?? 0)
    if (terms.runtime === 'wasi') return reject('a wasi task cannot use GPUs; ask for native or docker')
    if (!(terms.gpus <= offered)) return reject(`the proposal asks for ${terms.gpus} GPUs and this provider offers ${offered}`)
  }
  const p = terms.payment
  if (p.chainId !== offer.payment.chainId || p.escrow.toLowerCase() !== offer.payment.escrow.toLowerCase() || p.token.toLowerCase() !== offer.payment.token.toLowerCase()) {
    return reject('the proposal settles on a chain, escrow or token this provider does not accept')
  }
  const nowSec = Math.floor(nowMs / 1000)
  if (terms.expiresAtSec <= nowSec + 60) return reject('the agreement expires too soon to do any work')
  if (context.activeAgreements >= policy.maxConcurrentAgreements) return reject('this provider is at its limit of concurrent agreements')

  const counter: AgreementTerms = { ...terms }
  const reasons: string[] = []
  if (!coversPricing(terms.pricing, offeredPricing)) {
    counter.pricing = offeredPricing
    reasons.push(`the proposed prices (${describePricing(terms.pricing)}) are below the offered ${describePricing(offeredPricing)}`)
  }
  if (terms.expiresAtSec > nowSec + policy.maxAgreementSec) {
    counter.expiresAtSec = nowSec + policy.maxAgreementSec
    reasons.push(`the agreement runs longer than this provider's limit of ${policy.maxAgreementSec} s`)
  }
  if (terms.debitNoteIntervalSec < policy.minDebitNoteIntervalSec) {
    counter.debitNoteIntervalSec = policy.minDebitNoteIntervalSec
    reasons.push(`debit notes every ${terms.debitNoteIntervalSec} s are more often than this provider's ${policy.minDebitNoteIntervalSec} s`)
  }
  if (terms.debitNoteIntervalSec > policy.maxDebitNoteIntervalSec) {
    counter.debitNoteIntervalSec = policy.maxDebitNoteIntervalSec
    reasons.push(`debit notes every ${terms.debitNoteIntervalSec} s are rarer than this provider's ${policy.maxDebitNoteIntervalSec} s: unpaid work would pile up between them`)
  }
  if (terms.paymentTimeoutSec > policy.maxPaymentTimeoutSec) {
    counter.paymentTimeoutSec = policy.maxPaymentTimeoutSec
    reasons.push(`a payment timeout of ${terms.paymentTimeoutSec} s is longer than this provider's ${policy.maxPaymentTimeoutSec} s`)
  }
  const neededDepositWei = maxCostWei(counter.pricing, counter.maxTasks, counter.taskTimeoutMs)
  if (BigInt(terms.depositWei) < neededDepositWei) {
    if (reasons.length === 0) return reject('the deposit does not cover maxTasks at the agreed price')
    counter.depositWei = neededDepositWei.toString()
  }
  if (terms.escrowAheadWei !== undefined) {
    const neededAheadWei = escrowAheadWeiFor(counter.pricing, counter.taskTimeoutMs)
    if (BigInt(terms.escrowAheadWei) < neededAheadWei) {
      if (reasons.length === 0) return reject('the escrow would stay less than one task at its longest ahead of the work')
      counter.escrowAheadWei = neededAheadWei.toString()
    }
  }
  return reasons.length === 0 ? { decision: 'approve' } : { decision: 'counter', terms: counter, reasons }
}

/** Requestor's limits on what a counter-proposal may change. */
export interface CounterLimits {
  maxPerTaskWei: bigint
  /** The agreement must still last this long from now. */
  minDurationSec: number
  maxDebitNoteIntervalSec: number
  /** The requestor needs at least this long to check a debit note and answer it. */
  minPaymentTimeoutSec: number
  nowMs: number
}

/**
 * Whether the requestor takes a provider's counter-proposal: only price, expiry, debit-note interval, payment timeout
 * and the deposit that follows from the price may differ, each within the requestor's limits. Returns the reason to refuse, if any.
 */
export function reviewCounter(proposed: AgreementTerms, counter: AgreementTerms, limits: CounterLimits): string | undefined {
  const negotiable = new Set(['pricing', 'expiresAtSec', 'debitNoteIntervalSec', 'paymentTimeoutSec', 'depositWei', 'escrowAheadWei'])
  for (const key of new Set([...Object.keys(proposed), ...Object.keys(counter)]) as Set<keyof AgreementTerms>) {
    if (negotiable.has(key)) continue
    if (JSON.stringify(proposed[key]) !== JSON.stringify(counter[key])) return `the counter-proposal changes ${key}, which is not negotiable`
  }
  if (counter.pricing.model !== proposed.pricing.model) return 'the counter-proposal changes the pricing model'
  const taskCostWei = maxTaskCostWei(counter.pricing, counter.taskTimeoutMs)
  if (taskCostWei > limits.maxPerTaskWei) {
    return `the counter-proposal asks up to ${taskCostWei} wei per task, above the cap of ${limits.maxPerTaskWei} wei`
  }
  if (counter.expiresAtSec < Math.floor(limits.nowMs / 1000) + limits.minDurationSec) return 'the counter-proposal ends the agreement too soon'
  if (counter.debitNoteIntervalSec > limits.maxDebitNoteIntervalSec) return 'the counter-proposal sends debit notes too rarely'
  if (counter.paymentTimeoutSec < limits.minPaymentTimeoutSec) return 'the counter-proposal leaves too little time to answer debit notes'
  if (BigInt(counter.depositWei) !== maxCostWei(counter.pricing, counter.maxTasks, counter.taskTimeoutMs)) {
    return 'the counter-proposal\'s deposit does not follow from its price'
  }
  if ((proposed.escrowAheadWei === undefined) !== (counter.escrowAheadWei === undefined)) return 'the counter-proposal changes whether the escrow is topped up as work goes'
  if (counter.escrowAheadWei !== undefined && BigInt(counter.escrowAheadWei) !== escrowAheadWeiFor(counter.pricing, counter.taskTimeoutMs)) {
    return 'the counter-proposal\'s escrowAheadWei does not follow from its price'
  }
  return undefined
}

function describePricing(pricing: Pricing): string {
  return pricing.model === 'per-task'
    ? `${pricing.perTaskWei} wei per task`
    : `linear: start ${pricing.startWei} wei, ${pricing.perCpuSecWei} wei per CPU second, ${pricing.perDurationSecWei} wei per second`
}

/** The runtimes an offer names: `golem.runtime.name` is one name or, when a provider offers several, a list. */
export function offeredRuntimes(offer: Offer): string[] {
  const named = offer.properties['golem.runtime.name']
  return (Array.isArray(named) ? named : [named]).filter((name): name is string => typeof name === 'string')
}

export interface ProposeTermsParameters {
  offer: Offer
  requestor: string
  runtime: string
  maxTasks: number
  taskTimeoutMs: number
  jobName: string
  /** GPUs every task may use (the job's sla.minGpus). */
  gpus?: number
  /** How long the agreement lasts (default 1 h). */
  durationSec?: number
  debitNoteIntervalSec?: number
  paymentTimeoutSec?: number
  /** Top the escrow up as work goes, one task at its longest ahead of it, instead of depositing everything at once. */
  escrowAhead?: boolean
  /** Runtime `storage`: the disk to reserve; the prices then follow from the offer's price per GiB-hour. */
  storageBytes?: number
  nowMs?: number
}

/**
 * The terms a requestor proposes for an offer: the offer's own prices, a deposit that covers `maxTasks` at their most,
 * and a random nonce so that equal terms still make distinct agreements (and escrows).
 */
export function proposeTerms(parameters: ProposeTermsParameters): AgreementTerms {
  const { offer } = parameters
  const nowMs = parameters.nowMs ?? Date.now()
  const { storageBytes } = parameters
  const storagePrice = storageBytes === undefined ? undefined : offerStoragePrice(offer)
  if (storageBytes !== undefined && storagePrice === undefined) throw new HearthError('HEARTH_ERR_API_MISUSE', `offer of ${offer.provider} lends no storage`)
  const pricing = storagePrice === undefined ? offer.pricing : storagePricingFor(storagePrice, storageBytes!)
  return {
    offerId: offerId(offer),
    requestor: parameters.requestor,
    provider: offer.provider,
    runtime: parameters.runtime,
    pricing,
    maxTasks: parameters.maxTasks,
    taskTimeoutMs: parameters.taskTimeoutMs,
    depositWei: maxCostWei(pricing, parameters.maxTasks, parameters.taskTimeoutMs).toString(),
    ...(parameters.escrowAhead === true ? { escrowAheadWei: escrowAheadWeiFor(pricing, parameters.taskTimeoutMs).toString() } : {}),
    payment: offer.payment,
    expiresAtSec: Math.floor(nowMs / 1000) + (parameters.durationSec ?? 3600),
    debitNoteIntervalSec: parameters.debitNoteIntervalSec ?? 60,
    paymentTimeoutSec: parameters.paymentTimeoutSec ?? 300,
    jobName: parameters.jobName,
    ...(parameters.gpus === undefined || parameters.gpus === 0 ? {} : { gpus: parameters.gpus }),
    ...(storageBytes === undefined ? {} : { storageBytes }),
    nonce: `0x${randomBytes(16).toString('hex')}`,
    createdAtMs: nowMs,
  }
}
