/**
 * An agreement's debit notes: delivered work recorded (in the store, so a restart loses none), a note when the
 * agreed interval has passed or the unpaid work reaches half the cap, notes that no answer carries pushed to the
 * requestor, the refusal at the exposure cap (with the newest note sent again), and the end of an agreement whose
 * oldest unpaid note is past the agreed payment timeout.
 */
import type { Address } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import type { DebitNote } from '../market/billing.ts'
import { addUsage, costWei, noUsage, type Usage } from '../market/pricing.ts'
import type { VoucherJson } from '../payment/voucher.ts'
import type { Store } from '../store/store.ts'
import type { AccountLimits, Exposure } from './account-types.ts'
import { exposureOf, type Ledger } from './ledger.ts'

export interface DebitNotesInit {
  store: Store
  limits: Pick<AccountLimits, 'maxUnpaidTasks' | 'maxUnpaidWei'>
  now(): number
  log(message: string): void
  /** Sends a note that no answer will carry to the requestor now; resolves with the voucher it answered with. */
  pushNote: ((note: DebitNote, requestor: Address) => Promise<VoucherJson | null>) | undefined
  /** Claims what an agreement's vouchers cover (when an overdue note ends it). */
  claim(agreementId: string, options: { release: boolean }): Promise<unknown>
}

export interface DebitNotes {
  /** Records delivered work; returns a note when one falls due. `deferSave`: the running usage is written by persist(). */
  bill(ledger: Ledger, usage: Usage, options?: { deferSave?: boolean }): DebitNote | undefined
  /** Writes the running usage when billing left it unwritten. */
  persist(ledger: Ledger): void
  /** Sends a note no answer carries; the voucher that answers it is taken like any other. */
  push(ledger: Ledger, note: DebitNote): void
  /** Refuses more work at the exposure cap, sending the newest note again (at most every few seconds). */
  refuseUnpaid(ledger: Ledger, exposure: Exposure): never
  /** Ends the agreement (and throws) when its oldest unpaid note is past the payment timeout. */
  ensureNotOverdue(ledger: Ledger): void
}

export function createDebitNotes(init: DebitNotesInit): DebitNotes {
  const { store, limits, now, log } = init

  function persist(ledger: Ledger): void {
    if (!ledger.usageUnsaved) return
    store.paymentDocuments.save({ agreementId: ledger.agreementId, kind: 'usage', seq: 0, document: ledger.delivered, createdAtMs: now() })
    ledger.usageUnsaved = false
  }

  /** Records delivered work; a debit note when the interval has passed or the unpaid work reaches half the cap. */
  function bill(ledger: Ledger, usage: Usage, options: { deferSave?: boolean } = {}): DebitNote | undefined {
    ledger.delivered = addUsage(ledger.delivered, usage)
    const nowMs = now()
    // Written before any answer carries the work: now, or (deferSave) by persist() before a batch's answer.
    ledger.usageUnsaved = true
    if (options.deferSave !== true) persist(ledger)
    const dueWei = costWei(ledger.terms.pricing, ledger.delivered)
    if (dueWei <= ledger.lastNoteWei) return undefined
    const exposure = exposureOf(store, ledger)
    const halfCap = exposure.unpaidTasks * 2 >= limits.maxUnpaidTasks || (limits.maxUnpaidWei !== undefined && exposure.unpaidWei * 2n >= limits.maxUnpaidWei)
    if (!halfCap && nowMs - ledger.lastNoteAtMs < ledger.terms.debitNoteIntervalSec * 1000) return undefined
    const note: DebitNote = { agreementId: ledger.agreementId, seq: ++ledger.seq, usage: ledger.delivered, amountDueWei: dueWei.toString(), issuedAtMs: nowMs }
    // The usage a note states is written with it, in one transaction.
    store.db.transaction(() => {
      store.paymentDocuments.save({ agreementId: ledger.agreementId, kind: 'usage', seq: 0, document: ledger.delivered, createdAtMs: nowMs })
      store.paymentDocuments.save({ agreementId: ledger.agreementId, kind: 'debit-note', seq: note.seq, document: note, createdAtMs: nowMs })
    })()
    ledger.usageUnsaved = false
    ledger.lastNoteAtMs = nowMs
    ledger.lastNoteWei = dueWei
    ledger.unpaidNotes.push(note)
    return note
  }

  function push(ledger: Ledger, note: DebitNote): void {
    if (init.pushNote === undefined) return
    void init
      .pushNote(note, ledger.requestor)
      .then((voucher) => (voucher === null ? undefined : ledger.account.acceptVoucher(voucher)))
      .catch((error: unknown) => log(`agreement ${ledger.agreementId}: debit note ${note.seq} not delivered: ${toHearthError(error).shortMessage}`))
  }

  /**
   * At the exposure cap: no more work until a voucher covers some. The requestor may hold no note for the newest work
   * (or may have lost the one it had), so the newest goes out again, at most every few seconds.
   */
  function refuseUnpaid(ledger: Ledger, exposure: Exposure): never {
    const over = exposure.unpaidTasks >= limits.maxUnpaidTasks
    const what = over ? `${exposure.unpaidTasks} tasks (the cap is ${limits.maxUnpaidTasks})` : `${exposure.unpaidWei} wei (the cap is ${limits.maxUnpaidWei})`
    const nowMs = now()
    if (nowMs - ledger.lastPushAtMs >= 5_000) {
      ledger.lastPushAtMs = nowMs
      const latest = ledger.unpaidNotes.at(-1)
      const note = latest !== undefined && BigInt(latest.amountDueWei) >= costWei(ledger.terms.pricing, ledger.delivered) ? latest : bill(ledger, noUsage)
      if (note !== undefined) push(ledger, note)
    }
    throw new HearthError('HEARTH_ERR_PAYMENT_UNPAID', `agreement ${ledger.agreementId} has ${what} of work that no voucher covers; this provider takes no more until it is paid`, {
      hint: 'answer the provider\'s debit note with a voucher, then send work again',
      details: { agreementId: ledger.agreementId, unpaidWei: exposure.unpaidWei.toString(), unpaidTasks: exposure.unpaidTasks },
    })
  }

  /** A note unpaid past the agreed timeout ends the agreement: no more work, what is held is claimed. */
  function ensureNotOverdue(ledger: Ledger): void {
    const oldest = ledger.unpaidNotes[0]
    if (oldest === undefined || now() - oldest.issuedAtMs <= ledger.terms.paymentTimeoutSec * 1000) return
    const state = store.agreements.get(ledger.agreementId)?.state
    if (state === 'approved') {
      store.agreements.setState(ledger.agreementId, 'terminated')
      log(`agreement ${ledger.agreementId}: debit note ${oldest.seq} (${oldest.amountDueWei} wei) unpaid for more than ${ledger.terms.paymentTimeoutSec} s; the agreement is ended and what its vouchers cover is claimed`)
      void init.claim(ledger.agreementId, { release: false }).catch(() => undefined)
    }
    throw new HearthError('HEARTH_ERR_PAYMENT_OVERDUE', `debit note ${oldest.seq} of agreement ${ledger.agreementId} (${oldest.amountDueWei} wei) has gone unpaid for more than ${ledger.terms.paymentTimeoutSec} s; this provider has ended the agreement`, {
      hint: 'answer debit notes with vouchers within the payment timeout; negotiate a new agreement',
      details: { agreementId: ledger.agreementId, seq: oldest.seq, amountDueWei: oldest.amountDueWei },
    })
  }

  return { bill, persist, push, refuseUnpaid, ensureNotOverdue }
}
