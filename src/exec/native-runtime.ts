/**
 * The `native` runtime: runs programs the provider chose to offer (an allow-list of absolute host paths, e.g.
 * /usr/bin/povray) under bubblewrap, limited by one cgroup per run. Linux only.
 *
 * The sandbox (bwrap): every namespace unshared (no network but its own loopback, own pids, ipc, uts, cgroup view),
 * user namespaces disabled inside, no capabilities, a new session (no terminal injection), the task env only, uid/gid
 * 1000; read-only /usr and the top-level links or folders into it (/bin, /lib, …), the few /etc files the dynamic loader
 * needs (no passwd, hosts or resolver), a fresh /tmp, minimal /proc and /dev; the task directory read-write at /task,
 * the working directory. It dies with Hearth (--die-with-parent).
 *
 * Limits: the cgroup caps memory (+swap), CPU (quota) and processes (a fork bomb meets pids.max); RLIMIT_FSIZE caps
 * each file the program writes, stdout and stderr included, so one runaway writer is stopped by the kernel, and the
 * total output is polled as the wasi runtime does. The deadline, an abort or close() kill the process group and then
 * everything left in the cgroup. A tiny shell wrapper puts itself into the cgroup before it execs bwrap, so the limits
 * hold from the sandbox's first instruction. CPU time comes from the cgroup, so it counts every process of the run.
 *
 * Every task is treated as hostile code, even though only offered programs run: an offered program can run what its
 * arguments say (Blender's --python-expr), and its environment can load code into it (LD_PRELOAD). So the task's env is
 * an allow-list (defaultAllowedEnv plus the provider's allowedEnv; anything else is refused before anything starts), and
 * the sandbox runs under a seccomp filter after Docker's default profile (seccomp.ts), which bwrap installs just before
 * it execs the program.
 *
 * In pieces: native-env.ts checks the task's env, native-setup.ts checks once what runs need (with a trial sandbox),
 * native-sandbox.ts builds bwrap's arguments, native-launch.ts starts the wrapper and reads bwrap's status; this file
 * runs one task from its checks to its result.
 */
