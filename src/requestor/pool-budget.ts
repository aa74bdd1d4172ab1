/**
 * How many agreements a job's money allows. Every agreement may have to carry every task of the job, so each is
 * budgeted at the deposit of the dearest offer chosen; the pool shrinks to fit the job's budget, never below what
 * verification needs, and a budget that cannot pay even that stops the job before anything is signed or locked.
 */
import { HearthError } from '../errors.ts'
import { maxCostWei, type Pricing } from '../market/pricing.ts'

/** The largest deposit any of `pricings` needs for `maxTasks` tasks: what each agreement wanted is budgeted at. */
export function dearestDeposit(pricings: readonly Pricing[], maxTasks: number, timeoutMs: number): bigint {
  return pricings.reduce((max, pricing) => {
    const deposit = maxCostWei(pricing, maxTasks, timeoutMs)
    return deposit > max ? deposit : max
  }, 0n)
}

export interface PoolSizing {
  /** The offers chosen to negotiate with (their pricing), best first. */
  chosen: readonly Pricing[]
  /** Every matching offer (their pricing), for what the work itself would cost at the cheapest. */
  ranked: readonly Pricing[]
  /** Agreements the job wants. */
  wanted: number
  replicas: number
  /** Tasks each agreement's deposit covers. */
  maxTasks: number
  /** Tasks the job has left to run. */
  plannedTasks: number
  timeoutMs: number
  budgetWei?: bigint
}

export interface PoolSize {
  agreements: number
  /** The deposit each agreement is budgeted at. */
  dearestWei: bigint
  /** The agreements wanted before the budget cut them to `agreements`; absent when it did not. */
  cutFrom?: number
}

/** Agreements the budget allows; throws HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS when it allows fewer than verification needs. */
export function sizePool(sizing: PoolSizing): PoolSize {
  const { chosen, budgetWei, replicas } = sizing
  const dearestWei = dearestDeposit(chosen, sizing.maxTasks, sizing.timeoutMs)
  const agreements = Math.min(sizing.wanted, chosen.length)
  // The pool is sized to the budget: fewer agreements when all would lock more than it allows, never fewer than
  // verification needs; and when not even that fits, the job stops here with what to change.
  if (budgetWei === undefined || dearestWei * BigInt(agreements) <= budgetWei) return { agreements, dearestWei }
  const affordable = dearestWei === 0n ? agreements : Number(budgetWei / dearestWei)
  const minimum = Math.min(Math.max(1, replicas), chosen.length)
  if (affordable < minimum) {
    const cheapestWei = sizing.ranked.reduce((min, pricing) => {
      const cost = maxCostWei(pricing, sizing.plannedTasks * replicas, sizing.timeoutMs)
      return min === undefined || cost < min ? cost : min
    }, undefined as bigint | undefined)
    throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `the budget of ${budgetWei} wei is too small: each agreement's deposit is up to ${dearestWei} wei (it covers ${sizing.maxTasks} tasks at the provider's price), and ${minimum} are needed`, {
      hint: `raise the budget to at least ${dearestWei * BigInt(minimum)} wei (the work itself costs about ${cheapestWei ?? 0n} wei; unspent deposits come back), use fewer replicas, or lower the price cap`,
    })
  }
  return { agreements: affordable, dearestWei, cutFrom: agreements }
}

/** Agreements to add mid-job: as many as are missing and were picked, within what the budget has not locked yet. */
export function affordableMore(missing: number, picked: number, dearestWei: bigint, lockedWei: bigint, budgetWei: bigint | undefined): number {
  const need = Math.min(missing, picked)
  if (budgetWei !== undefined && dearestWei > 0n) return Math.min(need, Number((budgetWei - lockedWei) / dearestWei))
  return need
}
