/**
 * The provider's periodic payment round, and the collection of what is owed: claims confirmed, earnings swept,
 * failed claims retried once their backoff has passed, overdue agreements ended, everything unclaimed claimed before
 * its escrow expires, and requestors asked for vouchers they signed while this provider was away.
 */
import type { Address } from 'viem'
import { escrowExpiryMarginSec, type Agreement } from '../market/agreement.ts'
import { chainTimeSec, type EscrowContext } from '../payment/escrow.ts'
import type { VoucherJson } from '../payment/voucher.ts'
import { toHearthError } from '../errors.ts'
import type { Store } from '../store/store.ts'
import type { ClaimPolicy } from './account-types.ts'
import type { Claims } from './claims.ts'
import type { DebitNotes } from './debit-notes.ts'
import { exposureOf, type Ledger } from './ledger.ts'

export interface PaymentRoundInit {
  store: Store
  payment: EscrowContext
  policy: Pick<ClaimPolicy, 'beforeExpirySec'>
  log(message: string): void
  now(): number
  claims: Claims
  notes: Pick<DebitNotes, 'ensureNotOverdue'>
  ledgerOf(agreementId: string, requestor: Address): Ledger
  /** Asks a requestor for the newest voucher it signed under an agreement. */
  askOwed: ((agreementId: string, requestor: Address) => Promise<VoucherJson | null>) | undefined
}

export interface PaymentRound {
  /** One round: retries, confirmations, sweeps, claims before expiry, overdue agreements, owed vouchers. */
  tick(): Promise<void>
  /** Asks the requestor of every agreement with delivered work not covered by a voucher for what it signed. */
  collectAllOwed(): Promise<void>
}

/** Agreements whose money is still in play: approved, or ended with claims perhaps to make. */
function isPayable(record: { role: string; state: string }): boolean {
  return record.role === 'provider' && ['approved', 'terminated', 'expired'].includes(record.state)
}

export function createPaymentRound(init: PaymentRoundInit): PaymentRound {
  const { store, payment, policy, log, now, claims, ledgerOf } = init

  /** Delivered work no voucher covers, under an escrow that is not settled: a voucher for it may still come. */
  function owedMayArrive(ledger: Ledger): boolean {
    return exposureOf(store, ledger).unpaidWei > 0n && store.claims.get(ledger.agreementId)?.release !== true && ledger.escrow?.state?.closed !== true
  }

  async function collectOwed(ledger: Ledger): Promise<void> {
    try {
      const voucher = await init.askOwed!(ledger.agreementId, ledger.requestor)
      if (voucher !== null && BigInt(voucher.cumulativeWei) > (store.vouchers.latest(ledger.agreementId)?.cumulativeWei ?? 0n)) await ledger.account.acceptVoucher(voucher)
    } catch {
      // The requestor is away; the next round asks again.
    }
  }

  async function tick(): Promise<void> {
    await claims.confirmClaims().catch((error: unknown) => log(`confirming claims failed: ${toHearthError(error).shortMessage}`))
    await claims.sweep().catch((error: unknown) => log(`moving earnings to the payout address failed: ${toHearthError(error).shortMessage}`))
    // Failed claims whose backoff has passed.
    for (const record of store.claims.list({ state: 'failed' })) {
      if (record.nextAttemptAtMs > now()) continue
      await claims.claim(record.agreementId, { release: record.release }).catch(() => undefined)
    }
    const chainNow = await chainTimeSec(payment).then(Number).catch(() => undefined)
    for (const record of store.agreements.list()) {
      if (!isPayable(record)) continue
      const agreement = record.document as Agreement | undefined
      if (agreement?.terms === undefined) continue
      const ledger = ledgerOf(record.id, agreement.terms.requestor as Address)
      if (record.state === 'approved') {
        try {
          init.notes.ensureNotOverdue(ledger)
        } catch {
          // Ended: reported above.
        }
      }
      // Whatever is unclaimed is claimed before the escrow expires: after expiry plus the grace the requestor may refund.
      const unclaimed = store.vouchers.latest(record.id)
      if (unclaimed !== undefined && unclaimed.claimedTx === null && chainNow !== undefined && store.claims.get(record.id)?.state !== 'failed') {
        const expiresAtSec = ledger.escrow?.state?.expiresAtSec ?? BigInt(agreement.terms.expiresAtSec + escrowExpiryMarginSec)
        if (Number(expiresAtSec) - chainNow <= policy.beforeExpirySec) await claims.claim(record.id, { release: false }).catch(() => undefined)
      }
      // Owed and not vouchered: the requestor may have signed vouchers while this provider was away.
      if (init.askOwed !== undefined && owedMayArrive(ledger) && ledger.running === 0) await collectOwed(ledger)
    }
  }

  async function collectAllOwed(): Promise<void> {
    const asks: Promise<void>[] = []
    for (const record of store.agreements.list()) {
      if (!isPayable(record)) continue
      const requestor = (record.document as Agreement | undefined)?.terms?.requestor as Address | undefined
      if (requestor === undefined) continue
      const ledger = ledgerOf(record.id, requestor)
      if (owedMayArrive(ledger)) asks.push(collectOwed(ledger))
    }
    await Promise.allSettled(asks)
  }

  return { tick, collectAllOwed }
}
