/**
 * Admission across running tasks: the owner's memory and disk bounds (busy now, or never room for a task that alone
 * asks more than is lent), child processes bounded by the threads lent, room given back when a task ends, and every
 * running task aborted when they are handed back.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import type { RunTaskRequest } from '../exec/task-protocols.ts'
import { createTaskAdmission } from './task-admission.ts'

const mib = 1024 * 1024

function task(changes: Partial<RunTaskRequest> = {}): RunTaskRequest {
  return {
    agreementId: `0x${'ab'.repeat(32)}`, jobId: 'job-1', taskIndex: 0, activityId: 'activity-1', runtime: 'wasi', args: [], env: {},
    inputs: [{ path: '/in/x', contentId: `sha256:${'0'.repeat(64)}`, sizeBytes: 10 * mib, dataBase64: '' }],
    outputs: ['/out/y'], timeoutMs: 10_000, maxMemoryBytes: 100 * mib, maxOutputBytes: 10 * mib, ...changes,
  }
}

function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn()
  } catch (error) {
    assert.ok(isHearthError(error), String(error))
    return { code: error.code, message: error.shortMessage }
  }
  assert.fail('expected a refusal')
}

test('tasks are admitted while their memory fits, refused as busy past it, and admitted again once one ends', () => {
  const admission = createTaskAdmission({ threads: 4, admission: { maxTotalMemoryBytes: 250 * mib } })
  const first = admission.admit(task(), new AbortController())
  admission.admit(task(), new AbortController())
  assert.deepEqual(admission.running(), { tasks: 2, childTasks: 0, memoryBytes: 200 * mib, diskBytes: 40 * mib })
  const busy = refusal(() => admission.admit(task(), new AbortController()))
  assert.equal(busy.code, 'HEARTH_ERR_PROVIDER_BUSY')
  assert.match(busy.message, /memory: 209715200 bytes in use \+ 104857600 asked > 262144000 lent/)
  first()
  admission.admit(task(), new AbortController())
  assert.equal(admission.running().tasks, 2)
})

test('a task asking more than all that is lent is refused as too small, not busy', () => {
  const admission = createTaskAdmission({ threads: 4, admission: { maxTotalMemoryBytes: 1024 * mib, maxTotalDiskBytes: 50 * mib } })
  const tooBig = refusal(() => admission.admit(task({ maxOutputBytes: 60 * mib }), new AbortController()))
  assert.equal(tooBig.code, 'HEARTH_ERR_PROVIDER_TOO_SMALL')
  assert.match(tooBig.message, /disk: 0 bytes in use \+ 73400320 asked > 52428800 lent/)
  assert.equal(admission.running().tasks, 0)
})

test('programs and containers run no more at once than the threads lent; wasi tasks do not count', () => {
  const admission = createTaskAdmission({ threads: 2, admission: undefined })
  admission.admit(task({ runtime: 'native', program: 'render' }), new AbortController())
  admission.admit(task({ runtime: 'docker', imageId: `sha256:${'1'.repeat(64)}` }), new AbortController())
  admission.admit(task(), new AbortController())
  const busy = refusal(() => admission.admit(task({ runtime: 'native', program: 'render' }), new AbortController()))
  assert.equal(busy.code, 'HEARTH_ERR_PROVIDER_BUSY')
  assert.match(busy.message, /2 of its 2 threads run tasks/)
  assert.deepEqual(admission.running(), { tasks: 3, childTasks: 2, memoryBytes: 300 * mib, diskBytes: 60 * mib })
})

test('handing back aborts every running task, and ended tasks are no longer reached', () => {
  const admission = createTaskAdmission({ threads: 2, admission: undefined })
  const kept = new AbortController()
  const ended = new AbortController()
  admission.admit(task(), kept)
  admission.admit(task(), ended)()
  admission.handBackAll()
  assert.equal(kept.signal.aborted, true)
  assert.equal(ended.signal.aborted, false)
})
