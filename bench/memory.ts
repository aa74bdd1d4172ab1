/**
 * `node --import tsx bench/memory.ts [--json] [--runs 3] [--idle-sec 10] [--settle-sec 30] [--tiles 300] [--threads 1]
 * [--source]`: how much memory a provider holds, idle and busy, against the aim of 120 MB idle (RSS summed over the
 * provider's process and every process it starts).
 *
 * Each run starts a real provider (`hearth provider start`, its own process, lending `--threads` threads) on a chain
 * served by this process, joins it from a requestor in this process and waits until its offer has arrived. RSS of
 * the provider and its descendants is sampled every 200 ms:
 * - just started: the first 5 s after the offer arrived (median of the samples);
 * - idle: the last `--idle-sec` s of `--settle-sec` + `--idle-sec` s after the offer arrived (median): what an idle
 *   provider holds for hours, once start-up's garbage is collected (the provider collects once it is quiet, and V8
 *   then gives pages back some 10-20 s later; see src/provider/node-memory.ts);
 * - busy: while a render of `--tiles` small tiles (a job of that many WASI tasks) runs on it (the peak and the median
 *   of the samples), and the provider's CPU time per task;
 * - just after the job, and after the job: as just started and idle, from the end of the job (the WASI runtime also
 *   lets its worker go once it has been idle 10 s);
 * - VmHWM: the most the provider's own process held at any moment of its life (start-up included).
 * Baselines, measured in the same run the same way (idle, after a short settling): `node` with nothing loaded (a
 * process kept alive by a timer, what `node -e 0` holds), a bare libp2p node with the same transports and services
 * (bench/lib/bare-libp2p.mjs), and that node with viem, better-sqlite3 and zod loaded and used.
 * Figures are medians over `--runs` runs, in MB (10^6 bytes), each also as a ratio of the 120 MB aim.
 *
 * The provider runs as `bin/hearth.js` runs it: from dist/ (the built JavaScript). When src/ has changed since the
 * last build (bin/hearth.js would then run the sources through tsx), the bench runs dist/ as built anyway
 * (bench/lib/hearth-dist.mjs) and says so: run `npm run build:js` first to measure the current sources. `--source`
 * measures the tsx path instead; `--root DIR` the built command of another checkout (the commit before a change, say).
 * `--probe DIR` runs the provider with bench/lib/memory-probe.mjs and has it write its
 * memory by kind and a heap snapshot into DIR at the end of the idle and after-job windows (the figures are then not
 * comparable: the probe collects garbage). Linux only (/proc).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { PassThrough } from 'node:stream'
import { parseArgs } from 'node:util'
import { parseEther } from 'viem'
import { pickEntry, readStamp } from '../bin/build-stamp.js'
import { devAccountKey, startChain, type RunningChain } from '../src/cli/chain-command.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { identityFromPrivateKey } from '../src/identity/node-identity.ts'
import { renderJob } from '../src/jobs/render-job.ts'
import { createHost, type Host } from '../src/net/host.ts'
import { createChainClient } from '../src/payment/chain-client.ts'
import { createRequestor, type Requestor } from '../src/requestor/requestor.ts'
import { openStore } from '../src/store/store.ts'
import { cpuMs, sampleFor, sampleTree, statusBytes, type TreeSample } from './lib/process-memory.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    'idle-sec': { type: 'string', default: '10' },
    'settle-sec': { type: 'string', default: '30' },
    tiles: { type: 'string', default: '300' },
    threads: { type: 'string', default: '1' },
    source: { type: 'boolean', default: false },
    /** Another checkout (built) whose provider command to measure, e.g. the commit before a change. */
    root: { type: 'string' },
    /** A folder: the provider runs with bench/lib/memory-probe.mjs, which writes its heap there at the end of idle and after. */
    probe: { type: 'string' },
  },
})
const runs = Number(values.runs)
const idleMs = Number(values['idle-sec']) * 1000
const settleMs = Number(values['settle-sec']) * 1000
/** The "just started" and "just after the job" figures: the first seconds of each quiet spell. */
const firstMs = 5_000
const tiles = Number(values.tiles)
const threads = Number(values.threads)
const aimBytes = 120e6
const repoRoot = resolve(import.meta.dirname, '..')
const log = lineLogger(values.json)
const mb = (bytes: number): number => round(bytes / 1e6)
const vsAim = (bytes: number): number => round(bytes / aimBytes)

