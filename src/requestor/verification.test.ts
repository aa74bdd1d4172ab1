/**
 * Verification settings and result keys: replicas default to one with adaptive checks, spot checks need a local wasi
 * runtime, and two results agree when their exit code and outputs do (stdout counts only without output files).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import type { JobSpec } from './job-types.ts'
import type { TaskOutcome } from './task-runner.ts'
import { describeOutcome, resultKey, verificationPlan } from './verification.ts'

const spec: JobSpec = { name: 'v', runtime: 'wasi', tasks: [], providers: 1, maxPricePerTaskWei: 1n, timeoutMs: 1_000, maxMemoryBytes: 1 << 20, maxOutputBytes: 1 << 10 }

function outcome(changes: Partial<TaskOutcome> = {}): TaskOutcome {
  return {
    taskIndex: 0, provider: '0x0000000000000000000000000000000000000001', agreementId: `0x${'00'.repeat(32)}`, exitCode: 0,
    outputs: [{ path: '/out/a.txt', data: Buffer.from('same') }], missingOutputs: [], stdout: Buffer.from('log one'), stderr: Buffer.alloc(0),
    usage: { durationMs: 1, cpuMs: 1 }, roundTripMs: 2, attempts: 1, ...changes,
  }
}

test('the plan defaults to one result per task with adaptive checks, and fixed redundancy turns adaptive checks off', () => {
  assert.deepEqual(verificationPlan(spec, undefined), { replicas: 1, adaptive: true, spotCheckRate: 0 })
  assert.deepEqual(verificationPlan({ ...spec, verification: { replicas: 3 } }, undefined), { replicas: 3, adaptive: false, spotCheckRate: 0 })
})

test('spot checks are refused where this machine cannot recompute: no local runtime, or not a wasi job', async () => {
  const refused = (error: unknown): boolean => isHearthError(error) && error.code === 'HEARTH_ERR_JOB_INVALID'
  assert.throws(() => verificationPlan({ ...spec, verification: { spotCheckRate: 0.5 } }, undefined), refused)
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  try {
    assert.throws(() => verificationPlan({ ...spec, runtime: 'native', verification: { spotCheckRate: 0.5 } }, runtime), refused)
    assert.equal(verificationPlan({ ...spec, verification: { spotCheckRate: 0.5 } }, runtime).spotCheckRate, 0.5)
  } finally {
    await runtime.close()
  }
})

test('results agree on exit code and outputs; stdout counts only when there are no output files', () => {
  assert.equal(resultKey(outcome()), resultKey(outcome({ stdout: Buffer.from('log two'), provider: '0x0000000000000000000000000000000000000002' })))
  assert.notEqual(resultKey(outcome()), resultKey(outcome({ outputs: [{ path: '/out/a.txt', data: Buffer.from('different') }] })))
  assert.notEqual(resultKey(outcome()), resultKey(outcome({ exitCode: 1 })))
  assert.notEqual(resultKey(outcome({ outputs: [] })), resultKey(outcome({ outputs: [], stdout: Buffer.from('log two') })))
  assert.match(describeOutcome(outcome({ missingOutputs: ['/out/b.txt'] })), /^exit 0, \/out\/a\.txt [0-9a-z:]+…, \/out\/b\.txt missing$/)
})
