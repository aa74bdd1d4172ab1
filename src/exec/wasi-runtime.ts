/**
 * The `wasi` runtime: runs an untrusted WASI preview1 module in a worker thread with node:wasi, inside limits.
 *
 * - The guest sees only `rootDir` (as '/'); a rootDir holding a symlink, hard link or special file is refused before
 *   running, because uvwasi follows a host symlink out of the preopened directory. Guests may not create symlinks.
 * - Memory is capped in the module itself (see wasm-memory-cap.ts): worker resourceLimits do not bound wasm memory.
 * - Deadline, abort and output volume are watched from this thread, which terminates the worker to stop a guest.
 * - stdin is /dev/null or given bytes; stdout and stderr go to files outside rootDir, or, for a run naming no stdio files, are
 *   kept in memory by the worker (within the same output budget) and come back with the result: a one-shot task then
 *   creates, reads and removes no stdio files.
 * - Workers are kept for the next run after a guest ended on its own (exit or trap): a fresh worker costs ~30-60 ms,
 *   a warm one ~0.1 ms. A worker that had to be stopped is discarded, and one left idle for `idleWorkerMs` (10 s) is
 *   stopped too, since each holds a V8 isolate of its own (~10 MB): a node between jobs keeps no threads it does not use.
 * - A warm run of a trivial module costs ~0.4 ms over the guest's own time (bench/wasi-overhead.ts): the per-run checks
 *   of a small task directory and the stdio files are synchronous, which is cheaper than thread-pool round trips.
 */
import { closeSync, fstatSync, openSync } from 'node:fs'
import { availableParallelism, devNull } from 'node:os'
import { isAbsolute, sep } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { Worker } from 'node:worker_threads'
import { HearthError } from '../errors.ts'
import { sha256Hex } from './content-hash.ts'
import { hasLinuxKernelFiles, openDescriptors } from './platform.ts'
import { outputTooLarge, roundMs, stopError, watchLimits } from './run-support.ts'
import type { OutputWatch, StopEnding } from './run-support.ts'
import { bytesAdded, realDirectory, RootClaims, scanSmallTree, scanTree, taskFiles, throwIfAborted, validateEnvAndLimits } from './task-dir.ts'
import type { TaskFiles } from './task-dir.ts'
import { capWasmMemory, wasmPageBytes } from './wasm-memory-cap.ts'
import type { CappedWasmModule } from './wasm-memory-cap.ts'
import type { RunSpec } from './runtime.ts'

// Without this a guest that grows past ~64-80 MiB and then calls WASI crashes the whole process (nodejs/node#46777).
// V8 flags are process-wide; it is set here, before any worker can load node:wasi.
setFlagsFromString('--no-turbo-fast-api-calls')

/**
 * A run as every runtime takes it (runtime.ts), with the program as `module`: the wasm binary (WASI preview1,
 * exporting `_start`). The guest sees `rootDir` as '/'; it is single-threaded, so there is no CPU quota to set.
 * Without `stdoutPath` and `stderrPath` (both absent), stdout and stderr are kept in memory and returned with the result.
 */
export type WasiRunSpec = Omit<RunSpec<Uint8Array>, 'program' | 'maxCpuCores' | 'stdoutPath' | 'stderrPath' | 'programId'> & {
  module: Uint8Array
  stdoutPath?: string
  stderrPath?: string
  /**
   * The module's content id (`sha256:<hex>`), where the caller checked it: the compiled module is kept under it, and
   * the bytes are hashed once (to confirm the id, when the module is first compiled) rather than at every run.
   */
  moduleId?: string
  /** What the guest reads on stdin (at most 64 MiB, copied to its worker), as from a pipe; else the null device. */
  stdin?: Uint8Array
  /**
   * Host directories the guest sees read-only, by guest path (absolute, not '/'). Each must hold no link or special
   * file: checked once per process, the host must not add one later. Unlike rootDir, runs may share one.
   */
  readOnlyDirs?: Record<string, string>
}

