/**
 * The provider's money, one account per agreement, in one place: the work delivered (metered) and running, the debit
 * notes sent and which of them are unpaid, the exposure no voucher covers, the vouchers received, the invoice, and the
 * claims on chain with their retries and confirmations.
 *
 * Before any work for a requestor's money the account checks that the agreement is approved and this requestor's;
 * that its escrow is open, holds the agreed deposit, names this provider and outlives the agreement by the agreed
 * margin (read again from the chain when the last read is older than a few seconds, so a closed escrow is noticed);
 * that neither the agreement nor the escrow is about to end (by chain time); that no debit note is overdue; that the
 * agreement has tasks left; and that the work delivered or running which no voucher covers stays under the exposure
 * cap, in tasks and in tokens. Tasks, ExeScript activities and work billed by time alone (services, storage) all go
 * through the same account, so a requestor that stops paying leaves the provider unpaid for at most the cap.
  *
 * This file wires an agreement's account together: its ledger (ledger.ts), the escrow checks (escrow-check.ts), debit
 * notes (debit-notes.ts), vouchers received (voucher-intake.ts), the account's entry points (agreement-account.ts),
 * claims (claims.ts) and the periodic payment round (payment-round.ts); its vocabulary is in account-types.ts.
 */

import type { Address } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import type { Agreement } from '../market/agreement.ts'
import { costWei } from '../market/pricing.ts'
import { escrowClaimGraceSec } from '../payment/escrow.ts'
import { voucherFromJson } from '../payment/voucher.ts'
import { defaultAccountLimits, defaultClaimPolicy, type AccountLimits, type AgreementMoney, type ClaimPolicy, type ProviderAccounts, type ProviderAccountsInit } from './account-types.ts'
import { agreementAccount } from './agreement-account.ts'
import { confirmedClaimWei, createClaims } from './claims.ts'
import { createDebitNotes } from './debit-notes.ts'
import { createEscrowCheck } from './escrow-check.ts'
import { exposureOf, restoreLedger, type Ledger } from './ledger.ts'
import { createPaymentRound } from './payment-round.ts'

export { defaultAccountLimits, defaultClaimPolicy } from './account-types.ts'
export type { AccountLimits, AgreementMoney, ClaimPolicy, Exposure, ProviderAccount, ProviderAccounts, ProviderAccountsInit, Reservation, SettleOutcome } from './account-types.ts'
export { confirmedClaimWei } from './claims.ts'
export { uncoveredWork } from './ledger.ts'

