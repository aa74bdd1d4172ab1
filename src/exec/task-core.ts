/**
 * The one execution core of a task, shared by the provider's task runner, the requestor's local runner and ExeScript
 * activities: a task directory (`<dir>/root`, the only place the program sees, with its stdio files beside it), one
 * guard from guest paths to host paths (HEARTH_ERR_EXEC_PATH_INVALID), inputs staged into the root, the program run
 * through a `Runtime`, and the outputs collected back (regular files only) with their content ids.
 */
import { mkdirSync, rmdirSync } from 'node:fs'
import { copyFile, lstat, mkdir, readFile, realpath, rm, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { HearthError } from '../errors.ts'
import { sha256Hex } from './content-hash.ts'
import type { RunOptions, RunResult, Runtime } from './runtime.ts'

/** Where a task's files live: the root the program sees and its stdio files, outside the root. */
export interface TaskDirLayout {
  dir: string
  rootDir: string
  stdoutPath: string
  stderrPath: string
}

/** The layout of the task directory `dir`; `run` names the stdio files of one of several runs (an activity's). */
export function taskDirLayout(dir: string, run?: number): TaskDirLayout {
  const suffix = run === undefined ? '' : `-${run}`
  return { dir, rootDir: join(dir, 'root'), stdoutPath: join(dir, `stdout${suffix}`), stderrPath: join(dir, `stderr${suffix}`) }
}

function pathRefused(guestPath: string, why: string): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `${JSON.stringify(guestPath.slice(0, 300))} ${why}`, {
    hint: 'guest paths are absolute and without "..", such as /in/data.txt or /out/result.txt',
    details: { path: guestPath.slice(0, 300) },
  })
}

/**
 * The host path of a guest path under `rootDir`, by its text alone: refuses (HEARTH_ERR_EXEC_PATH_INVALID) a path that
 * is not absolute, is the root itself, holds NUL or a ".." segment, or would leave the task directory.
 */
export function guestHostPath(rootDir: string, guestPath: string): string {
  const valid = guestPath.startsWith('/') && guestPath !== '/' && !guestPath.includes('\0') && !guestPath.split('/').includes('..')
  const hostPath = resolve(rootDir, '.' + guestPath)
  if (!valid || !hostPath.startsWith(resolve(rootDir) + sep)) throw pathRefused(guestPath, 'is not a guest path inside the task directory')
  return hostPath
}

/** Whether the nearest existing folder on the way to `hostPath` is really inside `rootDir` (no symlink leads out). */
async function staysInside(rootDir: string, hostPath: string): Promise<boolean> {
  const root = resolve(rootDir)
  let existing = dirname(hostPath)
  while (existing !== root && existing.startsWith(root + sep) && (await lstat(existing).catch(() => undefined)) === undefined) existing = dirname(existing)
  const real = await realpath(existing).catch(() => existing)
  const realRoot = await realpath(root)
  return real === realRoot || real.startsWith(realRoot + sep)
}

/** guestHostPath, and refusing too a path that leads out of the task directory through a symlink on the way. */
export async function guestPathInRoot(rootDir: string, guestPath: string): Promise<string> {
  const hostPath = guestHostPath(rootDir, guestPath)
  if (!(await staysInside(rootDir, hostPath))) throw pathRefused(guestPath, 'leads out of the task directory through a symlink')
  return hostPath
}

/**
 * Places a file at `guestPath` under `rootDir` (its folders made): `content`'s bytes, or a copy of the host file
 * `copyFrom`. Nothing on the way may lead out, and what is there already must be a regular file (it is replaced).
 */
export async function placeFile(rootDir: string, guestPath: string, content: Uint8Array | { copyFrom: string }): Promise<string> {
  const target = await guestPathInRoot(rootDir, guestPath)
  await mkdir(dirname(target), { recursive: true })
  // Re-checked after mkdir: nothing on the way may lead out, and the target itself must not be a link or folder.
  await guestPathInRoot(rootDir, guestPath)
  const existing = await lstat(target).catch(() => undefined)
  if (existing !== undefined && !existing.isFile()) {
    throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `${guestPath} exists and is not a regular file`, { hint: 'transfer to a new path' })
  }
  if (existing !== undefined) await rm(target, { force: true })
  if (content instanceof Uint8Array) await writeFile(target, content)
  else await copyFile(content.copyFrom, target)
  return target
}

/** A file placed in the task directory before the run, by guest path. */
export interface TaskInput {
  path: string
  data: Uint8Array
}

/** Creates the root, writes the inputs and makes the folders of the outputs (programs expect them to exist). */
export async function stageInputs(rootDir: string, inputs: readonly TaskInput[], outputs: readonly string[]): Promise<void> {
  // On this thread: a folder or two cost less here than a thread-pool round trip each, for tasks of a millisecond.
  mkdirSync(rootDir, { recursive: true })
  for (const input of inputs) await placeFile(rootDir, input.path, input.data)
  for (const output of outputs) await mkdir(dirname(await guestPathInRoot(rootDir, output)), { recursive: true })
}

