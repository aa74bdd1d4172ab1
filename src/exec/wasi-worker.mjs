// @ts-check
// The worker thread of wasi-runtime.ts: runs one guest at a time with node:wasi, then waits for the next.
// A plain .mjs file because tsx's loader does not reach worker threads started by a process that used `register()`.
// The main thread owns the limits that need to kill this thread (deadline, abort, output polling); this side only
// guards what must be stopped before a syscall happens (stdout/stderr volume, symlink creation).
import { lstatSync, openSync, readdirSync, readSync } from 'node:fs'
import { join } from 'node:path'
import { parentPort, workerData } from 'node:worker_threads'

// node:wasi prints an ExperimentalWarning once per thread; the runtime is not experimental to Hearth's users.
const emitWarning = process.emitWarning
process.emitWarning = /** @type {typeof process.emitWarning} */ (
  (warning, ...rest) => {
    if (String(warning).includes('WASI')) return
    emitWarning.call(process, warning, .../** @type {[any]} */ (rest))
  }
)
const { WASI } = await import('node:wasi')
process.emitWarning = emitWarning

const errnoNotCapable = 76
const errnoNotSupported = 58

/** Thrown from a wrapped import to unwind the guest when it exceeds its stdout+stderr budget. */
class OutputLimitReached extends Error {}

/**
 * This thread's scheduler statistics (Linux), kept open: a pread of it costs ~2 us where open+read+close costs ~20 us,
 * twice per run. Node closes it when this thread ends (the runtime starts workers with trackUnmanagedFds), also when
 * it is terminated; nothing else may close it, as its number is the whole process's.
 */
const schedstatFd = (() => {
  // Only where the runtime says /proc is there to read (see platform.ts: not on other systems, nor when emulating them).
  if (workerData?.threadStatsFromProc !== true) return undefined
  try {
    return openSync('/proc/thread-self/schedstat', 'r')
  } catch {
    return undefined
  }
})()
const schedstatBuffer = Buffer.alloc(128)

/** Reads this thread's CPU time in ns from the scheduler's statistics (Linux); undefined where they are missing. */
function schedstatNs() {
  if (schedstatFd === undefined) return undefined
  try {
    const length = readSync(schedstatFd, schedstatBuffer, 0, schedstatBuffer.length, 0)
    const ns = Number(schedstatBuffer.toString('latin1', 0, length).split(' ')[0])
    return ns > 0 ? ns : undefined
  } catch {
    return undefined
  }
}

/**
 * CPU time of this thread in ns. Without per-thread statistics it falls back to the whole process's time, which
 * over-counts while other threads are busy (Node 20 has no per-thread CPU clock).
 */
const threadCpuNs =
  schedstatNs() !== undefined
    ? () => /** @type {number} */ (schedstatNs())
    : () => {
        const usage = process.cpuUsage()
        return (usage.user + usage.system) * 1000
      }

/**
 * @typedef {{
 *   id: number, module: WebAssembly.Module, args: string[], env: Record<string, string>, rootDir: string,
 *   stdinFd: number, stdoutFd: number, stderrFd: number, maxOutputBytes: number, inputSizes: Map<string, number>,
 *   captureStdio: boolean, stdin?: Uint8Array, readOnlyDirs?: Record<string, string>,
 *   importedMemory?: { module: string, name: string, minPages: number, maxPages: number }
 * }} Job
 */

/**
 * What the guest wrote to one stdio stream when the run keeps stdio in memory: a buffer that doubles as it fills.
 * @typedef {{ bytes: Uint8Array, length: number }} Captured
 */

/** @returns {Captured} */
const emptyCapture = () => ({ bytes: new Uint8Array(0), length: 0 })

/**
 * Appends `source` to `into`.
 * @param {Captured} into
 * @param {Uint8Array} source
 */
function append(into, source) {
  if (into.length + source.length > into.bytes.length) {
    const grown = new Uint8Array(Math.max(into.length + source.length, into.bytes.length * 2, 256))
    grown.set(into.bytes.subarray(0, into.length))
    into.bytes = grown
  }
  into.bytes.set(source, into.length)
  into.length += source.length
}

/**
 * The captured bytes as a buffer of their own (transferred to the main thread, not copied).
 * @param {Captured} captured
 */
