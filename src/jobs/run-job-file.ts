/**
 * The job file's side of `hearth run`, whatever network runs it: the file checked and planned before any node starts or
 * any money moves, the engine's JobSpec for it, and its tasks run on a job the requestor opens, every output written
 * under the output folder. cli/run-job.ts joins this to a network (a local one started for the job, or one joined) and
 * adds the money to the report.
 */
import { readFile } from 'node:fs/promises'
import { parseEther } from 'viem'
import { sha256Hex } from '../exec/content-hash.ts'
import { archiveImageId } from '../exec/docker-images.ts'
import type { JobEventListener } from '../requestor/events.ts'
import type { JobOutcome, JobSpec, Requestor } from '../requestor/requestor.ts'
import { loadJobDefinition, type JobDefinition, type JobKind } from './job-file.ts'
import { mapTasks, planJob, writeJobProduct, type JobPlan } from './kinds.ts'

export interface JobSpecOptions {
  jobFile: string
  /** Agreements to sign where the job file names no `providers`. */
  providers: number
  /** Continue an earlier run of the same job file (its id), reusing its accepted results. */
  resume?: string
  /** Every local file the job names must be in the job file's folder (a job sent to a node with its inputs). */
  confined?: boolean
}

/** A checked job file, its plan, and the engine's JobSpec for it. */
export interface PreparedJob {
  job: JobDefinition
  plan: JobPlan
  spec: JobSpec
}

/** The job's own part of `hearth run`'s report (RunReport adds the money, the output folder and the time). */
export interface JobFileRun {
  job: string
  /** Give it to --resume to continue this job after a crash. */
  jobId: string
  kind: JobKind
  tasks: { total: number; succeeded: number }
  results: { taskIndex: number; provider: string; exitCode: number; outputs: string[]; missingOutputs: string[] }[]
  failures: { taskIndex: number; message: string }[]
  /** The job kind's own figures (map-reduce: input bytes, chunks; sweep: the ranking; render: the image). */
  summary: Record<string, unknown>
}

/** The engine's JobSpec for a checked job file of any kind; a `map` job's tasks are read here, other kinds plan theirs. */
export async function jobSpecFor(job: JobDefinition, plan: JobPlan, options: JobSpecOptions): Promise<JobSpec> {
  return {
    name: job.name,
    runtime: job.runtime,
    ...(job.packagePath === undefined || job.runtime === 'docker' ? {} : { package: await readFile(job.packagePath) }),
    ...(job.runtime === 'docker' && job.packagePath !== undefined ? { package: await readFile(job.packagePath), imageId: await archiveImageId(job.packagePath) } : {}),
    ...(job.program === undefined ? {} : { program: job.program }),
    tasks: job.kind === 'map' ? await mapTasks(job) : [],
    plannedTasks: plan.estimatedTasks,
    providers: job.providers ?? options.providers,
    maxPricePerTaskWei: job.pricePerTaskWei === undefined ? parseEther('1') : BigInt(job.pricePerTaskWei),
    timeoutMs: job.timeoutMs,
    maxMemoryBytes: job.maxMemoryMib * 1024 * 1024,
    maxOutputBytes: job.maxOutputMib * 1024 * 1024,
    ...(job.constraints === undefined ? {} : { demand: { constraints: job.constraints } }),
    ...(job.sla === undefined ? {} : { sla: job.sla }),
    ...(job.weights === undefined ? {} : { weights: job.weights }),
    ...(job.verification === undefined ? {} : { verification: job.verification }),
    ...(job.budgetWei === undefined ? {} : { budgetWei: BigInt(job.budgetWei) }),
    // A resumed job must come from the same job file: its bytes identify it.
    digest: sha256Hex(await readFile(options.jobFile)),
    ...(options.resume === undefined ? {} : { resumeJobId: options.resume }),
  }
}

/** Reads, checks and plans a job file and makes its JobSpec. Throws HEARTH_ERR_JOB_INVALID or _INPUT_MISSING. */
export async function prepareJobFile(options: JobSpecOptions): Promise<PreparedJob> {
  const job = loadJobDefinition(options.jobFile, { confined: options.confined === true })
  const plan = planJob(job)
  return { job, plan, spec: await jobSpecFor(job, plan, options) }
}

/**
 * Runs a prepared job on a job `requestor` opens and settles it, writing its outputs under `outDir` (absolute). A `map`
 * job reports failed tasks beside the others; a planned kind rejects when a task fails, after settling what was done.
 */
export async function runPreparedJob(
  requestor: Pick<Requestor, 'openJob'>,
  prepared: PreparedJob,
  options: { outDir: string; emit: JobEventListener; signal?: AbortSignal },
): Promise<{ run: JobFileRun; outcome: JobOutcome }> {
  const { job, plan, spec } = prepared
  const { outDir, emit } = options
  const session = await requestor.openJob(spec, { onEvent: emit, ...(options.signal === undefined ? {} : { signal: options.signal }) })
  let summary: Record<string, unknown>
  let results: JobFileRun['results'] = []
  let failures: JobFileRun['failures'] = []
  let succeeded: number
  let total: number
  try {
    if (job.kind === 'map') {
      // A task list: every task's outputs come back, failed tasks are reported beside the others.
      const batch = await session.runBatch(spec.tasks, { phase: 'tasks' })
      const product = {
        outputs: batch.results.flatMap((result, index) =>
          result === undefined
            ? []
            : [
                { path: `${index}/stdout`, data: result.stdout },
                { path: `${index}/stderr`, data: result.stderr },
                ...result.outputs.map((file) => ({ path: `${index}${file.path}`, data: file.data })),
              ],
        ),
        summary: {},
      }
      await writeJobProduct(product, outDir)
      results = batch.results.flatMap((result, taskIndex) =>
        result === undefined ? [] : [{ taskIndex, provider: result.provider, exitCode: result.exitCode, outputs: result.outputs.map((o) => o.path), missingOutputs: result.missingOutputs }],
      )
      failures = batch.failures
      total = spec.tasks.length
      succeeded = results.filter((r) => r.exitCode === 0 && r.missingOutputs.length === 0).length
      summary = { kind: 'map', tasks: total, succeeded }
    } else {
      const product = await plan.execute(session, (progress) => {
        if (progress.state === 'started') emit({ type: 'phase', message: `${progress.phase}: ${progress.tasks} tasks` })
      })
      await writeJobProduct(product, outDir)
      summary = product.summary
      total = session.figures().accepted + session.figures().resumed
      succeeded = total
    }
  } catch (error) {
    // The job failed (a task that no provider could complete): settle what was done, then report the error.
    await session[Symbol.asyncDispose]()
    throw error
  }
  const finished = await session.finish(failures.length === 0 ? 'finished' : 'failed')
  const outcome: JobOutcome = { jobId: session.jobId, results: [], failures, agreements: finished.agreements, wallMs: finished.wallMs, figures: session.figures() }
  return { run: { job: job.name, jobId: session.jobId, kind: job.kind, tasks: { total, succeeded }, results, failures, summary }, outcome }
}
