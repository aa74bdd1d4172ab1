/**
 * Negotiating with many providers at once. Every negotiation runs in parallel, each step under its own timeout, and
 * the whole returns as soon as enough agreements are signed: a silent or slow provider never delays the others.
 * Agreements signed after the target was reached are cancelled, so those providers are free again.
 */
import type { Address } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { signPayload, verifySigned } from '../identity/signed.ts'
import { agreementId, reviewCounter, type Agreement, type AgreementState, type AgreementTerms, type CounterLimits } from '../market/agreement.ts'
import { cancelAgreementProtocol, negotiateProtocol } from '../market/market-protocols.ts'
import type { Offer, SignedOffer } from '../market/offer.ts'
import type { Host } from '../net/host.ts'
import type { Store } from '../store/store.ts'
import type { JobEventListener } from './events.ts'

export interface NegotiateManyInit {
  host: Host
  identity: NodeIdentity
  store: Store
  onEvent?: JobEventListener
}

export interface NegotiateManyOptions {
  /** Agreements wanted; negotiation stops when this many are signed. */
  need: number
  /** The terms this requestor proposes to one offer. */
  termsFor: (offer: Offer) => AgreementTerms
  limits: Omit<CounterLimits, 'nowMs'>
  /** Each request and answer must complete within this. */
  stepTimeoutMs?: number
  /** Proposals per provider, counting the first (default 3). */
  maxRounds?: number
  signal?: AbortSignal
}

export interface Negotiated {
  agreement: Agreement
  offer: Offer
}

export interface NegotiateManyResult {
  agreements: Negotiated[]
  failures: { provider: string; message: string }[]
}

/**
 * Where to reach the provider: its one address, or its PeerId when its offer names several (the market node put them in
 * the peer store, and libp2p tries each: a LAN or loopback address may lead nowhere from here).
 */
export function offerTarget(offer: Offer): string {
  return offer.multiaddrs.length === 1 ? offer.multiaddrs[0]! : offer.peerId
}

export async function negotiateMany(init: NegotiateManyInit, candidates: readonly SignedOffer[], options: NegotiateManyOptions): Promise<NegotiateManyResult> {
  const { host, identity, store } = init
  const emit = init.onEvent ?? (() => undefined)
  const stepTimeoutMs = options.stepTimeoutMs ?? 3_000
  const maxRounds = options.maxRounds ?? 3
  const agreements: Negotiated[] = []
  const failures: NegotiateManyResult['failures'] = []
  const stop = new AbortController()
  const onOuterAbort = (): void => stop.abort(options.signal?.reason)
  options.signal?.addEventListener('abort', onOuterAbort, { once: true })

  const record = (terms: AgreementTerms, state: AgreementState, document: unknown): void => {
    const nowMs = Date.now()
    store.agreements.save({ id: agreementId(terms), role: 'requestor', requestor: terms.requestor, provider: terms.provider, state, document, createdAtMs: nowMs, updatedAtMs: nowMs })
  }

  const cancel = async (negotiated: Negotiated, reason: string): Promise<void> => {
    store.agreements.setState(negotiated.agreement.id, 'cancelled')
    await host.request(offerTarget(negotiated.offer), cancelAgreementProtocol, { agreementId: negotiated.agreement.id, reason }, { timeoutMs: stepTimeoutMs }).catch(() => undefined)
  }

  const negotiateOne = async (offer: Offer): Promise<Negotiated> => {
    let terms = options.termsFor(offer)
    for (let round = 1; round <= maxRounds; round++) {
      record(terms, 'proposal', { terms })
      const proposal = await signPayload(identity, terms)
      const answer = await host.request(offerTarget(offer), negotiateProtocol, { terms, requestorSignature: proposal.signature }, { timeoutMs: stepTimeoutMs, signal: stop.signal })
      if (answer.decision === 'approve') {
        if (hashCanonical(answer.terms) !== hashCanonical(terms)) {
          throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', 'the provider approved terms other than those proposed')
        }
        // The provider's signature over the terms themselves is what makes them an agreement anyone can check.
        await verifySigned({ payload: terms, signer: offer.provider as Address, signature: answer.providerSignature as `0x${string}` }, { expectedSigner: offer.provider as Address })
        const agreement: Agreement = { id: agreementId(terms), terms, requestorSignature: proposal.signature, providerSignature: answer.providerSignature }
        record(terms, 'approved', agreement)
        return { agreement, offer }
      }
      const refusal = reviewCounter(terms, answer.terms, { ...options.limits, nowMs: Date.now() })
      if (refusal !== undefined) {
        record(terms, 'rejected', { terms, reason: refusal })
        throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', refusal)
      }
      record(terms, 'rejected', { terms, reason: `countered: ${answer.reasons.join('; ')}` })
      terms = answer.terms
    }
    throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', `no agreement after ${maxRounds} rounds`)
  }

  const running: Promise<void>[] = []
  try {
    await new Promise<void>((resolve) => {
      let pending = candidates.length
      if (pending === 0 || options.need <= 0) return resolve()
      for (const signed of candidates) {
        const offer = signed.payload
        const settled = negotiateOne(offer).then(
          async (negotiated) => {
            if (agreements.length < options.need) {
              agreements.push(negotiated)
              emit({ type: 'agreement', provider: offer.provider, agreementId: negotiated.agreement.id })
              if (agreements.length === options.need) {
                stop.abort(new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'enough agreements were signed'))
                resolve()
              }
            } else {
              await cancel(negotiated, 'the requestor already has the agreements it needs')
            }
          },
          (error: unknown) => {
            const message = stop.signal.aborted ? 'not needed: enough agreements were signed first' : toHearthError(error).shortMessage
            failures.push({ provider: offer.provider, message })
            if (!stop.signal.aborted) emit({ type: 'agreement-failed', provider: offer.provider, message })
          },
        ).finally(() => {
          if (--pending === 0) resolve()
        })
        running.push(settled)
      }
    })
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort)
    if (!stop.signal.aborted) stop.abort()
    // The rest end at once on the abort; waiting for them makes the failure list complete and the cancels sent.
    await Promise.allSettled(running)
  }
  return { agreements, failures }
}
