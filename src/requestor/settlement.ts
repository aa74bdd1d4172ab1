/**
 * Settling a job's agreements: each slot at the end of its job (the outcome's figures come from the agreement's
 * account and the chain), and, when a job is resumed, the agreements its earlier run left open.
 */
import type { Hex } from 'viem'
import type { Agreement } from '../market/agreement.ts'
import type { Store } from '../store/store.ts'
import type { JobEventListener } from './events.ts'
import type { AgreementOutcome } from './job-types.ts'
import type { RequestorAccounts } from './requestor-account.ts'
import type { Slot } from './slot.ts'

/** Settles one agreement through its account; the outcome's figures come from the account and the chain. */
export async function settleSlot(slot: Slot, emit: JobEventListener): Promise<AgreementOutcome> {
  const { account } = slot
  const settlement = await account.settle()
  if (settlement.failure !== undefined) {
    emit({ type: 'phase', message: `${account.provider} did not settle (${settlement.failure}); its vouchers are delivered again while the escrow lasts, and the rest comes back after expiry` })
  } else if (settlement.invoice !== undefined && BigInt(settlement.invoice.amountDueWei) > settlement.finalWei) {
    emit({ type: 'phase', message: `${account.provider} invoiced ${settlement.invoice.amountDueWei} wei; only ${settlement.finalWei} wei is justified by accepted results` })
  }
  emit({ type: 'settled', provider: account.provider, agreementId: account.agreementId, paidWei: settlement.paidWei.toString(), refundedWei: settlement.refundedWei.toString(), txHash: settlement.settleTx })
  return {
    agreementId: account.agreementId as Hex,
    provider: account.provider,
    pricing: account.terms.pricing,
    tasks: slot.accepted,
    rejected: slot.rejected,
    acceptedUsage: account.accepted(),
    depositWei: account.depositWei,
    vouchers: account.vouchers(),
    signedWei: account.signedWei(),
    paidWei: settlement.paidWei,
    refundedWei: settlement.refundedWei,
    lockedWei: account.depositWei - settlement.paidWei - settlement.refundedWei,
    latencyMs: slot.latencyMs,
    openTx: slot.openTx,
    settleTx: settlement.settleTx,
    settled: settlement.closed,
  }
}

export interface EarlierAgreementsInit {
  store: Store
  accounts: RequestorAccounts
  /** Adds a provider (lower case) to those that may fetch this requestor's blobs. */
  allowFetcher(provider: string): void
}

/**
 * A resumed job first settles the agreements its earlier run left open: each provider gets a final voucher for what
 * this requestor accepted from it (its account kept every accepted result, the checking providers' included) and
 * claims it. Nothing is paid twice: vouchers are cumulative per agreement, and the new run makes new agreements. A
 * provider that does not answer keeps getting its voucher while the escrow lasts; the rest comes back after expiry.
 */
export async function settleEarlierAgreements(init: EarlierAgreementsInit, jobId: string, emit: JobEventListener): Promise<void> {
  const { store, accounts } = init
  for (const record of store.agreements.list()) {
    const agreement = record.document as Agreement
    if (record.role !== 'requestor' || agreement.terms === undefined || !agreement.terms.jobName.endsWith(`(${jobId})`)) continue
    if (record.state === 'terminated' || record.state === 'expired') continue
    const escrow = store.escrows.get(agreement.id)
    if (escrow === undefined || escrow.closed) continue
    init.allowFetcher(agreement.terms.provider.toLowerCase())
    const account = accounts.account(agreement.id)
    const settlement = await account.settle()
    if (settlement.failure !== undefined) emit({ type: 'phase', message: `${agreement.terms.provider} of an earlier agreement did not settle (${settlement.failure}); its vouchers are delivered again while the escrow lasts` })
    emit({ type: 'settled', provider: account.provider, agreementId: account.agreementId, paidWei: settlement.paidWei.toString(), refundedWei: settlement.refundedWei.toString(), txHash: settlement.settleTx })
  }
}
