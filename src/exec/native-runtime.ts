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
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { constants } from 'node:fs'
import { access, lstat, readFile, readlink } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { constants as osConstants } from 'node:os'
import { delimiter, isAbsolute, join, normalize } from 'node:path'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { detectCgroups } from './cgroups.ts'
import { nativeUnavailableReason } from './platform.ts'
import type { CgroupOptions, Cgroups, RunCgroup } from './cgroups.ts'
import type { Runtime, RunOptions, RunResult, RunSpec, RuntimeAvailability } from './runtime.ts'
import { closedWhileRunning, memoryExceeded, roundMs, stopError, watchLimits, within } from './run-support.ts'
import type { Metering, OutputWatch, StopEnding } from './run-support.ts'
import { seccompFilterBytes } from './seccomp.ts'
import { bytesAdded, openStdio, RootClaims, sanitizeAfterRun, taskFiles, throwIfAborted, validateRunSpec } from './task-dir.ts'

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

/** What a default variable's value may be: a name (no `/`), a time zone (no absolute or `..` path), a count (digits, commas). */
type EnvValueRule = 'name' | 'zone' | 'count'

const defaultEnvRules: Readonly<Record<string, EnvValueRule>> = {
  LANG: 'name',
  LANGUAGE: 'name',
  'LC_*': 'name',
  TZ: 'zone',
  TERM: 'name',
  NO_COLOR: 'name',
  COLUMNS: 'count',
  LINES: 'count',
  OMP_NUM_THREADS: 'count',
  OMP_THREAD_LIMIT: 'count',
  MKL_NUM_THREADS: 'count',
  OPENBLAS_NUM_THREADS: 'count',
  BLIS_NUM_THREADS: 'count',
  NUMEXPR_NUM_THREADS: 'count',
  VECLIB_MAXIMUM_THREADS: 'count',
  RAYON_NUM_THREADS: 'count',
  GOMAXPROCS: 'count',
}
/**
 * What a task may set in its env without the provider's say: locale, time zone, terminal size, and how many threads
 * the common math and parallel runtimes start. None of them names a file to load; their values are checked to be names
 * or numbers (a locale or TERM given as a path, TZ as an absolute or `..` path, is refused), so that a task cannot point
 * an offered program at a file it wrote. Not OMP_* as a whole: OMP_TOOL_LIBRARIES loads a library.
 */
export const defaultAllowedEnv: readonly string[] = Object.keys(defaultEnvRules)

/**
 * Never allowed, not even by a provider: the dynamic loader's LD_* and the variables glibc drops for setuid programs
 * (unsecvars.h) because they make libc load or read a file they name (GCONV_PATH loads a shared object). TMPDIR, also
 * on glibc's list, is harmless here.
 */
const neverAllowedEnv = ['GCONV_PATH', 'GETCONF_DIR', 'GLIBC_TUNABLES', 'HOSTALIASES', 'LOCALDOMAIN', 'LOCPATH', 'MALLOC_TRACE', 'NIS_PATH', 'NLSPATH', 'RESOLV_HOST_CONF', 'RES_OPTIONS', 'TZDIR']
const neverAllowedPrefix = 'LD_'

/** The runtime's own PATH and HOME; a task may change them only where the provider lists them in allowedEnv. */
const runtimeEnv = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/task' }

/** The uid and gid the program runs as inside the sandbox (files it writes belong to the provider's user outside). */
const sandboxUid = '1000'
const defaultMaxProcesses = 256
/** Top-level host entries that usually link into /usr (merged /usr) or hold libraries and tools themselves. */
const topLevelEntries = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']
/** What the dynamic loader reads from /etc; alternatives resolves Debian's /usr/bin links (awk, editor, …). */
const etcEntries = ['/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/localtime', '/etc/alternatives']
/** Puts itself into the run's cgroups and sets rlimits, then becomes bwrap: the limits apply before bwrap's first instruction. */
const wrapperScript = [
  'blocks=$1; shift',
  'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift',
  // RLIMIT_FSIZE in 512-byte blocks (hard and soft: the program cannot raise it); no core files in the task directory.
  'ulimit -c 0 && ulimit -f "$blocks" || exit 125',
  'exec "$@"',
].join('\n')

