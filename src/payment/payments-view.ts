/**
 * A node's money as its own database records it: every agreement (past proposal) with its escrow, debit notes,
 * vouchers, invoice, and the transaction hashes that put them on chain. Read by `hearth payments` and the local API.
 */
import { z } from 'zod'
import type { Agreement } from '../market/agreement.ts'
import type { Store } from '../store/store.ts'

export interface AgreementPayments {
  id: string
  role: string
  counterparty: string
  state: string
  pricing: unknown
  escrow: { depositedWei: string; claimedWei: string; refundedWei: string; closed: boolean; openTx: string | null } | null
  debitNotes: unknown[]
  /** `deliveredAtMs`: when the provider acknowledged it (requestor's side; null: not known to have arrived). */
  vouchers: { cumulativeWei: string; claimedTx: string | null; receivedAtMs: number; deliveredAtMs: number | null }[]
  invoice: unknown
}

export interface PaymentsReport {
  dataDir: string
  agreements: AgreementPayments[]
}

export function paymentsOf(store: Store): AgreementPayments[] {
  return store.agreements
    .list()
    .filter((record) => record.state !== 'proposal' && record.state !== 'pending' && record.state !== 'rejected')
    .map((record) => {
      const document = record.document as Partial<Agreement>
      const escrow = store.escrows.get(record.id)
      const documents = store.paymentDocuments.list({ agreementId: record.id })
      const vouchers = store.vouchers.listFor(record.id)
      return {
        id: record.id,
        role: record.role,
        counterparty: record.role === 'requestor' ? record.provider : record.requestor,
        state: record.state,
        pricing: document.terms?.pricing ?? null,
        escrow:
          escrow === undefined
            ? null
            : { depositedWei: escrow.depositedWei.toString(), claimedWei: escrow.claimedWei.toString(), refundedWei: escrow.refundedWei.toString(), closed: escrow.closed, openTx: escrow.openTx },
        debitNotes: documents.filter((d) => d.kind === 'debit-note').map((d) => d.document),
        vouchers: vouchers.map((v) => ({ cumulativeWei: v.cumulativeWei.toString(), claimedTx: v.claimedTx, receivedAtMs: v.receivedAtMs, deliveredAtMs: v.deliveredAtMs })),
        invoice: documents.find((d) => d.kind === 'invoice')?.document ?? null,
      }
    })
}

const wei = z.string().regex(/^\d+$/)

/** The report's shape, for the local APIs' OpenAPI documents. */
export const paymentsReportSchema = z.object({
  dataDir: z.string(),
  agreements: z.array(
    z.object({
      id: z.string(),
      role: z.string(),
      counterparty: z.string(),
      state: z.string(),
      pricing: z.unknown(),
      escrow: z.object({ depositedWei: wei, claimedWei: wei, refundedWei: wei, closed: z.boolean(), openTx: z.string().nullable() }).nullable(),
      debitNotes: z.array(z.unknown()),
      vouchers: z.array(z.object({ cumulativeWei: wei, claimedTx: z.string().nullable(), receivedAtMs: z.number(), deliveredAtMs: z.number().nullable() })),
      invoice: z.unknown(),
    }),
  ),
})
