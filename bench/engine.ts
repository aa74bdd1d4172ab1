/**
 * The job engine end to end, against the figures it is held to:
 *
 *  1. throughput: no-op WASI tasks through the whole engine (offers, agreements, escrow, signed requests and results,
 *     vouchers, settlement) with 8 local providers, verification off and on, against the same tasks through the
 *     one-process local runner (baseline). Anchors: aim 1,000 tasks/s; Ray's single client ~8,000/s; Golem seconds
 *     per task; Dask distributed measured here on the same count of single-thread workers, as processes and in process
 *     (bench/lib/dask_noop.py; skipped, with how to install it, where python3 has no dask.distributed).
 *  2. time to first result on a running network: job submitted -> first task-done event. Aim < 1 s; Golem ~30 s.
 *  3. extra compute spent on verification with honest providers: several jobs from one requestor (its reputation book
 *     learns), attempts / results - 1 per job. Aim < 15% after warm-up; BOINC's adaptive replication 5-10%.
 *  4. parallel efficiency of a CPU-bound render (the built-in WASI ray tracer) on 2 provider processes
 *     (`hearth provider start`, each lending 1 thread, on a chain served by this process): 1 provider, then 2, against
 *     rendering the image in one process. Aim 85% of ideal. `--in-process` measures devnet providers instead (one Node
 *     process: the two cores are then shared with the requestor and the chain).
 *
 * Medians of several runs; every baseline is measured in the same run.
 *
 *   node --import tsx bench/engine.ts [--json] [--runs 3] [--tasks 2000] [--providers 8] [--only throughput,first,verify,render]
 *     [--jobs 8 --job-tasks 200] [--width 2560 --height 1440 --tiles 16] [--in-process]
 *
 * On a machine shared with other work, wall-clock rates measure that work too: the no-op figures therefore also give
 * the CPU time per task of the whole network (all in this process), and the render the share of a core its guests got.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { PassThrough } from 'node:stream'
import { parseArgs } from 'node:util'
import { parseEther } from 'viem'
import { devAccountKey, startChain } from '../src/cli/chain-command.ts'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { body, section, utf8, wasmModule } from '../src/exec/testdata/wasm-bytes.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { identityFromPrivateKey } from '../src/identity/node-identity.ts'
import { renderJob } from '../src/jobs/render-job.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { createHost } from '../src/net/host.ts'
import { createChainClient } from '../src/payment/chain-client.ts'
import type { JobEvent } from '../src/requestor/events.ts'
import { createLocalRunner } from '../src/requestor/local-runner.ts'
import { createRequestor, type JobOutcome, type JobSpec, type Requestor, type TaskSpec } from '../src/requestor/requestor.ts'
import { openStore } from '../src/store/store.ts'
import { daskNoopAnchor } from './lib/dask.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    tasks: { type: 'string', default: '2000' },
    providers: { type: 'string', default: '8' },
    /** Jobs (and tasks in each) of the verification warm-up series. */
    jobs: { type: 'string', default: '8' },
    'job-tasks': { type: 'string', default: '200' },
    width: { type: 'string', default: '2560' },
    height: { type: 'string', default: '1440' },
    tiles: { type: 'string', default: '16' },
    'in-process': { type: 'boolean', default: false },
    only: { type: 'string', default: 'throughput,first,verify,render' },
  },
})
const runs = Number(values.runs)
const taskCount = Number(values.tasks)
const providerCount = Number(values.providers)
const jobs = Number(values.jobs)
const jobTasks = Number(values['job-tasks'])
const only = new Set(values.only.split(','))
const repoRoot = resolve(import.meta.dirname, '..')

