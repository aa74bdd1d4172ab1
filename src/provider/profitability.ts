/**
 * What lending costs the owner and whether the asked prices cover it. Pure functions over the owner's figures: power
 * draw idle and busy, electricity price, hardware cost and lifetime, and the token's price in the owner's currency.
 *
 * The unit is the CPU-hour: one lent thread busy for one hour. Its cost is the extra electricity the machine draws
 * when busy (spread over the lent threads) plus the hardware's wear (its price spread over its lifetime and every
 * thread of the machine). Fiat amounts are plain numbers (estimates); token amounts are wei, as everywhere else.
 */
import { costWei, type Pricing } from '../market/pricing.ts'

export interface OwnerCosts {
  /** Whole machine at rest, in watts. */
  idleWatts: number
  /** Whole machine with every lent thread busy, in watts. */
  busyWatts: number
  /** Electricity price per kWh, in the owner's currency. */
  electricityPerKwh: number
  /** What the machine cost, in the owner's currency (0 to leave wear out). */
  hardwareCost: number
  hardwareLifetimeYears: number
  /** The price of one token (HTT) in the owner's currency. */
  tokenFiatRate: number
  /** CPU seconds a typical task takes, to compare a per-task price with a cost per CPU-hour. */
  expectedTaskCpuSec: number
}

export interface MachineShare {
  /** Threads the machine has in all. */
  machineThreads: number
  /** Threads lent. */
  lentThreads: number
}

export interface CpuHourCost {
  /** Extra electricity per CPU-hour, in fiat. */
  electricity: number
  /** Hardware wear per CPU-hour, in fiat. */
  wear: number
  /** Both, in fiat. */
  total: number
  /** Both, in wei of the token. */
  totalWei: bigint
}

export interface BreakEven {
  /** The cost of one CPU-hour. */
  cpuHour: CpuHourCost
  /** Cheapest linear pricing that covers the cost: all of it on CPU time, nothing on start or run time. */
  linear: Extract<Pricing, { model: 'linear' }>
  /** Cheapest per-task price that covers a task of `expectedTaskCpuSec`. */
  perTask: Extract<Pricing, { model: 'per-task' }>
}

const hoursPerYear = 365.25 * 24

/** Fiat to wei at the token rate, rounded up to the gwei (floating point in an estimate, exact integers in the wei). */
export function fiatToWei(fiat: number, tokenFiatRate: number): bigint {
  if (!(tokenFiatRate > 0)) throw new RangeError('tokenFiatRate must be above 0')
  return BigInt(Math.ceil((fiat / tokenFiatRate) * 1e9)) * 1_000_000_000n
}

/** Wei to fiat at the token rate (an estimate for display). */
export function weiToFiat(wei: bigint, tokenFiatRate: number): number {
  return (Number(wei / 1_000_000_000n) / 1e9) * tokenFiatRate
}

/** The cost of one lent thread busy for an hour. */
export function cpuHourCost(costs: OwnerCosts, share: MachineShare): CpuHourCost {
  const lent = Math.max(1, share.lentThreads)
  // Only the draw above idle is the lending's: the machine is on for its owner anyway.
  const electricity = (Math.max(0, costs.busyWatts - costs.idleWatts) / lent / 1000) * costs.electricityPerKwh
  const wear = costs.hardwareLifetimeYears > 0 ? costs.hardwareCost / (costs.hardwareLifetimeYears * hoursPerYear) / Math.max(1, share.machineThreads) : 0
  const total = electricity + wear
  return { electricity, wear, total, totalWei: fiatToWei(total, costs.tokenFiatRate) }
}

