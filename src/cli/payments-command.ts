/**
 * `hearth payments --data-dir D`: a node's money, from its own database: agreements, escrows, debit notes, vouchers,
 * invoices, claims and refunds, with the transaction hashes that put them on chain.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { HearthError } from '../errors.ts'
import type { Agreement } from '../market/agreement.ts'
import { openStore } from '../store/store.ts'

export interface PaymentsReport {
  dataDir: string
  agreements: {
    id: string
    role: string
    counterparty: string
    state: string
    pricing: unknown
    escrow: { depositedWei: string; claimedWei: string; refundedWei: string; closed: boolean; openTx: string | null } | null
    debitNotes: unknown[]
    vouchers: { cumulativeWei: string; claimedTx: string | null }[]
    invoice: unknown
  }[]
}

export function readPayments(dataDir: string): PaymentsReport {
  const path = join(dataDir, 'node.db')
  if (!existsSync(path)) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `no node database at ${path}`, {
      hint: 'point --data-dir at a node\'s data folder, e.g. one kept by hearth demo --data-dir DIR (DIR/requestor, DIR/provider-1)',
    })
  }
  const store = openStore({ path })
  try {
    const agreements = store.agreements
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
          vouchers: vouchers.map((v) => ({ cumulativeWei: v.cumulativeWei.toString(), claimedTx: v.claimedTx })),
          invoice: documents.find((d) => d.kind === 'invoice')?.document ?? null,
        }
      })
    return { dataDir, agreements }
  } finally {
    store.close()
  }
}

export function formatPayments(report: PaymentsReport): string {
  const lines = [`${report.agreements.length} agreements in ${report.dataDir}:`]
  for (const a of report.agreements) {
    lines.push(`  ${a.id}  ${a.role} with ${a.counterparty}  ${a.state}`)
    if (a.escrow !== null) {
      lines.push(`    escrow: deposited ${a.escrow.depositedWei} wei, claimed ${a.escrow.claimedWei}, refunded ${a.escrow.refundedWei}${a.escrow.closed ? ', closed' : ''}  (open ${a.escrow.openTx ?? '-'})`)
    }
    lines.push(`    debit notes: ${a.debitNotes.length}   vouchers: ${a.vouchers.map((v) => v.cumulativeWei).join(', ') || 'none'}`)
    for (const v of a.vouchers.filter((v) => v.claimedTx !== null)) lines.push(`    claimed ${v.cumulativeWei} wei in ${v.claimedTx}`)
    if (a.invoice !== null) {
      const invoice = a.invoice as { amountDueWei: string; paidWei: string }
      lines.push(`    invoice: due ${invoice.amountDueWei} wei, covered ${invoice.paidWei} wei`)
    }
  }
  return `${lines.join('\n')}\n`
}
