/**
 * The payment protocols between requestor and provider: a cumulative voucher after each accepted result, and a
 * settle request at the end of an agreement, on which the provider claims its latest voucher and releases the rest.
 */
import { z } from 'zod'
import { hexSchema, decimalWeiSchema } from '../identity/wire-schemas.ts'
import { invoiceSchema } from '../market/billing.ts'
import { defineProtocol } from '../net/protocol.ts'


export const voucherJsonSchema = z.strictObject({
  agreementId: hexSchema,
  cumulativeWei: decimalWeiSchema,
  chainId: z.number().int().positive(),
  escrowAddress: hexSchema,
  signer: hexSchema,
  signature: hexSchema,
})

/**
 * Not wrapped in a signed envelope: the voucher is itself the requestor's EIP-712 signature, which the provider checks
 * against the agreement (and the chain checks again on claim); the sender is known from the connection.
 */
export const voucherProtocol = defineProtocol({
  id: '/hearth/payment/voucher/1',
  request: voucherJsonSchema,
  response: z.strictObject({ agreementId: hexSchema, acceptedWei: decimalWeiSchema }),
  maxRequestBytes: 4 * 1024,
  maxResponseBytes: 4 * 1024,
  timeoutMs: 10_000,
})

/**
 * The end of an agreement: the requestor sends its final voucher (null when it owes nothing); the provider answers
 * with its invoice and claims, releasing the rest of the deposit.
 */
export const settleProtocol = defineProtocol({
  id: '/hearth/payment/settle/1',
  request: z.strictObject({ agreementId: hexSchema, voucher: voucherJsonSchema.nullable() }),
  response: z.strictObject({ agreementId: hexSchema, invoice: invoiceSchema, claimTx: hexSchema.nullable(), paidWei: decimalWeiSchema, refundedWei: decimalWeiSchema }),
  maxRequestBytes: 4 * 1024,
  maxResponseBytes: 4 * 1024,
  timeoutMs: 60_000,
  signed: true,
})