/** How the provider command is started, and what that runs. */
function providerEntry(): { args: string[]; env: NodeJS.ProcessEnv; runs: string } {
  if (values.root !== undefined) {
    const root = resolve(values.root)
    if (pickEntry(root) !== 'dist') throw new Error(`${root}: dist/ is missing or older than its src/; build it there first`)
    return { args: [join(root, 'bin/hearth.js')], env: process.env, runs: `${root} (dist/, --root)` }
  }
  if (values.source) return { args: ['bin/hearth.js'], env: { ...process.env, HEARTH_FROM_SOURCE: '1' }, runs: 'src/ through tsx (--source)' }
  const stamp = readStamp(repoRoot) as { builtAt?: string } | undefined
  if (stamp === undefined) throw new Error('dist/ is not built: run npm run build:js first')
  if (pickEntry(repoRoot) === 'dist') return { args: ['bin/hearth.js'], env: process.env, runs: 'dist/ (current build)' }
  return { args: ['bench/lib/hearth-dist.mjs'], env: process.env, runs: `dist/ as built at ${stamp.builtAt ?? '?'} (src/ has changed since; npm run build:js to measure it)` }
}

interface Started {
  child: ChildProcess
  exited: Promise<number | null>
  ready: { pid: number; multiaddrs: string[]; address?: string }
}

/** Spawns `args` and resolves with its first JSON line whose event is "ready". */
async function startReady(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Started> {
  const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)))
  const ready = await new Promise<Started['ready']>((done, fail) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { event?: string }
        if (parsed.event === 'ready') done(parsed as Started['ready'])
      } catch {
        // not a JSON line
      }
    })
    void exited.then((code) => fail(new Error(`${args.join(' ')} exited with ${code} before it was ready:\n${stderr}`)))
  })
  return { child, exited, ready }
}

async function stopProcess(started: Started): Promise<void> {
  started.child.kill('SIGTERM')
  const gone = await Promise.race([started.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20_000))])
  if (!gone) started.child.kill('SIGKILL')
}

