/**
 * Pricing models, shared by offers, agreements and billing. `per-task` charges a price per accepted result; `linear`
 * is Golem's model: a start price plus a price per CPU second and per second of run time, billed from metering
 * (`golem.usage.cpu_sec`, `golem.usage.duration_sec`). Amounts are integers in wei; usage is in milliseconds, and
 * each task's charge is rounded up to the wei.
 */
import { z } from 'zod'
import { decimalWeiSchema } from '../identity/wire-schemas.ts'


export const pricingSchema = z.discriminatedUnion('model', [
  z.strictObject({ model: z.literal('per-task'), perTaskWei: decimalWeiSchema }),
  z.strictObject({ model: z.literal('linear'), startWei: decimalWeiSchema, perCpuSecWei: decimalWeiSchema, perDurationSecWei: decimalWeiSchema }),
])

export type Pricing = z.output<typeof pricingSchema>

/** Metered work under one agreement: accepted tasks and their summed CPU and run time. */
export interface Usage {
  tasks: number
  cpuMs: number
  durationMs: number
}

export const noUsage: Usage = { tasks: 0, cpuMs: 0, durationMs: 0 }

/**
 * Sums metered work in whole microseconds (each term rounded up, as billing rounds), so that the sum does not depend
 * on the order of the terms: the provider meters tasks as they end and the requestor accepts them as verdicts fall,
 * and floating-point sums in two orders can differ in the last bit, which ceil() below would turn into a wei more on
 * one side than the other (and a voucher the provider must refuse as above its own metering).
 */
export function addUsage(a: Usage, b: Usage): Usage {
  return { tasks: a.tasks + b.tasks, cpuMs: (micros(a.cpuMs) + micros(b.cpuMs)) / 1000, durationMs: (micros(a.durationMs) + micros(b.durationMs)) / 1000 }
}

/** Milliseconds as whole microseconds, rounded up; a value already whole in microseconds (up to float error) stays. */
function micros(ms: number): number {
  return Math.ceil(ms * 1000 - 1e-6)
}

/** ceil(ms × weiPerSec / 1000), metered to the microsecond, without floating point in the money. */
function perMs(ms: number, weiPerSec: string): bigint {
  return (BigInt(micros(ms)) * BigInt(weiPerSec) + 999_999n) / 1_000_000n
}

/**
 * What the usage costs under the pricing; the start price is charged once work has begun: a task, or time and CPU
 * billed without one (an activity still running, a service paid by the hour).
 */
export function costWei(pricing: Pricing, usage: Usage): bigint {
  if (pricing.model === 'per-task') return BigInt(pricing.perTaskWei) * BigInt(usage.tasks)
  if (usage.tasks === 0 && usage.cpuMs === 0 && usage.durationMs === 0) return 0n
  return BigInt(pricing.startWei) + perMs(usage.cpuMs, pricing.perCpuSecWei) + perMs(usage.durationMs, pricing.perDurationSecWei)
}

/**
 * The most one task can cost, for price caps, ranking and deposits: under `linear`, a task that runs to its deadline
 * on one fully busy core (the start price counted in full, as if it were the only task).
 */
export function maxTaskCostWei(pricing: Pricing, timeoutMs: number): bigint {
  if (pricing.model === 'per-task') return BigInt(pricing.perTaskWei)
  return costWei(pricing, { tasks: 1, cpuMs: timeoutMs, durationMs: timeoutMs })
}

/** The deposit that covers `maxTasks` tasks at their most. */
export function maxCostWei(pricing: Pricing, maxTasks: number, timeoutMs: number): bigint {
  if (pricing.model === 'per-task') return BigInt(pricing.perTaskWei) * BigInt(maxTasks)
  return BigInt(pricing.startWei) + BigInt(maxTasks) * (maxTaskCostWei(pricing, timeoutMs) - BigInt(pricing.startWei))
}

/** True when every price in `proposed` is at least the offer's (same model). */
export function coversPricing(proposed: Pricing, offered: Pricing): boolean {
  if (proposed.model === 'per-task' && offered.model === 'per-task') return BigInt(proposed.perTaskWei) >= BigInt(offered.perTaskWei)
  if (proposed.model === 'linear' && offered.model === 'linear') {
    return (
      BigInt(proposed.startWei) >= BigInt(offered.startWei) &&
      BigInt(proposed.perCpuSecWei) >= BigInt(offered.perCpuSecWei) &&
      BigInt(proposed.perDurationSecWei) >= BigInt(offered.perDurationSecWei)
    )
  }
  return false
}

/** Golem's standard properties for the pricing, so Golem-style constraints over prices work on Hearth offers. */
export function pricingProperties(pricing: Pricing): Record<string, string | number | string[] | number[]> {
  // Golem states coefficients in whole tokens as floats; precise amounts stay in the signed pricing itself.
  const tokens = (wei: string): number => Number(BigInt(wei)) / 1e18
  if (pricing.model === 'per-task') return { 'golem.com.pricing.model': 'per-task', 'hearth.com.pricing.per_task': tokens(pricing.perTaskWei) }
  return {
    'golem.com.pricing.model': 'linear',
    'golem.com.pricing.model.linear.coeffs': [tokens(pricing.perCpuSecWei), tokens(pricing.perDurationSecWei), tokens(pricing.startWei)],
    'golem.com.usage.vector': ['golem.usage.cpu_sec', 'golem.usage.duration_sec'],
  }
}