const log = (line: string): void => {
  if (!values.json) console.log(line)
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
const round = (x: number, digits = 1): number => Number(x.toFixed(digits))

// (module (memory (export "memory") 1 1) (func (export "_start"))): a task that does nothing, so that what is
// measured is the engine around it.
const noop = wasmModule([
  section(1, [1, 0x60, 0, 0]),
  section(3, [1, 0]),
  section(5, [1, 1, 1, 1]),
  section(7, [2, ...utf8('memory'), 2, 0, ...utf8('_start'), 0, 0]),
  section(10, [1, ...body([])]),
])

function noopTasks(count: number): TaskSpec[] {
  return Array.from({ length: count }, (_, i) => ({ args: [String(i)], env: {}, inputs: [], outputs: [] }))
}

function noopSpec(count: number, providers: number): JobSpec {
  return {
    name: 'bench no-op',
    runtime: 'wasi',
    package: noop,
    tasks: noopTasks(count),
    providers,
    maxPricePerTaskWei: parseEther('1'),
    timeoutMs: 30_000,
    maxMemoryBytes: 16 << 20,
    maxOutputBytes: 1 << 20,
  }
}

/** One job through runJob, with when each part of it ended (ms since submission). */
interface TimedJob {
  outcome: JobOutcome
  /** Offers, agreements and escrow: submission to the first batch. */
  setupMs: number
  firstResultMs: number
  /** First batch -> last task-done. */
  tasksMs: number
  /** Submission -> runJob resolved (settlement included). */
  wallMs: number
  /**
   * CPU time of this whole process (every node of the devnet, the chain, the sandbox threads) over the job, per task:
   * what a task costs whatever else the machine runs, where wall-clock rates also measure the other load.
   */
  cpuMsPerTask: number
}

async function timedJob(requestor: Requestor, spec: JobSpec): Promise<TimedJob> {
  const submitted = performance.now()
  const cpuBefore = process.cpuUsage()
  let batchAt = NaN
  let firstAt = NaN
  let lastAt = NaN
  const outcome = await requestor.runJob(spec, {
    onEvent: (event: JobEvent) => {
      const now = performance.now()
      if (event.type === 'batch' && Number.isNaN(batchAt)) batchAt = now
      if (event.type === 'task-done') {
        if (Number.isNaN(firstAt)) firstAt = now
        lastAt = now
      }
    },
  })
  const wallMs = performance.now() - submitted
  const cpu = process.cpuUsage(cpuBefore)
  const done = outcome.results.filter((r) => r !== undefined).length
  if (done !== spec.tasks.length) throw new Error(`only ${done}/${spec.tasks.length} tasks finished: ${outcome.failures[0]?.message ?? ''}`)
  return { outcome, setupMs: batchAt - submitted, firstResultMs: firstAt - submitted, tasksMs: lastAt - batchAt, wallMs, cpuMsPerTask: (cpu.user + cpu.system) / 1000 / spec.tasks.length }
}

/** Extra runs per accepted result: attempts / results - 1 (checks, retries and stragglers all count). */
function extraCompute(outcome: JobOutcome): number {
  const results = outcome.results.filter((r) => r !== undefined).length
  return outcome.figures.attempts / results - 1
}

// The load average says how much of the machine other work took while this ran.
const report: Record<string, unknown> = { runs, cores: availableParallelism(), loadAverageAtStart: round(loadavg()[0]!, 2) }

// ---------------------------------------------------------------------------------------------------------------
// 1 + 2 + 3: no-op tasks

interface Throughput {
  tasksPerSec: number
  /** Tasks per second over the whole job: offers, agreements, escrow and settlement included. */
  jobTasksPerSec: number
  setupMs: number
  wallMs: number
  extraCompute: number
  cpuMsPerTask: number
}

async function throughput(devnet: Devnet, label: string): Promise<Throughput> {
  const rates: number[] = []
  const jobRates: number[] = []
  const setups: number[] = []
  const walls: number[] = []
  const extras: number[] = []
  const cpus: number[] = []
  for (let i = 0; i < runs; i++) {
    const job = await timedJob(devnet.requestor.agent, noopSpec(taskCount, providerCount))
    cpus.push(job.cpuMsPerTask)
    rates.push(taskCount / (job.tasksMs / 1000))
    jobRates.push(taskCount / (job.wallMs / 1000))
    setups.push(job.setupMs)
    walls.push(job.wallMs)
    extras.push(extraCompute(job.outcome))
    log(`    ${label} run ${i + 1}: ${Math.round(rates.at(-1)!)} tasks/s (tasks phase), ${Math.round(job.wallMs)} ms whole job, extra compute ${(extras.at(-1)! * 100).toFixed(1)}%, CPU ${job.cpuMsPerTask.toFixed(2)} ms/task`)
  }
  return { tasksPerSec: Math.round(median(rates)), jobTasksPerSec: Math.round(median(jobRates)), setupMs: Math.round(median(setups)), wallMs: Math.round(median(walls)), extraCompute: round(median(extras), 3), cpuMsPerTask: round(median(cpus), 2) }
}

async function localThroughput(): Promise<{ tasksPerSec: number; cpuMsPerTask: number }> {
  // The same tasks, as many at once as the devnet's providers take, in this process: no network, no signatures, no
  // payments. One sandbox worker, in a fresh runtime for every 200 tasks: a no-op task costs the main thread (task
  // directory, stdio files), not the guest; and a worker recycled after its 256th run while other runs hold open
  // descriptors has been seen to close some of theirs (EBADF), which a worker that never reaches 256 runs avoids.
  const chunk = 200
  const runChunked = async (tasks: TaskSpec[]): Promise<void> => {
    for (let from = 0; from < tasks.length; from += chunk) {
      const runtime = createWasiRuntime({ maxWorkers: 1 })
      try {
        const runner = createLocalRunner({ runtime, package: noop, concurrency: providerCount, maxMemoryBytes: 16 << 20, timeoutMs: 30_000, maxOutputBytes: 1 << 20 })
        await runner.run(tasks.slice(from, from + chunk))
      } finally {
        await runtime.close()
      }
    }
  }
  await runChunked(noopTasks(providerCount * 4))
  const rates: number[] = []
  const cpus: number[] = []
  for (let i = 0; i < runs; i++) {
    const started = performance.now()
    const cpuBefore = process.cpuUsage()
    await runChunked(noopTasks(taskCount))
    const cpu = process.cpuUsage(cpuBefore)
    rates.push(taskCount / ((performance.now() - started) / 1000))
    cpus.push((cpu.user + cpu.system) / 1000 / taskCount)
  }
  return { tasksPerSec: Math.round(median(rates)), cpuMsPerTask: round(median(cpus), 2) }
}

async function firstResult(devnet: Devnet): Promise<{ firstResultMs: number; setupMs: number }> {
  const firsts: number[] = []
  const setups: number[] = []
  for (let i = 0; i < runs; i++) {
    const job = await timedJob(devnet.requestor.agent, noopSpec(providerCount, providerCount))
    firsts.push(job.firstResultMs)
    setups.push(job.setupMs)
  }
  return { firstResultMs: Math.round(median(firsts)), setupMs: Math.round(median(setups)) }
}

/**
 * Runs one part of the benchmark; a part that fails is reported with its error and the others still run (a benchmark
 * reports, it never stops the suite).
 */
async function part(name: string, into: Record<string, unknown>, body: () => Promise<void>): Promise<void> {
  try {
    await body()
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0]! : String(error)
    into[`${name}Error`] = message
    log(`  ${name} FAILED: ${message}`)
  }
}

