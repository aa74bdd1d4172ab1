/**
 * Checks on a run's task directory and spec that every runtime shares (wasi, native, docker), so that a task directory
 * and spec are accepted or refused alike by every runtime. (wasi checks its own spec shape: its program is a module.)
 */
import { lstatSync, readdirSync, realpathSync } from 'node:fs'
import { chmod, copyFile, lstat, open, readdir, rename, rm } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { devNull } from 'node:os'
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { HearthError } from '../errors.ts'
import type { RunSpec } from './runtime.ts'

const scanBatch = 64
/**
 * A task directory with at most this many entries is scanned synchronously: for a small tree a few lstat calls on this
 * thread cost far less than the thread-pool round trips of the async scan. A larger tree falls back to the async scan.
 */
const syncScanEntries = 128

/** Checks the fields every runtime shares; the program itself is the runtime's business. */
export function validateRunSpec(spec: RunSpec<unknown>, runtime: string): void {
  const invalid = (message: string): HearthError => new HearthError('HEARTH_ERR_CONFIG_INVALID', `invalid ${runtime} run: ${message}`)
  if (!Array.isArray(spec.args) || spec.args.length === 0 || spec.args.some((arg) => typeof arg !== 'string' || arg.includes('\0'))) {
    throw invalid('args must be a non-empty list of strings without NUL characters (argv, program name first)')
  }
  if (typeof spec.env !== 'object' || spec.env === null) throw invalid('env must be an object of strings')
  validateEnvAndLimits(spec, invalid)
  const cores = spec.maxCpuCores
  if (cores !== undefined && (typeof cores !== 'number' || !Number.isFinite(cores) || cores <= 0)) {
    throw invalid(`maxCpuCores must be a positive finite number, got ${cores}`)
  }
  const gpus = spec.gpus
  if (gpus !== undefined && (!Array.isArray(gpus) || gpus.some((index) => !Number.isInteger(index) || index < 0 || index > 63))) {
    throw invalid('gpus must be a list of GPU indices (0 to 63) as the provider detected them')
  }
}

/** The env entries and the limits, which every runtime's spec has alike (wasi's too); `invalid` makes the error. */
export function validateEnvAndLimits(
  spec: { env: Record<string, string>; maxMemoryBytes: number; timeoutMs: number; maxOutputBytes: number },
  invalid: (message: string) => HearthError,
): void {
  for (const [key, value] of Object.entries(spec.env)) {
    if (key === '' || key.includes('=') || key.includes('\0') || typeof value !== 'string' || value.includes('\0')) {
      throw invalid(`env entry ${JSON.stringify(key)} is not a valid variable`)
    }
  }
  for (const name of ['maxMemoryBytes', 'timeoutMs', 'maxOutputBytes'] as const) {
    const value = spec[name]
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (name === 'timeoutMs' && value === 0)) {
      throw invalid(`${name} must be a ${name === 'timeoutMs' ? 'positive' : 'non-negative'} finite number, got ${value}`)
    }
  }
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) {
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the task was aborted before it started', {
      details: { aborted: true },
      cause: signal.reason,
    })
  }
}

/** The real path of an existing directory (symlinks resolved, so that bind mounts and checks see the same place). */
export async function realDirectory(path: string): Promise<string> {
  try {
    // Synchronous: two syscalls on this thread are cheaper than two thread-pool round trips (same libuv realpath).
    const real = realpathSync.native(resolve(path))
    if (lstatSync(real).isDirectory()) return real
  } catch (error) {
    throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `the task directory ${path} does not exist`, { cause: error })
  }
  throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `the task directory ${path} is not a directory`)
}

/** Resolves a host path for stdout/stderr and makes sure the program (`who`, as the runtime calls it) cannot reach it. */
export async function outsideRoot(rootDir: string, path: string, name: string, who = 'program'): Promise<string> {
  let real: string
  try {
    real = join(realpathSync.native(dirname(resolve(path))), basename(path))
  } catch (error) {
    throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `the folder of ${name} ${path} does not exist`, { cause: error })
  }
  const inside = relative(rootDir, real)
  if (inside === '' || (!inside.startsWith('..') && !isAbsolute(inside))) {
    throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `${name} ${path} is inside the task directory, where the ${who} could reach it`, {
      hint: 'keep stdout and stderr files next to the task directory, not in it',
    })
  }
  return real
}

/** Where a run's stdio goes and what its task directory held before it: what every runtime checks before it starts. */
export interface TaskFiles {
  stdoutPath: string
  stderrPath: string
  /** Sizes of the task directory's files before the run (see bytesAdded). */
  inputs: Map<string, number>
}

