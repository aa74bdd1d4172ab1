/**
 * What a requestor's accepted work is worth, apart from the accounts that keep it (requestor-account.ts): an
 * activity's usage as the provider bills it, reported usage held to what this requestor observed, and the voucher a
 * debit note earns.
 */
import type { DebitNote } from '../market/billing.ts'
import type { Usage } from '../market/pricing.ts'
import type { ActivityUsage } from '../exec/exescript.ts'

/** CPU an activity's runs may use beyond its life, per batch: one cgroup quota period (native and docker runs). */
const cpuSlackPerBatchMs = 100

/** An activity's usage as the provider bills it: one task, its CPU and its life in ms. */
export function billedUsage(usage: ActivityUsage): Usage {
  return { tasks: 1, cpuMs: Math.round(usage.cpuSec * 1000), durationMs: Math.round(usage.durationSec * 1000) }
}

/**
 * Reported usage held to what this requestor observed: `lifeMs` from sending the create request to receiving the
 * report, `batches` sent so far. The provider's clock counts whole milliseconds, hence one more.
 */
export function plausibleUsage(reported: ActivityUsage, observed: { lifeMs: number; batches: number }): ActivityUsage {
  const durationSec = Math.min(reported.durationSec, (Math.ceil(observed.lifeMs) + 1) / 1000)
  const cpuSec = Math.min(reported.cpuSec, durationSec + (observed.batches * cpuSlackPerBatchMs) / 1000)
  return { durationSec, cpuSec }
}

/**
 * The cumulative voucher a debit note earns: what it asks, capped by what is justified and by the deposit;
 * undefined when that is no more than the vouchers already signed.
 */
export function voucherAmountFor(note: Pick<DebitNote, 'amountDueWei'>, bill: { justifiedWei: bigint; voucheredWei: bigint; depositWei: bigint }): bigint | undefined {
  let amount = BigInt(note.amountDueWei)
  if (amount > bill.justifiedWei) amount = bill.justifiedWei
  if (amount > bill.depositWei) amount = bill.depositWei
  return amount > bill.voucheredWei ? amount : undefined
}
