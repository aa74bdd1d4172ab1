/**
 * The demo job (a tiled render across a local network) against rendering the same image in one
 * process, as medians of several runs. Reports wall-time ratio and per-task overhead (round trip minus compute).
 *
 *   node --import tsx bench/demo.ts --runs 5 --providers 3 --tasks 16 --width 512 --height 384
 */
import { parseArgs } from 'node:util'
import { runDemo } from '../src/devnet/demo.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    providers: { type: 'string', default: '3' },
    tasks: { type: 'string', default: '16' },
    width: { type: 'string', default: '512' },
    height: { type: 'string', default: '384' },
    json: { type: 'boolean', default: false },
  },
})
const runs = Number(values.runs)
const providers = Number(values.providers)
const tasks = Number(values.tasks)
const width = Number(values.width)
const height = Number(values.height)

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const log = (line: string): void => {
  if (!values.json) console.log(line)
}

log(`bench: demo render ${width}x${height}, ${tasks} tiles, ${providers} providers, ${runs} runs (medians)`)

// Baseline: the whole image in this process, through the same sandbox, no network, no chain.
const runtime = createWasiRuntime({ maxWorkers: 1 })
const localMs: number[] = []
for (let i = 0; i < runs; i++) {
  const started = performance.now()
  await renderLocally({ runtime, width, height })
  localMs.push(performance.now() - started)
}
await runtime.close()

interface Measured {
  demoMs: number
  jobMs: number
  roundTripMs: number
  computeMs: number
  overheadMs: number
  txs: number
  gasUsed: bigint
}

/** Runs the demo `runs` times with `providerCount` providers; medians of the job and of every task. */
async function measure(providerCount: number): Promise<Measured> {
  const demoMs: number[] = []
  const jobMs: number[] = []
  const overheadMs: number[] = []
  const roundTripMs: number[] = []
  const computeMs: number[] = []
  let txs = 0
  let gasUsed = 0n
  for (let i = 0; i < runs; i++) {
    const started = performance.now()
    let jobStarted = 0
    let jobEnded = 0
    const report = await runDemo({
      providers: providerCount,
      tasks,
      width,
      height,
      outDir: 'out/bench',
      skipLocalCheck: true,
      onEvent: (event) => {
        if (event.type === 'phase' && event.message === 'collecting offers') jobStarted = performance.now()
        if (event.type === 'phase' && event.message === 'settling agreements') jobEnded = performance.now()
      },
    })
    demoMs.push(performance.now() - started)
    jobMs.push(jobEnded - jobStarted)
    if (report.tasks.succeeded !== report.tasks.total) throw new Error(`run ${i}: only ${report.tasks.succeeded}/${report.tasks.total} tasks succeeded`)
    for (let t = 0; t < report.timings.roundTripMs.length; t++) {
      roundTripMs.push(report.timings.roundTripMs[t]!)
      computeMs.push(report.timings.computeMs[t]!)
      overheadMs.push(report.timings.roundTripMs[t]! - report.timings.computeMs[t]!)
    }
    txs = report.chain.txs
    gasUsed = BigInt(report.chain.gasUsed)
  }
  return {
    demoMs: median(demoMs),
    jobMs: median(jobMs),
    roundTripMs: median(roundTripMs),
    computeMs: median(computeMs),
    overheadMs: median(overheadMs),
    txs,
    gasUsed,
  }
}

const many = await measure(providers)
// One provider runs one task at a time: its per-task overhead is free of the queueing that N providers sharing this
// machine's cores add.
const one = await measure(1)
const local = median(localMs)
const round = (x: number): number => Number(x.toFixed(1))

const result = {
  image: { width, height, tasks, providers },
  runs,
  localRenderMs: Math.round(local),
  demoWallMs: Math.round(many.demoMs),
  jobWallMs: Math.round(many.jobMs),
  jobVsLocal: Number((many.jobMs / local).toFixed(2)),
  demoVsLocal: Number((many.demoMs / local).toFixed(2)),
  perTask: { roundTripMs: round(many.roundTripMs), computeMs: round(many.computeMs), overheadMs: round(many.overheadMs) },
  oneProvider: {
    jobWallMs: Math.round(one.jobMs),
    jobVsLocal: Number((one.jobMs / local).toFixed(2)),
    perTask: { roundTripMs: round(one.roundTripMs), computeMs: round(one.computeMs), overheadMs: round(one.overheadMs) },
  },
  chain: { txsPerJob: many.txs, gasPerJob: many.gasUsed.toString() },
}

if (values.json) {
  console.log(JSON.stringify(result))
} else {
  log(`  one process (baseline)           ${result.localRenderMs} ms`)
  log(`  ${providers} providers: job               ${result.jobWallMs} ms  (${result.jobVsLocal}x the baseline; offers to settlement)`)
  log(`  ${providers} providers: whole demo        ${result.demoWallMs} ms  (${result.demoVsLocal}x; chain, deploy, nodes, job, shutdown)`)
  log(`  ${providers} providers: per task          round trip ${result.perTask.roundTripMs} ms = compute ${result.perTask.computeMs} ms + overhead ${result.perTask.overheadMs} ms`)
  log(`  1 provider: job                 ${result.oneProvider.jobWallMs} ms  (${result.oneProvider.jobVsLocal}x the baseline)`)
  log(`  1 provider: per task            round trip ${result.oneProvider.perTask.roundTripMs} ms = compute ${result.oneProvider.perTask.computeMs} ms + overhead ${result.oneProvider.perTask.overheadMs} ms`)
  log(`  chain: ${result.chain.txsPerJob} transactions, ${result.chain.gasPerJob} gas per job (1 approve, then 1 open and 1 claim per agreement)`)
}