const capturedBytes = (captured) => captured.bytes.slice(0, captured.length)

/** @param {Job} job */
function run(job) {
  const readOnlyDirs = Object.entries(job.readOnlyDirs ?? {})
  // Preopens take descriptors 3, 4, ... in the order given: '/' first, then the read-only directories.
  const preopenFds = [3, ...readOnlyDirs.map((_, i) => 4 + i)]
  const state = {
    stdioBytes: 0,
    unchecked: 0,
    overLimit: false,
    openFds: new Set(preopenFds),
    readOnlyFds: new Set(preopenFds.slice(1)),
    stdinOffset: 0,
    started: false,
    stdout: emptyCapture(),
    stderr: emptyCapture(),
  }
  /** @type {WebAssembly.Memory | undefined} */
  let memory
  const startedAt = performance.now()
  const cpuStartNs = threadCpuNs()
  /** @type {Record<string, unknown>} */
  let outcome
  /** @type {Record<string, Function> | undefined} */
  let realImports
  /** @type {import('node:wasi').WASI | undefined} */
  let wasi
  try {
    wasi = new WASI({
      version: 'preview1',
      args: job.args,
      env: job.env,
      preopens: Object.fromEntries([['/', job.rootDir], ...readOnlyDirs]),
      stdin: job.stdinFd,
      stdout: job.stdoutFd,
      stderr: job.stderrFd,
      returnOnExit: true,
    })
    realImports = /** @type {Record<string, Function>} */ (wasi.wasiImport)
    /** @type {Record<string, Record<string, unknown>>} */
    const imports = { wasi_snapshot_preview1: guardImports(realImports, state, job, () => memory) }
    if (job.importedMemory !== undefined) {
      const { module, name, minPages, maxPages } = job.importedMemory
      memory = new WebAssembly.Memory({ initial: minPages, maximum: maxPages })
      // Inherits the module's other imports (the WASI calls inherit node's, so a spread would lose them).
      const entries = Object.create(imports[module] ?? Object.prototype)
      Object.defineProperty(entries, name, { value: memory, enumerable: true, writable: true, configurable: true })
      imports[module] = entries
    }
    const missing = WebAssembly.Module.imports(job.module)
      .filter((entry) => imports[entry.module]?.[entry.name] === undefined)
      .map((entry) => `${entry.module}.${entry.name} (${entry.kind})`)
    // V8's own message names only the first import's module; name every import that is missing.
    if (missing.length > 0) throw new WebAssembly.LinkError(`unknown imports: ${missing.join(', ')}`)
    const instance = new WebAssembly.Instance(job.module, /** @type {WebAssembly.Imports} */ (imports))
    if (memory === undefined && instance.exports.memory instanceof WebAssembly.Memory) memory = instance.exports.memory
    if (memory === undefined) {
      outcome = { outcome: 'invalid', message: 'the module neither exports nor imports a memory, so it cannot use WASI' }
    } else {
      state.started = true
      // Passing exports with `memory` set lets start() work for modules that import their memory instead of exporting it.
      const exitCode = wasi.start({ exports: { ...instance.exports, memory } })
      outcome = { outcome: 'exit', exitCode }
    }
  } catch (error) {
    outcome = classify(error, state)
  }
  const durationMs = performance.now() - startedAt
  // schedstat of a running thread lags by up to a scheduler tick; one thread cannot use more CPU than wall time.
  const cpuMs = Math.min((threadCpuNs() - cpuStartNs) / 1e6, durationMs)
  closeGuestFiles(wasi, realImports, state)
  return {
    ...outcome,
    id: job.id,
    durationMs,
    cpuMs,
    memoryBytes: memory?.buffer.byteLength ?? 0,
    stdioBytes: state.stdioBytes,
    ...(job.captureStdio ? { stdout: capturedBytes(state.stdout), stderr: capturedBytes(state.stderr) } : {}),
  }
}

/**
 * uvwasi never closes host descriptors, not even when its WASI object is collected: close the preopened root and
 * whatever the guest left open. Its calls need a bound memory, so a guest that failed before start() (link error,
 * trap in a start section) gets a stand-in instance first.
 * @param {import('node:wasi').WASI | undefined} wasi
 * @param {Record<string, Function> | undefined} realImports
 * @param {{ started: boolean, openFds: Set<number> }} state
 */
