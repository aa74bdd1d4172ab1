/**
 * What a job plan needs from whatever runs its tasks: the network engine (several providers, retries, verification)
 * or this process (local-runner.ts). Plans of every job kind (src/jobs/kinds.ts) are written against this alone.
 * The task and outcome shapes live here, not in the engine, so that a runner needs nothing from the engine.
 */
import type { Address, Hex } from 'viem'

export interface TaskSpec {
  args: string[]
  env: Record<string, string>
  /** Files placed in the task directory before it runs, by guest path. */
  inputs: { path: string; data: Uint8Array }[]
  /** Guest paths to bring back. */
  outputs: string[]
}

export interface TaskOutcome {
  taskIndex: number
  provider: Address
  agreementId: Hex
  exitCode: number
  outputs: { path: string; data: Uint8Array }[]
  missingOutputs: string[]
  stdout: Uint8Array
  stderr: Uint8Array
  usage: { durationMs: number; cpuMs: number }
  /** Wall time of the whole round trip as the requestor saw it. */
  roundTripMs: number
  attempts: number
  /** Whether another provider's equal result or a local recompute confirmed this one. */
  checked?: boolean
  /** Providers whose results agreed with this one (itself included). */
  agreeingProviders?: number
}

export interface TaskRunOptions {
  /** What the batch is, for progress and reports: "map", "reduce", "sweep", "render". */
  phase: string
  /** The program for this batch, overriding the job's package (content-addressed, so each phase may differ). */
  package?: Uint8Array
}

export interface TaskRunner {
  /**
   * Runs every task (retries and verification are the runner's business) and returns one outcome per task, in order.
   * Rejects when a task cannot be completed. A non-zero exit code is an outcome, not a rejection.
   */
  run(tasks: TaskSpec[], options?: TaskRunOptions): Promise<TaskOutcome[]>
}
