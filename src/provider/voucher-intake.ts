/**
 * Vouchers from a requestor, taken into an agreement's account: signed by the agreement's requestor for this chain,
 * escrow contract and agreement; never more than the delivered work costs by this provider's own metering, nor than
 * the deposit. A voucher pays every debit note it covers, and a claim follows once the unclaimed amount reaches the
 * policy's threshold.
 */
import type { Address, Hex } from 'viem'
import { HearthError } from '../errors.ts'
import { costWei } from '../market/pricing.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import { verifyVoucher, voucherFromJson, voucherToJson, type Voucher } from '../payment/voucher.ts'
import type { Store } from '../store/store.ts'
import type { ClaimPolicy } from './account-types.ts'
import type { Ledger } from './ledger.ts'

export interface VoucherIntakeInit {
  store: Store
  payment: EscrowContext
  policy: Pick<ClaimPolicy, 'thresholdWei'>
  now(): number
  claim(agreementId: string, options: { release: boolean }): Promise<unknown>
}

/** Checks and keeps the voucher; returns the newest voucher's amount under the agreement. */
export async function acceptVoucher(init: VoucherIntakeInit, ledger: Ledger, json: unknown): Promise<bigint> {
  const { store, payment, policy } = init
  const { agreementId, terms } = ledger
  const voucher: Voucher = voucherFromJson(json)
  await verifyVoucher(voucher, {
    expectedSigner: terms.requestor as Address,
    chainId: payment.client.chainId,
    escrowAddress: payment.escrowAddress,
    agreementId: agreementId as Hex,
  })
  // Never more than the delivered work costs by this provider's own metering, nor than the deposit.
  const owedAtMost = costWei(terms.pricing, ledger.delivered)
  if (voucher.cumulativeWei > BigInt(terms.depositWei) || voucher.cumulativeWei > owedAtMost) {
    throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', `voucher for ${voucher.cumulativeWei} wei exceeds what agreement ${agreementId} allows (${owedAtMost} wei delivered, ${terms.depositWei} deposited)`)
  }
  store.vouchers.save({ agreementId, cumulativeWei: voucher.cumulativeWei, document: voucherToJson(voucher), receivedAtMs: init.now() })
  const latestWei = store.vouchers.latest(agreementId)?.cumulativeWei ?? voucher.cumulativeWei
  // A voucher pays every debit note it covers.
  ledger.unpaidNotes = ledger.unpaidNotes.filter((note) => BigInt(note.amountDueWei) > latestWei)
  if (policy.thresholdWei !== undefined && latestWei - store.vouchers.claimedWei(agreementId) >= policy.thresholdWei) {
    // Off the answer's path: the requestor need not wait for our transaction.
    void init.claim(agreementId, { release: false }).catch(() => undefined)
  }
  return latestWei
}