if (only.has('throughput') || only.has('first') || only.has('verify')) {
  log(`bench: job engine, no-op wasi tasks, ${providerCount} providers (1 thread each), ${runs} runs, medians; ${availableParallelism()} cores`)
  const section1: Record<string, unknown> = {}
  let local: number | undefined
  let localCpu: number | undefined
  if (only.has('throughput')) {
    // Before any devnet: its providers' sandbox workers share this process.
    await part('localRunner', section1, async () => {
      const measured = await localThroughput()
      local = measured.tasksPerSec
      localCpu = measured.cpuMsPerTask
      section1.localRunner = measured
      log(`  baseline: local single-process runner: ${local} tasks/s, CPU ${localCpu} ms/task (${taskCount} tasks, ${providerCount} at once)`)
    })
  }
  // Dask distributed's no-op rate on this machine, before any devnet starts (its processes would share the cores).
  const dask = only.has('throughput') ? await daskNoopAnchor({ tasks: taskCount, workers: providerCount, runs }, log).catch((error: Error) => void log(`  Dask baseline FAILED: ${error.message}`)) : undefined
  const ratio = (value: number, base: number | undefined): number | null => (base === undefined ? null : round(value / base, 3))
  if (only.has('throughput') || only.has('first')) {
    await part('verificationOff', section1, async () => {
      const trusted = await startDevnet({ providers: providerCount, trustAllResults: true })
      try {
        // Warm-up: sandboxes, JIT, connections.
        await timedJob(trusted.requestor.agent, noopSpec(providerCount * 4, providerCount))
        if (only.has('throughput')) {
          const off = await throughput(trusted, 'verification off')
          section1.verificationOff = { ...off, vsLocal: ratio(off.tasksPerSec, local), cpuVsLocal: ratio(off.cpuMsPerTask, localCpu), vsAim1000: round(off.tasksPerSec / 1000, 3), vsRay8000: round(off.tasksPerSec / 8000, 3) }
          log(`  verification off: ${off.tasksPerSec} tasks/s while tasks run (${ratio(off.tasksPerSec, local)}x local, ${round(off.tasksPerSec / 1000, 3)}x the 1,000/s aim, ${round(off.tasksPerSec / 8000, 3)}x Ray's ~8,000/s)`)
          log(`                    ${off.jobTasksPerSec} tasks/s over the whole job (setup ${off.setupMs} ms, job ${off.wallMs} ms with settlement), extra attempts ${(off.extraCompute * 100).toFixed(1)}%`)
          log(`                    CPU ${off.cpuMsPerTask} ms/task for the whole network in this process (${ratio(off.cpuMsPerTask, localCpu)}x the local runner's): at most ${Math.round(1000 / off.cpuMsPerTask)} tasks/s per core`)
        }
        if (only.has('first')) {
          const first = await firstResult(trusted)
          section1.firstResultVerificationOff = { ...first, vsAim1000: round(first.firstResultMs / 1000, 3), vsGolem30000: round(first.firstResultMs / 30_000, 4) }
          log(`  time to first result (verification off): ${first.firstResultMs} ms from submission (${first.setupMs} ms of it offers, agreements, escrow); aim < 1000 ms, Golem ~30,000 ms`)
        }
      } finally {
        await trusted.stop()
      }
    })
  }
  await part('verificationOn', section1, async () => {
    // A fresh requestor with an empty reputation book: every provider is checked fully until it has a record.
    const verified = await startDevnet({ providers: providerCount, verificationSeed: 7 })
    try {
      if (only.has('first')) {
        const first = await firstResult(verified)
        section1.firstResultVerificationOn = { ...first, vsAim1000: round(first.firstResultMs / 1000, 3) }
        log(`  time to first result (verification on, fresh requestor): ${first.firstResultMs} ms (setup ${first.setupMs} ms)`)
      }
      if (only.has('verify')) {
        const series: { job: number; tasks: number; attempts: number; checks: number; extraCompute: number; tasksPerSec: number }[] = []
        for (let j = 0; j < jobs; j++) {
          const job = await timedJob(verified.requestor.agent, noopSpec(jobTasks, providerCount))
          const row = { job: j + 1, tasks: jobTasks, attempts: job.outcome.figures.attempts, checks: job.outcome.figures.checks, extraCompute: round(extraCompute(job.outcome), 3), tasksPerSec: Math.round(jobTasks / (job.tasksMs / 1000)) }
          series.push(row)
          log(`  verification job ${row.job}: ${row.attempts} attempts for ${row.tasks} results, ${row.checks} checks -> ${(row.extraCompute * 100).toFixed(1)}% extra compute (${row.tasksPerSec} tasks/s)`)
        }
        const warm = series.slice(Math.floor(series.length / 2)).map((r) => r.extraCompute)
        section1.verificationOverhead = { series, afterWarmUp: round(median(warm), 3), aim: 0.15, boinc: '0.05-0.10' }
        log(`  extra compute after warm-up (median of the last ${warm.length} jobs): ${(median(warm) * 100).toFixed(1)}% (aim < 15%, BOINC 5-10%)`)
      }
      if (only.has('throughput')) {
        const on = await throughput(verified, 'verification on')
        const off = section1.verificationOff as Throughput | undefined
        section1.verificationOn = { ...on, vsOff: ratio(on.tasksPerSec, off?.tasksPerSec), cpuVsOff: ratio(on.cpuMsPerTask, off?.cpuMsPerTask), vsLocal: ratio(on.tasksPerSec, local), vsAim1000: round(on.tasksPerSec / 1000, 3) }
        log(`  verification on${only.has('verify') ? ' (after the warm-up jobs)' : ''}: ${on.tasksPerSec} tasks/s while tasks run (${ratio(on.tasksPerSec, off?.tasksPerSec)}x verification off), ${on.jobTasksPerSec} tasks/s whole job, extra compute ${(on.extraCompute * 100).toFixed(1)}%, CPU ${on.cpuMsPerTask} ms/task (${ratio(on.cpuMsPerTask, off?.cpuMsPerTask)}x verification off)`)
      }
    } finally {
      await verified.stop()
    }
  })
  if (dask) section1.dask = dask.compare((section1.verificationOff as Throughput | undefined)?.tasksPerSec)
  report.noop = { tasks: taskCount, providers: providerCount, ...section1 }
}

