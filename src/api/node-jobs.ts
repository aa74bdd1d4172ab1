/**
 * Jobs submitted to a running requestor node through its local API (the dashboard's "submit a job"): the job file
 * and its inputs arrive in one request, are written under `<data dir>/jobs/<id>/`, checked whole as `hearth run`
 * checks them (a bad file is refused at once, nothing started), then run one after another on the node's own
 * requestor, so each job's money report reads the chain without another job's escrows moving under it. Each job's
 * events go to the node's event feed (topic `job`) and into its live view (job-view.ts); its outputs land in
 * `<data dir>/jobs/<id>/out/` and are read back by path; a job can be cancelled while it waits or runs.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { dirname, join, normalize, relative, sep } from 'node:path'
import { z } from 'zod'
import { HearthError, toHearthError } from '../errors.ts'
import { settlementReport, snapshotDevnet, type SettlementReport, type SettlementSource } from '../devnet/report.ts'
import { prepareJobFile, runPreparedJob, type JobFileRun, type PreparedJob } from '../jobs/run-job-file.ts'
import { command, type CommandTable } from '../net/local-api-server.ts'
import type { NodeEvent } from '../net/local-api-web.ts'
import type { JobEvent } from '../requestor/events.ts'
import type { Requestor } from '../requestor/requestor.ts'
import { createJobView } from './job-view.ts'
import { jobDetailSchema, jobListSchema, jobOutputSchema, jobOutputsSchema, jobSubmitBody, jobSubmittedSchema } from './job-schemas.ts'

export type JobState = 'queued' | 'running' | 'finished' | 'failed' | 'cancelled'

interface NodeJob {
  id: string
  name: string
  kind: string
  state: JobState
  submittedAtMs: number
  startedAtMs: number | null
  finishedAtMs: number | null
  dir: string
  prepared: PreparedJob
  view: ReturnType<typeof createJobView>
  events: JobEvent[]
  abort: AbortController
  engineJobId: string | null
  error: string | null
  run: JobFileRun | null
  settlement: SettlementReport | null
}

export interface NodeJobsInit {
  dataDir: string
  requestor: Requestor
  source: SettlementSource
  publish(event: NodeEvent): void
  /** Agreements a job file that names no `providers` signs (default 2). */
  providers?: number
}

/** The most events kept per job for the view (the feed carries them all). */
const keptEvents = 500
/** The most bytes of one output file sent back in one answer. */
const maxOutputBytes = 8 * 1024 * 1024
/** Finished jobs kept in memory; older ones leave the list (their files stay on disk). */
const keptJobs = 100

/** A relative path inside the job's folder, or a clear refusal. */
function insideFolder(path: string, what: string): string {
  const clean = normalize(path).replace(/^[/\\]+/, '')
  if (path.startsWith('/') || clean.startsWith('..') || clean.split(sep).includes('..') || clean === '' || clean.includes('\0')) {
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `${what} ${JSON.stringify(path)} is not a path inside the job's folder`, { hint: 'name inputs by relative paths such as data/part-1.txt, as the job file names them' })
  }
  return clean
}

/** A job's line in the list: its state and progress. */
function summary(job: NodeJob) {
  return {
    id: job.id, name: job.name, kind: job.kind, state: job.state, submittedAtMs: job.submittedAtMs, startedAtMs: job.startedAtMs, finishedAtMs: job.finishedAtMs,
    engineJobId: job.engineJobId, error: job.error, progress: job.view.progress(),
  }
}

/** The files a job wrote under its out/ folder, by path, with their sizes. */
async function outputs(job: NodeJob): Promise<{ path: string; bytes: number }[]> {
  const root = join(job.dir, 'out')
  const found: { path: string; bytes: number }[] = []
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) await walk(path)
      else if (entry.isFile()) found.push({ path: relative(root, path), bytes: (await stat(path)).size })
    }
  }
  await walk(root)
  return found.sort((a, b) => a.path.localeCompare(b.path, 'en', { numeric: true }))
}

