/**
 * How a job's results are verified, apart from the scheduling that dispatch.ts does: the job's verification plan
 * (replicas, adaptive replication, spot-check rate), what in a result must agree between providers (its key), and
 * spot checks, where this machine recomputes a result and compares.
 */
import { HearthError, toHearthError } from '../errors.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import type { JobEventListener } from './events.ts'
import { comparableContentId } from './image-key.ts'
import type { JobFigures, JobSpec } from './job-types.ts'
import { createLocalRunner } from './local-runner.ts'
import type { ReputationBook } from './reputation.ts'
import type { Slot } from './slot.ts'
import type { TaskOutcome, TaskSpec } from './task-runner.ts'

export interface VerificationPlan {
  /** Results wanted per task from distinct providers. */
  replicas: number
  /** Adaptive replication by reputation. */
  adaptive: boolean
  spotCheckRate: number
}

/** The job's verification settings with their defaults; throws when spot checks are asked of a job they cannot check. */
export function verificationPlan(spec: JobSpec, localRuntime: WasiRuntime | undefined): VerificationPlan {
  const replicas = Math.max(1, spec.verification?.replicas ?? 1)
  const adaptive = spec.verification?.adaptive ?? replicas === 1
  const spotCheckRate = spec.verification?.spotCheckRate ?? 0
  if (spotCheckRate > 0 && (spec.runtime !== 'wasi' || localRuntime === undefined)) {
    throw new HearthError('HEARTH_ERR_JOB_INVALID', 'spot checks recompute results on this machine, which only the wasi runtime can do here', {
      hint: 'use replicas (redundancy) to verify native and docker tasks, or set spotCheckRate to 0',
    })
  }
  return { replicas, adaptive, spotCheckRate }
}

/** A few words on a result: its exit code and each output's comparable id (short), for disagreement messages. */
export function describeOutcome(outcome: TaskOutcome): string {
  const outputs = outcome.outputs.map((o) => `${o.path} ${comparableContentId(o.data).slice(0, 24)}…`)
  const missing = outcome.missingOutputs.map((path) => `${path} missing`)
  return [`exit ${outcome.exitCode}`, ...outputs, ...missing].join(', ')
}

/** What a task's result says, reduced to what must agree between providers: exit code and outputs (images by pixels). */
export function resultKey(outcome: TaskOutcome): string {
  return hashCanonical({
    exitCode: outcome.exitCode,
    outputs: outcome.outputs.map((o) => [o.path, comparableContentId(o.data)]),
    missing: outcome.missingOutputs,
    // Without output files the program's answer is its stdout.
    ...(outcome.outputs.length === 0 && outcome.missingOutputs.length === 0 ? { stdout: sha256Hex(outcome.stdout) } : {}),
  })
}

/** A spot check's finding: not drawn or not run here (`unchecked`), the same result (`confirmed`), or another. */
export type SpotCheckFinding = 'unchecked' | 'confirmed' | 'contradicted'

export interface SpotChecker {
  /**
   * Draws whether a provider's result (`key`) of `task` is recomputed here, and compares. A contradiction is recorded
   * (figures, the slot, the reputation book, a task-rejected event); `taskIndex` is the job's index, for messages.
   */
  check(slot: Slot, task: TaskSpec, taskIndex: number, key: string, wasm: Uint8Array | undefined): Promise<SpotCheckFinding>
}

export interface SpotCheckerInit {
  localRuntime: WasiRuntime
  spec: JobSpec
  rate: number
  random: () => number
  reputation?: ReputationBook
  /** The job's figures, counted here: spot checks, those that failed here, rejections. */
  figures: JobFigures
  emit: JobEventListener
}

export function createSpotChecker(init: SpotCheckerInit): SpotChecker {
  const { spec, reputation, figures, emit } = init
  const runner = createLocalRunner({ runtime: init.localRuntime, concurrency: 1, maxMemoryBytes: spec.maxMemoryBytes, timeoutMs: spec.timeoutMs, maxOutputBytes: spec.maxOutputBytes })
  return {
    async check(slot, task, taskIndex, key, wasm) {
      // A spot check: this machine computes the same task and compares. The provider cannot tell it apart from
      // any other task, so a provider that cheats now and then is caught in proportion.
      if (!(init.random() < init.rate * (reputation?.checkProbability(slot.provider) ?? 1))) return 'unchecked'
      figures.spotChecks++
      let local: TaskOutcome | undefined
      try {
        local = (await runner.run([task], { phase: 'spot check', package: wasm }))[0]
      } catch (error) {
        // This machine could not recompute the task (out of memory, a deadline, a runtime closed): that says nothing
        // about the provider's result, which goes on to the usual verification, and nothing counts against it.
        figures.spotFailed++
        emit({ type: 'phase', message: `spot check of task ${taskIndex} could not run here (${toHearthError(error).shortMessage}); the result is verified as usual` })
      }
      const localKey = local === undefined ? key : resultKey(local)
      if (localKey !== key) {
        figures.spotRejected++
        figures.rejected++
        slot.rejected++
        reputation?.record(slot.provider, 'invalid')
        emit({ type: 'task-rejected', taskIndex, provider: slot.provider, reason: 'a local recompute gave other outputs' })
        return 'contradicted'
      }
      return local === undefined ? 'unchecked' : 'confirmed'
    },
  }
}