// ---------------------------------------------------------------------------------------------------------------
// 4: parallel efficiency of a CPU-bound render

interface Ready {
  event: 'ready'
  address: string
  multiaddrs: string[]
}

/** `hearth provider start` as its own process, lending one thread; resolves with its ready line. */
async function startProviderProcess(dataDir: string, key: string, deploymentFile: string): Promise<{ child: ChildProcess; ready: Ready; exited: Promise<number | null> }> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await writeFile(join(dataDir, 'node.key'), `${key}\n`, { mode: 0o600 })
  await chmod(join(dataDir, 'node.key'), 0o600)
  const args = ['--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-idle', '--deployment', deploymentFile, '--threads', '1', '--memory-gib', '1', '--disk-gib', '1']
  const child = spawn(process.execPath, ['bin/hearth.js', 'provider', 'start', ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)))
  const ready = await new Promise<Ready>((done, fail) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { event: string }
        if (parsed.event === 'ready') done(parsed as Ready)
      } catch {
        // not a JSON line
      }
    })
    void exited.then((code) => fail(new Error(`provider exited with ${code} before it was ready:\n${stderr}`)))
  })
  return { child, ready, exited }
}

/**
 * Tiles phase of a render job (first batch -> last tile) with `providers` providers; medians of `runs`. `busy` is the
 * providers' own compute (the guests' run times they metered) over providers x tiles phase: how well the engine kept
 * them working, which other load on the machine does not change the way it changes wall times. `cpuShare` is the
 * guests' CPU time over their run time: below 1 when other work on the machine took the providers' cores. `hereShare`
 * is the CPU this process (the requestor, and with provider processes the chain) spent over the whole job, as a share
 * of one core: what it takes from the providers' cores, PNG work and signatures included.
 */
