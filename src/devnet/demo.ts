/**
 * `hearth demo`: a local network renders an image with the built-in WASI ray tracer, one tile per task, and the
 * result is checked against the same image rendered in this one process. The image is planned and merged by the
 * `render` job kind (jobs/render-kind.ts), as `hearth run` does a render job file.
 */
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parseEther } from 'viem'
import { HearthError } from '../errors.ts'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import { builtinWorkloadPath, loadBuiltinWorkload } from '../exec/workloads.ts'
import { parseJobDefinition, type RenderJob } from '../jobs/job-file.ts'
import { planJob, writeJobProduct, type JobProduct, type TaskRunner } from '../jobs/kinds.ts'
import { decodePng } from '../jobs/png.ts'
import { renderJob } from '../jobs/render-job.ts'
import { renderLocally } from '../jobs/render-tiles.ts'
import type { JobEventListener } from '../requestor/events.ts'
import type { BatchOutcome, JobOutcome, JobSpec, Requestor, TaskOutcome } from '../requestor/requestor.ts'
import { startDevnet, type DevnetInit } from './devnet.ts'
import { settlementReport, snapshotDevnet, type SettlementReport } from './report.ts'

export interface DemoInit {
  providers: number
  tasks: number
  width: number
  height: number
  outDir: string
  onEvent?: JobEventListener
  /** How the local providers charge: per task (default), or Golem's linear model over metered CPU and run time. */
  pricing?: 'per-task' | 'linear'
  /** Settle on this EVM chain by JSON-RPC instead of the embedded one (see DevnetInit.chain). */
  chain?: DevnetInit['chain']
  /** Keep the nodes' keys and databases here (DIR/requestor, DIR/provider-1, …) instead of a temporary folder. */
  dataDir?: string
  /** Skip the single-process reference render (benchmarks time it separately). */
  skipLocalCheck?: boolean
  /** The K cheapest providers return wrong results some of the time (see DevnetInit.badProviders). */
  badProviders?: number
}

export interface DemoReport extends SettlementReport {
  tasks: { total: number; succeeded: number }
  /** The PNG's path; null when tiles were missing and no image was written. */
  output: string | null
  wallMs: number
  /** identicalToLocalRender is null when the comparison was not made. */
  image: { width: number; height: number; identicalToLocalRender: boolean | null }
  /** Per task, as the requestor saw it: round trip, and compute time inside the sandbox. */
  timings: { roundTripMs: number[]; computeMs: number[] }
}

export async function runDemo(init: DemoInit): Promise<DemoReport> {
  const started = performance.now()
  const wasm = await loadBuiltinWorkload('render')
  const emit = init.onEvent ?? (() => undefined)
  emit({ type: 'phase', message: `starting a local network: ${init.chain === undefined ? 'embedded chain' : `chain ${init.chain.deployment.chainId} at ${init.chain.rpcUrl}`}, ${init.providers} providers, 1 requestor` })
  const devnet = await startDevnet({
    providers: init.providers,
    ...(init.dataDir === undefined ? {} : { dataDir: init.dataDir }),
    ...(init.badProviders === undefined ? {} : { badProviders: init.badProviders }),
    ...(init.chain === undefined ? {} : { chain: init.chain }),
    ...(init.pricing === 'linear'
      ? {
          // Each next provider 10% dearer, as with per-task prices.
          providerPricing: (i: number) => ({
            model: 'linear' as const,
            startWei: ((parseEther('0.0001') * BigInt(10 + i)) / 10n).toString(),
            perCpuSecWei: ((parseEther('0.005') * BigInt(10 + i)) / 10n).toString(),
            perDurationSecWei: ((parseEther('0.001') * BigInt(10 + i)) / 10n).toString(),
          }),
        }
      : {}),
  })
  try {
    const before = await snapshotDevnet(devnet)
    const { spec } = renderJob({ width: init.width, height: init.height, tiles: init.tasks, wasm, providers: init.providers, maxPricePerTaskWei: parseEther('1') })
    const job = demoJob(init)
    const { outcome, product } = await runRenderPlan(devnet.requestor.agent, spec, job, emit)
    const settlement = await settlementReport(devnet, before, outcome)
    const succeeded = outcome.results.filter((r) => r !== undefined && r.exitCode === 0).length
    const outDir = resolve(init.outDir)
    await mkdir(outDir, { recursive: true })
    const output = join(outDir, job.output)
    let identical: boolean | null = null
    if (product !== undefined) {
      await writeJobProduct(product, outDir)
      if (init.skipLocalCheck !== true) {
        emit({ type: 'phase', message: 'rendering the same image in this process to compare' })
        identical = await matchesLocalRender(init, product.outputs.find((file) => file.path === job.output)!.data)
      }
    }
    const finished = outcome.results.filter((r) => r !== undefined)
    return {
      tasks: { total: spec.tasks.length, succeeded },
      ...settlement,
      output: product !== undefined ? output : null,
      wallMs: Math.round(performance.now() - started),
      image: { width: init.width, height: init.height, identicalToLocalRender: identical },
      timings: { roundTripMs: finished.map((r) => r.roundTripMs), computeMs: finished.map((r) => r.usage.durationMs) },
    }
  } finally {
    await devnet.stop()
  }
}

