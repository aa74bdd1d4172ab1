/**
 * What churn costs a job: a render of `--tiles` tiles hired on two of three providers, timed from submission to the
 * last tile, when nobody leaves (the baseline, in the same run) and when both hired providers leave at the first
 * result, so that the job is finished by a third provider the requestor recruits mid-job. Medians of `--runs` runs,
 * each on a fresh local network.
 *
 *   node --import tsx bench/churn.ts [--json] [--runs 3] [--tiles 64]
 */
import { parseArgs } from 'node:util'
import { parseEther } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { renderJob } from '../src/jobs/render-job.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    tiles: { type: 'string', default: '64' },
  },
})
const runs = Number(values.runs)
const tiles = Number(values.tiles)
const log = lineLogger(values.json)
const wasm = await loadBuiltinWorkload('render')

/** One job; with `leave`, the hired providers stop at the first result. Returns the job's time and its figures. */
async function once(leave: boolean): Promise<{ jobMs: number; recruitedMs: number | undefined; failed: number }> {
  const devnet = await startDevnet({ providers: 3 })
  try {
    const { spec } = renderJob({ width: 256, height: 192, tiles, wasm, providers: 2, maxPricePerTaskWei: parseEther('1') })
    const hired: string[] = []
    let leftAt: number | undefined
    let recruitedAt: number | undefined
    let left: Promise<void[]> | undefined
    const started = performance.now()
    const outcome = await devnet.requestor.agent.runJob(spec, {
      onEvent: (event) => {
        if (event.type === 'escrow-opened') {
          if (left === undefined) hired.push(event.provider)
          else recruitedAt ??= performance.now()
        }
        if (leave && event.type === 'task-done' && left === undefined) {
          leftAt = performance.now()
          left = Promise.all(devnet.providers.filter((p) => hired.includes(p.identity.address)).map((p) => p.host.stop()))
        }
      },
    })
    const jobMs = performance.now() - started
    await left
    return { jobMs, recruitedMs: recruitedAt === undefined || leftAt === undefined ? undefined : recruitedAt - leftAt, failed: outcome.failures.length }
  } finally {
    await devnet.stop()
  }
}

const steady: number[] = []
const churned: number[] = []
const recruited: number[] = []
// Tiles a run could not complete are reported, not hidden: the figure is then a failure's time, not a job's.
const failed: number[] = []
for (let run = 0; run < runs; run++) {
  const steadyRun = await once(false)
  steady.push(steadyRun.jobMs)
  const churn = await once(true)
  churned.push(churn.jobMs)
  failed.push(steadyRun.failed + churn.failed)
  if (churn.recruitedMs !== undefined) recruited.push(churn.recruitedMs)
}
log(`a ${tiles}-tile render on two of three providers (median of ${runs}):`)
log(`  nobody leaves           ${round(median(steady))} ms`)
log(`  both leave at 1st tile  ${round(median(churned))} ms  (${round(median(churned) / median(steady))}x), a third provider under agreement ${round(median(recruited))} ms after they left`)
log(`  tiles not completed per run: ${failed.join(', ')}`)
if (values.json === true) console.log(JSON.stringify({ bench: 'churn', tiles, runs, steadyMs: median(steady), churnMs: median(churned), recruitedAfterMs: median(recruited), failedTiles: failed }))