async function renderPhases(requestor: Requestor, spec: JobSpec, providers: number): Promise<{ tilesMs: number; wallMs: number; minMs: number; maxMs: number; busy: number; cpuShare: number; hereShare: number }> {
  const tiles: number[] = []
  const walls: number[] = []
  const busy: number[] = []
  const shares: number[] = []
  const here: number[] = []
  for (let i = 0; i < runs; i++) {
    const cpuBefore = process.cpuUsage()
    const job = await timedJob(requestor, { ...spec, providers, offerWaitMs: 10_000 })
    const cpu = process.cpuUsage(cpuBefore)
    here.push((cpu.user + cpu.system) / 1000 / job.wallMs)
    const used = new Set(job.outcome.results.map((r) => r?.provider))
    if (used.size !== providers) throw new Error(`the render ran on ${used.size} providers, not ${providers}`)
    tiles.push(job.tasksMs)
    walls.push(job.wallMs)
    const ranMs = job.outcome.results.reduce((sum, r) => sum + (r?.usage.durationMs ?? 0), 0)
    busy.push(ranMs / (providers * job.tasksMs))
    shares.push(job.outcome.results.reduce((sum, r) => sum + (r?.usage.cpuMs ?? 0), 0) / ranMs)
  }
  return { tilesMs: median(tiles), wallMs: median(walls), minMs: Math.min(...tiles), maxMs: Math.max(...tiles), busy: median(busy), cpuShare: median(shares), hereShare: median(here) }
}

