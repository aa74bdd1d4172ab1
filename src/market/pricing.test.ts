import assert from 'node:assert/strict'
import { test } from 'node:test'
import { addUsage, costWei, coversPricing, maxCostWei, maxTaskCostWei, noUsage, pricingProperties, pricingSchema, type Pricing } from './pricing.ts'

const perTask: Pricing = { model: 'per-task', perTaskWei: '1000' }
// 5 wei start, 2000 wei per CPU second, 1000 wei per second of run time.
const linear: Pricing = { model: 'linear', startWei: '5', perCpuSecWei: '2000', perDurationSecWei: '1000' }

test('per-task pricing charges each accepted task, whatever it metered', () => {
  assert.equal(costWei(perTask, { tasks: 3, cpuMs: 99_999, durationMs: 99_999 }), 3000n)
  assert.equal(costWei(perTask, noUsage), 0n)
})

test('linear pricing charges the start once, then CPU and run time, rounded up to the wei', () => {
  assert.equal(costWei(linear, noUsage), 0n)
  // 1.5 s CPU -> 3000 wei, 2 s run -> 2000 wei, plus the start.
  assert.equal(costWei(linear, { tasks: 1, cpuMs: 1500, durationMs: 2000 }), 5005n)
  // 0.3 ms CPU is 0.6 wei: rounded up to 1; 0.3 ms run is 0.3 wei: rounded up to 1.
  assert.equal(costWei(linear, { tasks: 1, cpuMs: 0.3, durationMs: 0.3 }), 7n)
  const twice = addUsage({ tasks: 1, cpuMs: 1000, durationMs: 1000 }, { tasks: 1, cpuMs: 500, durationMs: 1000 })
  assert.equal(costWei(linear, twice), 5n + 3000n + 2000n)
})

test('bounds for caps and deposits cover a task that runs to its deadline on one busy core', () => {
  assert.equal(maxTaskCostWei(perTask, 60_000), 1000n)
  assert.equal(maxTaskCostWei(linear, 10_000), 5n + 20_000n + 10_000n)
  assert.equal(maxCostWei(perTask, 4, 10_000), 4000n)
  // The start is charged once per agreement, not per task.
  assert.equal(maxCostWei(linear, 4, 10_000), 5n + 4n * 30_000n)
  assert.ok(costWei(linear, { tasks: 4, cpuMs: 40_000, durationMs: 40_000 }) <= maxCostWei(linear, 4, 10_000))
})

test('a proposal covers an offer only with the same model and no price below it', () => {
  assert.equal(coversPricing({ model: 'per-task', perTaskWei: '1001' }, perTask), true)
  assert.equal(coversPricing({ model: 'per-task', perTaskWei: '999' }, perTask), false)
  assert.equal(coversPricing(linear, perTask), false)
  assert.equal(coversPricing({ ...linear, perCpuSecWei: '1999' }, linear), false)
  assert.equal(coversPricing({ ...linear, startWei: '6' }, linear), true)
})

test('offers state Golem\'s linear coefficients and usage vector, and the schema refuses malformed prices', () => {
  assert.deepEqual(pricingProperties({ model: 'linear', startWei: '1000000000000000000', perCpuSecWei: '500000000000000000', perDurationSecWei: '0' }), {
    'golem.com.pricing.model': 'linear',
    'golem.com.pricing.model.linear.coeffs': [0.5, 0, 1],
    'golem.com.usage.vector': ['golem.usage.cpu_sec', 'golem.usage.duration_sec'],
  })
  assert.equal(pricingSchema.safeParse({ model: 'linear', startWei: '-1', perCpuSecWei: '1', perDurationSecWei: '1' }).success, false)
  assert.equal(pricingSchema.safeParse({ model: 'per-hour', perTaskWei: '1' }).success, false)
})

test('summed usage is the same in any order, so both sides bill the same wei', () => {
  const linear = { model: 'linear' as const, startWei: '100', perCpuSecWei: '1000000007', perDurationSecWei: '999999937' }
  // metering as runtimes report it: fractional milliseconds
  const samples = Array.from({ length: 200 }, (_, i) => ({ tasks: 1, cpuMs: ((i * 7919) % 1000) / 97 + 0.1 / 3, durationMs: ((i * 104729) % 1000) / 89 + 0.2 / 7 }))
  const forward = samples.reduce(addUsage, noUsage)
  const shuffled = [...samples].sort((a, b) => (a.cpuMs * 31) % 7 - (b.cpuMs * 31) % 7)
  const backward = shuffled.reduceRight(addUsage, noUsage)
  assert.deepEqual(backward, forward)
  assert.equal(costWei(linear, backward), costWei(linear, forward))
  // 0.1 + 0.2 + 0.3 is 0.6000000000000001 one way and 0.6 the other: summed as floats and then rounded up to the
  // microsecond, the two orders were billed 1 µs apart
  const tenths = [0.1, 0.2, 0.3].map((ms) => ({ tasks: 1, cpuMs: ms, durationMs: ms }))
  assert.equal(costWei(linear, tenths.reduce(addUsage, noUsage)), costWei(linear, [...tenths].reverse().reduce(addUsage, noUsage)))
  assert.equal(tenths.reduce(addUsage, noUsage).cpuMs, 0.6)
  // a single term is billed rounded up to the microsecond, as before
  assert.equal(costWei(linear, { tasks: 1, cpuMs: 0.0005, durationMs: 0 }), 100n + 1001n)
})

test('time billed without a task costs the start price and the time, as services and running activities are billed', () => {
  const pricing = { model: 'linear' as const, startWei: '100', perCpuSecWei: '0', perDurationSecWei: '1000' }
  assert.equal(costWei(pricing, { tasks: 0, cpuMs: 0, durationMs: 0 }), 0n)
  assert.equal(costWei(pricing, { tasks: 0, cpuMs: 0, durationMs: 3_600_000 }), 100n + 3_600_000n)
  assert.equal(costWei(pricing, { tasks: 1, cpuMs: 0, durationMs: 3_600_000 }), 100n + 3_600_000n)
  // Per-task prices charge tasks only.
  assert.equal(costWei({ model: 'per-task', perTaskWei: '7' }, { tasks: 0, cpuMs: 5, durationMs: 5 }), 0n)
})