/** The agreement of `agreementId`, checked to be this provider's and `requestor`'s. */
function agreementRecord(init: ProviderAccountsInit, agreementId: string, requestor: Address): { agreement: Agreement; state: string } {
  const record = init.store.agreements.get(agreementId)
  const agreement = record?.document as Agreement | undefined
  if (record === undefined || record.role !== 'provider' || agreement?.terms === undefined) {
    throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `no agreement ${agreementId} with this provider`, {
      hint: 'negotiate an agreement before sending tasks or vouchers',
    })
  }
  if (agreement.terms.requestor.toLowerCase() !== requestor.toLowerCase()) {
    throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${agreementId} belongs to another requestor`)
  }
  return { agreement, state: record.state }
}

/** Every agreement's money, for status and earnings. */
function moneyOf(init: ProviderAccountsInit, ledgerOf: (agreementId: string, requestor: Address) => Ledger): AgreementMoney[] {
  const { store } = init
  const rows: AgreementMoney[] = []
  for (const record of store.agreements.list()) {
    if (record.role !== 'provider' || !['approved', 'terminated', 'expired'].includes(record.state)) continue
    const agreement = record.document as Agreement | undefined
    if (agreement?.terms === undefined) continue
    const ledger = ledgerOf(record.id, agreement.terms.requestor as Address)
    const claimRecord = store.claims.get(record.id)
    const claimedWei = confirmedClaimWei(store, record.id)
    rows.push({
      agreementId: record.id,
      requestor: record.requestor,
      state: record.state,
      delivered: ledger.delivered,
      billedWei: costWei(agreement.terms.pricing, ledger.delivered),
      vouchedWei: store.vouchers.latest(record.id)?.cumulativeWei ?? 0n,
      claimedWei,
      exposure: exposureOf(store, ledger),
      unpaidNotes: ledger.unpaidNotes.length,
      claim: claimRecord,
    })
  }
  return rows
}

export function createProviderAccounts(init: ProviderAccountsInit): ProviderAccounts {
  const { store, payment } = init
  const limits: AccountLimits = { ...defaultAccountLimits, ...init.limits }
  const policy: ClaimPolicy = { ...defaultClaimPolicy, ...init.claimPolicy }
  const now = init.nowMs ?? Date.now
  const log = init.log ?? (() => undefined)
  const ledgers = new Map<string, Ledger>()
  const claims = createClaims({ address: init.address, store, payment, policy, log, now, payoutAddress: init.payoutAddress })
  const notes = createDebitNotes({ store, limits, now, log, pushNote: init.pushNote, claim: claims.claim })
  const escrow = createEscrowCheck({ address: init.address, payment, limits, now })
  const accountInit = { store, limits, now, escrow, notes, vouchers: { store, payment, policy, now, claim: claims.claim } }
  let timer: NodeJS.Timeout | undefined
  let ticking: Promise<void> | undefined

  function ledgerOf(agreementId: string, requestor: Address): Ledger {
    const known = ledgers.get(agreementId)
    if (known !== undefined) {
      if (known.requestor.toLowerCase() !== requestor.toLowerCase()) agreementRecord(init, agreementId, requestor)
      return known
    }
    const { agreement } = agreementRecord(init, agreementId, requestor)
    const ledger = restoreLedger(store, agreementId, agreement.terms, (restored) => agreementAccount(accountInit, restored))
    ledgers.set(agreementId, ledger)
    return ledger
  }

  const round = createPaymentRound({ store, payment, policy, log, now, claims, notes, ledgerOf, askOwed: init.askOwed })

  return {
    account(agreementId, requestor) {
      return ledgerOf(agreementId, requestor).account
    },

    async start() {
      const graceSec = await escrowClaimGraceSec(payment)
      if (graceSec < BigInt(limits.minClaimGraceSec)) {
        throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the escrow contract ${payment.escrowAddress} gives providers ${graceSec} s after expiry to claim, less than this provider's minimum of ${limits.minClaimGraceSec} s`, {
          hint: 'use a deployment whose escrow has a longer claim grace (hearth deploy --claim-grace-sec), or lower minClaimGraceSec knowingly',
          details: { claimGraceSec: graceSec.toString(), minClaimGraceSec: limits.minClaimGraceSec },
        })
      }
      claims.recoverInterrupted()
      // Money owed from before a restart, first thing, in the background: vouchers the requestors signed while this
      // provider was away are collected, then everything held is claimed.
      void (async () => {
        if (init.askOwed !== undefined) await round.collectAllOwed()
        await claims.claimOutstanding()
      })().catch(() => undefined)
      timer = setInterval(() => {
        ticking ??= round.tick()
          .catch((error: unknown) => log(`payment round failed: ${toHearthError(error).shortMessage}`))
          .finally(() => {
            ticking = undefined
          })
      }, policy.checkEveryMs)
      timer.unref()
    },

    async stop() {
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
      await ticking
      await claims.settled()
    },

    async settle(agreementId, requestor, finalVoucher) {
      const ledger = ledgerOf(agreementId, requestor)
      if (finalVoucher !== null && finalVoucher !== undefined) {
        const voucher = voucherFromJson(finalVoucher)
        if (voucher.agreementId.toLowerCase() !== agreementId.toLowerCase()) throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'the final voucher is for another agreement')
        await ledger.account.acceptVoucher(finalVoucher)
      }
      // The invoice: all the work delivered, what it costs, and what the requestor's vouchers actually cover.
      const invoice = ledger.account.invoice()
      store.paymentDocuments.save({ agreementId, kind: 'invoice', seq: 1, document: invoice, createdAtMs: invoice.issuedAtMs })
      const outcome = await claims.claim(agreementId, { release: true })
      store.agreements.setState(agreementId, 'terminated')
      ledger.unpaidNotes = []
      ledger.escrow = undefined
      return { invoice, ...outcome }
    },

    claimOutstanding: (options) => claims.claimOutstanding(options),
    tick: () => round.tick(),
    sweep: () => claims.sweep(),
    running: () => [...ledgers.values()].reduce((sum, ledger) => sum + ledger.running, 0),
    money: () => moneyOf(init, ledgerOf),
  }
}