/** Runs the render on `providers` processes (or devnet providers) and hands back the requestor to run it with. */
async function withRenderNetwork<T>(providers: number, inProcess: boolean, body: (requestor: Requestor) => Promise<T>): Promise<T> {
  if (inProcess) {
    const devnet = await startDevnet({ providers, trustAllResults: true })
    try {
      return await body(devnet.requestor.agent)
    } finally {
      await devnet.stop()
    }
  }
  const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-engine-'))
  const quiet = { stdout: new PassThrough().resume(), stderr: new PassThrough().resume() }
  const deploymentFile = join(dir, 'deployment.json')
  const chain = await startChain({ port: 0, accounts: providers + 1, deploymentOut: deploymentFile }, quiet)
  const children: { child: ChildProcess; exited: Promise<number | null> }[] = []
  const store = openStore({ path: join(dir, 'requestor.db') })
  const identity = identityFromPrivateKey(devAccountKey(0))
  const host = await createHost({ identity })
  try {
    const started = await Promise.all(Array.from({ length: providers }, (_, i) => startProviderProcess(join(dir, `provider-${i + 1}`), devAccountKey(i + 1), deploymentFile)))
    children.push(...started)
    await host.start()
    const client = createChainClient({ transport: chain.url, privateKey: identity.privateKey, chainId: chain.chainId })
    // No reputation book: every result is taken as it is, as with trustAllResults on the devnet.
    const requestor = createRequestor({ identity, host, store, payment: { client, tokenAddress: chain.deployment.tokenAddress, escrowAddress: chain.deployment.escrowAddress } })
    await requestor.start()
    try {
      for (const { ready } of started) await requestor.market.syncFrom(ready.multiaddrs[0]!)
      await requestor.market.offerBook.waitFor(providers, undefined, { signal: AbortSignal.timeout(20_000) })
      return await body(requestor)
    } finally {
      await requestor.stop()
    }
  } finally {
    for (const { child } of children) child.kill('SIGTERM')
    await Promise.all(children.map(({ exited }) => Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))])))
    for (const { child } of children) if (child.exitCode === null) child.kill('SIGKILL')
    await host.stop()
    store.close()
    await chain.close()
    await rm(dir, { recursive: true, force: true })
  }
}