/**
 * Resolves the stdio files (outside the task directory, and two different files) and scans the task directory,
 * refusing links and special files. `who` names the program in errors, as the runtime calls it.
 */
export async function taskFiles(rootDir: string, spec: { stdoutPath: string; stderrPath: string }, who?: string): Promise<TaskFiles> {
  const stdoutPath = await outsideRoot(rootDir, spec.stdoutPath, 'stdoutPath', who)
  const stderrPath = await outsideRoot(rootDir, spec.stderrPath, 'stderrPath', who)
  if (stdoutPath === stderrPath) throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'stdoutPath and stderrPath must be different files')
  return { stdoutPath, stderrPath, inputs: scanSmallTree(rootDir, true) ?? (await scanTree(rootDir, true)) }
}

/** A run's stdio, open, and how much the program has written so far. */
export interface TaskStdio {
  stdin: FileHandle
  stdout: FileHandle
  stderr: FileHandle
  /** stdout + stderr + the bytes added under the task directory: what counts against maxOutputBytes. */
  measureOutput(): Promise<number>
}

/**
 * Opens stdin (the null device) and creates or truncates the stdio files. Each handle goes onto `handles` as soon as it
 * is open, so that the caller closes every one of them, also when a later open fails.
 */
export async function openStdio(handles: FileHandle[], rootDir: string, files: TaskFiles): Promise<TaskStdio> {
  const stdin = await open(devNull, 'r')
  handles.push(stdin)
  const stdout = await open(files.stdoutPath, 'w')
  handles.push(stdout)
  const stderr = await open(files.stderrPath, 'w')
  handles.push(stderr)
  const measureOutput = async (): Promise<number> => {
    const [out, err, added] = await Promise.all([stdout.stat(), stderr.stat(), bytesAdded(rootDir, files.inputs)])
    return out.size + err.size + added
  }
  return { stdin, stdout, stderr, measureOutput }
}

/** Task directories in use by runs of one runtime: one run at a time per directory, and none inside another's. */
export class RootClaims {
  private readonly active = new Set<string>()

  /**
   * Runs `body` in the real path of `rootDir`, holding it and the path as given for the run. The given path is claimed
   * before the first await, so that of two runs started together on one directory the first wins whatever order their
   * lookups finish in; the real path is claimed too (it differs for a folder reached through a link). `prepare` runs
   * between the two (a runtime's setup, handed to `body`), under the first claim.
   */
  async inRoot<S, T>(rootDir: string, prepare: () => S | Promise<S>, body: (realRoot: string, prepared: S) => Promise<T>): Promise<T> {
    const givenRoot = resolve(rootDir)
    this.claim(givenRoot)
    try {
      const prepared = await prepare()
      const realRoot = await realDirectory(givenRoot)
      if (realRoot !== givenRoot) this.claim(realRoot)
      try {
        return await body(realRoot, prepared)
      } finally {
        // Only what this run claimed: a failed claim means another run holds that path.
        if (realRoot !== givenRoot) this.release(realRoot)
      }
    } finally {
      this.release(givenRoot)
    }
  }

  claim(rootDir: string): void {
    for (const active of this.active) {
      if (active === rootDir || active.startsWith(rootDir + sep) || rootDir.startsWith(active + sep)) {
        throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `the task directory ${rootDir} is in use by another run (${active})`, {
          hint: 'give every run its own task directory',
        })
      }
    }
    this.active.add(rootDir)
  }

  release(rootDir: string): void {
    this.active.delete(rootDir)
  }
}

/**
 * Sizes of the regular files under `dir`, keyed by relative path. With `strict`, anything that could let the program
 * reach outside (a symlink, a hard link to a file elsewhere, a device, fifo or socket) is refused.
 */
export async function scanTree(dir: string, strict: boolean, sizes = new Map<string, number>(), prefix = ''): Promise<Map<string, number>> {
  const entries = await readdir(dir)
  // lstat in parallel batches: the scan runs while a program writes, and its length sets how much can be written
  // before the next one (one at a time it was ~4x slower on a loaded 2-core machine).
  for (let start = 0; start < entries.length; start += scanBatch) {
    const batch = entries.slice(start, start + scanBatch)
    const infos = await Promise.all(batch.map((name) => lstat(join(dir, name)).catch(() => undefined)))
    for (const [i, info] of infos.entries()) {
      const name = prefix + batch[i]!
      // Gone since the listing: only possible while a program runs, when the next scan counts again.
      if (info === undefined) continue
      if (info.isDirectory()) {
        await scanTree(join(dir, batch[i]!), strict, sizes, name + '/').catch((error: unknown) => {
          if (strict) throw error
        })
      } else if (info.isFile()) {
        if (strict && info.nlink > 1) throw refused(name, 'a hard link (it may alias a file outside the task directory)')
        sizes.set(name, info.size)
      } else if (strict) {
        throw refused(name, info.isSymbolicLink() ? 'a symbolic link' : 'not a regular file or directory')
      }
    }
  }
  return sizes
}

