/**
 * One agreement's ledger: the working state of its account (work delivered and running, debit notes sent and unpaid,
 * the last escrow read), restored from the store after a restart, and the exposure it gives: delivered work that no
 * voucher covers, in wei and in tasks.
 */
import type { Address } from 'viem'
import type { AgreementTerms } from '../market/agreement.ts'
import type { DebitNote } from '../market/billing.ts'
import { costWei, noUsage, type Pricing, type Usage } from '../market/pricing.ts'
import type { EscrowState } from '../payment/escrow.ts'
import type { Store } from '../store/store.ts'
import type { Exposure, ProviderAccount } from './account-types.ts'

/** The working state of one agreement's account; what must survive a restart is in the store. */
export interface Ledger {
  agreementId: string
  terms: AgreementTerms
  requestor: Address
  delivered: Usage
  /** `delivered` has grown since it was last written to the store (see DebitNotes.persist). */
  usageUnsaved: boolean
  running: number
  /** Notes sent and not covered by a voucher, oldest first. */
  unpaidNotes: DebitNote[]
  lastNoteAtMs: number
  lastNoteWei: bigint
  lastPushAtMs: number
  seq: number
  escrow?: { state: EscrowState | undefined; chainSec: number; readAtMs: number }
  account: ProviderAccount
}

/** The ledger of an agreement as the store has it; its account is made by `accountOf` once the ledger exists. */
export function restoreLedger(store: Store, agreementId: string, terms: AgreementTerms, accountOf: (ledger: Ledger) => ProviderAccount): Ledger {
  const delivered = (store.paymentDocuments.list({ agreementId, kind: 'usage' })[0]?.document as Usage | undefined) ?? noUsage
  // After a restart: the notes sent that no voucher covers are still unpaid, their ages still count.
  const notes = store.paymentDocuments.list({ agreementId, kind: 'debit-note' }).map((record) => record.document as DebitNote)
  const coveredWei = store.vouchers.latest(agreementId)?.cumulativeWei ?? 0n
  const last = notes.at(-1)
  const ledger: Ledger = {
    agreementId,
    terms,
    requestor: terms.requestor as Address,
    delivered,
    usageUnsaved: false,
    running: 0,
    unpaidNotes: notes.filter((note) => BigInt(note.amountDueWei) > coveredWei),
    lastNoteAtMs: last?.issuedAtMs ?? 0,
    lastNoteWei: last === undefined ? 0n : BigInt(last.amountDueWei),
    lastPushAtMs: 0,
    seq: notes.reduce((max, note) => Math.max(max, note.seq), 0),
    account: undefined as unknown as ProviderAccount,
  }
  ledger.account = accountOf(ledger)
  return ledger
}

/** The ledger's delivered work that the newest voucher does not cover, with the work running now. */
export function exposureOf(store: Store, ledger: Ledger): Exposure {
  return uncoveredWork(ledger.terms.pricing, ledger.delivered, store.vouchers.latestWei(ledger.agreementId), ledger.running)
}

/**
 * Delivered work that `coveredWei` of vouchers does not pay for: in wei, and in tasks in proportion to the uncovered
 * share of the bill (exact for per-task prices, and never 0 while any delivered work is unpaid).
 */
export function uncoveredWork(pricing: Pricing, delivered: Usage, coveredWei: bigint, runningTasks = 0): { unpaidWei: bigint; unpaidTasks: number; runningTasks: number } {
  const billedWei = costWei(pricing, delivered)
  const unpaidWei = billedWei > coveredWei ? billedWei - coveredWei : 0n
  const unpaidDelivered = billedWei === 0n ? 0 : Number((BigInt(delivered.tasks) * unpaidWei + billedWei - 1n) / billedWei)
  return { unpaidWei, unpaidTasks: unpaidDelivered + runningTasks, runningTasks }
}