/** Break-even prices in both models. */
export function breakEvenPrices(costs: OwnerCosts, share: MachineShare): BreakEven {
  const cpuHour = cpuHourCost(costs, share)
  const perCpuSecWei = ceilDiv(cpuHour.totalWei, 3600n)
  const perTaskWei = ceilDiv(cpuHour.totalWei * BigInt(Math.ceil(costs.expectedTaskCpuSec * 1000)), 3_600_000n)
  return {
    cpuHour,
    linear: { model: 'linear', startWei: '0', perCpuSecWei: perCpuSecWei.toString(), perDurationSecWei: '0' },
    perTask: { model: 'per-task', perTaskWei: perTaskWei.toString() },
  }
}

/** Break-even prices with a margin on top (0.5 = 50% profit over cost), in the model asked for. */
export function suggestPricing(costs: OwnerCosts, share: MachineShare, model: Pricing['model'], margin = 0.5): Pricing {
  const even = breakEvenPrices(costs, share)
  const up = (wei: string): string => ceilDiv(BigInt(wei) * BigInt(Math.round((1 + margin) * 1000)), 1000n).toString()
  if (model === 'per-task') return { model, perTaskWei: up(even.perTask.perTaskWei) }
  return { model, startWei: '0', perCpuSecWei: up(even.linear.perCpuSecWei), perDurationSecWei: '0' }
}

/** What one CPU-hour earns under the pricing, for a busy one-thread task (CPU time = run time). */
export function revenuePerCpuHourWei(pricing: Pricing, expectedTaskCpuSec: number): bigint {
  if (pricing.model === 'per-task') {
    const taskMs = Math.max(1, Math.ceil(expectedTaskCpuSec * 1000))
    return (BigInt(pricing.perTaskWei) * 3_600_000n) / BigInt(taskMs)
  }
  // Tasks of the expected length, back to back for an hour: start price each, CPU and run time for all of it.
  const tasks = Math.max(1, Math.floor(3600 / Math.max(0.001, expectedTaskCpuSec)))
  const perTask = costWei(pricing, { tasks: 1, cpuMs: expectedTaskCpuSec * 1000, durationMs: expectedTaskCpuSec * 1000 })
  return perTask * BigInt(tasks)
}

export interface PriceCheck {
  revenuePerCpuHourWei: bigint
  costPerCpuHourWei: bigint
  /** Revenue over cost; below 1 every busy hour loses money. */
  ratio: number
  belowCost: boolean
  /** A sentence for the owner when prices are below cost, else undefined. */
  warning: string | undefined
}

/** Whether the pricing covers the owner's cost per CPU-hour. */
export function checkPricing(pricing: Pricing, costs: OwnerCosts, share: MachineShare): PriceCheck {
  const cost = cpuHourCost(costs, share).totalWei
  const revenue = revenuePerCpuHourWei(pricing, costs.expectedTaskCpuSec)
  const ratio = cost === 0n ? Infinity : Number((revenue * 1000n) / cost) / 1000
  const belowCost = revenue < cost
  const warning = belowCost
    ? `prices are below cost: a busy CPU-hour earns ${formatWei(revenue)} HTT but costs ${formatWei(cost)} HTT in power and wear (${(ratio * 100).toFixed(0)}% covered); raise the prices (hearth provider init --suggest-price) or lend less power-hungry threads`
    : undefined
  return { revenuePerCpuHourWei: revenue, costPerCpuHourWei: cost, ratio, belowCost, warning }
}

/** The estimated cost of `cpuMs` of lent CPU time, in wei. */
export function costOfCpuWei(cpuMs: number, costs: OwnerCosts, share: MachineShare): bigint {
  return ceilDiv(cpuHourCost(costs, share).totalWei * BigInt(Math.ceil(cpuMs)), 3_600_000n)
}

/** Wei as a decimal token amount with up to 9 decimals, e.g. "0.000012". */
export function formatWei(wei: bigint): string {
  const negative = wei < 0n
  const abs = negative ? -wei : wei
  const whole = abs / 10n ** 18n
  const frac = (abs % 10n ** 18n).toString().padStart(18, '0').slice(0, 9).replace(/0+$/, '')
  return `${negative ? '-' : ''}${whole}${frac === '' ? '' : `.${frac}`}`
}

function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b
}
