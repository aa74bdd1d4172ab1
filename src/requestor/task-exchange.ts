/**
 * The task exchange of one batch: a task, or several in one signed exchange, sent to a slot's provider, and each
 * answer judged on its own: a result is checked against its request (result-check.ts), perhaps spot-checked, and
 * turned into an attempt on its way to a verdict; a failure is put down to whoever caused it (attempt-failure.ts).
 * Dispatch decides which task goes where, when it is retried, and when a straggler runs again elsewhere.
 */
import { randomUUID } from 'node:crypto'
import { HearthError } from '../errors.ts'
import { runTaskProtocol, runTasksProtocol, type BatchAnswer, type RunTaskRequest, type TaskResult } from '../exec/task-protocols.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import type { Host } from '../net/host.ts'
import { judgeFailure, type FailureJudgeInit } from './attempt-failure.ts'
import type { Attempt } from './dispatch.ts'
import type { JobSpec } from './job-types.ts'
import { checkResult, outcomeOfResult } from './result-check.ts'
import type { Delivered, Slot } from './slot.ts'
import type { TaskSpec } from './task-runner.ts'
import { describeOutcome, resultKey, type SpotCheckFinding } from './verification.ts'

/** Slack on a task's network deadline beyond its run deadline: transfer and signing. */
export const taskNetworkSlackMs = 30_000

/** Metered run times kept for the median: the latest this many. */
const computeRing = 256

export interface TaskExchangeInit {
  host: Host
  spec: JobSpec
  jobId: string
  /** The job's index of the batch's first task: indices continue from batch to batch. */
  base: number
  tasks: readonly TaskSpec[]
  /** The batch's program, served to the providers. */
  packageId: string | undefined
  /** How failures are judged (the reputation book, whether this node is up). */
  judge: FailureJudgeInit
  /** A further check of a result that passed its own (a spot check); `index` is the batch's. */
  spotCheck?(slot: Slot, index: number, key: string): Promise<SpotCheckFinding>
}

export interface TaskExchange {
  /** Runs one task of the batch (`index` is the batch's) on a slot. Never throws: failures are attempts too. */
  attempt(slot: Slot, index: number, signal: AbortSignal): Promise<Attempt<Delivered>>
  /** Several tasks in one signed exchange; each answer is then judged as if it came alone. Never throws. */
  attemptMany(slot: Slot, indices: number[], signal: AbortSignal): Promise<Attempt<Delivered>[]>
  /** The median of the latest tasks' run times as the providers metered them; undefined before any. */
  medianComputeMs(): number | undefined
}

interface Exchange extends TaskExchangeInit {
  /** The latest tasks' run times as the providers metered them (a ring of `computeRing`). */
  computeSamples: number[]
  computeCount: number
}

export function createTaskExchange(init: TaskExchangeInit): TaskExchange {
  const exchange: Exchange = { ...init, computeSamples: [], computeCount: 0 }
  return {
    attempt: (slot, index, signal) => attempt(exchange, slot, index, signal),
    attemptMany: (slot, indices, signal) => attemptMany(exchange, slot, indices, signal),
    medianComputeMs: () => medianOf(exchange.computeSamples),
  }
}

function buildRequest(exchange: Exchange, slot: Slot, index: number): RunTaskRequest {
  const { spec } = exchange
  const task = exchange.tasks[index]!
  return {
    agreementId: slot.agreement.id,
    jobId: exchange.jobId,
    taskIndex: exchange.base + index,
    activityId: randomUUID(),
    runtime: spec.runtime,
    ...(exchange.packageId === undefined ? {} : { packageId: exchange.packageId }),
    ...(spec.program === undefined ? {} : { program: spec.program }),
    ...(spec.imageId === undefined ? {} : { imageId: spec.imageId }),
    args: task.args,
    env: task.env,
    inputs: task.inputs.map((input) => ({
      path: input.path,
      contentId: sha256Hex(input.data),
      sizeBytes: input.data.length,
      dataBase64: Buffer.from(input.data).toString('base64'),
    })),
    outputs: task.outputs,
    timeoutMs: spec.timeoutMs,
    maxMemoryBytes: spec.maxMemoryBytes,
    maxOutputBytes: spec.maxOutputBytes,
  }
}

/** A provider's signed result for one task, checked (and perhaps spot-checked) on its way to a verdict. */
async function accept(exchange: Exchange, slot: Slot, index: number, request: RunTaskRequest, result: TaskResult, envelope: unknown, roundTripMs: number): Promise<Attempt<Delivered>> {
  checkResult(result, request, roundTripMs)
  if (result.debitNote !== undefined) slot.pendingNote = result.debitNote
  const outcome = outcomeOfResult(result, index, slot.offer.provider, slot.agreement.id, roundTripMs)
  const key = resultKey(outcome)
  if (exchange.computeSamples.length < computeRing) exchange.computeSamples.push(result.usage.durationMs)
  else exchange.computeSamples[exchange.computeCount % computeRing] = result.usage.durationMs
  exchange.computeCount++
  if (exchange.spotCheck !== undefined && (await exchange.spotCheck(slot, index, key)) === 'contradicted') {
    return { ok: false, message: `${slot.provider} returned a result that a local recompute contradicts`, taskAtFault: false, providerAtFault: true }
  }
  return { ok: true, result: { slot, outcome, envelope, usage: result.usage }, key, summary: describeOutcome(outcome), elapsedMs: roundTripMs }
}

async function attempt(exchange: Exchange, slot: Slot, index: number, signal: AbortSignal): Promise<Attempt<Delivered>> {
  const request = buildRequest(exchange, slot, index)
  const sentAt = performance.now()
  try {
    const answer = await exchange.host.exchange(slot.peer, runTaskProtocol, request, { timeoutMs: exchange.spec.timeoutMs + taskNetworkSlackMs, signal })
    return await accept(exchange, slot, index, request, answer.response, answer.envelope, performance.now() - sentAt)
  } catch (error) {
    return judgeFailure(exchange.judge, slot, error, signal)
  }
}

async function attemptMany(exchange: Exchange, slot: Slot, indices: number[], signal: AbortSignal): Promise<Attempt<Delivered>[]> {
  const requests = indices.map((index) => buildRequest(exchange, slot, index))
  const sentAt = performance.now()
  let answered: { response: { answers: BatchAnswer[] }; envelope: unknown }
  try {
    answered = await exchange.host.exchange(slot.peer, runTasksProtocol, { tasks: requests }, { timeoutMs: exchange.spec.timeoutMs * indices.length + taskNetworkSlackMs, signal })
    if (answered.response.answers.length !== requests.length) {
      throw new HearthError('HEARTH_ERR_EXEC_RESULT_INVALID', `the provider answered ${answered.response.answers.length} of ${requests.length} tasks`)
    }
  } catch (error) {
    const failed = await judgeFailure(exchange.judge, slot, error, signal)
    return indices.map(() => failed)
  }
  const roundTripMs = performance.now() - sentAt
  return Promise.all(
    answered.response.answers.map(async (answer, i) => {
      if (!answer.ok) {
        const remote = new HearthError('HEARTH_ERR_NET_REMOTE', answer.message, { details: { remoteCode: answer.code, remoteMessage: answer.message } })
        return judgeFailure(exchange.judge, slot, remote, signal)
      }
      // The batch's signed answer is what binds this result: it is kept with it.
      return accept(exchange, slot, indices[i]!, requests[i]!, answer.result, { batch: answered.envelope, index: i }, roundTripMs).catch((error: unknown) => judgeFailure(exchange.judge, slot, error, signal))
    }),
  )
}

function medianOf(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}