export interface WasiRunResult {
  /** The guest's exit code (0 when `_start` returns). Non-zero codes are results, not errors. */
  exitCode: number
  /** Wall time of instantiating and running the guest, measured in its worker. */
  durationMs: number
  /** CPU time of the guest's thread over the same span (scheduler statistics on Linux). */
  cpuMs: number
  stdoutBytes: number
  stderrBytes: number
  /** What the guest wrote, for a run whose stdio was kept in memory (no stdio files named). */
  stdout?: Uint8Array
  stderr?: Uint8Array
}

export interface WasiRunOptions {
  signal?: AbortSignal
}

export interface WasiRuntime {
  run(spec: WasiRunSpec, options?: WasiRunOptions): Promise<WasiRunResult>
  /** Stops every worker; runs in flight fail with HEARTH_ERR_EXEC_FAILED. */
  close(): Promise<void>
}

export interface WasiRuntimeInit {
  /** Guests running at once; further runs wait. Default: the machine's available parallelism. */
  maxWorkers?: number
  /**
   * Runs a worker serves before it is retired for a fresh one, so that anything a run leaves behind cannot pile up.
   * Default: 1024 (a fresh worker costs ~40 ms of CPU: at 256 runs that was a fifth of a no-op task's cost).
   */
  maxRunsPerWorker?: number
  /** How long a worker may wait idle for the next run before it is stopped (a later run starts a fresh one). Default: 10 s. */
  idleWorkerMs?: number
}

/** What wasi-worker.mjs answers for one run. */
interface WorkerAnswer {
  id: number
  outcome: 'exit' | 'trap' | 'link' | 'invalid' | 'output'
  exitCode?: number
  message?: string
  durationMs: number
  cpuMs: number
  memoryBytes: number
  stdioBytes: number
  /** Kept stdio (runs without stdio files). */
  stdout?: Uint8Array
  stderr?: Uint8Array
}

type Ending =
  | { kind: 'answer'; answer: WorkerAnswer }
  | StopEnding
  | { kind: 'crash'; error: unknown }
  | { kind: 'closed' }

const workerUrl = new URL('./wasi-worker.mjs', import.meta.url)
/** What a worker is told at start (wasi-worker.mjs reads it as workerData). */
interface WasiWorkerData {
  threadStatsFromProc: boolean
}

/**
 * Task directories of the runs in progress in this process (every WASI runtime object): one run at a time per task
 * directory, and no run inside another's, because descriptors under a run's rootDir are taken to be that run's (see
 * reclaimDescriptors).
 */
const claims = new RootClaims()
/** Read-only directories found free of links and special files, by real path (see WasiRunSpec.readOnlyDirs). */
const checkedReadOnly = new Set<string>()
const defaultMaxRunsPerWorker = 1024
const defaultIdleWorkerMs = 10_000
const moduleCacheSize = 16