export function createNodeJobs(init: NodeJobsInit) {
  const jobs = new Map<string, NodeJob>()
  let queue: Promise<void> = Promise.resolve()

  function publish(job: NodeJob, data: Record<string, unknown>): void {
    init.publish({ topic: 'job', data: { id: job.id, state: job.state, ...data } })
  }

  function setState(job: NodeJob, state: JobState, error?: string): void {
    job.state = state
    if (error !== undefined) job.error = error
    if (state === 'finished' || state === 'failed' || state === 'cancelled') job.finishedAtMs = Date.now()
    publish(job, { progress: job.view.progress(), ...(error === undefined ? {} : { error }) })
  }

  async function runOne(job: NodeJob): Promise<void> {
    if (job.abort.signal.aborted) return
    job.startedAtMs = Date.now()
    setState(job, 'running')
    const emit = (event: JobEvent): void => {
      job.view.apply(event)
      if (event.type === 'job') job.engineJobId = event.jobId
      job.events.push(event)
      if (job.events.length > keptEvents) job.events.splice(0, job.events.length - keptEvents)
      publish(job, { event, progress: job.view.progress() })
    }
    try {
      const before = await snapshotDevnet(init.source)
      const { run, outcome } = await runPreparedJob(init.requestor, job.prepared, { outDir: join(job.dir, 'out'), emit, signal: job.abort.signal })
      job.run = run
      // The node pays and tops up its storage and services agreements while the job runs: their escrows' events
      // account for the tokens they move.
      job.settlement = await settlementReport(init.source, before, outcome, [], 'explained')
      setState(job, job.abort.signal.aborted ? 'cancelled' : run.failures.length === 0 && run.tasks.succeeded === run.tasks.total ? 'finished' : 'failed')
    } catch (error) {
      setState(job, job.abort.signal.aborted ? 'cancelled' : 'failed', toHearthError(error).shortMessage)
    }
  }

  function forget(): void {
    const done = [...jobs.values()].filter((j) => j.finishedAtMs !== null)
    for (const job of done.slice(0, Math.max(0, done.length - keptJobs))) jobs.delete(job.id)
  }

  async function submit(body: z.output<typeof jobSubmitBody>): Promise<{ id: string; name: string; kind: string; state: JobState }> {
    const id = `${new Date().toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(4).toString('hex')}`
    const dir = join(init.dataDir, 'jobs', id)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    for (const file of body.files ?? []) {
      const path = join(dir, insideFolder(file.path, 'input'))
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, Buffer.from(file.base64, 'base64'))
    }
    const jobFile = join(dir, 'job.json')
    await writeFile(jobFile, JSON.stringify(body.jobFile, null, 2))
    // Checked whole before anything starts: a bad job file is refused in this answer, and no money moves.
    // Confined to its folder: a job file may not name the node's own files (its key, its database) as inputs.
    const prepared = await prepareJobFile({ jobFile, providers: init.providers ?? 2, confined: true })
    const job: NodeJob = {
      id, name: prepared.job.name, kind: prepared.job.kind, state: 'queued', submittedAtMs: Date.now(), startedAtMs: null, finishedAtMs: null,
      dir, prepared, view: createJobView(Date.now()), events: [], abort: new AbortController(), engineJobId: null, error: null, run: null, settlement: null,
    }
    jobs.set(id, job)
    forget()
    publish(job, { progress: job.view.progress() })
    queue = queue.then(() => runOne(job))
    return { id, name: job.name, kind: job.kind, state: job.state }
  }

  function jobOf(id: string): NodeJob {
    const job = jobs.get(id)
    if (job === undefined) throw new HearthError('HEARTH_ERR_JOB_STATE', `this node has no job ${id}`, { hint: 'see the list of jobs (POST /v1/jobs)' })
    return job
  }

  async function output(id: string, path: string) {
    const job = jobOf(id)
    const file = join(job.dir, 'out', insideFolder(path, 'output'))
    const info = await stat(file).catch(() => undefined)
    if (info === undefined || !info.isFile()) throw new HearthError('HEARTH_ERR_JOB_STATE', `job ${job.id} has no output ${path}`, { hint: 'see its files (POST /v1/job-outputs)' })
    if (info.size > maxOutputBytes) throw new HearthError('HEARTH_ERR_JOB_INVALID', `${path} is ${info.size} bytes, more than one answer carries`, { hint: `read it from ${file} on the node's machine` })
    return { path, bytes: info.size, base64: (await readFile(file)).toString('base64') }
  }

  function cancel(id: string) {
    const job = jobOf(id)
    if (job.state === 'queued') setState(job, 'cancelled')
    job.abort.abort(new HearthError('HEARTH_ERR_JOB_STATE', 'cancelled by the owner'))
    return { id: job.id, name: job.name, kind: job.kind, state: job.state }
  }

  const operations: JobOperations = {
    submit,
    list: () => ({ jobs: [...jobs.values()].reverse().map(summary) }),
    detail: (id) => {
      const job = jobOf(id)
      return { ...summary(job), tasks: job.view.tasks(), events: job.events.slice(-100), report: job.run === null ? null : { ...job.run, settlement: job.settlement } }
    },
    cancel,
    outputs: async (id) => ({ files: await outputs(jobOf(id)) }),
    output,
  }

  return {
    commands: jobCommands(operations),
    /** Cancels every job and waits for the one running to settle. */
    async close(): Promise<void> {
      for (const job of jobs.values()) if (job.finishedAtMs === null) job.abort.abort(new HearthError('HEARTH_ERR_JOB_STATE', 'the node is stopping'))
      await queue.catch(() => undefined)
    },
  }
}

