/**
 * The payment protocols between requestor and provider: a cumulative voucher after each accepted result, and a
 * settle request at the end of an agreement, on which the provider claims its latest voucher and releases the rest.
 */
import { z } from 'zod'
import { invoiceSchema } from '../market/billing.ts'
import { defineProtocol } from '../net/protocol.ts'

const hex = z.string().regex(/^0x[0-9a-fA-F]*$/, 'expected 0x-prefixed hex')
const decimal = z.string().regex(/^(0|[1-9][0-9]{0,77})$/, 'expected a decimal amount in wei')

export const voucherJsonSchema = z.strictObject({
  agreementId: hex,
  cumulativeWei: decimal,
  chainId: z.number().int().positive(),
  escrowAddress: hex,
  signer: hex,
  signature: hex,
})

/**
 * Not wrapped in a signed envelope: the voucher is itself the requestor's EIP-712 signature, which the provider checks
 * against the agreement (and the chain checks again on claim); the sender is known from the connection.
 */
export const voucherProtocol = defineProtocol({
  id: '/hearth/payment/voucher/1',
  request: voucherJsonSchema,
  response: z.strictObject({ agreementId: hex, acceptedWei: decimal }),
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
  request: z.strictObject({ agreementId: hex, voucher: voucherJsonSchema.nullable() }),
  response: z.strictObject({ agreementId: hex, invoice: invoiceSchema, claimTx: hex.nullable(), paidWei: decimal, refundedWei: decimal }),
  maxRequestBytes: 4 * 1024,
  maxResponseBytes: 4 * 1024,
  timeoutMs: 60_000,
  signed: true,
})
