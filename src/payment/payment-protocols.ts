/**
 * The payment protocols between requestor and provider: a cumulative voucher after each accepted result, and a
 * settle request at the end of an agreement, on which the provider claims its latest voucher and releases the rest.
 */
import { z } from 'zod'
import { hexSchema, decimalWeiSchema } from '../identity/wire-schemas.ts'
import { debitNoteSchema, invoiceSchema } from '../market/billing.ts'
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
  // One voucher follows another to the same provider every few tasks: each goes on the stream of the one before.
  session: true,
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

/**
 * A debit note that no answer carries (an activity still running, a service billed by time, unpaid work at the
 * provider's cap): the provider sends it, the requestor answers with a voucher for what it can justify, or none.
 * Signed both ways: the note binds the provider, the answer the requestor.
 */
export const debitNoteProtocol = defineProtocol({
  id: '/hearth/payment/debit-note/1',
  request: debitNoteSchema,
  response: z.strictObject({ voucher: voucherJsonSchema.nullable() }),
  maxRequestBytes: 4 * 1024,
  maxResponseBytes: 4 * 1024,
  timeoutMs: 30_000,
  signed: true,
})

/**
 * What a requestor owes under an agreement: its newest signed voucher. A provider that was away (a restart, a crash)
 * asks for the vouchers signed while it could not be reached.
 */
export const owedProtocol = defineProtocol({
  id: '/hearth/payment/owed/1',
  request: z.strictObject({ agreementId: hexSchema }),
  response: z.strictObject({ voucher: voucherJsonSchema.nullable() }),
  maxRequestBytes: 1024,
  maxResponseBytes: 4 * 1024,
  timeoutMs: 10_000,
  signed: true,
})
