/**
 * `npm run bench`: the demo job (a tiled render across a local network) against rendering the same image in one
 * process, as medians of several runs. Reports wall-time ratio and per-task overhead (round trip minus compute).
 *
 *   npm run bench -- --runs 5 --providers 3 --tasks 16 --width 512 --height 384
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
    providers,
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

const result = {
  image: { width, height, tasks, providers },
  runs,
  localRenderMs: Math.round(median(localMs)),
  demoWallMs: Math.round(median(demoMs)),
  jobWallMs: Math.round(median(jobMs)),
  jobVsLocal: Number((median(jobMs) / median(localMs)).toFixed(2)),
  demoVsLocal: Number((median(demoMs) / median(localMs)).toFixed(2)),
  perTask: {
    roundTripMs: Number(median(roundTripMs).toFixed(1)),
    computeMs: Number(median(computeMs).toFixed(1)),
    overheadMs: Number(median(overheadMs).toFixed(1)),
  },
  chain: { txsPerJob: txs, gasPerJob: gasUsed.toString() },
}

if (values.json) {
  console.log(JSON.stringify(result))
} else {
  log(`  one process (baseline)        ${result.localRenderMs} ms`)
  log(`  job on the network            ${result.jobWallMs} ms   (${result.jobVsLocal}x the baseline; offers to settlement)`)
  log(`  whole demo incl. start-up     ${result.demoWallMs} ms   (${result.demoVsLocal}x; chain, deploy, nodes, job, shutdown)`)
  log(`  per task: round trip ${result.perTask.roundTripMs} ms = compute ${result.perTask.computeMs} ms + overhead ${result.perTask.overheadMs} ms`)
  log(`  chain: ${txs} transactions, ${gasUsed} gas per job (1 approve + 1 open and 1 claim per agreement)`)
}
