import assert from 'node:assert/strict'
import { test } from 'node:test'
import { breakEvenPrices, checkPricing, costOfCpuWei, cpuHourCost, fiatToWei, formatWei, suggestPricing, type OwnerCosts } from './profitability.ts'

const costs: OwnerCosts = {
  idleWatts: 50,
  busyWatts: 150,
  electricityPerKwh: 0.3,
  hardwareCost: 1000,
  hardwareLifetimeYears: 4,
  tokenFiatRate: 0.5,
  expectedTaskCpuSec: 60,
}
const share = { machineThreads: 8, lentThreads: 4 }

test('a CPU-hour costs the extra power per lent thread plus the wear per machine thread', () => {
  const cost = cpuHourCost(costs, share)
  // 100 W above idle over 4 threads = 25 W per thread: 0.025 kWh at 0.30.
  assert.ok(Math.abs(cost.electricity - 0.0075) < 1e-12)
  // 1000 over 4 years of hours over 8 threads.
  assert.ok(Math.abs(cost.wear - 1000 / (4 * 365.25 * 24) / 8) < 1e-12)
  assert.equal(cost.totalWei, fiatToWei(cost.total, 0.5))
  // 0.0110647... fiat at 0.5 per token is 0.0221295... HTT.
  assert.equal(formatWei(cost.totalWei).slice(0, 6), '0.0221')
})

test('break-even prices cover exactly one CPU-hour of cost in either model', () => {
  const even = breakEvenPrices(costs, share)
  const perHour = even.cpuHour.totalWei
  assert.ok(BigInt(even.linear.perCpuSecWei) * 3600n >= perHour)
  assert.ok((BigInt(even.linear.perCpuSecWei) - 1n) * 3600n < perHour)
  // A 60 s task is a sixtieth of a CPU-hour.
  assert.ok(BigInt(even.perTask.perTaskWei) * 60n >= perHour)
  assert.ok((BigInt(even.perTask.perTaskWei) - 1n) * 60n < perHour)
  assert.equal(checkPricing(even.linear, costs, share).belowCost, false)
  assert.equal(checkPricing(even.perTask, costs, share).belowCost, false)
})

test('prices below cost are flagged with a warning, prices above are not', () => {
  const even = breakEvenPrices(costs, share)
  const half = { model: 'per-task' as const, perTaskWei: (BigInt(even.perTask.perTaskWei) / 2n).toString() }
  const check = checkPricing(half, costs, share)
  assert.equal(check.belowCost, true)
  assert.ok(check.ratio > 0.45 && check.ratio < 0.55)
  assert.match(check.warning ?? '', /below cost/)
  const suggested = suggestPricing(costs, share, 'linear', 0.5)
  assert.equal(suggested.model, 'linear')
  const suggestedCheck = checkPricing(suggested, costs, share)
  assert.equal(suggestedCheck.belowCost, false)
  assert.ok(suggestedCheck.ratio >= 1.49 && suggestedCheck.ratio <= 1.51)
  assert.equal(suggestedCheck.warning, undefined)
})

test('free electricity and no hardware cost make every price profitable; a busy hour costs a CPU-hour', () => {
  const free = { ...costs, electricityPerKwh: 0, hardwareCost: 0 }
  assert.equal(cpuHourCost(free, share).totalWei, 0n)
  assert.equal(checkPricing({ model: 'per-task', perTaskWei: '0' }, free, share).belowCost, false)
  assert.equal(costOfCpuWei(3_600_000, costs, share), cpuHourCost(costs, share).totalWei)
  assert.equal(formatWei(1_500_000_000_000_000_000n), '1.5')
  assert.equal(formatWei(-2n * 10n ** 18n), '-2')
})