export function createWasiRuntime(init: WasiRuntimeInit = {}): WasiRuntime {
  const maxWorkers = init.maxWorkers ?? availableParallelism()
  const maxRunsPerWorker = init.maxRunsPerWorker ?? defaultMaxRunsPerWorker
  const idleWorkerMs = init.idleWorkerMs ?? defaultIdleWorkerMs
  for (const [name, value] of [['maxWorkers', maxWorkers], ['maxRunsPerWorker', maxRunsPerWorker], ['idleWorkerMs', idleWorkerMs]] as const) {
    if (!Number.isInteger(value) || value < 1) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `${name} must be a positive integer, got ${value}`)
    }
  }
  const pool = new WorkerPool(maxWorkers, maxRunsPerWorker, idleWorkerMs)
  /** Capped and compiled modules by the hash of the module as given and its memory cap, most recently used last. */
  const modules = new Map<string, { capped: CappedWasmModule; compiled: Promise<WebAssembly.Module> }>()
  let nextId = 1

  /** The module capped to `maxMemoryBytes` and compiled, from the cache when this module and cap were seen before. */
  async function prepareModule(spec: WasiRunSpec): Promise<{ capped: CappedWasmModule; module: WebAssembly.Module }> {
    const key = `${spec.moduleId ?? sha256Hex(spec.module)}:${spec.maxMemoryBytes}`
    let entry = modules.get(key)
    if (entry === undefined) {
      if (spec.moduleId !== undefined && spec.moduleId !== sha256Hex(spec.module)) {
        throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the module's bytes do not match its content id ${spec.moduleId}`)
      }
      const capped = capWasmMemory(spec.module, spec.maxMemoryBytes)
      const compiled = WebAssembly.compile(capped.bytes)
      entry = { capped, compiled }
      modules.set(key, entry)
      if (modules.size > moduleCacheSize) modules.delete(modules.keys().next().value!)
      compiled.catch(() => modules.delete(key))
    } else {
      // Map order doubles as recency order.
      modules.delete(key)
      modules.set(key, entry)
    }
    try {
      return { capped: entry.capped, module: await entry.compiled }
    } catch (error) {
      throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `the module does not compile: ${(error as Error).message}`, {
        hint: 'build the program for wasm32-wasi (WASI preview1)',
        cause: error,
      })
    }
  }

  async function run(spec: WasiRunSpec, options: WasiRunOptions = {}): Promise<WasiRunResult> {
    const { signal } = options
    validateSpec(spec)
    throwIfAborted(signal)
    return claims.inRoot(spec.rootDir, () => undefined, (rootDir) => runInRoot(spec, rootDir, signal))
  }

  async function runInRoot(spec: WasiRunSpec, rootDir: string, signal: AbortSignal | undefined): Promise<WasiRunResult> {
    const captureStdio = spec.stdoutPath === undefined
    const files: StdioFiles = captureStdio
      ? { inputs: scanSmallTree(rootDir, true) ?? (await scanTree(rootDir, true)) }
      : await taskFiles(rootDir, { stdoutPath: spec.stdoutPath!, stderrPath: spec.stderrPath! }, 'guest')
    const { capped, module } = await prepareModule(spec)
    const guestInputs = { stdin: spec.stdin, readOnlyDirs: await realReadOnlyDirs(spec.readOnlyDirs, rootDir) }
    throwIfAborted(signal)

    const fds: number[] = []
    try {
      const { stdin, stdout, stderr, measureOutput, outputSizes } = openStdioSync(fds, rootDir, files)

      const lease = await pool.acquire(signal)
      const id = nextId++
      const ending = await watch(lease, spec, signal, measureOutput, () =>
        lease.worker.postMessage({
          id,
          module,
          args: spec.args,
          env: spec.env,
          rootDir,
          stdinFd: stdin,
          stdoutFd: stdout,
          stderrFd: stderr,
          // The worker checks the budget as the guest writes; this thread polls as a backstop (e.g. files grown by
          // truncate rather than write).
          maxOutputBytes: spec.maxOutputBytes,
          inputSizes: files.inputs,
          captureStdio,
          ...guestInputs,
          importedMemory: importedMemoryOf(capped),
        }),
      )
      const reusable = ending.kind === 'answer' && ending.answer.outcome !== 'output'
      // The worker must be gone before its stdio descriptors are closed below (it may still be writing to them).
      await pool.release(lease, reusable)
      if (!reusable && ending.kind !== 'answer') reclaimDescriptors(rootDir)

      if (ending.kind !== 'answer') throw endingError(ending, spec)
      const { answer } = ending
      if (answer.outcome === 'output') throw outputTooLarge(spec, undefined)
      if (answer.outcome !== 'exit') throw guestFailure(answer, capped.capPages)
      const sizes = captureStdio ? { stdout: answer.stdout?.length ?? 0, stderr: answer.stderr?.length ?? 0 } : outputSizes()
      const total = sizes.stdout + sizes.stderr + (await bytesAdded(rootDir, files.inputs))
      if (total > spec.maxOutputBytes) throw outputTooLarge(spec, total)
      return {
        exitCode: answer.exitCode ?? 0,
        durationMs: roundMs(answer.durationMs),
        cpuMs: roundMs(answer.cpuMs),
        stdoutBytes: sizes.stdout,
        stderrBytes: sizes.stderr,
        ...(captureStdio ? { stdout: answer.stdout ?? new Uint8Array(0), stderr: answer.stderr ?? new Uint8Array(0) } : {}),
      }
    } finally {
      for (const fd of fds) {
        try {
          closeSync(fd)
        } catch {
          // closed already
        }
      }
    }
  }

  return {
    run,
    close: () => pool.close(),
  }
}

