/**
 * One batch of an open job's tasks over its pool of slots: dispatch (dispatch.ts) schedules them, the task exchange
 * (task-exchange.ts) carries them to providers, and each final verdict is credited here: rejected results held
 * against their providers, accepted ones paid (the provider's latest debit note answered) and stored, and the job's
 * figures and progress events kept.
 */
import type { Store } from '../store/store.ts'
import type { Host } from '../net/host.ts'
import { batchSizeFor } from './batch-size.ts'
import { dispatch, type Verdict } from './dispatch.ts'
import type { JobEventListener } from './events.ts'
import type { BatchOutcome, JobFigures, JobSpec } from './job-types.ts'
import type { ReputationBook } from './reputation.ts'
import { answerDebitNote, type Delivered, type Slot } from './slot.ts'
import { createTaskExchange, type TaskExchangeInit } from './task-exchange.ts'
import type { TaskOutcome, TaskSpec } from './task-runner.ts'
import type { SpotChecker, VerificationPlan } from './verification.ts'

/** What every batch of an open job shares. */
export interface BatchRunnerInit {
  host: Host
  store: Store
  reputation?: ReputationBook
  spec: JobSpec
  jobId: string
  emit: JobEventListener
  signal?: AbortSignal
  /** The job's pool; dispatch adds the slots `recruit` returns to it. */
  slots: Slot[]
  /** Agreements the job wanted: dispatch recruits when fewer are present. */
  poolSize: number
  recruit(missing: number, signal: AbortSignal): Promise<Slot[]>
  /** Results an earlier run of the job accepted, by the job's task index. */
  resumed: ReadonlyMap<number, TaskOutcome>
  plan: VerificationPlan
  /** The job's figures, counted here. */
  figures: JobFigures
  random: () => number
  spotChecker?: SpotChecker
  /** Misbehaviour for the devnet's failure tests: leave debit notes unanswered. */
  ignoreDebitNotes: boolean
  /** What accepted results have cost so far, for progress events. */
  spentWei(): bigint
}

export interface Batch {
  /** The job's index of the first task. */
  base: number
  tasks: TaskSpec[]
  phase: string
  /** The batch's program as served, and its bytes when the batch has its own (for spot checks). */
  packageId: string | undefined
  package?: Uint8Array
}

/** A batch's results as they come. */
interface Progress {
  batch: Batch
  results: (TaskOutcome | undefined)[]
  done: number
  /** Tasks (batch indices) whose result a local recompute confirmed. */
  spotChecked: Set<number>
}

/** Runs one batch of tasks over the pool; task indices continue from batch to batch, so a job's results stay apart. */
export async function runBatch(init: BatchRunnerInit, batch: Batch): Promise<BatchOutcome> {
  const { spec, plan, reputation, emit } = init
  const { base, tasks, phase } = batch
  const total = tasks.length
  const results = tasks.map((_, i) => init.resumed.get(base + i))
  const progress: Progress = { batch, results, done: results.filter((r) => r !== undefined).length, spotChecked: new Set() }
  emit({ type: 'phase', message: `running ${total} ${phase}${progress.done > 0 ? ` (${progress.done} done before)` : ''}` })
  emit({ type: 'batch', phase, total, done: progress.done, firstTask: base })
  const exchange = createTaskExchange(exchangeInit(init, progress))

  const outcome = await dispatch<Delivered>({
    taskCount: total,
    slots: init.slots,
    poolSize: init.poolSize,
    recruit: (missing, signal) => init.recruit(missing, signal),
    done: results.flatMap((r, i) => (r === undefined ? [] : [i])),
    replicas: plan.replicas,
    ...(spec.verification?.quorum === undefined ? {} : { quorum: spec.verification.quorum }),
    ...(plan.adaptive && plan.replicas === 1 && reputation !== undefined ? { checkProbability: (provider: string) => reputation.checkProbability(provider), random: init.random } : {}),
    maxFailures: spec.maxAttempts ?? 3,
    ...(spec.awayLimitMs === undefined ? {} : { comeback: { giveUpMs: spec.awayLimitMs } }),
    ...(init.signal === undefined ? {} : { signal: init.signal }),
    run: (slot, index, signal) => exchange.attempt(slot as Slot, index, signal),
    runBatch: (slot, indices, signal) => exchange.attemptMany(slot as Slot, indices, signal),
    // Tasks of a few milliseconds go several to a request, so that its fixed cost (a stream, two signatures) is
    // shared; anything slower goes alone, where batching would only delay results.
    batchSize: (slot) => batchSizeFor(exchange.medianComputeMs(), slot.capacity, (slot as Slot).offer.properties['hearth.payment.maxUnpaidTasks']),
    onStarted: (index, slot, reason) => emit({ type: 'task-started', taskIndex: base + index, provider: slot.provider, reason }),
    onAttemptFailed: (index, slot, failure, willRetry) => emit({ type: 'task-failed', taskIndex: base + index, provider: slot.provider, message: failure.message, willRetry }),
    onVerdict: (verdict) => creditVerdict(init, progress, verdict),
  })
  for (const key of Object.keys(outcome.figures) as (keyof typeof outcome.figures)[]) init.figures[key] += outcome.figures[key]
  const failures = [...outcome.failed.entries()].sort((a, b) => a[0] - b[0]).map(([taskIndex, message]) => ({ taskIndex, message }))
  return { results, failures }
}

