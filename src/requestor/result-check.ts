/**
 * Is a provider's signed result an answer to what was asked? Before any verification compares it with other results,
 * a result must name its task, be computed for the exact request, return only the outputs asked for (each matching its
 * hash) within the output limit, and carry metering that fits what this requestor saw. Also here: a result as the
 * task outcome the engine hands on.
 */
import type { Address, Hex } from 'viem'
import { HearthError } from '../errors.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import type { RunTaskRequest, TaskResult } from '../exec/task-protocols.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import type { TaskOutcome } from './task-runner.ts'

/**
 * Throws, naming every problem, when `result` does not answer `request`: HEARTH_ERR_PAYMENT_METERING_REFUSED when its
 * metering alone is wrong, HEARTH_ERR_EXEC_RESULT_INVALID when anything else is.
 */
export function checkResult(result: TaskResult, request: RunTaskRequest, roundTripMs: number): void {
  const problems: string[] = []
  let meteringRefused = false
  // Metering is billed under linear pricing: it must fit what this requestor saw. A task cannot have run longer
  // than the round trip that carried it, nor past its deadline, nor used more CPU than its one core in that time:
  // exactly so for a wasi guest (one thread); native and docker runs are held to one core by a cgroup quota, which
  // the kernel enforces per 100 ms period, so a short burst of several processes may pass it by up to one period.
  const { durationMs, cpuMs } = result.usage
  const cpuSlackMs = request.runtime === 'wasi' ? 1 : 100
  if (durationMs > roundTripMs + 1 || durationMs > request.timeoutMs + 1000 || cpuMs > durationMs + cpuSlackMs) {
    problems.push(`its metering (${durationMs.toFixed(1)} ms run, ${cpuMs.toFixed(1)} ms CPU) does not fit a ${roundTripMs.toFixed(1)} ms round trip`)
    meteringRefused = true
  }
  if (result.agreementId !== request.agreementId || result.taskIndex !== request.taskIndex || result.activityId !== request.activityId) {
    problems.push('the result names another task')
  }
  if (result.requestHash !== hashCanonical(request)) problems.push('the result was computed for a different request')
  // What comes back is bounded as in the sandbox: the output limit, plus the inputs (an output may be an input the
  // program left as it was, which the sandbox does not count).
  const returnedBytes = result.outputs.reduce((sum, output) => sum + output.sizeBytes, 0) + Buffer.byteLength(result.stdoutBase64, 'base64') + Buffer.byteLength(result.stderrBase64, 'base64')
  const allowedBytes = request.maxOutputBytes + request.inputs.reduce((sum, input) => sum + input.sizeBytes, 0)
  if (returnedBytes > allowedBytes) problems.push(`it returns ${returnedBytes} bytes, more than the task's output limit allows (${allowedBytes})`)
  const wanted = new Set(request.outputs)
  for (const output of result.outputs) {
    const bytes = Buffer.from(output.dataBase64, 'base64')
    if (!wanted.has(output.path)) problems.push(`unrequested output ${output.path}`)
    if (bytes.length !== output.sizeBytes || sha256Hex(bytes) !== output.contentId) problems.push(`output ${output.path} does not match its hash`)
  }
  if (problems.length > 0) {
    const code = meteringRefused && problems.length === 1 ? 'HEARTH_ERR_PAYMENT_METERING_REFUSED' : 'HEARTH_ERR_EXEC_RESULT_INVALID'
    throw new HearthError(code, `result of task ${request.taskIndex} refused: ${problems.join('; ')}`)
  }
}

/** A provider's result as a task outcome: outputs, stdout and stderr decoded. */
export function outcomeOfResult(result: TaskResult, taskIndex: number, provider: string, agreementId: string, roundTripMs: number): TaskOutcome {
  return {
    taskIndex,
    provider: provider as Address,
    agreementId: agreementId as Hex,
    exitCode: result.exitCode,
    outputs: result.outputs.map((o) => ({ path: o.path, data: Buffer.from(o.dataBase64, 'base64') })),
    missingOutputs: result.missingOutputs,
    stdout: Buffer.from(result.stdoutBase64, 'base64'),
    stderr: Buffer.from(result.stderrBase64, 'base64'),
    usage: result.usage,
    roundTripMs,
    attempts: 0,
  }
}