/** The memory a capped module imports, as the worker makes it (a plain object: it crosses to the worker thread). */
function importedMemoryOf(capped: CappedWasmModule): { module: string; name: string; minPages: number; maxPages: number } | undefined {
  const imported = capped.importedMemory
  return imported === undefined ? undefined : { module: imported.module, name: imported.name, minPages: imported.minPages, maxPages: imported.maxPages }
}

/** Waits for the first of: the worker's answer, the deadline, an abort, too much output, a crash, close(). */
function watch(
  lease: Lease,
  spec: WasiRunSpec,
  signal: AbortSignal | undefined,
  measureOutput: () => Promise<number>,
  start: () => void,
): Promise<Ending> {
  let limits: OutputWatch | undefined
  return new Promise<Ending>((resolvePromise) => {
    let done = false
    const { worker } = lease
    const finish = (ending: Ending): void => {
      if (done) return
      done = true
      limits?.stop()
      worker.off('message', onMessage)
      worker.off('error', onError)
      worker.off('exit', onExit)
      signal?.removeEventListener('abort', onAbort)
      lease.onClose = undefined
      resolvePromise(ending)
    }
    const onMessage = (answer: WorkerAnswer): void => finish({ kind: 'answer', answer })
    const onError = (error: unknown): void => finish({ kind: 'crash', error })
    const onExit = (code: number): void => finish({ kind: 'crash', error: new Error(`the worker exited with code ${code}`) })
    const onAbort = (): void => finish({ kind: 'abort', reason: signal?.reason })
    worker.on('message', onMessage)
    worker.on('error', onError)
    worker.on('exit', onExit)
    signal?.addEventListener('abort', onAbort, { once: true })
    lease.onClose = () => finish({ kind: 'closed' })

    limits = watchLimits(spec, measureOutput, finish)
    if (signal?.aborted === true || lease.closed) return finish(lease.closed ? { kind: 'closed' } : { kind: 'abort', reason: signal?.reason })
    try {
      start()
    } catch (error) {
      finish({ kind: 'crash', error })
    }
  }).then(async (ending) => {
    // A scan of rootDir may still be running: let it end before the caller closes descriptors under rootDir.
    await limits?.settled()
    return ending
  })
}

/** Where a run's stdio goes (no files: kept in memory) and the sizes of the task directory's files before it. */
type StdioFiles = Pick<TaskFiles, 'inputs'> & Partial<Pick<TaskFiles, 'stdoutPath' | 'stderrPath'>>

/** A run's stdio as this process's descriptors, and how much the guest has written so far. */
interface StdioFds {
  stdin: number
  stdout: number
  stderr: number
  /** stdout + stderr + the bytes added under the task directory: what counts against maxOutputBytes. */
  measureOutput(): Promise<number>
  outputSizes(): { stdout: number; stderr: number }
}

/**
 * openStdio of task-dir.ts with synchronous calls (three opens cost less on this thread than three thread-pool round
 * trips): stdin is the null device, stdout and stderr are created or truncated. Each descriptor goes onto `fds` as soon
 * as it is open, so that the caller closes every one of them, also when a later open fails. Without stdio files the
 * guest's stdout and stderr are the null device too (the worker keeps what is written to them, and counts it against
 * the budget itself), and the poll measures the task directory alone.
 */
