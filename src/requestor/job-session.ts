/**
 * Opening a job and the session over it: the job's record (new or resumed), its blobs served, its providers sourced
 * (sourcing.ts), then batches of tasks run over that pool (batch-runner.ts) until the session closes and every
 * agreement is settled (settlement.ts). This file is the wiring between those parts and the JobSession API.
 */
import { HearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { MarketNode } from '../market/market-node.ts'
import type { Host } from '../net/host.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import type { Store } from '../store/store.ts'
import { runBatch, type BatchRunnerInit } from './batch-runner.ts'
import type { BlobScope, BlobServer } from './blob-server.ts'
import type { JobEventListener } from './events.ts'
import { openJobRecord } from './job-record.ts'
import type { AgreementOutcome, BatchOutcome, JobFigures, JobSession, JobSpec } from './job-types.ts'
import type { Prober } from './provider-probe.ts'
import type { ReputationBook } from './reputation.ts'
import type { RequestorAccounts } from './requestor-account.ts'
import { settleEarlierAgreements, settleSlot } from './settlement.ts'
import type { Slot } from './slot.ts'
import { sourceSlots, type MeasuredLatencies, type SourcingInit } from './sourcing.ts'
import type { TaskOutcome, TaskSpec } from './task-runner.ts'
import { createSpotChecker, verificationPlan, type VerificationPlan } from './verification.ts'

export interface JobOptions {
  onEvent?: JobEventListener
  signal?: AbortSignal
}

/** What a job needs of its requestor. */
export interface JobEngine {
  identity: NodeIdentity
  host: Host
  store: Store
  payment: EscrowContext
  market: MarketNode
  accounts: RequestorAccounts
  blobs: BlobServer
  reputation?: ReputationBook
  /** Distances to providers measured by this node's jobs (see sourcing.ts). */
  latencies?: MeasuredLatencies
  /** Recomputes spot-checked wasi tasks on this machine. */
  localRuntime?: WasiRuntime
  /** Probes providers' claims; absent without a local runtime. */
  prober?: Prober
  random?: () => number
  /** Misbehaviour for the devnet's failure tests: leave debit notes unanswered. */
  ignoreDebitNotes: boolean
}

/** An open job's state between batches. */
interface OpenJob {
  jobId: string
  started: number
  store: Store
  emit: JobEventListener
  slots: Slot[]
  figures: JobFigures
  blobs: BlobScope
  /** The job's own package as served. */
  packageId: string | undefined
  batches: BatchRunnerInit
  nextTaskIndex: number
  closed?: AgreementOutcome[]
}

/** Finds providers, signs agreements and opens escrows for a job whose tasks come in batches; see JobSession. */
export async function openJob(engine: JobEngine, spec: JobSpec, options: JobOptions = {}): Promise<JobSession> {
  const { host, store, reputation } = engine
  const emit = options.onEvent ?? (() => undefined)
  const started = performance.now()
  const plan = verificationPlan(spec, engine.localRuntime)
  const { jobId, resumed } = openJobRecord(store, spec, emit)
  emit({ type: 'job', jobId, resumedTasks: resumed.size })
  const blobs = engine.blobs.openScope()
  const packageId = spec.package === undefined ? undefined : blobs.serve(spec.package)
  const { slots, agreementsWanted, recruit } = await sourceSlots(sourcingInit(engine, spec, options, { jobId, resumedTasks: resumed.size, replicas: plan.replicas, emit, blobs }))
  if (slots.length < 2 && (plan.replicas > 1 || (plan.adaptive && reputation !== undefined))) {
    emit({ type: 'phase', message: 'only one provider: its results cannot be checked by another, and are taken as they come (add providers, or spot checks for wasi)' })
  }
  const figures = { accepted: 0, attempts: 0, retries: 0, checks: 0, rejected: 0, stragglers: 0, failures: 0, spotChecks: 0, spotRejected: 0, spotFailed: 0, resumed: resumed.size }
  const random = engine.random ?? Math.random
  const spotChecker = spotCheckerOf(engine, spec, plan, { figures, random, emit })
  const spentWei = (): bigint => slots.reduce((sum, slot) => sum + slot.account.owedWei(), 0n)
  const batches: BatchRunnerInit = {
    host, store, reputation, spec, jobId, emit, signal: options.signal, slots, poolSize: agreementsWanted, recruit, resumed, plan, figures, random,
    ...(spotChecker === undefined ? {} : { spotChecker }),
    ignoreDebitNotes: engine.ignoreDebitNotes,
    spentWei,
  }
  return sessionOf({ jobId, started, store, emit, slots, figures, blobs, packageId, batches, nextTaskIndex: 0 })
}

function sourcingInit(engine: JobEngine, spec: JobSpec, options: JobOptions, job: { jobId: string; resumedTasks: number; replicas: number; emit: JobEventListener; blobs: BlobScope }): SourcingInit {
  const { store, accounts, prober } = engine
  const { jobId, emit } = job
  const allowFetcher = (provider: string): void => job.blobs.allow(provider)
  return {
    host: engine.host, identity: engine.identity, store, payment: engine.payment, market: engine.market, accounts, reputation: engine.reputation,
    ...(engine.latencies === undefined ? {} : { latencies: engine.latencies }),
    spec, jobId, resumedTasks: job.resumedTasks, replicas: job.replicas, emit, signal: options.signal, allowFetcher,
    ...(spec.resumeJobId === undefined ? {} : { afterSync: () => settleEarlierAgreements({ store, accounts, allowFetcher }, jobId, emit) }),
    ...(prober === undefined ? {} : { probe: (slot: Slot) => prober.probe(slot, jobId, emit, (bytes) => job.blobs.serve(bytes)) }),
  }
}

function spotCheckerOf(engine: JobEngine, spec: JobSpec, plan: VerificationPlan, job: { figures: JobFigures; random: () => number; emit: JobEventListener }): BatchRunnerInit['spotChecker'] {
  if (!(plan.spotCheckRate > 0 && engine.localRuntime !== undefined)) return undefined
  return createSpotChecker({ localRuntime: engine.localRuntime, spec, rate: plan.spotCheckRate, reputation: engine.reputation, ...job })
}

function sessionOf(job: OpenJob): JobSession {
  const batch = (tasks: TaskSpec[], batchOptions: { phase?: string; package?: Uint8Array } = {}): Promise<BatchOutcome> => runJobBatch(job, tasks, batchOptions)
  const close = (): Promise<AgreementOutcome[]> => closeJob(job)
  return {
    jobId: job.jobId,
    get slots() {
      return job.slots.length
    },
    runBatch: batch,
    async run(tasks, runOptions) {
      const outcome = await batch(tasks, runOptions)
      if (outcome.failures.length > 0) {
        const first = outcome.failures[0]!
        throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `${outcome.failures.length} of ${tasks.length} ${runOptions?.phase ?? 'tasks'} could not be completed; task ${first.taskIndex}: ${first.message}`, {
          hint: 'see the task errors; rerun with hearth run --resume to finish the job without redoing the tasks that were done',
          details: { failures: outcome.failures },
        })
      }
      return outcome.results as TaskOutcome[]
    },
    figures: () => ({ ...job.figures }),
    spentWei: job.batches.spentWei,
    close,
    async finish(state) {
      const agreementsOut = await close()
      job.store.jobs.setState(job.jobId, state)
      return { agreements: agreementsOut, wallMs: performance.now() - job.started }
    },
    async [Symbol.asyncDispose]() {
      await close()
      const record = job.store.jobs.get(job.jobId)
      if (record?.state === 'running') job.store.jobs.setState(job.jobId, 'failed')
    },
  }
}