/** With --probe: has the provider write what its heap holds (bench/lib/memory-probe.mjs), and waits for it. */
async function probeNow(pid: number): Promise<void> {
  if (values.probe === undefined) return
  process.kill(pid, 'SIGUSR2')
  await sleep(10_000)
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const medianRss = (samples: TreeSample[]): number => median(samples.map((s) => s.rssBytes))
const peakRss = (samples: TreeSample[]): number => Math.max(...samples.map((s) => s.rssBytes))

/** A process started by `args` with the bench's host connected to it, settled, then sampled for idleMs. */
async function baseline(args: string[], host: Host | undefined): Promise<number> {
  const started = await startReady(args)
  try {
    if (host !== undefined) await host.ping(started.ready.multiaddrs[0]!)
    await sleep(2_000)
    return medianRss(await sampleFor(started.ready.pid, { durationMs: idleMs }))
  } finally {
    await stopProcess(started)
  }
}

interface RunFigures {
  nodeBytes: number
  bareBytes: number
  bareDepsBytes: number
  startedBytes: number
  idleBytes: number
  idleProcesses: number
  idleThreads: number
  busyPeakBytes: number
  busyMedianBytes: number
  busyProcesses: number
  justAfterBytes: number
  afterBytes: number
  afterThreads: number
  peakHwmBytes: number
  cpuMsPerTask: number
  jobMs: number
}

interface Network {
  chain: RunningChain
  deploymentFile: string
  requestor: Requestor
  host: Host
  close(): Promise<void>
}

async function startNetwork(dir: string): Promise<Network> {
  const quiet = { stdout: new PassThrough().resume(), stderr: new PassThrough().resume() }
  const deploymentFile = join(dir, 'deployment.json')
  const chain = await startChain({ port: 0, accounts: 2, deploymentOut: deploymentFile }, quiet)
  const store = openStore({ path: join(dir, 'requestor.db') })
  const identity = identityFromPrivateKey(devAccountKey(0))
  const host = await createHost({ identity })
  await host.start()
  const client = createChainClient({ transport: chain.url, privateKey: identity.privateKey, chainId: chain.chainId })
  const requestor = createRequestor({ identity, host, store, payment: { client, tokenAddress: chain.deployment.tokenAddress, escrowAddress: chain.deployment.escrowAddress } })
  await requestor.start()
  return {
    chain,
    deploymentFile,
    requestor,
    host,
    close: async () => {
      await requestor.stop()
      await host.stop()
      store.close()
      await chain.close()
    },
  }
}

async function startProvider(dir: string, net: Network, run: number): Promise<Started> {
  const dataDir = join(dir, `provider-${run}`)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await writeFile(join(dataDir, 'node.key'), `${devAccountKey(1)}\n`, { mode: 0o600 })
  await chmod(join(dataDir, 'node.key'), 0o600)
  const entry = providerEntry()
  const probe = values.probe === undefined ? [] : ['--import', './bench/lib/memory-probe.mjs']
  const env = values.probe === undefined ? entry.env : { ...entry.env, HEARTH_MEMORY_PROBE_DIR: resolve(values.probe), HEARTH_MEMORY_PROBE_SNAPSHOT: '1' }
  const args = [...probe, ...entry.args, 'provider', 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-idle', '--deployment', net.deploymentFile]
  return startReady([...args, '--threads', String(threads), '--memory-gib', '1', '--disk-gib', '1'], env)
}

async function oneRun(dir: string, net: Network, wasm: Uint8Array, run: number): Promise<RunFigures> {
  const nodeBytes = await baseline(['-e', 'process.stdout.write(JSON.stringify({ event: "ready", pid: process.pid, multiaddrs: [] }) + "\\n"); setInterval(() => {}, 1000)'], undefined)
  const bareBytes = await baseline(['bench/lib/bare-libp2p.mjs'], net.host)
  const bareDepsBytes = await baseline(['bench/lib/bare-libp2p.mjs', '--with-deps'], net.host)

  const provider = await startProvider(dir, net, run)
  try {
    const { pid, multiaddrs, address } = provider.ready
    await net.requestor.market.syncFrom(multiaddrs[0]!)
    await net.requestor.market.offerBook.waitFor(1, (offer) => offer.provider.toLowerCase() === address?.toLowerCase(), { signal: AbortSignal.timeout(20_000) })
    const quiet = await sampleFor(pid, { durationMs: settleMs + idleMs })
    const startedSamples = quiet.slice(0, Math.round(firstMs / 200))
    const idle = quiet.slice(-Math.round(idleMs / 200))
    await probeNow(pid)

    const { spec } = renderJob({ width: 640, height: 480, tiles, wasm, providers: 1, maxPricePerTaskWei: parseEther('1') })
    const cpuBefore = cpuMs(pid)
    const started = performance.now()
    const job = net.requestor.runJob({ ...spec, offerWaitMs: 10_000 })
    const busy = await sampleFor(pid, { stop: job })
    const outcome = await job
    const jobMs = performance.now() - started
    const cpuJob = cpuMs(pid) - cpuBefore
    const done = outcome.results.filter((r) => r !== undefined).length
    if (done !== tiles) throw new Error(`only ${done}/${tiles} tiles rendered: ${outcome.failures[0]?.message ?? ''}`)

    const afterQuiet = await sampleFor(pid, { durationMs: settleMs + idleMs })
    const justAfter = afterQuiet.slice(0, Math.round(firstMs / 200))
    const after = afterQuiet.slice(-Math.round(idleMs / 200))
    await probeNow(pid)
    return {
      nodeBytes,
      bareBytes,
      bareDepsBytes,
      startedBytes: medianRss(startedSamples),
      idleBytes: medianRss(idle),
      idleProcesses: Math.max(...idle.map((s) => s.processes)),
      idleThreads: median(idle.map((s) => s.threads)),
      busyPeakBytes: peakRss(busy),
      busyMedianBytes: medianRss(busy),
      busyProcesses: Math.max(...busy.map((s) => s.processes)),
      justAfterBytes: medianRss(justAfter),
      afterBytes: medianRss(after),
      afterThreads: sampleTree(pid).threads,
      peakHwmBytes: statusBytes(pid, 'VmHWM'),
      cpuMsPerTask: cpuJob / tiles,
      jobMs,
    }
  } finally {
    await stopProcess(provider)
  }
}

const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-memory-'))
const entry = providerEntry()
log(`bench: provider memory, ${runs} runs, idle sampled ${idleMs / 1000} s, a render of ${tiles} tiles as the job, ${threads} thread(s) lent; provider runs ${entry.runs}`)
const report: Record<string, unknown> = { runs, idleSec: idleMs / 1000, tiles, threads, providerRuns: entry.runs, loadAverageAtStart: round(loadavg()[0]!) }
const net = await startNetwork(dir)
const perRun: RunFigures[] = []
try {
  const wasm = await loadBuiltinWorkload('render')
  for (let run = 1; run <= runs; run++) {
    const figures = await oneRun(dir, net, wasm, run)
    perRun.push(figures)
    log(
      `  run ${run}: just started ${mb(figures.startedBytes)} MB, idle ${mb(figures.idleBytes)} MB (${figures.idleProcesses} process, ${figures.idleThreads} threads), busy peak ${mb(figures.busyPeakBytes)} MB` +
        ` (${figures.busyProcesses} processes at most), just after the job ${mb(figures.justAfterBytes)} MB, after ${mb(figures.afterBytes)} MB (${figures.afterThreads} threads), VmHWM ${mb(figures.peakHwmBytes)} MB;` +
        ` job ${Math.round(figures.jobMs)} ms, provider CPU ${round(figures.cpuMsPerTask)} ms/task; baselines node ${mb(figures.nodeBytes)}, libp2p ${mb(figures.bareBytes)}, + deps ${mb(figures.bareDepsBytes)} MB`,
    )
  }
} finally {
  await net.close()
  await rm(dir, { recursive: true, force: true })
}

const pick = (key: keyof RunFigures): number => median(perRun.map((f) => f[key]))
const rows: [string, keyof RunFigures][] = [
  ['provider just started (first 5 s)', 'startedBytes'],
  ['provider idle', 'idleBytes'],
  ['provider busy (peak)', 'busyPeakBytes'],
  ['provider busy (median)', 'busyMedianBytes'],
  ['provider just after the job (first 5 s)', 'justAfterBytes'],
  ['provider after the job', 'afterBytes'],
  ['provider VmHWM (whole life)', 'peakHwmBytes'],
  ['node, nothing loaded', 'nodeBytes'],
  ['bare libp2p node', 'bareBytes'],
  ['bare libp2p + viem, better-sqlite3, zod', 'bareDepsBytes'],
]
log(`medians of ${runs} runs (RSS summed over the process and its descendants; MB = 10^6 bytes; aim: provider idle <= 120 MB):`)
const figures: Record<string, { mb: number; vsAim: number }> = {}
for (const [label, key] of rows) {
  const bytes = pick(key)
  figures[key] = { mb: mb(bytes), vsAim: vsAim(bytes) }
  log(`  ${label.padEnd(42)} ${String(mb(bytes)).padStart(7)} MB  ${vsAim(bytes).toFixed(2)}x the aim`)
}
const cpu = round(pick('cpuMsPerTask'))
log(`  provider CPU per task (busy)              ${cpu} ms; job ${Math.round(pick('jobMs'))} ms`)
Object.assign(report, { figures, cpuMsPerTask: cpu, jobMs: Math.round(pick('jobMs')), perRun, loadAverageAtEnd: round(loadavg()[0]!) })
if (values.json) console.log(JSON.stringify(report))
