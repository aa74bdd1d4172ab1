/**
 * Paying for ExeScript activities. A provider meters an activity as it ends and bills the agreement with cumulative
 * debit notes, carried on its answers (see exescript-protocols.ts). This module keeps, per agreement, the usage the
 * provider's signed answers (batch results, destroy answers) reported for each of this requestor's activities there,
 * and answers every debit note with a cumulative voucher for what the note asks, but never more than that usage costs
 * under the agreed pricing, nor more than the deposit. A debit note asking for more stays partly unpaid.
 *
 * Reported usage is also held to what this requestor saw: an activity cannot have lived longer than from its create
 * request to the answer that reports it, and its runs cannot have used more CPU than that time plus one cgroup quota
 * period (100 ms) per batch, by which native and docker runs may pass their one core.
 *
 * `settleAgreement` ends the agreement: the activities still running here are terminated (the provider meters them
 * as they end), the final voucher goes over /hearth/payment/settle/1, and the provider claims it and releases the rest
 * of the deposit. Several activities may share one agreement, so ending an activity never settles it.
 */
import type { Address, Hex } from 'viem'
import { HearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { AgreementTerms } from '../market/agreement.ts'
import type { DebitNote, Invoice } from '../market/billing.ts'
import { addUsage, costWei, noUsage, type Usage } from '../market/pricing.ts'
import type { Host } from '../net/host.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { ActivityUsage } from '../exec/exescript.ts'
import { getEscrow, type EscrowContext } from '../payment/escrow.ts'
import { settleProtocol, voucherProtocol } from '../payment/payment-protocols.ts'
import { signVoucher, voucherToJson, type Voucher } from '../payment/voucher.ts'
import type { Store } from '../store/store.ts'

/** What paying needs to know of an agreement (an agreement's whole terms will do). */
export type ActivityBillingTerms = Pick<AgreementTerms, 'pricing' | 'depositWei'>

export interface BillingDeps {
  host: Host
  identity: NodeIdentity
  store?: Store
  /** The requestor's chain client and escrow contract; without it debit notes are recorded, not paid. */
  payment?: EscrowContext
}

export interface BilledAgreement {
  id: string
  provider: Address
  target: PeerTarget
  /** The agreement's pricing and deposit; without them debit notes are recorded, not paid. */
  terms?: ActivityBillingTerms
}

/** CPU an activity's runs may use beyond its life, per batch: one cgroup quota period (see requestor.ts). */
const cpuSlackPerBatchMs = 100

/** An activity's usage as the provider bills it: one task, its CPU and its life in ms. */
export function billedUsage(usage: ActivityUsage): Usage {
  return { tasks: 1, cpuMs: Math.round(usage.cpuSec * 1000), durationMs: Math.round(usage.durationSec * 1000) }
}

/**
 * Reported usage held to what this requestor observed: `lifeMs` from sending the create request to receiving the
 * report, `batches` sent so far. The provider's clock counts whole milliseconds, hence one more.
 */
export function plausibleUsage(reported: ActivityUsage, observed: { lifeMs: number; batches: number }): ActivityUsage {
  const durationSec = Math.min(reported.durationSec, (Math.ceil(observed.lifeMs) + 1) / 1000)
  const cpuSec = Math.min(reported.cpuSec, durationSec + (observed.batches * cpuSlackPerBatchMs) / 1000)
  return { durationSec, cpuSec }
}

/**
 * The cumulative voucher a debit note earns: what it asks, capped by what is justified and by the deposit;
 * undefined when that is no more than the vouchers already signed.
 */
export function voucherAmountFor(note: Pick<DebitNote, 'amountDueWei'>, bill: { justifiedWei: bigint; voucheredWei: bigint; depositWei: bigint }): bigint | undefined {
  let amount = BigInt(note.amountDueWei)
  if (amount > bill.justifiedWei) amount = bill.justifiedWei
  if (amount > bill.depositWei) amount = bill.depositWei
  return amount > bill.voucheredWei ? amount : undefined
}

/** One agreement's account on this requestor. */
export interface AgreementBill {
  readonly agreementId: string
  /** What this requestor's activities under the agreement used, by the provider's signed answers. */
  usage(): Usage
  /** What that usage costs under the agreed pricing (capped by the deposit); 0 when the terms are unknown here. */
  justifiedWei(): bigint
  /** The highest voucher signed so far. */
  voucheredWei(): bigint
  /**
   * Records what a signed answer reported for one activity (the latest report of an activity replaces its earlier
   * ones: an activity's usage only grows). Reports not signed by the agreement's provider count for nothing.
   * Returns the usage kept, or undefined when nothing was.
   */
  report(activityId: string, signer: Address, reported: ActivityUsage, observed: { lifeMs: number; batches: number }): ActivityUsage | undefined
  /** Answers a debit note with a voucher (when paying is set up); resolves once the voucher was sent or failed. */
  answer(note: DebitNote): Promise<void>
  /** An activity running under the agreement, and how to end it (settling ends it first). */
  track(activityId: string, terminate: () => Promise<unknown>): void
  untrack(activityId: string): void
}

interface Ledger {
  bill: AgreementBill
  live: Map<string, () => Promise<unknown>>
  /** Voucher work in order: vouchers are cumulative, so they are signed and sent one at a time. */
  queue: Promise<void>
  sign(cumulativeWei: bigint): Promise<Voucher>
  paying(): { payment: EscrowContext; terms: ActivityBillingTerms } | undefined
  /** Takes what a later caller knows and the first did not (the payment context, the terms). */
  adopt(deps: BillingDeps, agreement: BilledAgreement): void
}

/** Per host (one node's requestor), per agreement id. */
const ledgers = new WeakMap<Host, Map<string, Ledger>>()

function ledgerFor(deps: BillingDeps, agreement: BilledAgreement): Ledger {
  let byAgreement = ledgers.get(deps.host)
  if (byAgreement === undefined) {
    byAgreement = new Map()
    ledgers.set(deps.host, byAgreement)
  }
  const known = byAgreement.get(agreement.id)
  if (known !== undefined) {
    known.adopt(deps, agreement)
    return known
  }
  const { host, identity, store } = deps
  let terms = agreement.terms
  let payment = deps.payment
  const agreementId = agreement.id
  const usage = new Map<string, ActivityUsage>()
  // After a restart the account goes on from what the store kept: each activity's usage as accepted, the vouchers.
  for (const record of store?.activities.list('requestor', { agreementId }) ?? []) {
    if (record.usage !== null) usage.set(record.id, record.usage)
  }
  let vouchered = store?.vouchers.latest(agreementId)?.cumulativeWei ?? 0n
  const total = (): Usage => [...usage.values()].reduce((sum, u) => addUsage(sum, billedUsage(u)), noUsage)
  const justified = (): bigint => {
    if (terms === undefined) return 0n
    const cost = costWei(terms.pricing, total())
    const deposit = BigInt(terms.depositWei)
    return cost < deposit ? cost : deposit
  }

  const ledger: Ledger = {
    live: new Map(),
    queue: Promise.resolve(),
    paying: () => (payment === undefined || terms === undefined ? undefined : { payment, terms }),
    adopt(more, again) {
      terms ??= again.terms
      payment ??= more.payment
    },
    async sign(cumulativeWei) {
      const context = ledger.paying()
      if (context === undefined) throw new HearthError('HEARTH_ERR_INTERNAL', 'a voucher was asked for without payment set up')
      const { payment: escrow } = context
      const voucher = await signVoucher({ privateKey: identity.privateKey, chainId: escrow.client.chainId, escrowAddress: escrow.escrowAddress, agreementId: agreementId as Hex, cumulativeWei })
      store?.vouchers.save({ agreementId, cumulativeWei, document: voucherToJson(voucher), receivedAtMs: Date.now() })
      if (cumulativeWei > vouchered) vouchered = cumulativeWei
      return voucher
    },
    bill: {
      agreementId,
      usage: total,
      justifiedWei: justified,
      voucheredWei: () => vouchered,
      report(activityId, signer, reported, observed) {
        if (signer.toLowerCase() !== agreement.provider.toLowerCase()) return undefined
        const kept = plausibleUsage(reported, observed)
        usage.set(activityId, kept)
        return kept
      },
      async answer(note) {
        if (note.agreementId.toLowerCase() !== agreementId.toLowerCase()) return
        // Kept as evidence where the store holds the agreement (its documents refer to it).
        if (store?.agreements.get(agreementId) !== undefined) {
          store.paymentDocuments.save({ agreementId, kind: 'debit-note', seq: note.seq, document: note, createdAtMs: Date.now() })
        }
        const context = ledger.paying()
        if (context === undefined) return
        const next = ledger.queue.then(async () => {
          const amount = voucherAmountFor(note, { justifiedWei: justified(), voucheredWei: vouchered, depositWei: BigInt(context.terms.depositWei) })
          if (amount === undefined) return
          const voucher = await ledger.sign(amount)
          // A lost voucher costs the provider nothing: the next (cumulative) one, or the settlement, covers it.
          await host.request(agreement.target, voucherProtocol, voucherToJson(voucher)).catch(() => undefined)
        })
        ledger.queue = next.catch(() => undefined)
        await ledger.queue
      },
      track: (activityId, terminate) => void ledger.live.set(activityId, terminate),
      untrack: (activityId) => void ledger.live.delete(activityId),
    },
  }
  byAgreement.set(agreementId, ledger)
  return ledger
}

/**
 * The account of `agreement` on this requestor, made on first use (from the store, when there is one). Paying under
 * an agreement that the store does not hold is refused: the vouchers signed under it could not be kept.
 */
export function agreementBill(deps: BillingDeps, agreement: BilledAgreement): AgreementBill {
  const ledger = ledgerFor(deps, agreement)
  if (ledger.paying() !== undefined && deps.store !== undefined && deps.store.agreements.get(agreement.id) === undefined) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `agreement ${agreement.id} is not in this requestor's store, so the vouchers paying under it could not be kept`, {
      hint: 'make the agreement with the same store (negotiateMany with `store`), or pass no store',
    })
  }
  return ledger.bill
}

