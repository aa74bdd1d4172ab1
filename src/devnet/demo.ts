/**
 * `hearth demo`: a local network renders an image with the built-in WASI ray tracer, one tile per task, and the
 * result is checked against the same image rendered in this one process.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parseEther } from 'viem'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import { encodePng } from '../jobs/png.ts'
import { assembleRender, renderJob } from '../jobs/render-job.ts'
import { renderLocally } from '../jobs/render-tiles.ts'
import type { JobEventListener } from '../requestor/events.ts'
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
    const { spec, tiles } = renderJob({ width: init.width, height: init.height, tiles: init.tasks, wasm, providers: init.providers, maxPricePerTaskWei: parseEther('1') })
    const outcome = await devnet.requestor.agent.runJob(spec, { onEvent: emit })
    const settlement = await settlementReport(devnet, before, outcome)
    const succeeded = outcome.results.filter((r) => r !== undefined && r.exitCode === 0).length
    const outDir = resolve(init.outDir)
    await mkdir(outDir, { recursive: true })
    const output = join(outDir, 'render.png')
    let identical: boolean | null = null
    let written = false
    if (succeeded === spec.tasks.length) {
      const rgb = assembleRender(init.width, init.height, tiles, outcome)
      await writeFile(output, encodePng({ width: init.width, height: init.height, rgb }))
      written = true
      if (init.skipLocalCheck !== true) {
        emit({ type: 'phase', message: 'rendering the same image in this process to compare' })
        const runtime = createWasiRuntime({ maxWorkers: 1 })
        try {
          const reference = await renderLocally({ runtime, width: init.width, height: init.height })
          identical = Buffer.compare(Buffer.from(reference), Buffer.from(rgb)) === 0
        } finally {
          await runtime.close()
        }
      }
    }
    const finished = outcome.results.filter((r) => r !== undefined)
    return {
      tasks: { total: spec.tasks.length, succeeded },
      ...settlement,
      output: written ? output : null,
      wallMs: Math.round(performance.now() - started),
      image: { width: init.width, height: init.height, identicalToLocalRender: identical },
      timings: { roundTripMs: finished.map((r) => r.roundTripMs), computeMs: finished.map((r) => r.usage.durationMs) },
    }
  } finally {
    await devnet.stop()
  }
}
