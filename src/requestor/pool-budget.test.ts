/**
 * A job's pool is sized to its budget: each agreement budgeted at the dearest chosen deposit, fewer agreements when
 * all would not fit, never fewer than verification needs (the job stops with what to change), and mid-job recruits
 * only within what the budget has not locked yet.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import type { Pricing } from '../market/pricing.ts'
import { affordableMore, dearestDeposit, sizePool } from './pool-budget.ts'

const perTask = (wei: number): Pricing => ({ model: 'per-task', perTaskWei: String(wei) })
const sizing = { chosen: [perTask(10), perTask(30), perTask(20)], ranked: [perTask(10), perTask(30), perTask(20), perTask(5)], wanted: 3, replicas: 1, maxTasks: 10, plannedTasks: 4, timeoutMs: 1_000 }

test('each agreement is budgeted at the dearest deposit among the chosen offers', () => {
  assert.equal(dearestDeposit(sizing.chosen, 10, 1_000), 300n)
  assert.equal(dearestDeposit([], 10, 1_000), 0n)
})

test('without a budget, or within it, the pool is what is wanted (at most the offers chosen)', () => {
  assert.deepEqual(sizePool(sizing), { agreements: 3, dearestWei: 300n })
  assert.deepEqual(sizePool({ ...sizing, budgetWei: 900n }), { agreements: 3, dearestWei: 300n })
  assert.deepEqual(sizePool({ ...sizing, wanted: 5 }), { agreements: 3, dearestWei: 300n })
})

test('a budget that does not cover every agreement cuts the pool to what it allows', () => {
  assert.deepEqual(sizePool({ ...sizing, budgetWei: 650n }), { agreements: 2, dearestWei: 300n, cutFrom: 3 })
})

test('a budget below what verification needs stops the job, saying how much would do', () => {
  assert.throws(() => sizePool({ ...sizing, replicas: 2, budgetWei: 500n }), (error: unknown) => {
    assert.ok(isHearthError(error) && error.code === 'HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS')
    assert.match(error.shortMessage, /budget of 500 wei is too small: each agreement's deposit is up to 300 wei \(it covers 10 tasks/)
    assert.match(error.shortMessage, /and 2 are needed/)
    // At least two deposits; the work itself at the cheapest offer: 4 tasks × 2 replicas × 5 wei.
    assert.match(error.hint ?? '', /at least 600 wei \(the work itself costs about 40 wei/)
    return true
  })
})

test('mid-job, new agreements fit in what the budget has not locked', () => {
  assert.equal(affordableMore(3, 5, 100n, 0n, undefined), 3)
  assert.equal(affordableMore(3, 2, 100n, 0n, undefined), 2)
  assert.equal(affordableMore(3, 5, 100n, 800n, 1_000n), 2)
  assert.equal(affordableMore(3, 5, 100n, 1_000n, 1_000n), 0)
})