/**
 * scanTree done synchronously, for a tree of at most `maxEntries` entries: undefined when the tree is larger (the
 * caller then runs the async scan). Refuses and tolerates exactly what scanTree does.
 */
export function scanSmallTree(dir: string, strict: boolean, maxEntries = syncScanEntries): Map<string, number> | undefined {
  const sizes = new Map<string, number>()
  let budget = maxEntries
  const walk = (path: string, prefix: string): boolean => {
    const entries = readdirSync(path)
    budget -= entries.length
    if (budget < 0) return false
    for (const entry of entries) {
      const name = prefix + entry
      let info
      try {
        info = lstatSync(join(path, entry), { throwIfNoEntry: false })
      } catch {
        info = undefined
      }
      // Gone since the listing: only possible while a program runs, when the next scan counts again.
      if (info === undefined) continue
      if (info.isDirectory()) {
        let complete: boolean
        try {
          complete = walk(join(path, entry), name + '/')
        } catch (error) {
          if (strict) throw error
          complete = true
        }
        if (!complete) return false
      } else if (info.isFile()) {
        if (strict && info.nlink > 1) throw refused(name, 'a hard link (it may alias a file outside the task directory)')
        sizes.set(name, info.size)
      } else if (strict) {
        throw refused(name, info.isSymbolicLink() ? 'a symbolic link' : 'not a regular file or directory')
      }
    }
    return true
  }
  return walk(dir, '') ? sizes : undefined
}

function refused(name: string, what: string): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `the task directory holds ${name}, which is ${what}; refusing to run`, {
    hint: 'a task directory may hold only regular files and directories: copy inputs in instead of linking them',
    details: { path: name },
  })
}

/** Bytes the program has added under rootDir: growth of each file over its size before the run. */
export async function bytesAdded(rootDir: string, before: Map<string, number>): Promise<number> {
  let added = 0
  for (const [name, size] of scanSmallTree(rootDir, false) ?? (await scanTree(rootDir, false))) added += Math.max(0, size - (before.get(name) ?? 0))
  return added
}

/**
 * After a process-based run, brings the task directory back to what the host may safely read and what the next run
 * accepts: a program can leave symlinks (the host would follow them to its own files), fifos and sockets (a reader
 * would block), hard links between its files (refused by the next run), setuid/setgid files (owned by the provider's
 * user outside the sandbox, so setuid-root when the provider runs as root) and modes that lock the provider out.
 * Returns the relative paths it removed.
 */
export async function sanitizeTree(rootDir: string): Promise<string[]> {
  const removed: string[] = []
  const walk = async (dir: string, prefix: string): Promise<void> => {
    const dirInfo = await lstat(dir)
    // The owner (the provider's user outside the sandbox) must be able to list, enter and clean every folder.
    if ((dirInfo.mode & 0o7700) !== 0o700) await chmod(dir, (dirInfo.mode & 0o777) | 0o700)
    for (const name of await readdir(dir)) {
      const path = join(dir, name)
      const info = await lstat(path)
      if (info.isDirectory()) {
        await walk(path, prefix + name + '/')
      } else if (info.isFile()) {
        if (info.nlink > 1) {
          // Both names are inside rootDir (a hard link cannot cross the sandbox's mounts): give this one its own copy.
          const copy = join(dir, `.hearth-unlink-${process.pid}`)
          await copyFile(path, copy)
          await rename(copy, path)
        }
        const mode = (await lstat(path)).mode
        if ((mode & 0o7600) !== 0o600) await chmod(path, (mode & 0o777) | 0o600)
      } else {
        await rm(path, { force: true })
        removed.push(prefix + name)
      }
    }
  }
  await walk(rootDir, '')
  return removed
}

/** sanitizeTree after a run, failing the run (HEARTH_ERR_EXEC_FAILED) when the task directory cannot be cleaned. */
export async function sanitizeAfterRun(rootDir: string): Promise<void> {
  try {
    await sanitizeTree(rootDir)
  } catch (error) {
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', `cannot clean the task directory after the run: ${(error as Error).message}`, { cause: error })
  }
}
