/**
 * `hearth run JOBFILE` on the embedded default: the job file is checked whole first (exit code 2, nothing started),
 * then a local network runs it and every task's outputs, stdout and stderr land under DIR/<task index>/.
 */
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseEther } from 'viem'
import { loadJobDefinition, type JobDefinition, type JobKind } from '../jobs/job-file.ts'
import { mapTasks, planJob, writeJobProduct, type JobPlan } from '../jobs/kinds.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import { archiveImageId } from '../exec/docker-images.ts'
import { defaultDockerSocket } from '../exec/docker-runtime.ts'
import { existsSync } from 'node:fs'
import type { JobEventListener } from '../requestor/events.ts'
import type { JobOutcome, JobSpec, Requestor } from '../requestor/requestor.ts'
import { startDevnet } from './devnet.ts'
import { settlementReport, snapshotDevnet, type EarlierEscrow, type SettlementReport, type SettlementSource } from './report.ts'
import { startRequestorNode, type RequestorNodeInit } from '../requestor/requestor-node.ts'
import type { Agreement } from '../market/agreement.ts'
import type { Store } from '../store/store.ts'

export interface RunJobInit {
  jobFile: string
  outDir: string
  providers: number
  /** Native programs the local providers offer (name → absolute path); default: known renderers installed here. */
  nativePrograms?: Record<string, string>
  /** The Docker Engine API socket the local providers use; default: DOCKER_HOST or the usual socket paths. */
  dockerSocket?: string
  onEvent?: JobEventListener
  /** Continue an earlier run of the same job file (its id), reusing its accepted results. */
  resume?: string
  /** The first K local providers return wrong results half the time (see DevnetInit.badProviders). */
  badProviders?: number
  /** Join this network instead of starting a local one: the requestor keeps its key and database in its data dir. */
  network?: RequestorNodeInit
}

export interface RunReport extends SettlementReport {
  job: string
  /** Give it to --resume to continue this job after a crash. */
  jobId: string
  kind: JobKind
  /** The job kind's own figures (map-reduce: input bytes, chunks; sweep: the ranking; render: the image). */
  summary: Record<string, unknown>
  tasks: { total: number; succeeded: number }
  results: { taskIndex: number; provider: string; exitCode: number; outputs: string[]; missingOutputs: string[] }[]
  failures: { taskIndex: number; message: string }[]
  output: string
  wallMs: number
}

/** Programs a local provider offers by default when they are installed: renderers, as Golem's providers offer. */
const knownPrograms: Record<string, string> = { povray: '/usr/bin/povray', blender: '/usr/bin/blender' }

function installedPrograms(): Record<string, string> {
  return Object.fromEntries(Object.entries(knownPrograms).filter(([, path]) => existsSync(path)))
}

/** The engine's JobSpec for a checked job file of any kind; a `map` job's tasks are read here, other kinds plan theirs. */
async function specFor(job: JobDefinition, plan: JobPlan, init: RunJobInit): Promise<JobSpec> {
  return {
    name: job.name,
    runtime: job.runtime,
    ...(job.packagePath === undefined || job.runtime === 'docker' ? {} : { package: await readFile(job.packagePath) }),
    ...(job.runtime === 'docker' && job.packagePath !== undefined ? { package: await readFile(job.packagePath), imageId: await archiveImageId(job.packagePath) } : {}),
    ...(job.program === undefined ? {} : { program: job.program }),
    tasks: job.kind === 'map' ? await mapTasks(job) : [],
    plannedTasks: plan.estimatedTasks,
    providers: job.providers ?? init.providers,
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
    digest: sha256Hex(await readFile(init.jobFile)),
    ...(init.resume === undefined ? {} : { resumeJobId: init.resume }),
  }
}

export async function runJobFile(init: RunJobInit): Promise<RunReport> {
  const started = performance.now()
  // Everything about the job is checked before any node starts or any money moves.
  const job = loadJobDefinition(init.jobFile)
  const plan = planJob(job)
  const spec = await specFor(job, plan, init)
  const emit = init.onEvent ?? (() => undefined)
  const network = await joinOrStart(init, spec, emit)
  try {
    const before = await snapshotDevnet(network.source)
    const outDir = resolve(init.outDir)
    const session = await network.requestor.openJob(spec, { onEvent: emit })
    let summary: Record<string, unknown>
    let results: RunReport['results'] = []
    let failures: RunReport['failures'] = []
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
    const settlement = await settlementReport(network.source, before, outcome, earlierEscrows(network.store, session.jobId, outcome))
    return {
      job: job.name,
      jobId: session.jobId,
      kind: job.kind,
      tasks: { total, succeeded },
      results,
      failures,
      summary,
      ...settlement,
      output: outDir,
      wallMs: Math.round(performance.now() - started),
    }
  } finally {
    await network.stop()
  }
}

/**
 * A resumed job's agreements from its earlier runs, which this run settles: the chain audit covers their escrows too,
 * or the tokens they move now would be unexplained. The requestor's records say only which escrows and where they
 * opened; their figures come from the chain.
 */
function earlierEscrows(store: Store, jobId: string, outcome: JobOutcome): EarlierEscrow[] {
  const current = new Set(outcome.agreements.map((a) => a.agreementId.toLowerCase()))
  return store.agreements.list().flatMap((record) => {
    const terms = (record.document as Agreement | undefined)?.terms
    if (record.role !== 'requestor' || terms === undefined || !terms.jobName.endsWith(`(${jobId})`) || current.has(record.id.toLowerCase())) return []
    const escrow = store.escrows.get(record.id)
    return escrow === undefined ? [] : [{ agreementId: record.id, openTx: escrow.openTx }]
  })
}

/** The requestor that runs the job: of a local network started for it, or of this node joining one that runs. */
async function joinOrStart(init: RunJobInit, spec: JobSpec, emit: JobEventListener): Promise<{ requestor: Requestor; store: Store; source: SettlementSource; stop(): Promise<void> }> {
  if (init.network !== undefined) {
    emit({ type: 'phase', message: `joining the network through ${init.network.bootstrap.length} peers` })
    const node = await startRequestorNode(init.network)
    const source: SettlementSource = {
      requestor: { identity: node.identity, payment: node.payment },
      providers: [],
      transactions: () => node.payment.client.ledger,
      connections: () => node.host.connections(),
    }
    return { requestor: node.requestor, store: node.store, source, stop: () => node.stop() }
  }
  emit({ type: 'phase', message: `starting a local network: embedded chain, ${spec.providers} providers, 1 requestor` })
  const socket = init.dockerSocket ?? defaultDockerSocket()
  const dockerSocket = existsSync(socket) ? socket : undefined
  const devnet = await startDevnet({
    providers: spec.providers,
    // The embedded network offers what this machine can run: renderers found here, and a Docker-compatible engine.
    nativePrograms: init.nativePrograms ?? installedPrograms(),
    ...(dockerSocket === undefined ? {} : { dockerSocket }),
    ...(init.badProviders === undefined ? {} : { badProviders: init.badProviders }),
  })
  return { requestor: devnet.requestor.agent, store: devnet.requestor.store, source: devnet, stop: () => devnet.stop() }
}
