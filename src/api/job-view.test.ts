/** A job's live view, folded from the events a map-reduce's engine emits: tasks across both batches, money, agreements. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { JobEvent } from '../requestor/events.ts'
import { createJobView } from './job-view.ts'

const events: JobEvent[] = [
  { type: 'agreement', provider: '0xa', agreementId: '0x1' },
  { type: 'escrow-opened', provider: '0xa', agreementId: '0x1', depositWei: '100', txHash: '0xopen' },
  { type: 'batch', phase: 'map', total: 2, done: 0, firstTask: 0 },
  { type: 'task-started', taskIndex: 0, provider: '0xa', reason: 'first' },
  { type: 'task-started', taskIndex: 1, provider: '0xa', reason: 'first' },
  { type: 'task-failed', taskIndex: 1, provider: '0xa', message: 'killed', willRetry: true },
  { type: 'task-started', taskIndex: 1, provider: '0xb', reason: 'retry' },
  { type: 'task-started', taskIndex: 1, provider: '0xc', reason: 'check' },
  { type: 'task-rejected', taskIndex: 1, provider: '0xc', reason: 'disagrees' },
  { type: 'task-done', taskIndex: 0, provider: '0xa', done: 1, total: 2, spentWei: '10' },
  { type: 'task-done', taskIndex: 1, provider: '0xb', done: 2, total: 2, checked: true, spentWei: '25' },
  { type: 'batch', phase: 'reduce', total: 1, done: 0, firstTask: 2 },
  { type: 'task-started', taskIndex: 2, provider: '0xa', reason: 'first' },
]

describe('the job view', () => {
  it('follows every task across batches: state, provider, attempts, retries, rejections, checks', () => {
    const view = createJobView(Date.now())
    for (const event of events) view.apply(event)
    assert.deepEqual(
      view.tasks().map((t) => [t.batch, t.index, t.state, t.provider, t.attempts, t.retries, t.rejected, t.checked]),
      [
        ['map', 0, 'done', '0xa', 1, 0, 0, false],
        ['map', 1, 'done', '0xb', 2, 1, 1, true],
        ['reduce', 2, 'running', '0xa', 1, 0, 0, false],
      ],
    )
    const progress = view.progress()
    assert.deepEqual([progress.total, progress.done, progress.running, progress.retries, progress.rejected, progress.spentWei], [3, 2, 1, 1, 1, '25'])
    assert.notEqual(progress.etaSec, null)
    assert.deepEqual(progress.agreements, [{ agreementId: '0x1', provider: '0xa', depositWei: '100', openTx: '0xopen', paidWei: null, refundedWei: null, settleTx: null }])
  })

  it('marks a task failed only when no retry follows, and records the settlement of its agreement', () => {
    const view = createJobView(Date.now())
    for (const event of events.slice(0, 3)) view.apply(event)
    view.apply({ type: 'task-started', taskIndex: 0, provider: '0xa' })
    view.apply({ type: 'task-failed', taskIndex: 0, provider: '0xa', message: 'out of memory', willRetry: false })
    view.apply({ type: 'settled', provider: '0xa', agreementId: '0x1', paidWei: '0', refundedWei: '100', txHash: '0xsettle' })
    const task = view.tasks()[0]!
    assert.deepEqual([task.state, task.lastError], ['failed', 'out of memory'])
    assert.equal(view.progress().failed, 1)
    assert.equal(view.progress().etaSec, null)
    assert.deepEqual(view.progress().agreements[0], { agreementId: '0x1', provider: '0xa', depositWei: '100', openTx: '0xopen', paidWei: '0', refundedWei: '100', settleTx: '0xsettle' })
  })
})
