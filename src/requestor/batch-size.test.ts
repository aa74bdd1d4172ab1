import assert from 'node:assert/strict'
import { test } from 'node:test'
import { maxTasksPerBatch } from '../exec/task-protocols.ts'
import { batchSizeFor } from './batch-size.ts'

test('a batch holds about 20 ms of compute, one task until a first is metered', () => {
  assert.equal(batchSizeFor(undefined, 2, 32), 1)
  assert.equal(batchSizeFor(5, 2, undefined), 4)
  assert.equal(batchSizeFor(0.001, 2, undefined), maxTasksPerBatch)
  assert.equal(batchSizeFor(500, 2, 32), 1)
})

test("a provider's workers together never send more than half its cap on unpaid work at once", () => {
  // No-op tasks would fill 64-task batches; a provider that takes 32 unpaid tasks with 2 workers gets 8 per batch.
  assert.equal(batchSizeFor(0.01, 2, 32), 8)
  for (const [workers, cap] of [[1, 32], [3, 32], [9, 32], [2, 4], [4, 1000]] as const) {
    const size = batchSizeFor(0.01, workers, cap)
    assert.ok(size >= 1 && (size * workers * 2 <= cap || size === 1), `${workers} workers, cap ${cap}: ${size}`)
  }
  // A cap that is not a positive whole number (a hostile or old offer) changes nothing.
  for (const cap of [0, -5, 'many', 1.5, null]) assert.equal(batchSizeFor(0.01, 2, cap), maxTasksPerBatch)
})
