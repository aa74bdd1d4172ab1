/**
 * Debit notes over a real store: a note falls due when the agreed interval has passed or the unpaid work reaches
 * half the cap, and not otherwise; a restarted provider's ledger still holds the notes no voucher covers; a note
 * unpaid past the payment timeout ends the agreement and has what its vouchers cover claimed.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import type { AgreementTerms } from '../market/agreement.ts'
import { openStore, type Store } from '../store/store.ts'
import type { ProviderAccount } from './account-types.ts'
import { createDebitNotes } from './debit-notes.ts'
import { restoreLedger, type Ledger } from './ledger.ts'

const agreementId = `0x${'ab'.repeat(32)}`
const requestor = `0x${'12'.repeat(20)}`
const terms: AgreementTerms = {
  offerId: `0x${'cd'.repeat(32)}`, requestor, provider: `0x${'34'.repeat(20)}`, runtime: 'wasi', pricing: { model: 'per-task', perTaskWei: '10' },
  maxTasks: 100, taskTimeoutMs: 60_000, depositWei: '1000', payment: { chainId: 31337, escrow: `0x${'56'.repeat(20)}`, token: `0x${'78'.repeat(20)}` },
  expiresAtSec: 2_000_000_000, debitNoteIntervalSec: 60, paymentTimeoutSec: 30, jobName: 'notes', nonce: `0x${'9a'.repeat(32)}`, createdAtMs: 0,
}

function agreementStore(): Store {
  const store = openStore({ path: ':memory:' })
  store.agreements.save({ id: agreementId, role: 'provider', requestor, provider: terms.provider, state: 'approved', document: { id: agreementId, terms }, createdAtMs: 0, updatedAtMs: 0 })
  return store
}

/** The ledger as the store has it; its account is never reached by these tests. */
const ledgerIn = (store: Store): Ledger => restoreLedger(store, agreementId, terms, () => ({}) as ProviderAccount)

test('a note falls due after the interval or at half the cap, never in between, and a restart keeps the unpaid ones', () => {
  const store = agreementStore()
  let nowMs = 1_000_000
  const notes = createDebitNotes({ store, limits: { maxUnpaidTasks: 10 }, now: () => nowMs, log: () => undefined, pushNote: undefined, claim: async () => undefined })
  const ledger = ledgerIn(store)
  assert.equal(notes.bill(ledger, { tasks: 1, cpuMs: 0, durationMs: 0 })?.amountDueWei, '10')
  nowMs += 1_000
  assert.equal(notes.bill(ledger, { tasks: 2, cpuMs: 0, durationMs: 0 }), undefined)
  nowMs += 1_000
  // Five tasks unpaid of a cap of ten: half the cap.
  const second = notes.bill(ledger, { tasks: 2, cpuMs: 0, durationMs: 0 })
  assert.deepEqual({ seq: second?.seq, amountDueWei: second?.amountDueWei }, { seq: 2, amountDueWei: '50' })
  assert.equal(ledger.unpaidNotes.length, 2)

  // A voucher covering the first note arrives; the provider restarts.
  store.vouchers.save({ agreementId, cumulativeWei: 10n, document: {}, receivedAtMs: nowMs })
  const restored = ledgerIn(store)
  assert.deepEqual(restored.delivered, { tasks: 5, cpuMs: 0, durationMs: 0 })
  assert.deepEqual(restored.unpaidNotes.map((note) => note.seq), [2])
  assert.equal(restored.seq, 2)
  assert.equal(restored.lastNoteWei, 50n)
  store.close()
})

test('a note unpaid past the payment timeout ends the agreement, and what the vouchers cover is claimed', () => {
  const store = agreementStore()
  let nowMs = 1_000_000
  const claims: { agreementId: string; release: boolean }[] = []
  const logged: string[] = []
  const notes = createDebitNotes({
    store,
    limits: { maxUnpaidTasks: 10 },
    now: () => nowMs,
    log: (line) => logged.push(line),
    pushNote: undefined,
    claim: async (id, options) => void claims.push({ agreementId: id, ...options }),
  })
  const ledger = ledgerIn(store)
  notes.bill(ledger, { tasks: 1, cpuMs: 0, durationMs: 0 })
  nowMs += 30_000
  notes.ensureNotOverdue(ledger)
  assert.equal(store.agreements.get(agreementId)?.state, 'approved')
  nowMs += 1
  assert.throws(() => notes.ensureNotOverdue(ledger), (error: unknown) => isHearthError(error) && error.code === 'HEARTH_ERR_PAYMENT_OVERDUE')
  assert.equal(store.agreements.get(agreementId)?.state, 'terminated')
  assert.deepEqual(claims, [{ agreementId, release: false }])
  assert.match(logged.join('\n'), /debit note 1 \(10 wei\) unpaid for more than 30 s/)
  // Ended once: asked again, it refuses without claiming again.
  assert.throws(() => notes.ensureNotOverdue(ledger), (error: unknown) => isHearthError(error) && error.code === 'HEARTH_ERR_PAYMENT_OVERDUE')
  assert.equal(claims.length, 1)
  store.close()
})

test('work billed for a batch is written once with persist(), or at once with a note, and a restart then holds all of it', () => {
  const store = agreementStore()
  let nowMs = 1_000_000
  const notes = createDebitNotes({ store, limits: { maxUnpaidTasks: 100 }, now: () => nowMs, log: () => undefined, pushNote: undefined, claim: async () => undefined })
  const ledger = ledgerIn(store)
  const stored = (): unknown => store.paymentDocuments.list({ agreementId, kind: 'usage' })[0]?.document
  // The first task's note falls due (nothing was noted yet): the usage it states is written with it.
  assert.ok(notes.bill(ledger, { tasks: 1, cpuMs: 1, durationMs: 1 }, { deferSave: true }) !== undefined)
  assert.deepEqual(stored(), { tasks: 1, cpuMs: 1, durationMs: 1 })
  nowMs += 1_000
  for (let i = 0; i < 3; i++) assert.equal(notes.bill(ledger, { tasks: 1, cpuMs: 1, durationMs: 1 }, { deferSave: true }), undefined)
  assert.deepEqual(stored(), { tasks: 1, cpuMs: 1, durationMs: 1 }, 'not yet written')
  notes.persist(ledger)
  assert.deepEqual(stored(), { tasks: 4, cpuMs: 4, durationMs: 4 })
  assert.deepEqual(ledgerIn(store).delivered, { tasks: 4, cpuMs: 4, durationMs: 4 })
  // Billing without deferSave writes at once, as before.
  notes.bill(ledger, { tasks: 1, cpuMs: 0, durationMs: 0 })
  assert.deepEqual(stored(), { tasks: 5, cpuMs: 4, durationMs: 4 })
  store.close()
})
