import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backingNeededWei, escrowAheadWeiFor, openingDepositWei, topUpDueWei } from './escrow-ahead.ts'
import type { Pricing } from './pricing.ts'

// 1 wei a second of uptime and 1 wei a CPU second: an hour-long task costs at most 7,200 wei plus its start.
const pricing: Pricing = { model: 'linear', startWei: '100', perCpuSecWei: '1', perDurationSecWei: '1' }
const ahead = escrowAheadWeiFor(pricing, 3_600_000)
const day = { depositWei: (100n + 26n * 7_200n).toString(), escrowAheadWei: ahead.toString(), pricing }

test('one task at its longest ahead: an hour of uptime and CPU, and the start', () => {
  assert.equal(ahead, 7_300n)
})

test('an escrow kept ahead opens with twice the amount, never more than the agreed deposit; one filled up front opens full', () => {
  assert.equal(openingDepositWei(day), 2n * ahead)
  assert.equal(openingDepositWei({ ...day, depositWei: '10000' }), 10_000n)
  assert.equal(openingDepositWei({ depositWei: day.depositWei }), BigInt(day.depositWei))
})

test('the provider works while the escrow holds the work delivered and half the amount ahead of it, up to the deposit', () => {
  assert.equal(backingNeededWei(day, { tasks: 0, cpuMs: 0, durationMs: 0 }), ahead / 2n)
  const twoHours = { tasks: 1, cpuMs: 600_000, durationMs: 7_200_000 }
  assert.equal(backingNeededWei(day, twoHours), 100n + 600n + 7_200n + ahead / 2n)
  assert.equal(backingNeededWei(day, { tasks: 1, cpuMs: 0, durationMs: 1_000_000_000 }), BigInt(day.depositWei))
  assert.equal(backingNeededWei({ depositWei: '5', pricing }, { tasks: 0, cpuMs: 0, durationMs: 0 }), 5n)
})

test('the requestor tops up once less than one and a half times the amount is left ahead, back to two and a half', () => {
  const opened = openingDepositWei(day)
  assert.equal(topUpDueWei(day, opened, 0n), 0n)
  assert.equal(topUpDueWei(day, opened, ahead / 2n), 0n)
  const owed = ahead / 2n + 1n
  assert.equal(topUpDueWei(day, opened, owed), owed + (5n * ahead) / 2n - opened)
  // Between that and the provider's stop lies the amount's worth of work.
  assert.equal(opened - owed - backingNeededWei(day, { tasks: 0, cpuMs: 0, durationMs: 0 }) >= ahead - 1n, true)
  // Never past the agreed deposit; nothing once it holds it, nor for an escrow filled up front.
  const nearEnd = BigInt(day.depositWei) - 100n
  assert.equal(topUpDueWei(day, nearEnd, nearEnd), 100n)
  assert.equal(topUpDueWei(day, BigInt(day.depositWei), BigInt(day.depositWei)), 0n)
  assert.equal(topUpDueWei({ depositWei: day.depositWei }, 0n, 1_000n), 0n)
})