interface Setup {
  bwrap: string
  cgroups: Cgroups
  /** The compiled seccomp filter, fed to bwrap on fd 4 for each sandbox. */
  seccomp: Buffer
  /** bwrap arguments for the read-only host filesystem every run sees: /usr and its links, the loader's /etc files. */
  hostArgs: string[]
  /** bwrap arguments for the provider's read-only paths; mounted after /tmp, /proc and /dev, which would hide them. */
  extraArgs: string[]
  /** Host paths visible inside as they are (a program under one of them needs no extra bind). */
  visibleRoots: string[]
}

type Ending =
  | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  | StopEnding
  | { kind: 'crash'; error: unknown }
  | { kind: 'closed' }

interface Status {
  childPid?: number
  exitCode?: number
}

export function createNativeRuntime(init: NativeRuntimeInit): NativeRuntime {
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
  const claims = new RootClaims()
  const inFlight = new Set<() => void>()
  let closed = false
  let setupPromise: Promise<{ ok: true; setup: Setup } | { ok: false; reason: string }> | undefined

  const prepare = (): Promise<{ ok: true; setup: Setup } | { ok: false; reason: string }> => {
    setupPromise ??= prepareSetup(init, programs, readOnlyPaths, maxProcesses)
    return setupPromise
  }

  async function available(): Promise<RuntimeAvailability> {
    const prepared = await prepare()
    return prepared.ok ? { ok: true } : { ok: false, reason: prepared.reason }
  }

  async function run(spec: RunSpec<NativeProgram>, options: RunOptions = {}): Promise<RunResult> {
    const { signal } = options
    if (closed) throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the native runtime is closed')
    validateRunSpec(spec, 'native')
    if (typeof spec.program !== 'string' || !programs.has(normalize(spec.program))) {
      throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this provider does not offer the program ${JSON.stringify(spec.program)}`, {
        hint: `offered programs: ${[...programs].join(', ') || 'none'}`,
        details: { program: spec.program },
      })
    }
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
          return await runInRoot(setup, { ...spec, program }, rootDir, signal)
        } catch (error) {
          // An unexpected fs failure (a task directory the provider's user cannot read, a full disk) is still one of ours.
          throw toHearthError(error, 'HEARTH_ERR_EXEC_FAILED')
        }
      },
    )
  }

  async function runInRoot(setup: Setup, spec: RunSpec<NativeProgram>, rootDir: string, signal: AbortSignal | undefined): Promise<RunResult> {
    const files = await taskFiles(rootDir, spec)
    const { stdoutPath, stderrPath, inputs } = files
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
    throwIfAborted(signal)

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

      cgroup = await setup.cgroups.create({ memoryBytes: spec.maxMemoryBytes, cpuCores: spec.maxCpuCores ?? 1, maxProcesses })
      const runCgroup = cgroup
      const args = [
        '-c',
        wrapperScript,
        'hearth-sandbox',
        // One block more than the budget: a file that reaches the rlimit is over budget, which the final check reports.
        String(Math.floor(spec.maxOutputBytes / 512) + 1),
        ...cgroup.procsFiles,
        '--',
        setup.bwrap,
        ...sandboxArgs(setup, spec, rootDir),
      ]
      // close() may have come while the sandbox was being set up: start nothing then. From here to watch() nothing
      // awaits, so a later close() finds this run in flight.
      if (closed) throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the native runtime was closed while the run was being set up')
      const startedAt = performance.now()
      let child: ChildProcess
      try {
        child = spawn('/bin/sh', args, {
          // fd 3 carries bwrap's JSON status: whether the sandbox started, and the program's exit code; bwrap reads the
          // seccomp filter from fd 4.
          stdio: [stdin.fd, stdout.fd, stderr.fd, 'pipe', 'pipe'],
          // Its own process group, so that the wrapper and bwrap can be killed together.
          detached: true,
          env: {},
          cwd: '/',
        })
      } catch (error) {
        throw new HearthError('HEARTH_ERR_EXEC_FAILED', `could not start the sandbox: ${(error as Error).message}`, { cause: error })
      }
      feedSeccomp(child, setup.seccomp)
      statusText = collect(child)
      statusPipe = child.stdio[3] ?? undefined
      ending = await watch(child, spec, signal, measureOutput, inFlight, () => {
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
    // Read after everything in the cgroup is dead: only bwrap holds the pipe, but nothing in the sandbox may keep this
    // run waiting. bwrap wrote its last line before it exited.
    const status = parseStatus(await within(statusText, 1_000, ''))
    statusPipe?.destroy()

    // Before the host looks at the outputs: no links, fifos, setuid bits or locked folders left by the program.
    await sanitizeAfterRun(rootDir)
    const metering = { durationMs: roundMs(durationMs), cpuMs: roundMs(cpuMs) }
    if (ending.kind !== 'exit') throw endingError(ending, spec, metering)
    if (oomKills > 0) throw memoryExceeded(spec.maxMemoryBytes, { oomKills }, metering)
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

  return {
    name: 'native',
    available,
    run,
    async close() {
      closed = true
      for (const stop of [...inFlight]) stop()
    },
    async leftovers() {
      const prepared = await prepare()
      if (!prepared.ok) return []
      return prepared.setup.cgroups.leftovers()
    },
  }
}

/** Checks everything a run needs, once; the answer says exactly what is missing. */
async function prepareSetup(
  init: NativeRuntimeInit,
  programs: Set<string>,
  readOnlyPaths: string[],
  maxProcesses: number,
): Promise<{ ok: true; setup: Setup } | { ok: false; reason: string }> {
  const notLinux = nativeUnavailableReason()
  if (notLinux !== undefined) return { ok: false, reason: notLinux }
  const bwrap = await findBwrap(init.bwrapPath)
  if (bwrap === undefined) {
    return {
      ok: false,
      reason:
        init.bwrapPath === undefined
          ? 'bubblewrap is not installed (no `bwrap` on PATH): install the Debian/Ubuntu package `bubblewrap`'
          : `bubblewrap was configured at ${init.bwrapPath}, which is not an executable file`,
    }
  }
  let seccomp: Buffer
  try {
    seccomp = seccompFilterBytes(process.arch)
  } catch (error) {
    return { ok: false, reason: isHearthError(error) ? error.shortMessage : String(error) }
  }
  const detected = await detectCgroups(init.cgroups)
  if (!detected.ok) return { ok: false, reason: detected.reason }
  for (const path of readOnlyPaths) {
    if (!(await lstat(path).then(() => true, () => false))) return { ok: false, reason: `the read-only path ${path} does not exist` }
  }
  const installed = await Promise.all([...programs].map((program) => access(program, constants.X_OK).then(() => true, () => false)))
  if (!installed.includes(true)) {
    return { ok: false, reason: `none of the offered programs is installed: ${[...programs].join(', ') || '(none offered)'}` }
  }

  const hostArgs: string[] = ['--ro-bind', '/usr', '/usr']
  const visibleRoots = ['/usr', ...readOnlyPaths]
  for (const entry of topLevelEntries) {
    const info = await lstat(entry).catch(() => undefined)
    if (info?.isSymbolicLink()) {
      // Merged /usr: keep the link (binding it would follow it), so /bin/sh inside is /usr/bin/sh as on the host.
      hostArgs.push('--symlink', await readlink(entry), entry)
      visibleRoots.push(entry)
    } else if (info?.isDirectory()) {
      hostArgs.push('--ro-bind', entry, entry)
      visibleRoots.push(entry)
    }
  }
  for (const entry of etcEntries) hostArgs.push('--ro-bind-try', entry, entry)
  const extraArgs = readOnlyPaths.flatMap((path) => ['--ro-bind', path, path])
  const setup: Setup = { bwrap, cgroups: detected.cgroups, seccomp, hostArgs, extraArgs, visibleRoots }

  // A trial sandbox: bwrap can be installed yet unusable (user namespaces disabled or restricted by AppArmor, cgroups
  // not writable by this user). Better to say so now than to fail every task.
  const trial = await trialRun(setup, maxProcesses)
  return trial === undefined ? { ok: true, setup } : { ok: false, reason: trial }
}

async function findBwrap(configured: string | undefined): Promise<string | undefined> {
  const candidates = configured !== undefined ? [configured] : (process.env.PATH ?? '/usr/bin:/bin').split(delimiter).filter(isAbsolute).map((dir) => join(dir, 'bwrap'))
  for (const candidate of candidates) {
    const info = await lstat(candidate).catch(() => undefined)
    if (info === undefined) continue
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate
  }
  return undefined
}

async function trialRun(setup: Setup, maxProcesses: number): Promise<string | undefined> {
  const truePath = (await access('/usr/bin/true', constants.X_OK).then(() => true, () => false)) ? '/usr/bin/true' : undefined
  if (truePath === undefined) return undefined
  let cgroup: RunCgroup
  try {
    cgroup = await setup.cgroups.create({ memoryBytes: 64 << 20, cpuCores: 1, maxProcesses })
  } catch (error) {
    const cause = isHearthError(error) && error.cause instanceof Error ? error.cause : (error as Error)
    return `cannot create a cgroup v${setup.cgroups.version} under ${setup.cgroups.parents.join(', ')}: ${cause.message} (run as root, or delegate a cgroup to this user)`
  }
  try {
    const args = [
      '-c',
      wrapperScript,
      'hearth-sandbox',
      '1',
      ...cgroup.procsFiles,
      '--',
      setup.bwrap,
      ...baseSandboxArgs(setup),
      ...readOnlyRootArgs,
      '--json-status-fd',
      '3',
      truePath,
    ]
    const child = spawn('/bin/sh', args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], env: {}, cwd: '/' })
    feedSeccomp(child, setup.seccomp)
    const stderr: Buffer[] = []
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk))
    const statusText = collect(child)
    const code = await new Promise<number | null>((resolve) => {
      child.on('error', () => resolve(null))
      child.on('close', (exitCode) => resolve(exitCode))
    })
    const status = parseStatus(await statusText)
    if (code === 0 && status.childPid !== undefined) return undefined
    const message = Buffer.concat(stderr).toString('utf8').trim()
    if (code === 125) return `cannot put a process into the cgroups ${cgroup.procsFiles.join(', ')}: ${message}`
    return `bubblewrap (${setup.bwrap}) cannot create a sandbox here (exit code ${code}): ${message || 'no message'}; user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone, or AppArmor's restrict_unprivileged_userns), or the kernel lacks seccomp filters (CONFIG_SECCOMP_FILTER)`
  } finally {
    await cgroup.killAll().catch(() => {})
    await cgroup.remove().catch(() => {})
  }
}

/** The sandbox every run shares: namespaces, identity, the read-only host filesystem, fresh /tmp, /proc and /dev. */
function baseSandboxArgs(setup: Setup): string[] {
  return [
    '--unshare-all',
    // --unshare-all only tries a user namespace; require it, so that --disable-userns and the uid mapping always apply.
    '--unshare-user',
    '--disable-userns',
    '--die-with-parent',
    '--new-session',
    '--cap-drop',
    'ALL',
    '--uid',
    sandboxUid,
    '--gid',
    sandboxUid,
    '--hostname',
    'hearth-task',
    // The filter on fd 4 (feedSeccomp), installed just before bwrap execs the program: bwrap's own setup is not filtered.
    '--seccomp',
    '4',
    '--clearenv',
    ...setup.hostArgs,
    '--tmpfs',
    '/tmp',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    ...setup.extraArgs,
  ]
}

/** Last of the mounts (bwrap cannot make mount points on a read-only /): / itself is a tmpfs bwrap made writable. */
const readOnlyRootArgs = ['--remount-ro', '/']

function sandboxArgs(setup: Setup, spec: RunSpec<NativeProgram>, rootDir: string): string[] {
  // checkTaskEnv has passed spec.env: only allow-listed variables are in it.
  const env: Record<string, string> = { ...runtimeEnv, ...spec.env }
  const args = baseSandboxArgs(setup)
  for (const [key, value] of Object.entries(env)) args.push('--setenv', key, value)
  const visible = setup.visibleRoots.some((root) => spec.program === root || spec.program.startsWith(root + '/'))
  if (!visible) args.push('--ro-bind', spec.program, spec.program)
  args.push(...gpuSandboxArgs(spec.gpus ?? []))
  args.push('--bind', rootDir, '/task', ...readOnlyRootArgs, '--chdir', '/task', '--json-status-fd', '3', spec.program, ...spec.args.slice(1))
  return args
}

/** The NVIDIA driver's shared devices: every process that uses a GPU opens these besides the GPU's own /dev/nvidiaN. */
const nvidiaControlDevices = ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools', '/dev/nvidia-modeset']
/** Read-only host paths CUDA programs and nvidia-smi look at: the PCI devices' sysfs entries (the fresh /proc already shows /proc/driver/nvidia). */
const nvidiaHostPaths = ['/sys/bus/pci', '/sys/devices', '/sys/module/nvidia']

/**
 * bwrap arguments that make the agreed GPUs (indices as exec/gpu.ts detects them) visible in the sandbox and nothing
 * more: each GPU's device node, the driver's control devices, and read-only views of the driver's state. The sandbox's
 * /dev is otherwise bwrap's minimal one, so a run without GPUs sees no NVIDIA device at all. A GPU whose device node is
 * missing makes bwrap fail at its start, which the run reports as a failure rather than silently running on the CPU.
 */
export function gpuSandboxArgs(gpus: number[]): string[] {
  if (gpus.length === 0) return []
  const args: string[] = []
  for (const index of [...new Set(gpus)].sort((a, b) => a - b)) {
    if (!Number.isInteger(index) || index < 0 || index > 63) {
      throw new HearthError('HEARTH_ERR_EXEC_FAILED', `GPU index ${index} is not a GPU of this machine`, { hint: 'ask for GPUs by the indices the offer lists' })
    }
    args.push('--dev-bind', `/dev/nvidia${index}`, `/dev/nvidia${index}`)
  }
  for (const device of nvidiaControlDevices) args.push('--dev-bind-try', device, device)
  for (const path of nvidiaHostPaths) args.push('--ro-bind-try', path, path)
  return args
}

/** Writes the seccomp filter into the child's fd 4 and closes it: bwrap reads it to its end before it sets up the sandbox. */
function feedSeccomp(child: ChildProcess, filter: Buffer): void {
  const pipe = child.stdio[4] as NodeJS.WritableStream | null | undefined
  if (pipe === null || pipe === undefined) return
  // A sandbox that dies before it reads the filter fails on its own (bwrap refuses a short filter): nothing runs unfiltered.
  pipe.on('error', () => {})
  pipe.end(filter)
}

/** Reads bwrap's status pipe (fd 3) to its end; bounded, as only two short JSON lines are expected. */
function collect(child: ChildProcess): Promise<string> {
  const stream = child.stdio[3] as NodeJS.ReadableStream | null | undefined
  if (stream === null || stream === undefined) return Promise.resolve('')
  return new Promise((resolve) => {
    let text = ''
    stream.on('data', (chunk: Buffer) => {
      if (text.length < 65_536) text += chunk.toString('utf8')
    })
    stream.on('end', () => resolve(text))
    stream.on('error', () => resolve(text))
    stream.on('close', () => resolve(text))
  })
}

/** bwrap writes one JSON document per line: {"child-pid": N, …} once the sandbox is up, {"exit-code": N} at the end. */
function parseStatus(text: string): Status {
  const status: Status = {}
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    try {
      const document = JSON.parse(line) as Record<string, unknown>
      if (typeof document['child-pid'] === 'number') status.childPid = document['child-pid']
      if (typeof document['exit-code'] === 'number') status.exitCode = document['exit-code']
    } catch {
      // not ours to judge: an incomplete line from a killed bwrap
    }
  }
  return status
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // the group is gone already
  }
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