function openStdioSync(fds: number[], rootDir: string, files: StdioFiles): StdioFds {
  const stdin = openSync(devNull, 'r')
  fds.push(stdin)
  if (files.stdoutPath === undefined || files.stderrPath === undefined) {
    return { stdin, stdout: stdin, stderr: stdin, measureOutput: () => bytesAdded(rootDir, files.inputs), outputSizes: () => ({ stdout: 0, stderr: 0 }) }
  }
  const stdout = openSync(files.stdoutPath, 'w')
  fds.push(stdout)
  const stderr = openSync(files.stderrPath, 'w')
  fds.push(stderr)
  const outputSizes = (): { stdout: number; stderr: number } => ({ stdout: fstatSync(stdout).size, stderr: fstatSync(stderr).size })
  const measureOutput = async (): Promise<number> => {
    const sizes = outputSizes()
    return sizes.stdout + sizes.stderr + (await bytesAdded(rootDir, files.inputs))
  }
  return { stdin, stdout, stderr, measureOutput, outputSizes }
}

function endingError(ending: Exclude<Ending, { kind: 'answer' }>, spec: WasiRunSpec): HearthError {
  switch (ending.kind) {
    case 'timeout':
    case 'abort':
    case 'output':
      return stopError(ending, spec)
    case 'closed':
      return new HearthError('HEARTH_ERR_EXEC_FAILED', 'the WASI runtime was closed while the task ran')
    case 'crash': {
      const outOfMemory = (ending.error as { code?: string } | undefined)?.code === 'ERR_WORKER_OUT_OF_MEMORY'
      return new HearthError(
        outOfMemory ? 'HEARTH_ERR_EXEC_MEMORY' : 'HEARTH_ERR_EXEC_FAILED',
        `the worker running the task failed: ${(ending.error as Error)?.message ?? String(ending.error)}`,
        { cause: ending.error },
      )
    }
  }
}

function guestFailure(answer: WorkerAnswer, capPages: number): HearthError {
  const reason = answer.message ?? 'unknown reason'
  switch (answer.outcome) {
    case 'trap':
      // The host cannot see a failed memory.grow, but a trap with the memory near its cap is almost always an allocation
      // that failed (allocators grow by chunks, so "near" allows 1/8 of the cap or 1 MiB): say so rather than "unreachable".
      if (answer.memoryBytes + Math.max(capPages * wasmPageBytes / 8, 1 << 20) > capPages * wasmPageBytes) {
        return new HearthError(
          'HEARTH_ERR_EXEC_MEMORY',
          `the task trapped (${reason}) with its memory at ${answer.memoryBytes} of its limit of ${capPages * wasmPageBytes} bytes`,
          { hint: 'raise maxMemoryBytes for this task', details: { memoryBytes: answer.memoryBytes, trap: reason } },
        )
      }
      return new HearthError('HEARTH_ERR_EXEC_FAILED', `the task trapped: ${reason}`, { details: { trap: reason } })
    case 'link':
      return new HearthError('HEARTH_ERR_EXEC_FAILED', `the module needs an import the WASI runtime does not provide: ${reason}`, {
        hint: 'build for wasm32-wasi (preview1): only wasi_snapshot_preview1 functions and one memory can be imported',
      })
    default:
      return new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `the module cannot run as a WASI program: ${reason}`, {
        hint: 'a WASI command exports `_start` and a memory',
      })
  }
}

function validateSpec(spec: WasiRunSpec): void {
  const invalid = (message: string): HearthError => new HearthError('HEARTH_ERR_CONFIG_INVALID', `invalid WASI run: ${message}`)
  if (!(spec.module instanceof Uint8Array)) throw invalid('module must be a Uint8Array')
  if ((spec.stdoutPath === undefined) !== (spec.stderrPath === undefined)) throw invalid('give both stdoutPath and stderrPath, or neither (stdio kept in memory)')
  if (!Array.isArray(spec.args) || spec.args.some((arg) => typeof arg !== 'string' || arg.includes('\0'))) {
    throw invalid('args must be strings without NUL characters')
  }
  validateEnvAndLimits(spec, invalid)
  if (spec.stdin !== undefined && (!(spec.stdin instanceof Uint8Array) || spec.stdin.length > 64 << 20)) {
    throw invalid('stdin must be a Uint8Array of at most 64 MiB')
  }
  for (const [guestPath, hostDir] of Object.entries(spec.readOnlyDirs ?? {})) {
    if (!/^(\/[^/\0]+)+$/.test(guestPath) || /\/\.\.?(\/|$)/.test(guestPath) || typeof hostDir !== 'string' || !isAbsolute(hostDir)) {
      throw invalid(`read-only directory ${JSON.stringify(guestPath)}: give a normalized absolute guest path other than / and an absolute host path`)
    }
  }
}