/** What runs in a task directory: a runtime's program, its argv (name first), env and limits. */
export interface TaskProgram<P> {
  runtime: Runtime<P>
  program: P
  args: string[]
  env: Record<string, string>
  maxMemoryBytes: number
  timeoutMs: number
  maxOutputBytes: number
  /** GPUs by index as detected; the sandbox shows no other device. */
  gpus?: number[]
  /** The program's content id, where the caller checked it (see RunSpec.programId). */
  programId?: string
}

/** Runs `task` in the task directory `layout` through its runtime. */
export function runProgram<P>(layout: TaskDirLayout, task: TaskProgram<P>, options?: RunOptions): Promise<RunResult> {
  const { runtime, gpus, ...rest } = task
  const spec = { ...rest, rootDir: layout.rootDir, stdoutPath: layout.stdoutPath, stderrPath: layout.stderrPath, ...(gpus === undefined ? {} : { gpus }) }
  return runtime.run(spec, options)
}

/** The host path and size of the regular file at `guestPath`, or undefined when there is none (a link, folder, nothing). */
export async function outputFile(rootDir: string, guestPath: string): Promise<{ hostPath: string; sizeBytes: number } | undefined> {
  const hostPath = guestHostPath(rootDir, guestPath)
  // Only regular files come back: a symlink the program made must not leak the host's files.
  if (!(await staysInside(rootDir, hostPath))) return undefined
  const info = await lstat(hostPath).catch(() => undefined)
  return info === undefined || !info.isFile() ? undefined : { hostPath, sizeBytes: info.size }
}

/** An output the program left, with its content id. */
export interface CollectedOutput {
  path: string
  data: Buffer
  contentId: string
  sizeBytes: number
}

/** The outputs the program left, each changed by `transform` (before it is hashed) when given; the others by path. */
export async function collectOutputs(rootDir: string, paths: readonly string[], transform?: (bytes: Buffer) => Buffer): Promise<{ outputs: CollectedOutput[]; missingOutputs: string[] }> {
  const outputs: CollectedOutput[] = []
  const missingOutputs: string[] = []
  for (const path of paths) {
    const file = await outputFile(rootDir, path)
    if (file === undefined) {
      missingOutputs.push(path)
      continue
    }
    const read = await readFile(file.hostPath)
    const data = transform === undefined ? read : transform(read)
    outputs.push({ path, data, contentId: sha256Hex(data), sizeBytes: data.length })
  }
  return { outputs, missingOutputs }
}

/**
 * Removes a task directory and everything in it. A task that left nothing behind (most do) leaves an empty folder,
 * removed with one call on this thread; anything else goes through the recursive removal.
 */
export async function removeTaskDir(dir: string): Promise<void> {
  try {
    rmdirSync(dir)
    return
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
  }
  await rm(dir, { recursive: true, force: true })
}

/** A task's stdout and stderr as the run left them (empty when missing). */
export async function readStdio(layout: TaskDirLayout): Promise<{ stdout: Buffer; stderr: Buffer }> {
  const [stdout, stderr] = await Promise.all([layout.stdoutPath, layout.stderrPath].map((path) => readFile(path).catch(() => Buffer.alloc(0))))
  return { stdout: stdout!, stderr: stderr! }
}

export interface TaskInDir<P> extends TaskProgram<P> {
  inputs: readonly TaskInput[]
  outputs: readonly string[]
}

export interface TaskInDirOutcome extends Awaited<ReturnType<typeof collectOutputs>> {
  run: RunResult
  stdout: Buffer
  stderr: Buffer
}

/**
 * A one-shot task in the task directory `dir` (which the caller removes): inputs staged, the program run, outputs and
 * stdio read back. `afterRun` sees the run before its outputs are read: it may throw (the result is not wanted), or
 * return a transform for the outputs' bytes.
 *
 * Where the runtime keeps stdio in memory (Runtime.runKeepingStdio), `dir` itself is the root the program sees, and
 * nothing else is created beside it: one folder per task, and no stdio files to create, read back and remove.
 */
export async function runTaskInDir<P>(dir: string, task: TaskInDir<P>, options: RunOptions & { afterRun?: (run: RunResult) => ((bytes: Buffer) => Buffer) | undefined } = {}): Promise<TaskInDirOutcome> {
  const { inputs, outputs: outputPaths, ...program } = task
  const runOptions = options.signal === undefined ? {} : { signal: options.signal }
  if (program.runtime.runKeepingStdio !== undefined) {
    await stageInputs(dir, inputs, outputPaths)
    const { runtime, gpus, ...rest } = program
    const { stdout, stderr, ...run } = await runtime.runKeepingStdio!({ ...rest, rootDir: dir, ...(gpus === undefined ? {} : { gpus }) }, runOptions)
    const transform = options.afterRun?.(run)
    const collected = await collectOutputs(dir, outputPaths, transform)
    return { run, ...collected, stdout: Buffer.from(stdout.buffer, stdout.byteOffset, stdout.byteLength), stderr: Buffer.from(stderr.buffer, stderr.byteOffset, stderr.byteLength) }
  }
  const layout = taskDirLayout(dir)
  await stageInputs(layout.rootDir, inputs, outputPaths)
  const run = await runProgram(layout, program, runOptions)
  const transform = options.afterRun?.(run)
  const collected = await collectOutputs(layout.rootDir, outputPaths, transform)
  return { run, ...collected, ...(await readStdio(layout)) }
}
