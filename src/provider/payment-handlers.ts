/**
 * The provider's side of the payment protocols: a voucher from a requestor goes into its agreement's account (checked
 * there against the agreement, the deposit and the work delivered), and a settlement ends the agreement with an
 * invoice, a claim and the release of the rest of the deposit. Both are large frames, admitted like tasks.
 */
import { settleProtocol, voucherProtocol } from '../payment/payment-protocols.ts'
import type { Host } from '../net/host.ts'
import type { FrameAdmission } from './frame-admission.ts'
import type { ProviderAccounts } from './provider-account.ts'

export async function handlePayments(host: Host, accounts: ProviderAccounts, admit: FrameAdmission): Promise<void> {
  await host.handle(voucherProtocol, async (json, ctx) => {
    const acceptedWei = await accounts.account(json.agreementId, ctx.remoteAddress).acceptVoucher(json)
    return { agreementId: json.agreementId, acceptedWei: acceptedWei.toString() }
  }, { admit })

  await host.handle(settleProtocol, async ({ agreementId, voucher }, ctx) => {
    const outcome = await accounts.settle(agreementId, ctx.remoteAddress, voucher)
    return { agreementId, invoice: outcome.invoice, claimTx: outcome.claimTx, paidWei: outcome.paidWei.toString(), refundedWei: outcome.refundedWei.toString() }
  }, { admit })
}