/** The real paths of a run's read-only directories, apart from rootDir, each scanned once (refusing links, special files). */
async function realReadOnlyDirs(dirs: WasiRunSpec['readOnlyDirs'], rootDir: string): Promise<WasiRunSpec['readOnlyDirs']> {
  if (dirs === undefined) return undefined
  const real: Record<string, string> = {}
  for (const [guestPath, hostDir] of Object.entries(dirs)) {
    const dir = await realDirectory(hostDir)
    if (dir === rootDir || dir.startsWith(rootDir + sep) || rootDir.startsWith(dir + sep)) {
      throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `the read-only directory ${dir} overlaps the task directory ${rootDir}`)
    }
    if (!checkedReadOnly.has(dir) && (scanSmallTree(dir, true) ?? (await scanTree(dir, true)))) checkedReadOnly.add(dir)
    real[guestPath] = dir
  }
  return real
}

/**
 * uvwasi never closes host descriptors, and a worker stopped mid-run cannot close them itself: the preopened root and
 * any file the guest had open would leak with every timeout. Where the system lists them (Linux, see platform.ts),
 * close every descriptor of this process that points into the run's rootDir (nothing else in the process may use it
 * while the run lasts, see claims).
 */
function reclaimDescriptors(rootDir: string): void {
  for (const { fd, target } of openDescriptors() ?? []) {
    if (target !== rootDir && !target.startsWith(rootDir + sep)) continue
    try {
      closeSync(fd)
    } catch {
      // closed meanwhile
    }
  }
}

interface Lease {
  worker: Worker
  runs: number
  /** While the worker waits in the pool: what stops it once it has waited idleWorkerMs. */
  idleTimer: NodeJS.Timeout | undefined
  /** Set by close(): a run that has not begun watching yet must not start. */
  closed: boolean
  /** Set while a run watches this worker, so that close() can end it. */
  onClose: (() => void) | undefined
}

class WorkerPool {
  private readonly idle: Lease[] = []
  private readonly busy = new Set<Lease>()
  private readonly waiting: { resolve: (lease: Lease) => void; reject: (error: unknown) => void }[] = []
  private starting = 0
  private closed = false
  /** Idle workers being stopped: close() waits for them too. */
  private readonly retiring = new Set<Promise<void>>()

  constructor(
    private readonly maxWorkers: number,
    private readonly maxRunsPerWorker: number,
    private readonly idleWorkerMs: number,
  ) {}