/** The demo's job, as a render job file would state it: the built-in tracer, one tile per task. */
function demoJob(init: DemoInit): RenderJob {
  const fields = { kind: 'render', name: `render ${init.width}x${init.height}`, runtime: 'wasi', package: builtinWorkloadPath('render'), width: init.width, height: init.height, tiles: init.tasks }
  return parseJobDefinition(fields, process.cwd(), 'the demo') as RenderJob
}

/**
 * Runs the render job kind's plan (as `hearth run` does a render job file) on a job the requestor opens for `spec`,
 * whose tasks are the plan's. Unlike `hearth run`, tiles that no provider completed, or that came back without an
 * image, do not end the demo: the job is settled and reported with the tiles it has, and no image (product undefined).
 */
async function runRenderPlan(requestor: Requestor, spec: JobSpec, job: RenderJob, emit: JobEventListener): Promise<{ outcome: JobOutcome; product: JobProduct | undefined }> {
  const session = await requestor.openJob(spec, { onEvent: emit })
  const ran: { batch?: BatchOutcome } = {}
  const runner: TaskRunner = {
    async run(tasks) {
      // Without the plan's phase name: the demo's progress reads "running N tasks", as its summary counts tasks.
      const batch = await session.runBatch(tasks)
      ran.batch = batch
      if (batch.failures.length > 0) throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `${batch.failures.length} of ${tasks.length} tiles could not be completed`)
      return batch.results as TaskOutcome[]
    },
  }
  let product: JobProduct | undefined
  let refusal: unknown
  try {
    product = await planJob(job).execute(runner)
  } catch (error) {
    if (ran.batch === undefined) {
      await session[Symbol.asyncDispose]()
      throw error
    }
    refusal = error
  }
  const batch = ran.batch!
  const finished = await session.finish(batch.failures.length === 0 ? 'finished' : 'failed')
  // Tiles missing or failed leave the demo without an image; a refusal when every tile succeeded is an error.
  if (refusal !== undefined && batch.results.every((r) => r !== undefined && r.exitCode === 0)) throw refusal
  const outcome: JobOutcome = { jobId: session.jobId, results: batch.results, failures: batch.failures, agreements: finished.agreements, wallMs: finished.wallMs, figures: session.figures() }
  return { outcome, product }
}

/** Whether the PNG the network made holds the pixels this process renders alone. */
async function matchesLocalRender(init: DemoInit, png: Uint8Array): Promise<boolean> {
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  try {
    const reference = await renderLocally({ runtime, width: init.width, height: init.height })
    return Buffer.compare(Buffer.from(reference), Buffer.from(decodePng(png).rgb)) === 0
  } finally {
    await runtime.close()
  }
}