export interface AgreementSettlement {
  agreementId: string
  /** What this requestor's activities used, by the provider's signed answers: what the final voucher pays for. */
  usage: Usage
  /** The final voucher's amount (0 when nothing was used). */
  finalWei: bigint
  /** The provider's invoice: all it says it delivered, and what it holds in vouchers. */
  invoice: Invoice
  claimTx: Hex | null
  /** Read from the chain after the provider's claim. */
  paidWei: bigint
  refundedWei: bigint
  closed: boolean
}

/**
 * Ends an agreement under which this requestor ran activities: terminates those still running here, sends the final
 * voucher for everything the provider's signed answers justify, and lets the provider claim it and release the rest
 * of the deposit. The chain, not the provider's answer, says what was paid and refunded.
 */
export async function settleAgreement(deps: BillingDeps, agreement: BilledAgreement): Promise<AgreementSettlement> {
  agreementBill(deps, agreement)
  const ledger = ledgerFor(deps, agreement)
  const context = ledger.paying()
  if (context === undefined) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `agreement ${agreement.id} cannot be settled here: its payment context or terms are unknown`, {
      hint: 'pass `payment` (the requestor\'s EscrowContext) in the deps and the agreement\'s `terms`',
    })
  }
  const { payment } = context
  // The provider meters an activity only as it ends: end them first, so the final voucher covers their work.
  await Promise.allSettled([...ledger.live.values()].map((terminate) => terminate()))
  await ledger.queue
  const usage = ledger.bill.usage()
  const finalWei = ledger.bill.justifiedWei()
  const voucher = finalWei === 0n ? null : await ledger.sign(finalWei)
  const answer = await deps.host.request(agreement.target, settleProtocol, { agreementId: agreement.id, voucher: voucher === null ? null : voucherToJson(voucher) })
  const { store } = deps
  if (store?.agreements.get(agreement.id) !== undefined) {
    store.paymentDocuments.save({ agreementId: agreement.id, kind: 'invoice', seq: 1, document: answer.invoice, createdAtMs: Date.now() })
  }
  const escrow = await getEscrow(payment, { requestorAddress: payment.client.address, agreementId: agreement.id as Hex })
  const paidWei = escrow?.claimedWei ?? 0n
  const closed = escrow?.closed === true
  const refundedWei = closed ? escrow!.depositedWei - paidWei : 0n
  const kept = store?.escrows.get(agreement.id)
  if (kept !== undefined) store!.escrows.save({ ...kept, claimedWei: paidWei, refundedWei, closed })
  store?.agreements.setState(agreement.id, 'terminated')
  ledgers.get(deps.host)?.delete(agreement.id)
  return { agreementId: agreement.id, usage, finalWei, invoice: answer.invoice, claimTx: answer.claimTx as Hex | null, paidWei, refundedWei, closed }
}
