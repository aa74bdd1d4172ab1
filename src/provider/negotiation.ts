/**
 * Which proposals the provider signs, and which agreements it lets a requestor cancel. A proposal is checked against
 * the live offers, the owner's policy and the agreements still running (an agreement whose escrow never came lapses
 * and holds no slot); an approved agreement is stored with where its requestor can be reached again.
 */
import type { Address, Hex } from 'viem'
import type { z } from 'zod'
import { HearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { signPayload, verifySigned } from '../identity/signed.ts'
import { agreementId, reviewProposal, type Agreement, type AgreementTerms, type ProviderPolicy } from '../market/agreement.ts'
import { cancelAgreementProtocol, negotiateProtocol } from '../market/market-protocols.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import type { RequestContext } from '../net/protocol.ts'
import type { Store } from '../store/store.ts'
import type { Lending } from './lending.ts'
import type { Offering } from './offering.ts'
import type { ProviderAccounts } from './provider-account.ts'

type NegotiateAnswer = z.input<typeof negotiateProtocol.response>

export interface NegotiationInit {
  identity: NodeIdentity
  host: Host
  store: Store
  accounts: ProviderAccounts
  lending: Lending
  offering: Pick<Offering, 'current' | 'offerIds'>
  /** The owner's policy over the defaults (16 agreements at once, a day each, notes at most every 5 minutes). */
  policy: Partial<ProviderPolicy> | undefined
  /** A provider that never answers proposals (misbehave.silentNegotiation, for the failure tests). */
  silent: boolean
}

export interface Negotiation {
  /** Serves proposals (negotiate) and cancellations. */
  handle(): Promise<void>
  /** Agreements signed since the provider started. */
  agreements(): number
}

/** An agreement whose escrow is not open this long after it was signed lapses: it holds none of the provider's slots. */
const unbackedLapseMs = 120_000

const defaultPolicy: ProviderPolicy = { maxConcurrentAgreements: 16, maxAgreementSec: 24 * 3600, minDebitNoteIntervalSec: 0, maxDebitNoteIntervalSec: 300, maxPaymentTimeoutSec: 600 }

/** Where a requestor can be reached: connected now, or at the addresses it had when it signed. */
export function requestorTarget(host: Host, store: Store, requestor: Address): PeerTarget {
  const known = store.peers.get(requestor)
  if (known === undefined) throw new HearthError('HEARTH_ERR_NET_DIAL', `this provider does not know where requestor ${requestor} is`)
  if (host.peers().some((peer) => peer.toString() === known.peerId)) return known.peerId
  const address = known.multiaddrs[0]
  return address === undefined ? known.peerId : `${address}/p2p/${known.peerId}`
}

export function createNegotiation(init: NegotiationInit): Negotiation {
  const { identity, host, store, accounts, lending, offering } = init
  const policy: ProviderPolicy = { ...defaultPolicy, ...init.policy }
  let agreements = 0

  /**
   * Approved agreements still running, and the disk those for storage reserve; those past their expiry are marked
   * expired on the way.
   */
  async function activeAgreements(nowMs: number): Promise<{ active: number; reservedStorageBytes: number }> {
    let active = 0
    let reservedStorageBytes = 0
    for (const record of store.agreements.list({ state: 'approved' })) {
      if (record.role !== 'provider') continue
      const terms = (record.document as Agreement).terms
      if (terms.expiresAtSec * 1000 <= nowMs) {
        store.agreements.setState(record.id, 'expired', nowMs)
        continue
      }
      // Negotiating costs nothing and a deposit does: an agreement left without its escrow holds no slot for long.
      if (nowMs - record.createdAtMs > unbackedLapseMs && !(await accounts.account(record.id, terms.requestor as Address).backed())) {
        store.agreements.setState(record.id, 'expired', nowMs)
        continue
      }
      active++
      reservedStorageBytes += terms.storageBytes ?? 0
    }
    return { active, reservedStorageBytes }
  }

  async function negotiate({ terms, requestorSignature }: { terms: AgreementTerms; requestorSignature: string }, ctx: RequestContext): Promise<NegotiateAnswer> {
    if (init.silent) {
      // Holds the stream until the requester gives up: the unresponsive provider the requestor must not wait for.
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))
      throw new HearthError('HEARTH_ERR_NET_TIMEOUT', 'no answer')
    }
    if (terms.requestor.toLowerCase() !== ctx.remoteAddress.toLowerCase()) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'the proposal names a requestor other than the peer sending it')
    }
    // The requestor's signature over the terms is half of the agreement: check it before anything is recorded.
    await verifySigned({ payload: terms, signer: ctx.remoteAddress, signature: requestorSignature as Hex }, { expectedSigner: ctx.remoteAddress })
    lending.ensureLending()
    const offer = offering.current()?.payload
    if (offer === undefined) throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'this provider has no live offer')
    const nowMs = Date.now()
    const id = agreementId(terms)
    // An agreement is made once: the same terms proposed again (after it ended, say) do not bring it back.
    if (store.agreements.get(id) !== undefined) throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', `agreement ${id} exists already`, { hint: 'propose new terms (a new nonce)' })
    const { active, reservedStorageBytes } = await activeAgreements(nowMs)
    const decision = reviewProposal(terms, { offer, offerIds: offering.offerIds(), policy, activeAgreements: active, reservedStorageBytes, nowMs })
    // Refusals and counters are answered, not stored: anyone may send proposals, and only agreements are worth a row.
    if (decision.decision === 'reject') throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', decision.reason)
    // The counter-proposal waits for the requestor's signature; it comes back as a new proposal with these terms.
    if (decision.decision === 'counter') return { decision: 'counter', terms: decision.terms, reasons: decision.reasons }
    const own = await signPayload(identity, terms)
    const agreement: Agreement = { id, terms, requestorSignature, providerSignature: own.signature }
    store.agreements.save({ id, role: 'provider', requestor: terms.requestor, provider: terms.provider, state: 'approved', document: agreement, createdAtMs: nowMs, updatedAtMs: nowMs })
    // Where the requestor can be found again: debit notes go there, and a restarted provider asks it what it is owed.
    const addresses = await host.peerAddresses(ctx.peerId)
    store.peers.remember({ address: terms.requestor, peerId: ctx.peerId.toString(), multiaddrs: addresses, updatedAtMs: nowMs })
    agreements++
    return { decision: 'approve', terms, providerSignature: own.signature }
  }

  return {
    agreements: () => agreements,
    async handle() {
      await host.handle(negotiateProtocol, negotiate)
      await host.handle(cancelAgreementProtocol, async ({ agreementId: id }, ctx) => {
        const account = accounts.account(id, ctx.remoteAddress)
        if (store.agreements.get(id)?.state !== 'approved') throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${id} is not approved`)
        // Once money is in escrow or work was done, the agreement ends by settlement, not by a word from one side.
        if (account.delivered().tasks > 0 || account.exposure().runningTasks > 0 || (await account.backed())) {
          throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', `agreement ${id} has started; settle it instead`)
        }
        store.agreements.setState(id, 'cancelled')
        return { agreementId: id, state: 'cancelled' }
      })
    },
  }
}
