/**
 * A provider's result must answer the request it claims to: its task, the exact request (by hash), only the outputs
 * asked for and each matching its hash, within the output limit, with metering that fits the round trip. Every
 * problem is named in one refusal.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError, type ErrorCode } from '../errors.ts'
import type { RunTaskRequest, TaskResult } from '../exec/task-protocols.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import { checkResult, outcomeOfResult } from './result-check.ts'

const agreementId = `0x${'ab'.repeat(32)}`
const input = Buffer.from('some input')
const request: RunTaskRequest = {
  agreementId, jobId: 'job-1', taskIndex: 4, activityId: 'activity-1', runtime: 'wasi', args: ['--out', '/out/a.txt'], env: {},
  inputs: [{ path: '/in/x.txt', contentId: sha256Hex(input), sizeBytes: input.length, dataBase64: input.toString('base64') }],
  outputs: ['/out/a.txt'], timeoutMs: 10_000, maxMemoryBytes: 1 << 24, maxOutputBytes: 64,
}

function output(path: string, data: Buffer) {
  return { path, contentId: sha256Hex(data), sizeBytes: data.length, dataBase64: data.toString('base64') }
}

function answer(changes: Partial<TaskResult> = {}): TaskResult {
  return {
    agreementId, jobId: 'job-1', taskIndex: 4, activityId: 'activity-1', requestHash: hashCanonical(request) as `0x${string}`, exitCode: 0,
    outputs: [output('/out/a.txt', Buffer.from('result'))], missingOutputs: [], stdoutBase64: Buffer.from('ok').toString('base64'), stderrBase64: '',
    usage: { durationMs: 40, cpuMs: 35 }, ...changes,
  }
}

/** The refusal's message; its code is the result's (or, for metering alone, the metering's). */
function refusal(result: TaskResult, code: ErrorCode = 'HEARTH_ERR_EXEC_RESULT_INVALID'): string {
  try {
    checkResult(result, request, 100)
  } catch (error) {
    assert.ok(isHearthError(error, code), `expected ${code}, got ${String(error)}`)
    return error.shortMessage
  }
  assert.fail('the result was accepted')
}

test('a result that answers its request passes, and becomes the outcome of its task', () => {
  const result = answer()
  checkResult(result, request, 100)
  const outcome = outcomeOfResult(result, 2, '0xprovider', agreementId, 100)
  assert.equal(outcome.taskIndex, 2)
  assert.equal(Buffer.from(outcome.outputs[0]!.data).toString(), 'result')
  assert.equal(Buffer.from(outcome.stdout).toString(), 'ok')
  assert.equal(outcome.roundTripMs, 100)
  assert.equal(outcome.attempts, 0)
})

test('metering that does not fit the round trip, or more CPU than one core, is refused', () => {
  assert.match(refusal(answer({ usage: { durationMs: 150, cpuMs: 10 } }), 'HEARTH_ERR_PAYMENT_METERING_REFUSED'), /does not fit a 100\.0 ms round trip/)
  assert.match(refusal(answer({ usage: { durationMs: 40, cpuMs: 80 } }), 'HEARTH_ERR_PAYMENT_METERING_REFUSED'), /its metering/)
  // Metering among other problems: the result itself is wrong, and the refusal names both.
  const both = refusal(answer({ usage: { durationMs: 150, cpuMs: 10 }, taskIndex: 5 }))
  assert.match(both, /its metering/)
  assert.match(both, /names another task/)
})

test('a result for another task or another request is refused', () => {
  assert.match(refusal(answer({ taskIndex: 5 })), /names another task/)
  assert.match(refusal(answer({ requestHash: `0x${'00'.repeat(32)}` })), /computed for a different request/)
})

test('unrequested outputs, outputs that do not match their hash, and too many bytes are refused, each named', () => {
  const tampered = { ...output('/out/a.txt', Buffer.from('result')), dataBase64: Buffer.from('other!').toString('base64') }
  const message = refusal(answer({ outputs: [tampered, output('/out/extra.txt', Buffer.from('x'))] }))
  assert.match(message, /output \/out\/a\.txt does not match its hash/)
  assert.match(message, /unrequested output \/out\/extra\.txt/)
  // The limit is the output limit plus the inputs' size: an output may be an input left as it was.
  const big = Buffer.alloc(64 + input.length + 1)
  assert.match(refusal(answer({ outputs: [output('/out/a.txt', big)], stdoutBase64: '' })), /more than the task's output limit allows \(74\)/)
  checkResult(answer({ outputs: [output('/out/a.txt', Buffer.alloc(64 + input.length))], stdoutBase64: '' }), request, 100)
})