function closeGuestFiles(wasi, realImports, state) {
  if (wasi === undefined || realImports === undefined) return
  if (!state.started) {
    try {
      wasi.start({ exports: { memory: new WebAssembly.Memory({ initial: 0 }), _start: () => {} } })
    } catch {
      // nothing more can be done from here; the descriptors stay open until the worker ends
    }
  }
  for (const fd of state.openFds) realImports.fd_close?.(fd)
}

/**
 * @param {unknown} error
 * @param {{ overLimit: boolean }} state
 */
function classify(error, state) {
  if (state.overLimit || error instanceof OutputLimitReached) return { outcome: 'output' }
  const message = error instanceof Error ? error.message : String(error)
  // A missing import module surfaces as a TypeError, a missing or mistyped import as a LinkError.
  if (error instanceof WebAssembly.LinkError || /^WebAssembly\.Instance\(\): Import #/.test(message)) return { outcome: 'link', message }
  if (error instanceof WebAssembly.RuntimeError) return { outcome: 'trap', message }
  if (error instanceof RangeError && /call stack/i.test(message)) return { outcome: 'trap', message }
  if (error instanceof WebAssembly.CompileError) return { outcome: 'invalid', message }
  return { outcome: 'invalid', message }
}

const errnoFault = 21
const errnoReadOnly = 69
const errnoSpipe = 70

/**
 * Rights that change a file or directory (WASI preview1 bit numbers): datasync, sync, fd_write, fd_allocate,
 * path_create_directory, path_create_file, path_link_source/target, path_rename_source/target,
 * path_filestat_set_size/times, fd_filestat_set_size/times, path_symlink, path_remove_directory, path_unlink_file.
 * A file opened under a read-only directory never gets them, so uvwasi itself refuses every change through it.
 */
const writeRights = [0, 4, 6, 8, 9, 10, 11, 12, 16, 17, 19, 20, 22, 23, 24, 25, 26].reduce((mask, bit) => mask | (1n << BigInt(bit)), 0n)
const openCreateOrTruncate = 1 | 4 | 8
/** Calls that change something through a descriptor, with the positions of their descriptor arguments. */
const changingCalls = /** @type {const} */ ([
  ['fd_allocate', [0]],
  ['fd_filestat_set_size', [0]],
  ['fd_filestat_set_times', [0]],
  ['path_create_directory', [0]],
  ['path_filestat_set_times', [0]],
  ['path_link', [0, 3]],
  ['path_remove_directory', [0]],
  ['path_rename', [0, 3]],
  ['path_unlink_file', [0]],
])

/**
 * Wraps the few WASI calls that need a guard; every other import is node's own function.
 * @param {Record<string, Function>} real
 * @param {{ stdioBytes: number, unchecked: number, overLimit: boolean, openFds: Set<number>, readOnlyFds: Set<number>, stdinOffset: number, stdout: Captured, stderr: Captured }} state
 * @param {Job} job
 * @param {() => WebAssembly.Memory | undefined} getMemory
 */
function guardImports(real, state, job, getMemory) {
  const view = () => new DataView(/** @type {WebAssembly.Memory} */ (getMemory()).buffer)
  // Writes to files are let through unchecked up to this many bytes, then the tree under rootDir is measured here,
  // in the guest's own thread, before the next write: that bounds the overshoot without a syscall per write.
  const checkEveryBytes = Math.min(4 << 20, Math.max(64 << 10, Math.floor(job.maxOutputBytes / 16)))

  const stop = () => {
    state.overLimit = true
    throw new OutputLimitReached()
  }
  const readOnly = (/** @type {unknown} */ fd) => state.readOnlyFds.has(/** @type {number} */ (fd))

  /** @param {Function} write */
  const countingWrite =
    (write) =>
    /** @param {number} fd @param {number} iovs @param {number} iovsLength @param {unknown[]} rest */
    (fd, iovs, iovsLength, ...rest) => {
      if (readOnly(fd)) return errnoReadOnly
      const memory = view()
      // Out-of-bounds vectors go to node unchecked; it answers EFAULT without writing anything.
      if (iovs >>> 0 === iovs && iovsLength >>> 0 === iovsLength && iovs + iovsLength * 8 <= memory.byteLength) {
        let bytes = 0
        for (let i = 0; i < iovsLength; i++) bytes += memory.getUint32(iovs + i * 8 + 4, true)
        if (fd === 1 || fd === 2) {
          if (state.stdioBytes + bytes > job.maxOutputBytes) stop()
          state.stdioBytes += bytes
        } else {
          state.unchecked += bytes
          if (state.unchecked > checkEveryBytes) {
            state.unchecked = 0
            if (state.stdioBytes + bytesAdded(job.rootDir, job.inputSizes) + bytes > job.maxOutputBytes) stop()
          }
        }
      }
      return write(fd, iovs, iovsLength, ...rest)
    }

  /**
   * fd_write to stdout or stderr when the run keeps stdio in memory: the bytes are copied out of the guest's memory
   * (within the same budget as a file), and nothing reaches the host's descriptor. Other descriptors go to node.
   * @param {Function} write
   */
  const capturingWrite = (write) => {
    const counted = countingWrite(write)
    /** @param {number} fd @param {number} iovs @param {number} iovsLength @param {number} written */
    return (fd, iovs, iovsLength, written) => {
      if (fd !== 1 && fd !== 2) return counted(fd, iovs, iovsLength, written)
      const memory = view()
      if (iovs >>> 0 !== iovs || iovsLength >>> 0 !== iovsLength || written >>> 0 !== written) return errnoFault
      if (iovs + iovsLength * 8 > memory.byteLength || written + 4 > memory.byteLength) return errnoFault
      let bytes = 0
      for (let i = 0; i < iovsLength; i++) {
        const base = memory.getUint32(iovs + i * 8, true)
        const length = memory.getUint32(iovs + i * 8 + 4, true)
        if (base + length > memory.byteLength) return errnoFault
        bytes += length
      }
      if (state.stdioBytes + bytes > job.maxOutputBytes) stop()
      state.stdioBytes += bytes
      const into = fd === 1 ? state.stdout : state.stderr
      for (let i = 0; i < iovsLength; i++) {
        const length = memory.getUint32(iovs + i * 8 + 4, true)
        if (length > 0) append(into, new Uint8Array(memory.buffer, memory.getUint32(iovs + i * 8, true), length))
      }
      memory.setUint32(written, bytes, true)
      return 0
    }
  }

  /**
   * Kept stdio is a stream, as a pipe would be: it has no offsets to write at.
   * @param {Function} pwrite
   */
  const streamOnly = (pwrite) => /** @param {number} fd @param {unknown[]} rest */ (fd, ...rest) => (fd === 1 || fd === 2 ? errnoSpipe : pwrite(fd, ...rest))

  // The guarded calls shadow node's own on an object that inherits the rest: import lookups follow the prototype, and
  // this spares copying every WASI function per run.
  /** Calls that would change a read-only directory or a file under it answer EROFS; the rest is node's own. */
  const guarded = Object.fromEntries(
    changingCalls.map(([name, fdArgs]) => {
      const call = /** @type {Function} */ (real[name])
      return [name, (/** @type {unknown[]} */ ...args) => (fdArgs.some((i) => readOnly(args[i])) ? errnoReadOnly : call(...args))]
    }),
  )
  return Object.assign(Object.create(real), guarded, {
    ...(job.stdin === undefined ? {} : stdinFromMemory(real, state, job.stdin, view)),
    fd_write: job.captureStdio ? capturingWrite(/** @type {Function} */ (real.fd_write)) : countingWrite(/** @type {Function} */ (real.fd_write)),
    fd_pwrite: job.captureStdio ? streamOnly(countingWrite(/** @type {Function} */ (real.fd_pwrite))) : countingWrite(/** @type {Function} */ (real.fd_pwrite)),
    // A symlink inside the preopened directory can point anywhere on the host; guests may not make one.
    path_symlink: () => errnoNotCapable,
    // Moving stdout/stderr to another number would take them out of the byte count above.
    /** @param {number} from @param {number} to */
    fd_renumber: (from, to) => {
      if (from < 3 || to < 3) return errnoNotSupported
      const errno = real.fd_renumber?.(from, to)
      if (errno === 0) {
        state.openFds.delete(from)
        state.openFds.add(to)
        if (state.readOnlyFds.delete(from)) state.readOnlyFds.add(to)
        else state.readOnlyFds.delete(to)
      }
      return errno
    },
    /** @param {number} fd @param {unknown[]} rest */
    path_open: (fd, ...rest) => {
      const underReadOnly = readOnly(fd)
      if (underReadOnly) {
        // rest: dirflags, path, pathLength, oflags, rightsBase, rightsInheriting, fdflags, opened
        if ((Number(rest[3]) & openCreateOrTruncate) !== 0) return errnoReadOnly
        rest[4] = BigInt.asUintN(64, BigInt(/** @type {bigint} */ (rest[4])) & ~writeRights)
        rest[5] = BigInt.asUintN(64, BigInt(/** @type {bigint} */ (rest[5])) & ~writeRights)
      }
      const errno = real.path_open?.(fd, ...rest)
      if (errno === 0) {
        const opened = view().getUint32(/** @type {number} */ (rest.at(-1)), true)
        state.openFds.add(opened)
        if (underReadOnly) state.readOnlyFds.add(opened)
        else state.readOnlyFds.delete(opened)
      }
      return errno
    },
    /** @param {number} fd */
    fd_close: (fd) => {
      // stdio entries hold this process's own descriptors (the runtime closes them after the run); closing them here
      // could close a number the process has already reused. Pretend it worked, as a closed stream would.
      if (fd < 3) return 0
      const errno = real.fd_close?.(fd)
      if (errno === 0) {
        state.openFds.delete(fd)
        state.readOnlyFds.delete(fd)
      }
      return errno
    },
  })
}

/**
 * stdin served from the bytes the run was given, as a pipe would serve them: read in order to their end, no offsets.
 * @param {Record<string, Function>} real
 * @param {{ stdinOffset: number }} state
 * @param {Uint8Array} stdin
 * @param {() => DataView} view
 */
function stdinFromMemory(real, state, stdin, view) {
  return {
    /** @param {number} fd @param {number} iovs @param {number} iovsLength @param {number} read */
    fd_read: (fd, iovs, iovsLength, read) => {
      if (fd !== 0) return real.fd_read?.(fd, iovs, iovsLength, read)
      const memory = view()
      if (iovs >>> 0 !== iovs || iovsLength >>> 0 !== iovsLength || read >>> 0 !== read) return errnoFault
      if (iovs + iovsLength * 8 > memory.byteLength || read + 4 > memory.byteLength) return errnoFault
      const bytes = new Uint8Array(memory.buffer)
      let total = 0
      for (let i = 0; i < iovsLength && state.stdinOffset < stdin.length; i++) {
        const base = memory.getUint32(iovs + i * 8, true)
        const length = Math.min(memory.getUint32(iovs + i * 8 + 4, true), stdin.length - state.stdinOffset)
        if (base + length > memory.byteLength) return errnoFault
        bytes.set(stdin.subarray(state.stdinOffset, state.stdinOffset + length), base)
        state.stdinOffset += length
        total += length
      }
      memory.setUint32(read, total, true)
      return 0
    },
    /** @param {number} fd @param {unknown[]} rest */
    fd_pread: (fd, ...rest) => (fd === 0 ? errnoSpipe : real.fd_pread?.(fd, ...rest)),
  }
}

/**
 * Growth of the files under `dir` over their sizes before the run (same measure as wasi-runtime.ts).
 * @param {string} dir
 * @param {Map<string, number>} before
 */
function bytesAdded(dir, before, prefix = '') {
  let added = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const name = prefix + entry.name
    const info = lstatSync(join(dir, entry.name), { throwIfNoEntry: false })
    if (info?.isDirectory()) added += bytesAdded(join(dir, entry.name), before, name + '/')
    else if (info?.isFile()) added += Math.max(0, info.size - (before.get(name) ?? 0))
  }
  return added
}

const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort)
port.on('message', (/** @type {Job} */ job) => {
  const answer = run(job)
  // Kept stdio moves to the main thread rather than being copied.
  port.postMessage(answer, answer.stdout === undefined || answer.stderr === undefined ? [] : [answer.stdout.buffer, answer.stderr.buffer])
})
port.postMessage({ ready: true })