if (only.has('render')) {
  const renderReport: Record<string, unknown> = {}
  report.render = renderReport
  await part('render', renderReport, async () => {
    const width = Number(values.width)
    const height = Number(values.height)
    const tileCount = Number(values.tiles)
    const inProcess = values['in-process']
    const wasm = await loadBuiltinWorkload('render')
    const { spec } = renderJob({ width, height, tiles: tileCount, wasm, providers: 1, maxPricePerTaskWei: parseEther('1') })
    log(`bench: render ${width}x${height} in ${tileCount} tiles on 1 and 2 providers (${inProcess ? 'IN-PROCESS devnet providers: one Node process, so the cores are shared with the requestor and chain' : 'provider processes, `hearth provider start`, 1 thread each'}), ${runs} runs, medians`)
    // Baseline: the whole image in one process, one sandbox, no network.
    const runtime = createWasiRuntime({ maxWorkers: 1 })
    const localMs: number[] = []
    try {
      await renderLocally({ runtime, width, height, module: wasm })
      for (let i = 0; i < runs; i++) {
        const started = performance.now()
        await renderLocally({ runtime, width, height, module: wasm })
        localMs.push(performance.now() - started)
      }
    } finally {
      await runtime.close()
    }
    const local = median(localMs)
    const one = await withRenderNetwork(1, inProcess, (requestor) => renderPhases(requestor, spec, 1))
    const two = await withRenderNetwork(2, inProcess, (requestor) => renderPhases(requestor, spec, 2))
    const efficiency = one.tilesMs / (2 * two.tilesMs)
    const efficiencyVsLocal = local / (2 * two.tilesMs)
    Object.assign(renderReport, {
      width,
      height,
      tiles: tileCount,
      providers: inProcess ? 'in-process' : 'processes',
      localMs: Math.round(local),
      oneProvider: { tilesMs: Math.round(one.tilesMs), rangeMs: [Math.round(one.minMs), Math.round(one.maxMs)], wallMs: Math.round(one.wallMs), vsLocal: round(one.tilesMs / local, 3), busy: round(one.busy, 3), cpuShare: round(one.cpuShare, 3), requestorCoreShare: round(one.hereShare, 3) },
      twoProviders: { tilesMs: Math.round(two.tilesMs), rangeMs: [Math.round(two.minMs), Math.round(two.maxMs)], wallMs: Math.round(two.wallMs), speedup: round(one.tilesMs / two.tilesMs, 3), busy: round(two.busy, 3), cpuShare: round(two.cpuShare, 3), requestorCoreShare: round(two.hereShare, 3) },
      efficiency: round(efficiency, 3),
      efficiencyVsLocal: round(efficiencyVsLocal, 3),
      aim: 0.85,
    })
    log(`  one process (baseline): ${Math.round(local)} ms`)
    log(`  1 provider: tiles ${Math.round(one.tilesMs)} ms (runs ${Math.round(one.minMs)}-${Math.round(one.maxMs)}; ${round(one.tilesMs / local, 2)}x the one-process render), whole job ${Math.round(one.wallMs)} ms; provider busy ${(one.busy * 100).toFixed(0)}% of the time, its guest got ${(one.cpuShare * 100).toFixed(0)}% of a core`)
    log(`  2 providers: tiles ${Math.round(two.tilesMs)} ms (runs ${Math.round(two.minMs)}-${Math.round(two.maxMs)}; speed-up ${round(one.tilesMs / two.tilesMs, 2)}x), whole job ${Math.round(two.wallMs)} ms; providers busy ${(two.busy * 100).toFixed(0)}% of the time, their guests got ${(two.cpuShare * 100).toFixed(0)}% of a core each`)
    log(`  the requestor${inProcess ? ', chain and providers' : ' and chain'} (this process) used ${(one.hereShare * 100).toFixed(0)}% of a core with 1 provider, ${(two.hereShare * 100).toFixed(0)}% with 2: taken from the ${availableParallelism()} cores the guests run on`)
    log(`  parallel efficiency: ${(efficiency * 100).toFixed(0)}% of ideal against 1 provider, ${(efficiencyVsLocal * 100).toFixed(0)}% against the one-process render (aim 85%)`)
  })
}

report.loadAverageAtEnd = round(loadavg()[0]!, 2)
log(`load average ${String(report.loadAverageAtStart)} at the start, ${String(report.loadAverageAtEnd)} at the end (${availableParallelism()} cores)`)
if (values.json) console.log(JSON.stringify(report))