  async acquire(signal: AbortSignal | undefined): Promise<Lease> {
    if (this.closed) throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the WASI runtime is closed')
    const idle = this.idle.pop()
    if (idle !== undefined) return this.lend(idle)
    if (this.busy.size + this.starting < this.maxWorkers) return this.lend(await this.spawn())
    return new Promise<Lease>((resolvePromise, reject) => {
      const waiter = {
        resolve: (lease: Lease) => {
          signal?.removeEventListener('abort', onAbort)
          resolvePromise(lease)
        },
        reject: (error: unknown) => {
          signal?.removeEventListener('abort', onAbort)
          reject(error)
        },
      }
      const onAbort = (): void => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1)
        reject(new HearthError('HEARTH_ERR_EXEC_FAILED', 'the task was aborted while waiting for a worker', { cause: signal?.reason }))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(waiter)
    })
  }

  /** Returns a worker after a run: kept for the next one when `reusable`, else stopped (awaited). */
  async release(lease: Lease, reusable: boolean): Promise<void> {
    this.busy.delete(lease)
    if (reusable && !this.closed && lease.runs < this.maxRunsPerWorker) {
      const waiter = this.waiting.shift()
      if (waiter !== undefined) return waiter.resolve(this.lend(lease))
      lease.worker.unref()
      this.idle.push(lease)
      lease.idleTimer = setTimeout(() => this.retireIdle(lease), this.idleWorkerMs)
      lease.idleTimer.unref()
      return
    }
    await lease.worker.terminate()
    // A slot came free: start a worker for whoever waits.
    const waiter = this.waiting.shift()
    if (waiter !== undefined) {
      this.spawn().then(
        (fresh) => waiter.resolve(this.lend(fresh)),
        (error: unknown) => waiter.reject(error),
      )
    }
  }

  /** Stops a worker that waited idle too long (one lent out meanwhile has left the idle list). */
  private retireIdle(lease: Lease): void {
    lease.idleTimer = undefined
    const index = this.idle.indexOf(lease)
    if (index < 0) return
    this.idle.splice(index, 1)
    const stopping = lease.worker.terminate().then(() => undefined, () => undefined)
    this.retiring.add(stopping)
    void stopping.finally(() => this.retiring.delete(stopping))
  }

  async close(): Promise<void> {
    this.closed = true
    for (const waiter of this.waiting.splice(0)) waiter.reject(new HearthError('HEARTH_ERR_EXEC_FAILED', 'the WASI runtime was closed'))
    const all = [...this.idle.splice(0), ...this.busy]
    for (const lease of all) {
      clearTimeout(lease.idleTimer)
      lease.closed = true
      lease.onClose?.()
    }
    await Promise.allSettled([...all.map((lease) => lease.worker.terminate()), ...this.retiring])
  }

  private lend(lease: Lease): Lease {
    clearTimeout(lease.idleTimer)
    lease.idleTimer = undefined
    lease.runs++
    lease.worker.ref()
    this.busy.add(lease)
    return lease
  }

  private async spawn(): Promise<Lease> {
    this.starting++
    try {
      const worker = new Worker(workerUrl, {
        // No tsx or test-runner flags in the worker: it is plain JavaScript and starts faster without them.
        execArgv: [],
        // Bounds the worker's JS heap only; wasm memory is capped in the module (see wasm-memory-cap.ts).
        resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16 },
        // Node closes what the worker opened with fs.open (its CPU-time statistics, kept open across runs) when the
        // thread ends, however it ends; a terminated worker could not close it itself. That must be its only close:
        // descriptor numbers are the whole process's, so closing it again from this thread once the worker is gone
        // would close whatever another run or worker has been given the same number since.
        trackUnmanagedFds: true,
        // Whether the worker may read its CPU time from /proc (a plain .mjs file, it cannot ask platform.ts itself).
        workerData: { threadStatsFromProc: hasLinuxKernelFiles() } satisfies WasiWorkerData,
      })
      let onReady: () => void = () => {}
      let onError: (error: unknown) => void = () => {}
      let onExit: (code: number) => void = () => {}
      await new Promise<void>((resolvePromise, reject) => {
        onReady = () => resolvePromise()
        onError = reject
        onExit = (code) => reject(new Error(`the worker exited with code ${code} while starting`))
        worker.once('message', onReady)
        worker.once('error', onError)
        worker.once('exit', onExit)
      }).finally(() => {
        worker.off('message', onReady)
        worker.off('error', onError)
        worker.off('exit', onExit)
      })
      const lease: Lease = { worker, runs: 0, idleTimer: undefined, closed: false, onClose: undefined }
      // Errors during a run are handled by watch(); one while idle (it should not happen) must not crash the process.
      worker.on('error', () => {})
      // An idle worker that dies (it should not) leaves the pool.
      worker.on('exit', () => {
        const index = this.idle.indexOf(lease)
        if (index >= 0) this.idle.splice(index, 1)
      })
      if (this.closed) {
        await worker.terminate()
        throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the WASI runtime was closed')
      }
      return lease
    } catch (error) {
      throw error instanceof HearthError
        ? error
        : new HearthError('HEARTH_ERR_EXEC_FAILED', 'could not start a WASI worker thread', { cause: error })
    } finally {
      this.starting--
    }
  }
}
