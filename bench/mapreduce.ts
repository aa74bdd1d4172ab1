/**
 * `node --import tsx bench/mapreduce.ts [--json] [--runs 3] [--providers 2] [--mb 25.6] [--chunk-kib 1024] [--reducers 4]
 *   [--wasm wordcount.wasm]`:
 * a map-reduce word count over 25.6 MB of text through the whole engine, against Dask and coreutils on the same files.
 *
 * The text: node_modules' Markdown, concatenated and repeated to 25.6 MB, in 1 MB files (lib/wordcount-corpus.ts).
 * A word is what the built-in wordcount counts: a maximal run of ASCII letters and digits, lowercased. Measured, each
 * a median of --runs runs after a warm-up (the first default-verification run aside, which has nothing to warm):
 *  - coreutils: `cat | tr A-Z a-z | tr -cs a-z0-9 '\n' | sort | uniq -c`, one pipeline on this machine; its counts are
 *    the reference every other result must equal byte for byte;
 *  - Hearth's plan on the local runner (no network; as many sandbox workers as providers): the floor of the job;
 *  - Hearth on an in-process devnet (embedded chain, N providers of 1 thread, 1 requestor), the job file run as
 *    `hearth run` runs it (mapreduce kind, the job file's default chunking and reducers unless given): with
 *    verification off, and with the defaults a fresh requestor gives new providers (adaptive replication: their
 *    first results are each checked by another provider), on a fresh devnet per run; the network's start-up apart;
 *  - Dask: dask.bag (read_text, one partition per file; the same words; frequencies) on a LocalCluster of N
 *    single-thread worker processes (lib/dask_wordcount.py), from the bag to the sorted counts; its start-up apart.
 *    Skipped, saying how to install it, where python3 has no dask.distributed.
 * Each Hearth run is broken down: setup (offers, agreements, escrows), chunking, map, shuffle, reduce, merge, settle,
 * the guests' own run time, and the CPU time of this process (all the devnet's nodes) per MB. The machine's other
 * load shows in wall times; the CPU times are steadier, and are given for each system: this process for Hearth,
 * client, scheduler and workers for Dask (with psutil), the pipeline's processes for coreutils (the shell's `times`).
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startDevnet } from '../src/devnet/devnet.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadJobDefinition } from '../src/jobs/job-file.ts'
import { planJob } from '../src/jobs/kinds.ts'
import { createLocalRunner } from '../src/requestor/local-runner.ts'
import { daskMissing, findDask, runDaskScript } from './lib/dask.ts'
import { lineLogger, median, round } from './lib/stats.ts'
import { timedMapReduce, type TimedMapReduce } from './lib/timed-mapreduce.ts'
import { buildWordcountCorpus } from './lib/wordcount-corpus.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    providers: { type: 'string', default: '2' },
    mb: { type: 'string', default: '25.6' },
    'chunk-kib': { type: 'string' },
    reducers: { type: 'string' },
    /** Another build of the wordcount workload to measure, e.g. an older one (default: build/workloads/wordcount.wasm). */
    wasm: { type: 'string' },
  },
})
const runs = Number(values.runs)
const providers = Number(values.providers)
const repoRoot = fileURLToPath(new URL('../', import.meta.url))
const log = lineLogger(values.json)
const ms = (x: number): number => Math.round(x)
const wasmPath = resolve(values.wasm ?? join(repoRoot, 'build', 'workloads', 'wordcount.wasm'))

/** `sort | uniq -c` lines ("   12 word") as the job's table ("word<TAB>12" lines; the empty word left out). */
function uniqToTable(text: string): Buffer {
  const lines: string[] = []
  for (const line of text.split('\n')) {
    const match = /^\s*(\d+) (.+)$/.exec(line)
    if (match !== null) lines.push(`${match[2]}\t${match[1]}\n`)
  }
  return Buffer.from(lines.join(''), 'latin1')
}