/** The variables a task may set: the defaults with their value rules, then the provider's own (any value). */
interface EnvAllowList {
  /** The rule for a name, 'any' for a provider's own name, undefined when the name is not allowed. */
  ruleFor(name: string): EnvValueRule | 'any' | undefined
  /** The entries, for messages. */
  entries: string[]
}

function envAllowList(providerEntries: string[]): EnvAllowList {
  if (!Array.isArray(providerEntries)) throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'native runtime: allowedEnv must be a list of variable names')
  for (const entry of providerEntries) {
    if (typeof entry !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*\*?$/.test(entry)) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `native runtime: allowedEnv entry ${JSON.stringify(entry)} is neither a variable name nor a PREFIX_* pattern`, {
        hint: 'list exact names (OMP_SCHEDULE) or prefixes ending in * (MYAPP_*)',
      })
    }
    const covered = loaderVariablesCovered(entry)
    if (covered !== undefined) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `native runtime: allowedEnv entry ${entry} would let a task set ${covered}, which makes the loader or libc load a file the task chose`, {
        hint: `remove ${entry} (list narrower names); loader and libc variables (${neverAllowedPrefix}*, ${neverAllowedEnv.join(', ')}) are never passed to native programs`,
      })
    }
  }
  const matches = (pattern: string, name: string): boolean => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern)
  return {
    ruleFor(name) {
      if (providerEntries.some((entry) => matches(entry, name))) return 'any'
      for (const [pattern, rule] of Object.entries(defaultEnvRules)) if (matches(pattern, name)) return rule
      return undefined
    },
    entries: [...defaultAllowedEnv, ...providerEntries],
  }
}