interface JobOperations {
  submit(body: z.output<typeof jobSubmitBody>): Promise<unknown>
  list(): unknown
  detail(id: string): unknown
  cancel(id: string): unknown
  outputs(id: string): Promise<unknown>
  output(id: string, path: string): Promise<unknown>
}

/** The job commands of the local API, each with its body and result schemas. */
function jobCommands(ops: JobOperations): CommandTable {
  const idBody = z.strictObject({ id: z.string().min(1).max(64) })
  const invalidCode = 'HEARTH_ERR_JOB_INVALID'
  return {
    'job-submit': command({
      summary: 'submit a job file with its inputs (base64); checked whole at once, then run after the jobs before it',
      body: jobSubmitBody,
      invalidCode,
      maxBodyBytes: 48 * 1024 * 1024,
      result: jobSubmittedSchema,
      handle: (body) => ops.submit(body),
    }),
    jobs: command({ summary: 'the jobs submitted to this node, newest first, with their progress', result: jobListSchema, handle: async () => ops.list() }),
    job: command({
      summary: 'one job: every task\'s state and provider, progress, money spent, agreements, recent events, and its report once done',
      body: idBody,
      invalidCode,
      result: jobDetailSchema,
      handle: async (body) => ops.detail(body.id),
    }),
    'job-cancel': command({ summary: 'cancel a job that waits or runs: it stops, and what was done is settled', body: idBody, invalidCode, result: jobSubmittedSchema, handle: async (body) => ops.cancel(body.id) }),
    'job-outputs': command({ summary: 'the files a job wrote (outputs, stdout, stderr of each task)', body: idBody, invalidCode, result: jobOutputsSchema, handle: (body) => ops.outputs(body.id) }),
    'job-output': command({
      summary: `one output file of a job, base64 (at most ${maxOutputBytes / 1024 / 1024} MiB)`,
      body: z.strictObject({ id: z.string().min(1).max(64), path: z.string().min(1).max(1024) }),
      invalidCode,
      result: jobOutputSchema,
      handle: (body) => ops.output(body.id, body.path),
    }),
  }
}