/** `times`' line "0m1.234000s 0m0.056000s" (user, system) as milliseconds in all. */
function timesMs(line: string): number {
  return [...line.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, [, minutes, seconds]) => sum + (Number(minutes) * 60 + Number(seconds)) * 1000, 0)
}

/** The pipeline's wall time, the CPU time of its processes (the shell's `times`), and its counts. */
async function coreutils(files: string[]): Promise<{ ms: number; cpuMs: number; counts: Buffer }> {
  const pipeline = 'cat "$@" | tr A-Z a-z | tr -cs a-z0-9 "\\n" | sort | uniq -c; times >&2'
  const started = performance.now()
  const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn('sh', ['-c', pipeline, 'sh', ...files], { env: { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] })
    const chunks: Buffer[] = []
    let errors = ''
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()))
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolve({ stdout: Buffer.concat(chunks).toString('latin1'), stderr: errors }) : reject(new Error(`the coreutils pipeline exited with ${code}: ${errors}`))))
  })
  const ms = performance.now() - started
  return { ms, cpuMs: timesMs(stderr.trim().split('\n').at(-1) ?? ''), counts: uniqToTable(stdout) }
}

/** Median of each figure of several timed runs, and the breakdown's line. */
function summarise(label: string, timed: TimedMapReduce[], bytes: number, starts: number[] = []): Record<string, unknown> {
  const pick = (f: (t: TimedMapReduce) => number): number => median(timed.map(f))
  const phase = (name: string, f: (p: TimedMapReduce['phases'][number]) => number): number => pick((t) => f(t.phases.find((p) => p.phase === name) ?? { phase: name, ms: 0, tasks: 0, guestMs: 0, roundTripMs: 0 }))
  const summary = {
    jobMs: ms(pick((t) => t.jobMs)),
    jobRangeMs: [ms(Math.min(...timed.map((t) => t.jobMs))), ms(Math.max(...timed.map((t) => t.jobMs)))],
    ...(starts.length === 0 ? {} : { networkStartMs: ms(median(starts)) }),
    setupMs: ms(pick((t) => t.setupMs)),
    chunkMs: ms(pick((t) => t.chunkMs)),
    mapMs: ms(phase('map', (p) => p.ms)),
    mapTasks: phase('map', (p) => p.tasks),
    mapGuestMs: ms(phase('map', (p) => p.guestMs)),
    shuffleMs: ms(pick((t) => t.shuffleMs)),
    reduceMs: ms(phase('reduce', (p) => p.ms)),
    reduceTasks: phase('reduce', (p) => p.tasks),
    reduceGuestMs: ms(phase('reduce', (p) => p.guestMs)),
    mergeMs: ms(pick((t) => t.mergeMs)),
    settleMs: ms(pick((t) => t.settleMs)),
    attempts: pick((t) => t.figures.attempts),
    checks: pick((t) => t.figures.checks),
    cpuMs: ms(pick((t) => t.cpuMs)),
    cpuMsPerMB: round(pick((t) => t.cpuMs) / (bytes / 1e6)),
  }
  log(`  Hearth, ${label}: ${summary.jobMs} ms (runs ${summary.jobRangeMs.join('-')} ms)${starts.length === 0 ? '' : `, +${summary.networkStartMs} ms network start-up`}; ${summary.attempts} task runs, ${summary.checks} of them checks`)
  log(`    setup ${summary.setupMs} | chunking ${summary.chunkMs} | map ${summary.mapMs} (${summary.mapTasks} tasks, guests ran ${summary.mapGuestMs}) | shuffle ${summary.shuffleMs} | reduce ${summary.reduceMs} (${summary.reduceTasks} tasks, guests ${summary.reduceGuestMs}) | merge ${summary.mergeMs} | settle ${summary.settleMs} ms`)
  log(`    CPU of this process (requestor, ${providers} providers, chain): ${summary.cpuMs} ms, ${summary.cpuMsPerMB} ms per MB`)
  return summary
}