/** The batch's task exchange; a result a spot check confirms is marked checked when its verdict comes. */
function exchangeInit(init: BatchRunnerInit, progress: Progress): TaskExchangeInit {
  const { host, spec, spotChecker } = init
  const { base, tasks } = progress.batch
  const wasm = progress.batch.package ?? spec.package
  return {
    host,
    spec,
    jobId: init.jobId,
    base,
    tasks,
    packageId: progress.batch.packageId,
    judge: { reputation: init.reputation, online: () => host.isStarted() },
    ...(spotChecker === undefined
      ? {}
      : {
          spotCheck: async (slot, index, key) => {
            const finding = await spotChecker.check(slot, tasks[index]!, base + index, key, wasm)
            if (finding === 'confirmed') progress.spotChecked.add(index)
            return finding
          },
        }),
  }
}

/** Batch envelopes as JSON, serialised once for all the results they carry. */
const batchJson = new WeakMap<object, string>()

/** A stored result's document as JSON: `{ batch, index }` reuses the batch envelope's JSON (see stored-result.ts). */
function documentJson(document: unknown): string {
  const stored = document as { batch?: unknown; index?: unknown }
  if (typeof stored !== 'object' || stored === null || typeof stored.batch !== 'object' || stored.batch === null || typeof stored.index !== 'number' || Object.keys(stored).length !== 2) {
    return JSON.stringify(document)
  }
  let json = batchJson.get(stored.batch)
  if (json === undefined) {
    json = JSON.stringify(stored.batch)
    batchJson.set(stored.batch, json)
  }
  return `{"batch":${json},"index":${JSON.stringify(stored.index)}}`
}

/** A task's final verdict: the invalid results held against their providers, the valid ones paid, the winner kept. */
async function creditVerdict(init: BatchRunnerInit, progress: Progress, verdict: Verdict<Delivered>): Promise<void> {
  const { reputation, emit } = init
  const base = progress.batch.base
  const checked = verdict.checked || progress.spotChecked.has(verdict.taskIndex)
  for (const { result } of verdict.invalid) {
    const slot = result.slot
    slot.rejected++
    reputation?.record(slot.provider, 'invalid')
    emit({ type: 'task-rejected', taskIndex: base + verdict.taskIndex, provider: slot.provider, reason: 'its outputs disagree with the other providers' })
    if (reputation?.excluded(slot.provider) === true) slot.retired = true
  }
  for (const { result } of verdict.valid) {
    const slot = result.slot
    // Accepted: pay for it with a voucher for everything accepted so far (when a debit note asks).
    slot.accepted++
    slot.failures = 0
    slot.account.acceptTask(result.usage)
    reputation?.record(slot.provider, checked ? 'valid' : 'unchecked')
    const note = slot.pendingNote
    slot.pendingNote = undefined
    if (note !== undefined && !init.ignoreDebitNotes) await answerDebitNote(slot, note, emit)
  }
  const winner = verdict.valid[0]!.result
  // Kept with the other results of this turn in one transaction; a batch's results share its envelope's JSON.
  init.store.taskResults.saveSoon({ jobId: init.jobId, taskIndex: base + verdict.taskIndex, agreementId: winner.slot.agreement.id, provider: winner.slot.provider, document: winner.envelope, acceptedAtMs: Date.now() }, documentJson(winner.envelope))
  progress.results[verdict.taskIndex] = { ...winner.outcome, taskIndex: verdict.taskIndex, attempts: verdict.valid.length + verdict.invalid.length, checked, agreeingProviders: verdict.valid.length }
  progress.done++
  init.figures.accepted++
  emit({ type: 'task-done', taskIndex: base + verdict.taskIndex, provider: winner.slot.provider, done: progress.done, total: progress.batch.tasks.length, checked, spentWei: init.spentWei().toString(), agreeing: verdict.valid.map((v) => v.slot.provider) })
}