/** One batch of tasks over the pool; task indices continue from batch to batch, so a job's results stay apart. */
async function runJobBatch(job: OpenJob, tasks: TaskSpec[], batchOptions: { phase?: string; package?: Uint8Array }): Promise<BatchOutcome> {
  if (job.closed !== undefined) throw new HearthError('HEARTH_ERR_JOB_STATE', 'this job is closed', { hint: 'open a new job' })
  const base = job.nextTaskIndex
  job.nextTaskIndex += tasks.length
  const packageId = batchOptions.package === undefined ? job.packageId : job.blobs.serve(batchOptions.package)
  return runBatch(job.batches, { base, tasks, phase: batchOptions.phase ?? 'tasks', packageId, ...(batchOptions.package === undefined ? {} : { package: batchOptions.package }) })
}

/** Settles every agreement (idempotent) and stops serving the job's blobs. */
async function closeJob(job: OpenJob): Promise<AgreementOutcome[]> {
  if (job.closed !== undefined) return job.closed
  job.closed = []
  // 5. Settle: each provider claims its latest voucher and releases the rest of the deposit back to us.
  job.emit({ type: 'phase', message: 'settling agreements' })
  job.closed = await Promise.all(job.slots.map((slot) => settleSlot(slot, job.emit)))
  job.blobs.release()
  return job.closed
}