const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-mapreduce-'))
const report: Record<string, unknown> = { runs, providers, cores: availableParallelism(), loadAverageAtStart: round(loadavg()[0]!) }
try {
  const corpus = await buildWordcountCorpus(repoRoot, join(dir, 'texts'), Math.round(Number(values.mb) * 1e6))
  const jobFile = join(dir, 'job.json')
  await writeFile(jobFile, JSON.stringify({
    kind: 'mapreduce', name: 'bench wordcount', runtime: 'wasi', package: wasmPath, inputs: ['./texts/*.txt'],
    ...(values['chunk-kib'] === undefined ? {} : { chunkBytes: Number(values['chunk-kib']) * 1024 }),
    ...(values.reducers === undefined ? {} : { reducers: Number(values.reducers) }),
    output: 'counts.tsv',
  }))
  const job = loadJobDefinition(jobFile)
  if (job.kind !== 'mapreduce') throw new Error('the bench job is not a map-reduce')
  report.text = { files: corpus.files.length, bytes: corpus.bytes, markdownSources: corpus.sources, chunkBytes: job.chunkBytes, reducers: job.reducers }
  log(`bench: word count over ${(corpus.bytes / 1e6).toFixed(1)} MB (${corpus.files.length} files of node_modules' Markdown, repeated), ${providers} providers/workers, chunks of ${job.chunkBytes / 1024} KiB, ${job.reducers} reducers; ${runs} runs, medians; ${availableParallelism()} cores, load ${report.loadAverageAtStart}`)

  // coreutils: the anchor, and the reference counts.
  let reference: Buffer = Buffer.alloc(0)
  const coreMs: number[] = []
  const coreCpuMs: number[] = []
  for (let i = 0; i <= runs; i++) {
    const run = await coreutils(corpus.files)
    if (i === 0) reference = run.counts
    else {
      coreMs.push(run.ms)
      coreCpuMs.push(run.cpuMs)
    }
  }
  const distinct = reference.reduce((n, byte) => n + (byte === 0x0a ? 1 : 0), 0)
  report.coreutils = { ms: ms(median(coreMs)), cpuMs: ms(median(coreCpuMs)), distinctWords: distinct }
  log(`  coreutils pipeline (tr | sort | uniq -c): ${ms(median(coreMs))} ms, CPU ${ms(median(coreCpuMs))} ms; ${distinct} distinct words (the reference counts)`)
  const exact: Record<string, boolean> = {}
  const check = (label: string, counts: Buffer): void => void (exact[label] = (exact[label] ?? true) && counts.equals(reference))

  // Hearth's plan with no network: the local runner, as many sandbox workers as providers.
  const runtime = createWasiRuntime({ maxWorkers: providers })
  try {
    const runner = createLocalRunner({ runtime, package: new Uint8Array(await readFile(wasmPath)), concurrency: providers, workDir: dir })
    const localMs: number[] = []
    for (let i = 0; i <= runs; i++) {
      const started = performance.now()
      const product = await planJob(job).execute(runner)
      if (i > 0) localMs.push(performance.now() - started)
      check('localRunner', Buffer.from(product.outputs[0]!.data))
    }
    report.localRunner = { ms: ms(median(localMs)) }
    log(`  Hearth's plan on the local runner (no network, ${providers} sandbox workers): ${ms(median(localMs))} ms`)
  } finally {
    await runtime.close()
  }

  // Verification off: one devnet, a warm-up job, then the runs.
  const off: TimedMapReduce[] = []
  const trusted = await startDevnet({ providers, trustAllResults: true })
  try {
    for (let i = 0; i <= runs; i++) {
      const timed = await timedMapReduce(trusted.requestor.agent, jobFile, join(dir, `off-${i}`), providers)
      check('verificationOff', timed.counts)
      if (i > 0) off.push(timed)
    }
  } finally {
    await trusted.stop()
  }
  report.verificationOff = summarise('verification off', off, corpus.bytes)

  // Default verification: every run on a fresh devnet, so that the requestor knows none of its providers.
  const fresh: TimedMapReduce[] = []
  const starts: number[] = []
  for (let i = 0; i < runs; i++) {
    const started = performance.now()
    const devnet = await startDevnet({ providers, verificationSeed: i + 1 })
    starts.push(performance.now() - started)
    try {
      const timed = await timedMapReduce(devnet.requestor.agent, jobFile, join(dir, `verified-${i}`), providers)
      check('verificationDefault', timed.counts)
      fresh.push(timed)
    } finally {
      await devnet.stop()
    }
  }
  report.verificationDefault = summarise('default verification, new providers', fresh, corpus.bytes, starts)

  // Dask: the same files, the same words, as many single-thread worker processes as providers.
  const dask = findDask()
  if (dask === undefined) {
    log(`  ${daskMissing}`)
    report.dask = { skipped: daskMissing }
  } else {
    const out = join(dir, 'dask.tsv')
    const measured = await runDaskScript<{ importMs: number; clusterStartMs: number; runsMs: number[]; cpuMs: number[] }>(dask, 'dask_wordcount.py', ['--workers', String(providers), '--runs', String(runs), '--out', out, ...corpus.files])
    check('dask', await readFile(out))
    const cpu = measured.cpuMs.length === 0 ? undefined : ms(median(measured.cpuMs))
    report.dask = { version: dask.version, ms: ms(median(measured.runsMs)), ...(cpu === undefined ? {} : { cpuMs: cpu }), clusterStartMs: ms(measured.clusterStartMs), importMs: ms(measured.importMs) }
    log(`  Dask ${dask.version} dask.bag, ${providers} single-thread worker processes: ${ms(median(measured.runsMs))} ms${cpu === undefined ? '' : `, CPU ${cpu} ms (client, scheduler and workers)`}, +${ms(measured.clusterStartMs)} ms cluster start-up (+${ms(measured.importMs)} ms imports)`)
  }

  const hearthOn = report.verificationDefault as { jobMs: number; networkStartMs: number; cpuMs: number }
  const hearthOff = report.verificationOff as { jobMs: number; cpuMs: number }
  const daskReport = report.dask as { ms?: number; clusterStartMs?: number; cpuMs?: number }
  const ratios: Record<string, number> = {
    defaultVsCoreutils: round(hearthOn.jobMs / median(coreMs)),
    offVsCoreutils: round(hearthOff.jobMs / median(coreMs)),
    ...(daskReport.ms === undefined ? {} : {
      defaultVsDask: round(hearthOn.jobMs / daskReport.ms),
      offVsDask: round(hearthOff.jobMs / daskReport.ms),
      defaultVsDaskWithStartUp: round((hearthOn.jobMs + hearthOn.networkStartMs) / (daskReport.ms + daskReport.clusterStartMs!)),
      daskVsCoreutils: round(daskReport.ms / median(coreMs)),
    }),
    ...(daskReport.cpuMs === undefined ? {} : { cpuDefaultVsDask: round(hearthOn.cpuMs / daskReport.cpuMs), cpuOffVsDask: round(hearthOff.cpuMs / daskReport.cpuMs) }),
    cpuOffVsCoreutils: round(hearthOff.cpuMs / median(coreCpuMs)),
  }
  report.ratios = ratios
  report.exact = exact
  log(`  ratios (wall time over wall time, cpu*: CPU time over CPU time; below 1 is faster): ${Object.entries(ratios).map(([k, v]) => `${k} ${v}`).join(', ')}`)
  log(`  same counts as coreutils: ${Object.entries(exact).map(([k, v]) => `${k} ${v ? 'yes' : 'NO'}`).join(', ')}`)
  if (Object.values(exact).some((same) => !same)) process.exitCode = 1
} finally {
  await rm(dir, { recursive: true, force: true })
}
report.loadAverageAtEnd = round(loadavg()[0]!)
log(`load average ${String(report.loadAverageAtStart)} at the start, ${String(report.loadAverageAtEnd)} at the end`)
if (values.json) console.log(JSON.stringify(report))
