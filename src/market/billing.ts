/**
 * Billing documents under an agreement. A provider reports its metered work in debit notes (at most one per agreed
 * interval, carried on the task result that crosses it) and in an invoice at the end; the requestor answers each with
 * a cumulative voucher for what the agreement and its own record of accepted results justify. A debit note left
 * unanswered past the agreed payment timeout stops the provider's work under that agreement.
 */
import { z } from 'zod'
import { hexSchema, decimalWeiSchema } from '../identity/wire-schemas.ts'


export const usageSchema = z.strictObject({
  tasks: z.number().int().nonnegative(),
  cpuMs: z.number().nonnegative(),
  durationMs: z.number().nonnegative(),
})

export const debitNoteSchema = z.strictObject({
  agreementId: hexSchema,
  /** 1, 2, 3… per agreement. */
  seq: z.number().int().positive(),
  /** All work delivered under the agreement so far, as the provider metered it. */
  usage: usageSchema,
  /** What that work costs under the agreement's pricing, cumulative. */
  amountDueWei: decimalWeiSchema,
  issuedAtMs: z.number().int().nonnegative(),
})
export type DebitNote = z.output<typeof debitNoteSchema>

export const invoiceSchema = z.strictObject({
  agreementId: hexSchema,
  usage: usageSchema,
  amountDueWei: decimalWeiSchema,
  /** The cumulative voucher the provider holds at the end: what it claims. Below amountDue means a dispute. */
  paidWei: decimalWeiSchema,
  issuedAtMs: z.number().int().nonnegative(),
})
export type Invoice = z.output<typeof invoiceSchema>
