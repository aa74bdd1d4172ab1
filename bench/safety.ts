/**
 * What the defences of a lending provider cost, each against the same network without it, measured in the same run:
 *
 *  1. the cap on unpaid work and the escrow checks: no-op wasi tasks through the whole engine with the defaults
 *     (32 unpaid tasks, escrow readings at most 5 s old), against the cap out of reach, and against an escrow read from
 *     the chain before every task;
 *  2. the probe of offered capacity: time to the first result with a probe, against the same job without.
 *
 * Medians of several runs.
 *
 *   node --import tsx bench/safety.ts [--json] [--runs 3] [--tasks 1000] [--providers 4]
 */
import { parseArgs } from 'node:util'
import { availableParallelism, loadavg } from 'node:os'
import { parseEther } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { body, section, utf8, wasmModule } from '../src/exec/testdata/wasm-bytes.ts'
import type { AccountLimits } from '../src/provider/provider-account.ts'
import type { JobSpec } from '../src/requestor/requestor.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    tasks: { type: 'string', default: '1000' },
    providers: { type: 'string', default: '4' },
  },
})
const runs = Number(values.runs)
const taskCount = Number(values.tasks)
const providerCount = Number(values.providers)
const log = lineLogger(values.json)

// A task that does nothing, so that what is measured is the engine and its checks around it.
const noop = wasmModule([
  section(1, [1, 0x60, 0, 0]),
  section(3, [1, 0]),
  section(5, [1, 1, 1, 1]),
  section(7, [2, ...utf8('memory'), 2, 0, ...utf8('_start'), 0, 0]),
  section(10, [1, ...body([])]),
])

function spec(count: number, extra: Partial<JobSpec> = {}): JobSpec {
  return {
    name: 'bench safety',
    runtime: 'wasi',
    package: noop,
    tasks: Array.from({ length: count }, (_, i) => ({ args: [String(i)], env: {}, inputs: [], outputs: [] })),
    providers: providerCount,
    maxPricePerTaskWei: parseEther('1'),
    timeoutMs: 30_000,
    maxMemoryBytes: 16 << 20,
    maxOutputBytes: 1 << 20,
    // Results are taken as they come: verification is measured by bench/engine.ts, not here.
    verification: { adaptive: false },
    ...extra,
  }
}

/** Tasks per second of the tasks phase (first batch to last result), and the first result's delay, per run. */
async function measure(devnet: Devnet, job: JobSpec): Promise<{ tasksPerSec: number; firstResultMs: number }> {
  const submitted = performance.now()
  let batchAt = NaN
  let firstAt = NaN
  let lastAt = NaN
  const outcome = await devnet.requestor.agent.runJob(job, {
    onEvent: (event) => {
      const now = performance.now()
      if (event.type === 'batch' && Number.isNaN(batchAt)) batchAt = now
      if (event.type === 'task-done') {
        if (Number.isNaN(firstAt)) firstAt = now
        lastAt = now
      }
    },
  })
  if (outcome.failures.length > 0) throw new Error(`${outcome.failures.length} tasks failed: ${outcome.failures[0]!.message}`)
  return { tasksPerSec: job.tasks.length / ((lastAt - batchAt) / 1000), firstResultMs: firstAt - submitted }
}

async function throughput(label: string, limits: Partial<AccountLimits> | undefined): Promise<number> {
  const devnet = await startDevnet({ providers: providerCount, ...(limits === undefined ? {} : { providerAccountLimits: limits }) })
  try {
    await measure(devnet, spec(providerCount * 8)) // warm-up: workers started, modules compiled
    const rates: number[] = []
    for (let i = 0; i < runs; i++) {
      rates.push((await measure(devnet, spec(taskCount))).tasksPerSec)
      log(`    ${label} run ${i + 1}: ${Math.round(rates.at(-1)!)} tasks/s`)
    }
    return Math.round(median(rates))
  } finally {
    await devnet.stop()
  }
}

log(`bench: provider defences, ${taskCount} no-op tasks on ${providerCount} providers, ${runs} runs, medians; ${availableParallelism()} cores, load ${loadavg()[0]!.toFixed(2)}`)
log('  1. the cap on unpaid work and the escrow checks')
const defaults = await throughput('defaults', undefined)
const uncapped = await throughput('no cap', { maxUnpaidTasks: 1_000_000_000 })
const everyTask = await throughput('escrow read every task', { escrowMaxAgeMs: 0 })
log(`  defaults ${defaults} tasks/s; cap out of reach ${uncapped} tasks/s (defaults: ${round(defaults / uncapped)}x); escrow read from the chain before every task ${everyTask} tasks/s (${round(everyTask / uncapped)}x)`)

log('  2. the probe of offered capacity (time to the first result)')
const devnet = await startDevnet({ providers: providerCount })
const plain: number[] = []
const probed: number[] = []
try {
  for (let i = 0; i < runs; i++) {
    plain.push((await measure(devnet, spec(providerCount * 2))).firstResultMs)
    probed.push((await measure(devnet, spec(providerCount * 2, { verification: { adaptive: false, probe: true } }))).firstResultMs)
    log(`    run ${i + 1}: ${Math.round(plain.at(-1)!)} ms without, ${Math.round(probed.at(-1)!)} ms with a probe`)
  }
} finally {
  await devnet.stop()
}
log(`  first result ${Math.round(median(plain))} ms without a probe, ${Math.round(median(probed))} ms with (${round(median(probed) / median(plain))}x)`)

if (values.json) {
  console.log(JSON.stringify({ bench: 'safety', runs, tasks: taskCount, providers: providerCount, tasksPerSec: { defaults, uncapped, escrowEveryTask: everyTask }, firstResultMs: { plain: Math.round(median(plain)), probed: Math.round(median(probed)) } }))
}