/** The first loader or libc variable an allowedEnv entry (a name or a PREFIX* pattern) would let through, if any. */
function loaderVariablesCovered(entry: string): string | undefined {
  if (!entry.endsWith('*')) return entry.startsWith(neverAllowedPrefix) || neverAllowedEnv.includes(entry) ? entry : undefined
  const prefix = entry.slice(0, -1)
  if (prefix.startsWith(neverAllowedPrefix) || neverAllowedPrefix.startsWith(prefix)) return `${neverAllowedPrefix}PRELOAD`
  return neverAllowedEnv.find((name) => name.startsWith(prefix))
}

const envValueChecks: Record<EnvValueRule, { ok: (value: string) => boolean; expected: string }> = {
  name: { ok: (value) => !value.includes('/'), expected: 'a name, not a path (no "/")' },
  // Europe/Berlin and POSIX rules (CET-1CEST,M3.5.0,M10.5.0/3) have slashes; /file, :/file and ../file name a file.
  zone: { ok: (value) => !/^:?\//.test(value) && !value.includes('..'), expected: 'a zone name or POSIX TZ rule, not a file path' },
  count: { ok: (value) => /^[0-9]{1,9}(,[0-9]{1,9})*$/.test(value), expected: 'a number (or numbers separated by commas)' },
}

/** Refuses a task env that sets a variable off the allow-list, or a default variable to a path: nothing has started yet. */
function checkTaskEnv(env: Record<string, string>, allowed: EnvAllowList): void {
  const refused = Object.keys(env)
    .filter((name) => allowed.ruleFor(name) === undefined)
    .sort()
  if (refused.length > 0) {
    const loader = refused.filter((name) => loaderVariablesCovered(name) !== undefined)
    const why =
      loader.length > 0
        ? `${loader.join(', ')} would make the dynamic loader or libc load a file the task chose into the offered program (LD_PRELOAD runs the task's own code there)`
        : 'only allow-listed variables reach native programs, as a variable can change what an offered program loads or runs (BASH_ENV, PYTHONPATH, …)'
    throw new HearthError('HEARTH_ERR_EXEC_ENV_NOT_ALLOWED', `the task sets the environment variable${refused.length > 1 ? 's' : ''} ${refused.join(', ')}, which the native runtime does not pass to programs: ${why}`, {
      hint: `remove ${refused.join(', ')} from the task's env and pass the setting as an argument or a file in the task directory; a task may set ${allowed.entries.join(', ')} (the runtime sets PATH and HOME; a provider can allow more names with the native runtime's allowedEnv)`,
      details: { variables: refused, allowed: allowed.entries },
    })
  }
  for (const [name, value] of Object.entries(env)) {
    const rule = allowed.ruleFor(name)
    if (rule === undefined || rule === 'any' || envValueChecks[rule].ok(value)) continue
    throw new HearthError('HEARTH_ERR_EXEC_ENV_NOT_ALLOWED', `the task sets ${name} to ${JSON.stringify(value.slice(0, 200))}; ${name} must be ${envValueChecks[rule].expected}`, {
      hint: `give ${name} ${envValueChecks[rule].expected}, or leave it out: a path here would point the offered program at a file the task wrote`,
      details: { variables: [name] },
    })
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
