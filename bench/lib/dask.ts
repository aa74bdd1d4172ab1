/**
 * Dask (dask.distributed, Python) as the benches' outside baseline: finding a python3 that has it, running the scripts
 * beside this file, and the no-op throughput anchor of bench/engine.ts. Dask is optional: without it the benches say
 * the baseline was skipped and how to install it.
 */
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export interface DaskPython {
  python: string
  version: string
}

export const daskMissing =
  'Dask baseline skipped: no python3 here imports dask.distributed (Debian/Ubuntu: apt-get install python3-distributed python3-dask; elsewhere: pip install "dask[distributed]")'

/** The first python3 on PATH, then the system's, that imports dask.distributed; undefined when none does. */
export function findDask(): DaskPython | undefined {
  for (const python of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(python, ['-c', 'import dask.bag, distributed; print(distributed.__version__)'], { encoding: 'utf8', timeout: 60_000 })
    if (probe.status === 0) return { python, version: probe.stdout.trim() }
  }
  return undefined
}

/** Runs bench/lib/<script> and parses the JSON line it prints last; rejects with its stderr's tail when it fails. */
export function runDaskScript<T>(dask: DaskPython, script: string, args: string[], timeoutMs = 600_000): Promise<T> {
  const path = fileURLToPath(new URL(script, import.meta.url))
  return new Promise<T>((resolve, reject) => {
    const child = spawn(dask.python, [path, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
    child.once('error', reject)
    child.once('close', (code, signal) => {
      const last = stdout.trim().split('\n').at(-1) ?? ''
      if (code === 0 && last.startsWith('{')) return resolve(JSON.parse(last) as T)
      reject(new Error(`${script} ${signal === null ? `exited with ${code}` : `was killed (${signal})`}: ${stderr.trim().split('\n').slice(-5).join(' | ')}`))
    })
  })
}

interface NoopKind {
  clusterStartMs: number
  tasksPerSec: number[]
}

export interface DaskNoopThroughput {
  version: string
  /** Medians over the runs, tasks per second; worker processes, and workers in the client's process. */
  processes: { tasksPerSec: number; clusterStartMs: number }
  threads: { tasksPerSec: number; clusterStartMs: number }
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * bench/engine.ts's anchor: Dask's no-op rates measured now (or a line saying why not), and later `compare` for the
 * ratio of Hearth's in-process providers to Dask's in-process workers (and to its worker processes).
 */
export async function daskNoopAnchor(options: { tasks: number; workers: number; runs: number }, log: (line: string) => void): Promise<{
  measured?: DaskNoopThroughput
  compare(hearthTasksPerSec: number | undefined): Record<string, unknown>
}> {
  const dask = findDask()
  if (dask === undefined) {
    log(`  ${daskMissing}`)
    return { compare: () => ({ skipped: daskMissing }) }
  }
  const measured = await daskNoopThroughput(dask, options)
  log(`  Dask ${measured.version}, ${options.tasks} no-op tasks on ${options.workers} single-thread workers: ${measured.processes.tasksPerSec} tasks/s with worker processes (start-up ${measured.processes.clusterStartMs} ms), ${measured.threads.tasksPerSec} tasks/s with in-process workers`)
  return {
    measured,
    compare(hearth) {
      if (hearth === undefined) return { ...measured }
      const vsThreads = Number((hearth / measured.threads.tasksPerSec).toFixed(2))
      const vsProcesses = Number((hearth / measured.processes.tasksPerSec).toFixed(2))
      log(`  Hearth (in-process providers, verification off) against Dask: ${vsThreads}x its in-process workers, ${vsProcesses}x its worker processes`)
      return { ...measured, hearthVsThreads: vsThreads, hearthVsProcesses: vsProcesses }
    },
  }
}

/** `tasks` no-op tasks on `workers` single-thread Dask workers, as processes and in process; medians of `runs`. */
export async function daskNoopThroughput(dask: DaskPython, options: { tasks: number; workers: number; runs: number }): Promise<DaskNoopThroughput> {
  const raw = await runDaskScript<{ version: string; processes: NoopKind; threads: NoopKind }>(dask, 'dask_noop.py', [
    '--tasks', String(options.tasks), '--workers', String(options.workers), '--runs', String(options.runs),
  ])
  const summary = (kind: NoopKind): { tasksPerSec: number; clusterStartMs: number } => ({ tasksPerSec: Math.round(median(kind.tasksPerSec)), clusterStartMs: Math.round(kind.clusterStartMs) })
  return { version: raw.version, processes: summary(raw.processes), threads: summary(raw.threads) }
}