import type { ChildProcess } from 'node:child_process'
import { constants } from 'node:fs'
import { access, lstat, readFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { constants as osConstants } from 'node:os'
import { isAbsolute, normalize } from 'node:path'
import { HearthError, toHearthError } from '../errors.ts'
import type { CgroupOptions, RunCgroup } from './cgroups.ts'
import { checkTaskEnv, envAllowList } from './native-env.ts'
import type { EnvAllowList } from './native-env.ts'
import { collect, killGroup, parseStatus, startSandbox, wrapperArgs } from './native-launch.ts'
import { sandboxArgs } from './native-sandbox.ts'
import { prepareSetup } from './native-setup.ts'
import type { Setup, SetupResult } from './native-setup.ts'
import { serveNative } from './native-serve.ts'
import type { Runtime, RunOptions, RunResult, RunSpec, RuntimeAvailability, ServedProgram, ServeSpec } from './runtime.ts'
import { closedWhileRunning, memoryExceeded, roundMs, stopError, watchLimits, within } from './run-support.ts'
import type { Metering, OutputWatch, StopEnding } from './run-support.ts'
import { holdRoot, startServer, stopServers, validateServeSpec } from './service-served.ts'
import type { ServerSet } from './service-served.ts'
import { bytesAdded, openStdio, RootClaims, sanitizeAfterRun, taskFiles, throwIfAborted, validateRunSpec } from './task-dir.ts'
import type { TaskFiles } from './task-dir.ts'

export { defaultAllowedEnv } from './native-env.ts'
export { gpuSandboxArgs } from './native-sandbox.ts'

/** A program for the `native` runtime: an absolute host path on the provider's allow-list. */
export type NativeProgram = string

export interface NativeRuntimeInit {
  /** Absolute host paths of the programs this provider offers (e.g. ['/usr/bin/povray']); nothing else can run. */
  programs: string[]
  /** Host paths a program needs besides /usr and the loader's /etc files, bound read-only at the same place. */
  readOnlyPaths?: string[]
  /** The bubblewrap binary; default: `bwrap` on PATH. */
  bwrapPath?: string
  /** Processes and threads one run may have at once (cgroup pids.max). Default 256. */
  maxProcesses?: number
  cgroups?: CgroupOptions
  /**
   * Environment variables a task may set besides defaultAllowedEnv: exact names, or `PREFIX_*` for every name that
   * starts with PREFIX_. Their values are the provider's to vouch for (the defaults' values are checked to be names and
   * numbers, not paths). Loader and libc variables (LD_*, GCONV_PATH, …) are refused here: no program can be safe with
   * them. PATH and HOME, which the runtime sets, may be listed to let tasks change them.
   */
  allowedEnv?: string[]
}

export interface NativeRuntime extends Runtime<NativeProgram> {
  /** Run cgroups (and processes in them) this runtime left behind; [] when every run was cleaned up. */
  leftovers(): Promise<string[]>
}

const defaultMaxProcesses = 256

type Ending =
  | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  | StopEnding
  | { kind: 'crash'; error: unknown }
  | { kind: 'closed' }

/** The init, checked: offered programs and read-only paths normalized, the env allow-list built. */
interface NativeConfig {
  programs: Set<string>
  readOnlyPaths: string[]
  allowedEnv: EnvAllowList
  maxProcesses: number
}

/** What a run needs of its runtime besides the setup. */
interface RunContext {
  maxProcesses: number
  /** Stops for the runs in flight, called by close(). */
  inFlight: Set<() => void>
  isClosed(): boolean
}

export function createNativeRuntime(init: NativeRuntimeInit): NativeRuntime {
  const { programs, readOnlyPaths, allowedEnv, maxProcesses } = nativeConfig(init)
  const claims = new RootClaims()
  const inFlight = new Set<() => void>()
  const servers: ServerSet = { starting: new Set(), running: new Set(), isClosed: () => closed }
  let closed = false
  let setupPromise: Promise<SetupResult> | undefined
  const context: RunContext = { maxProcesses, inFlight, isClosed: () => closed }

  const prepare = (): Promise<SetupResult> => {
    setupPromise ??= prepareSetup({ bwrapPath: init.bwrapPath, cgroups: init.cgroups, programs, readOnlyPaths, maxProcesses })
    return setupPromise
  }

  async function available(): Promise<RuntimeAvailability> {
    const prepared = await prepare()
    return prepared.ok ? { ok: true } : { ok: false, reason: prepared.reason }
  }

  /** The offered program a run or server names, normalized; refused when not on the allow-list. */
  function offeredProgram(program: NativeProgram): string {
    if (typeof program !== 'string' || !programs.has(normalize(program))) {
      throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this provider does not offer the program ${JSON.stringify(program)}`, {
        hint: `offered programs: ${[...programs].join(', ') || 'none'}`,
        details: { program },
      })
    }
    return normalize(program)
  }

  async function run(spec: RunSpec<NativeProgram>, options: RunOptions = {}): Promise<RunResult> {
    const { signal } = options
    if (closed) throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the native runtime is closed')
    validateRunSpec(spec, 'native')
    offeredProgram(spec.program)
    // Before anything starts: a variable can load the task's own code into the offered program (LD_PRELOAD).
    checkTaskEnv(spec.env, allowedEnv)
    throwIfAborted(signal)
    const program = normalize(spec.program)
    return claims.inRoot(
      spec.rootDir,
      async () => {
        const prepared = await prepare()
        if (!prepared.ok) throw unavailable(prepared.reason)
        return prepared.setup
      },
      async (rootDir, setup) => {
        try {
          return await runInRoot(setup, { ...spec, program }, rootDir, signal, context)
        } catch (error) {
          // An unexpected fs failure (a task directory the provider's user cannot read, a full disk) is still one of ours.
          throw toHearthError(error, 'HEARTH_ERR_EXEC_FAILED')
        }
      },
    )
  }

  async function serve(spec: ServeSpec<NativeProgram>): Promise<ServedProgram> {
    if (closed) throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the native runtime is closed')
    validateServeSpec(spec, 'native')
    const program = offeredProgram(spec.program)
    checkTaskEnv(spec.env, allowedEnv)
    const prepared = await prepare()
    if (!prepared.ok) throw unavailable(prepared.reason)
    const held = await holdRoot(claims, spec)
    return startServer(servers, 'native', () => serveNative(prepared.setup, { ...spec, program }, held, maxProcesses))
  }

  return {
    name: 'native',
    available,
    run,
    serve,
    async close() {
      closed = true
      for (const stop of [...inFlight]) stop()
      await stopServers(servers)
    },
    async leftovers() {
      const prepared = await prepare()
      if (!prepared.ok) return []
      return prepared.setup.cgroups.leftovers()
    },
  }
}

/** Checks the init before anything else: offered programs and read-only paths are absolute, the env allow-list safe. */
function nativeConfig(init: NativeRuntimeInit): NativeConfig {
  const programs = new Set(
    init.programs.map((program) => {
      if (typeof program !== 'string' || !isAbsolute(program) || program.includes('\0')) {
        throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `native runtime: program ${JSON.stringify(program)} is not an absolute path`)
      }
      return normalize(program)
    }),
  )
  const readOnlyPaths = (init.readOnlyPaths ?? []).map((path) => {
    if (!isAbsolute(path)) throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `native runtime: read-only path ${path} is not absolute`)
    return normalize(path)
  })
  const allowedEnv = envAllowList(init.allowedEnv ?? [])
  const maxProcesses = init.maxProcesses ?? defaultMaxProcesses
  if (!Number.isInteger(maxProcesses) || maxProcesses < 1) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `native runtime: maxProcesses must be a positive integer, got ${maxProcesses}`)
  }
  return { programs, readOnlyPaths, allowedEnv, maxProcesses }
}

async function runInRoot(setup: Setup, spec: RunSpec<NativeProgram>, rootDir: string, signal: AbortSignal | undefined, context: RunContext): Promise<RunResult> {
  const files = await taskFiles(rootDir, spec)
  await checkRunnable(spec)
  throwIfAborted(signal)
  return runResult(await runSandbox(setup, spec, rootDir, files, signal, context), spec, rootDir, files)
}

/** Refuses a run whose program is not executable here, or that asks for a GPU this machine lacks. */
async function checkRunnable(spec: RunSpec<NativeProgram>): Promise<void> {
  try {
    await access(spec.program, constants.X_OK)
  } catch (error) {
    throw unavailable(`the offered program ${spec.program} is not installed or not executable`, error)
  }
  for (const index of spec.gpus ?? []) {
    if (!(await lstat(`/dev/nvidia${index}`).then(() => true, () => false))) {
      throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', `GPU ${index} is not on this machine (/dev/nvidia${index} does not exist)`, {
        hint: 'offer only the GPUs exec/gpu.ts detects, and check that the NVIDIA driver is loaded',
        details: { gpu: index },
      })
    }
  }
}

/** How a sandboxed run ended, with bwrap's status (read once the cgroup is empty) and what the cgroup metered. */
interface Outcome {
  ending: Ending
  statusText: Promise<string>
  statusPipe: { destroy(): void } | undefined
  durationMs: number
  cpuMs: number
  oomKills: number
}

/**
 * Runs the program in the sandbox, in a cgroup of its own, until it ends or is stopped; then kills what is left in
 * the cgroup, reads its metering, removes it and closes the task's stdio.
 */
async function runSandbox(
  setup: Setup,
  spec: RunSpec<NativeProgram>,
  rootDir: string,
  files: TaskFiles,
  signal: AbortSignal | undefined,
  context: RunContext,
): Promise<Outcome> {
  const handles: FileHandle[] = []
  let cgroup: RunCgroup | undefined
  let ending: Ending
  let statusText: Promise<string> = Promise.resolve('')
  let statusPipe: { destroy(): void } | undefined
  let durationMs = 0
  let cpuMs = 0
  let oomKills = 0
  try {
    const { stdin, stdout, stderr, measureOutput } = await openStdio(handles, rootDir, files)

    cgroup = await setup.cgroups.create({ memoryBytes: spec.maxMemoryBytes, cpuCores: spec.maxCpuCores ?? 1, maxProcesses: context.maxProcesses })
    const runCgroup = cgroup
    // One block more than the budget: a file that reaches the rlimit is over budget, which the final check reports.
    const args = wrapperArgs(Math.floor(spec.maxOutputBytes / 512) + 1, cgroup.procsFiles, setup.bwrap, sandboxArgs(setup, spec, rootDir))
    // close() may have come while the sandbox was being set up: start nothing then. From here to watch() nothing
    // awaits, so a later close() finds this run in flight.
    if (context.isClosed()) throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the native runtime was closed while the run was being set up')
    const startedAt = performance.now()
    const child = startSandbox(args, [stdin.fd, stdout.fd, stderr.fd], setup.seccomp)
    statusText = collect(child)
    statusPipe = child.stdio[3] ?? undefined
    ending = await watch(child, spec, signal, measureOutput, context.inFlight, () => {
      killGroup(child)
      // bwrap's pid-namespace init takes the sandbox down with it; the cgroup catches anything in between.
      runCgroup.killAll().catch(() => {})
    })
    durationMs = performance.now() - startedAt
  } finally {
    try {
      if (cgroup !== undefined) {
        await cgroup.killAll()
        cpuMs = (await cgroup.cpuNs().catch(() => 0)) / 1e6
        oomKills = await cgroup.oomKills().catch(() => 0)
        await cgroup.remove()
      }
    } finally {
      await Promise.allSettled(handles.map((handle) => handle.close()))
    }
  }
  return { ending, statusText, statusPipe, durationMs, cpuMs, oomKills }
}

/** The run's result once nothing of it is left running, or the error that stopped it. */
async function runResult(outcome: Outcome, spec: RunSpec<NativeProgram>, rootDir: string, files: TaskFiles): Promise<RunResult> {
  const { ending } = outcome
  const { stdoutPath, stderrPath, inputs } = files
  // Read after everything in the cgroup is dead: only bwrap holds the pipe, but nothing in the sandbox may keep this
  // run waiting. bwrap wrote its last line before it exited.
  const status = parseStatus(await within(outcome.statusText, 1_000, ''))
  outcome.statusPipe?.destroy()

  // Before the host looks at the outputs: no links, fifos, setuid bits or locked folders left by the program.
  await sanitizeAfterRun(rootDir)
  const metering = { durationMs: roundMs(outcome.durationMs), cpuMs: roundMs(outcome.cpuMs) }
  if (ending.kind !== 'exit') throw endingError(ending, spec, metering)
  if (outcome.oomKills > 0) throw memoryExceeded(spec.maxMemoryBytes, { oomKills: outcome.oomKills }, metering)
  const [out, err] = await Promise.all([lstat(stdoutPath), lstat(stderrPath)])
  const total = out.size + err.size + (await bytesAdded(rootDir, inputs))
  if (total > spec.maxOutputBytes) throw stopError({ kind: 'output', bytes: total }, spec, metering)
  if (status.childPid === undefined) {
    // bwrap reports its own failures (a missing bind source, no user namespaces) on the task's stderr.
    const text = (await readFile(stderrPath, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ')
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', `the sandbox could not start (exit code ${ending.code}): ${text || 'no message'}`, {
      details: { exitCode: ending.code },
    })
  }
  const exitCode = status.exitCode ?? ending.code ?? 128 + signalNumber(ending.signal)
  return { exitCode, ...metering, stdoutBytes: out.size, stderrBytes: err.size }
}

/** Waits for the first of: the program's end, the deadline, an abort, too much output, close(). Stops the run on all but the first. */
function watch(
  child: ChildProcess,
  spec: RunSpec<NativeProgram>,
  signal: AbortSignal | undefined,
  measureOutput: () => Promise<number>,
  inFlight: Set<() => void>,
  stop: () => void,
): Promise<Ending> {
  let limits: OutputWatch | undefined
  let exited: Promise<void> = Promise.resolve()
  return new Promise<Ending>((resolvePromise) => {
    let done = false
    const finish = (ending: Ending): void => {
      if (done) return
      done = true
      limits?.stop()
      signal?.removeEventListener('abort', onAbort)
      inFlight.delete(onClose)
      if (ending.kind !== 'exit' && ending.kind !== 'crash') {
        // Wait for the wrapper to be reaped, so that the caller's clean-up sees a finished process tree.
        exited = new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())))
        stop()
      }
      resolvePromise(ending)
    }
    const onAbort = (): void => finish({ kind: 'abort', reason: signal?.reason })
    const onClose = (): void => finish({ kind: 'closed' })
    child.once('exit', (code, exitSignal) => finish({ kind: 'exit', code, signal: exitSignal }))
    child.once('error', (error) => finish({ kind: 'crash', error }))
    signal?.addEventListener('abort', onAbort, { once: true })
    inFlight.add(onClose)
    limits = watchLimits(spec, measureOutput, finish)
    if (signal?.aborted === true) onAbort()
  }).then(async (ending) => {
    await limits?.settled()
    await exited
    return ending
  })
}

function endingError(ending: Exclude<Ending, { kind: 'exit' }>, spec: RunSpec<NativeProgram>, metering: Metering): HearthError {
  switch (ending.kind) {
    case 'closed':
      return closedWhileRunning('native', metering)
    case 'crash':
      return new HearthError('HEARTH_ERR_EXEC_FAILED', `could not start the sandbox: ${(ending.error as Error)?.message ?? String(ending.error)}`, {
        cause: ending.error,
      })
    default:
      return stopError(ending, spec, metering)
  }
}

function unavailable(reason: string, cause?: unknown): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', `the native runtime cannot run here: ${reason}`, {
    hint: 'install what the reason names (Debian: apt-get install bubblewrap), or do not offer the native runtime',
    ...(cause === undefined ? {} : { cause }),
  })
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === null ? 0 : (osConstants.signals[signal] ?? 0)
}
