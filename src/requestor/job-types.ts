/**
 * The shapes of a job on the network: what a requestor is asked to run (JobSpec, VerificationSpec), what an open job
 * offers (JobSession), and what it reports (JobOutcome, JobFigures, AgreementOutcome). requestor.ts re-exports them,
 * so importers keep using that path; the engine's parts import them from here.
 */
import type { Address, Hex } from 'viem'
import type { Properties } from '../market/constraints/properties.ts'
import type { Pricing, Usage } from '../market/pricing.ts'
import type { Sla } from '../market/sla.ts'
import type { GeoPoint, StrategyWeights } from '../market/strategy.ts'
import type { TaskOutcome, TaskRunner, TaskRunOptions, TaskSpec } from './task-runner.ts'

export interface JobSpec {
  name: string
  /** `wasi` runs `package` (a module); `native` runs a `program` the provider offers; `docker` runs `imageId`. */
  runtime: 'wasi' | 'native' | 'docker'
  /** wasi: the module; docker: the image archive, sent to providers that do not hold the image yet. */
  package?: Uint8Array
  /** native: the name of an offered program (`hearth.runtime.native.programs`), e.g. povray. */
  program?: string
  /** docker: the image id (sha256 of its config). */
  imageId?: string
  tasks: TaskSpec[]
  /** How many providers to sign agreements with (fewer if fewer offers match). */
  providers: number
  maxPricePerTaskWei: bigint
  timeoutMs: number
  maxMemoryBytes: number
  maxOutputBytes: number
  /** How long to wait for enough offers before starting with what there is. */
  offerWaitMs?: number
  /** Attempts per task, across providers. */
  maxAttempts?: number
  /**
   * How long a provider may stay unreachable before it gets no more work from this job (default 120 s). Until then it
   * is asked again after a backoff, and the job waits for it when nobody else can run a task.
   */
  awayLimitMs?: number
  /**
   * The requestor's side of the match: its properties (which providers' constraints judge) and its constraints over
   * offers' properties, in the constraint language. Only offers that match both ways ('yes') are used.
   */
  demand?: { properties?: Properties; constraints?: string }
  /** Requirements stated once: constraints where offers state them, measured latency where they cannot. */
  sla?: Sla
  /** How offers are ranked; see market/strategy.ts. */
  weights?: Partial<StrategyWeights>
  /** Prefer providers near this point. */
  near?: GeoPoint
  /** Each negotiation step's timeout (default 3 s). */
  stepTimeoutMs?: number
  /**
   * How results from providers nobody vouches for are checked. Default: adaptive replication, where the reputation
   * book says how likely each provider's result is to be run again by another provider and compared.
   */
  verification?: VerificationSpec
  /** The most this job may lock in deposits; checked before anything is signed or locked. */
  budgetWei?: bigint
  /** Tasks the whole job will run over all its batches (a map-reduce's map and reduce tasks), for deposits. */
  plannedTasks?: number
  /** Continue this earlier job: its accepted results are kept, never rerun or paid again. */
  resumeJobId?: string
  /** What identifies the job for resuming (default: a hash of the tasks, package and runtime). */
  digest?: string
  /** How often providers send debit notes (default 60 s; the first task's result always carries one). */
  debitNoteIntervalSec?: number
  /** How long a debit note may wait for its voucher before the provider stops (default 300 s). */
  paymentTimeoutSec?: number
}

export interface VerificationSpec {
  /** Results wanted for every task from distinct providers (fixed redundancy). Default 1. */
  replicas?: number
  /** Byte-equal results needed to accept; default a majority of `replicas` (and 2 after any disagreement). */
  quorum?: number
  /** Check results by reputation (BOINC's adaptive replication) when replicas is 1. Default true. */
  adaptive?: boolean
  /** Share of results recomputed on this machine and compared (wasi jobs only). Default 0. */
  spotCheckRate?: number
  /**
   * Check each provider's offered threads and CPU score with a short probe when its agreement starts (probe.ts; wasi
   * jobs, needs a local runtime). Default: when the job's SLA relies on them (minThreads, minCpuScore).
   */
  probe?: boolean
}

export interface AgreementOutcome {
  agreementId: Hex
  provider: Address
  pricing: Pricing
  tasks: number
  /** Results of this provider that verification rejected (not paid). */
  rejected: number
  /** The metered work of its accepted results (checks included): what the vouchers pay for. */
  acceptedUsage: Usage
  depositWei: bigint
  /** Vouchers signed for the provider (one per accepted result), and what the last promises in total. */
  vouchers: number
  signedWei: bigint
  /** Claimed by the provider on chain. */
  paidWei: bigint
  /** Returned to the requestor on chain. */
  refundedWei: bigint
  /** Still in the escrow: the provider may claim its vouchers, the requestor refund the rest after expiry. */
  lockedWei: bigint
  /** The least round trip measured to the provider before the agreement, in ms; null where no ping answered. */
  latencyMs: number | null
  openTx: Hex
  settleTx: Hex | null
  settled: boolean
}

export interface JobOutcome {
  jobId: string
  results: (TaskOutcome | undefined)[]
  failures: { taskIndex: number; message: string }[]
  agreements: AgreementOutcome[]
  wallMs: number
  figures: JobFigures
}

export interface JobFigures {
  /** Tasks whose result was accepted (in this run; `resumed` counts those of earlier runs). */
  accepted: number
  attempts: number
  retries: number
  /** Extra runs made to check a result (adaptive replication, disagreements). */
  checks: number
  /** Results rejected by verification. */
  rejected: number
  stragglers: number
  failures: number
  spotChecks: number
  spotRejected: number
  /** Spot checks this machine could not run (its own failure, not held against the provider). */
  spotFailed: number
  /** Tasks a resumed job found done. */
  resumed: number
}

export interface BatchOutcome {
  results: (TaskOutcome | undefined)[]
  failures: { taskIndex: number; message: string }[]
}

/**
 * An open job: its agreements and escrows, over which batches of tasks run (a map-reduce's map and reduce phases
 * share them). `await using` closes it: every agreement is settled and unspent deposits come back.
 */
export interface JobSession extends TaskRunner, AsyncDisposable {
  readonly jobId: string
  /** Agreements held. */
  readonly slots: number
  runBatch(tasks: TaskSpec[], options?: TaskRunOptions): Promise<BatchOutcome>
  figures(): JobFigures
  /** What accepted results have cost so far. */
  spentWei(): bigint
  /** Settles every agreement (idempotent). */
  close(): Promise<AgreementOutcome[]>
  /** Settles and records the job's end state. */
  finish(state: 'finished' | 'failed'): Promise<{ agreements: AgreementOutcome[]; wallMs: number }>
}
