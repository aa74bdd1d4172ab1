/**
 * `node --import tsx bench/start.ts [--json] [--runs 10]`: what starting the `hearth` command costs.
 *
 * Wall time and peak memory (max RSS) of `hearth --help` and `hearth --version` run from the built JavaScript (dist/,
 * what `npm ci` builds and bin/hearth.js runs while it is current), against `node -e 0` in the same run, and of
 * `hearth --help` from the TypeScript sources through tsx (HEARTH_FROM_SOURCE=1: bin/hearth.js's fallback for a
 * clone whose build is stale). Medians of --runs runs after one warm-up each. RSS comes from /usr/bin/time where there
 * is one (its own exec is then inside every wall time, the baseline's too), else from process.resourceUsage() at exit.
 * dist/ is built first when it is not current.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { pickEntry } from '../bin/build-stamp.js'
import { buildJs } from '../scripts/build-js.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '10' },
  },
})
const runs = Number(values.runs)
const log = lineLogger(values.json)
const repoRoot = fileURLToPath(new URL('..', import.meta.url))
const bin = join(repoRoot, 'bin', 'hearth.js')
const gnuTime = '/usr/bin/time'

interface Measured {
  runs: number
  ms: number
  rssMiB: number
}

const temp = await mkdtemp(join(tmpdir(), 'hearth-bench-start-'))
// Without /usr/bin/time: a preload that writes the process's peak RSS (KiB) to fd 3 as it exits.
const rssPreload = join(temp, 'rss.cjs')
await writeFile(rssPreload, "process.on('exit', () => require('node:fs').writeSync(3, String(process.resourceUsage().maxRSS)))\n")
const useGnuTime = existsSync(gnuTime)

/** One run of `node ARGS`: wall ms and max RSS in KiB. */
function once(args: string[], env: NodeJS.ProcessEnv): { ms: number; rssKiB: number } {
  const command = useGnuTime ? gnuTime : process.execPath
  const fullArgs = useGnuTime ? ['-f', '%M', process.execPath, ...args] : ['--require', rssPreload, ...args]
  const started = performance.now()
  const run = spawnSync(command, fullArgs, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe', 'pipe'], encoding: 'utf8' })
  const ms = performance.now() - started
  if (run.status !== 0) throw new Error(`node ${args.join(' ')} exited with ${run.status}: ${run.stderr}`)
  const rssText = useGnuTime ? run.stderr.trim().split('\n').at(-1) : run.output[3]
  return { ms, rssKiB: Number(rssText) }
}

function measure(args: string[], env: NodeJS.ProcessEnv = {}): Measured {
  const runEnv = { ...process.env, ...env }
  delete runEnv['NODE_OPTIONS']
  once(args, runEnv)
  const samples = Array.from({ length: runs }, () => once(args, runEnv))
  return { runs, ms: round(median(samples.map((s) => s.ms))), rssMiB: round(median(samples.map((s) => s.rssKiB)) / 1024) }
}

try {
  const built = pickEntry(repoRoot) === 'src' ? buildJs() : false
  if (pickEntry(repoRoot) !== 'dist') throw new Error('dist/ is not current after the build: is typescript installed?')
  const baseline = measure(['-e', '0'])
  const help = measure([bin, '--help'])
  const version = measure([bin, '--version'])
  const tsx = measure([bin, '--help'], { HEARTH_FROM_SOURCE: '1' })
  const ratios = {
    helpVsNode: round(help.ms / baseline.ms),
    helpRssVsNode: round(help.rssMiB / baseline.rssMiB),
    tsxVsHelp: round(tsx.ms / help.ms),
    tsxRssVsHelp: round(tsx.rssMiB / help.rssMiB),
  }
  const line = (name: string, m: Measured, note = ''): string => `  ${name.padEnd(34)} ${String(m.ms).padStart(8)} ms  ${String(m.rssMiB).padStart(7)} MiB${note}`
  log(`bench: starting \`hearth\`, wall time and max RSS (medians of ${runs} runs; RSS by ${useGnuTime ? '/usr/bin/time' : 'process.resourceUsage()'})${built ? '; built dist/ first' : ''}`)
  log(line('node -e 0 (baseline)', baseline))
  log(line('hearth --help (dist/)', help, `  (${ratios.helpVsNode}x node's time, ${ratios.helpRssVsNode}x its RSS)`))
  log(line('hearth --version (dist/)', version, `  (${round(version.ms / baseline.ms)}x node's time)`))
  log(line('hearth --help (src/ through tsx)', tsx, `  (${ratios.tsxVsHelp}x dist/'s time, ${ratios.tsxRssVsHelp}x its RSS)`))
  log(`  aim: hearth --help under 200 ms: ${help.ms < 200 ? 'met' : 'NOT met'}`)
  if (values.json) console.log(JSON.stringify({ rssBy: useGnuTime ? 'time' : 'resourceUsage', node: baseline, help, version, tsxHelp: tsx, ratios }))
} finally {
  await rm(temp, { recursive: true, force: true })
}
