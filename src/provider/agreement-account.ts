/**
 * The account of one agreement, over its ledger: work is admitted (reserved) only while the agreement is approved,
 * backed by its escrow, not ending and not overdue, with tasks left and the unpaid work under the cap; admitted work
 * is billed when it completes and let go when it does not; work billed by time alone is metered; vouchers are taken
 * in; the invoice says what was delivered and what the vouchers cover.
 */
import { HearthError } from '../errors.ts'
import { costWei } from '../market/pricing.ts'
import type { Store } from '../store/store.ts'
import type { AccountLimits, ProviderAccount, Reservation } from './account-types.ts'
import type { DebitNotes } from './debit-notes.ts'
import type { EscrowCheck } from './escrow-check.ts'
import { exposureOf, type Ledger } from './ledger.ts'
import { acceptVoucher, type VoucherIntakeInit } from './voucher-intake.ts'

export interface AgreementAccountInit {
  store: Store
  limits: Pick<AccountLimits, 'maxUnpaidTasks' | 'maxUnpaidWei'>
  now(): number
  escrow: EscrowCheck
  notes: DebitNotes
  vouchers: VoucherIntakeInit
}

/** The agreement is approved, backed by its escrow, not ending, and not overdue. */
async function ensureWorking(init: AgreementAccountInit, ledger: Ledger): Promise<void> {
  const state = init.store.agreements.state(ledger.agreementId)
  if (state !== 'approved') {
    throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${ledger.agreementId} is ${state ?? 'unknown'}, not approved`, { hint: 'negotiate a new agreement' })
  }
  await init.escrow.ensureBacked(ledger)
  init.notes.ensureNotOverdue(ledger)
}

/** A place under the agreement's task and exposure bounds: billed once when completed, or let go. */
function reservationOf(init: AgreementAccountInit, ledger: Ledger): Reservation {
  ledger.running++
  let open = true
  return {
    complete(usage, options) {
      if (!open) return undefined
      open = false
      ledger.running--
      return init.notes.bill(ledger, usage, options)
    },
    cancel() {
      if (!open) return
      open = false
      ledger.running--
    },
  }
}

export function agreementAccount(init: AgreementAccountInit, ledger: Ledger): ProviderAccount {
  const { store, limits, notes } = init
  const { agreementId, terms } = ledger
  return {
    agreementId,
    terms,
    delivered: () => ledger.delivered,
    exposure: () => exposureOf(store, ledger),

    async check() {
      await ensureWorking(init, ledger)
      if (limits.maxUnpaidWei !== undefined && exposureOf(store, ledger).unpaidWei >= limits.maxUnpaidWei) notes.refuseUnpaid(ledger, exposureOf(store, ledger))
    },

    backed: () => init.escrow.backed(ledger),

    persist: () => notes.persist(ledger),

    deliver: (note) => notes.push(ledger, note),

    async reserve() {
      await ensureWorking(init, ledger)
      if (ledger.delivered.tasks + ledger.running >= terms.maxTasks) {
        throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', `agreement ${agreementId} already had its ${terms.maxTasks} tasks`, {
          hint: 'negotiate a new agreement for more tasks',
        })
      }
      const exposure = exposureOf(store, ledger)
      if (exposure.unpaidTasks >= limits.maxUnpaidTasks || (limits.maxUnpaidWei !== undefined && exposure.unpaidWei >= limits.maxUnpaidWei)) notes.refuseUnpaid(ledger, exposure)
      return reservationOf(init, ledger)
    },

    meter(usage) {
      if (usage.tasks === 0 && usage.cpuMs === 0 && usage.durationMs === 0) return undefined
      return notes.bill(ledger, usage)
    },

    acceptVoucher: (json) => acceptVoucher(init.vouchers, ledger, json),

    invoice() {
      return {
        agreementId,
        usage: ledger.delivered,
        amountDueWei: costWei(terms.pricing, ledger.delivered).toString(),
        paidWei: (store.vouchers.latest(agreementId)?.cumulativeWei ?? 0n).toString(),
        issuedAtMs: init.now(),
      }
    },
  }
}
