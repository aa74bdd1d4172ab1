/**
 * One run of the `docker` runtime in its container (see docker-runtime.ts for the sandbox): the container created with
 * every limit, attached, started, watched and metered, its output demultiplexed into the stdio files, and removed.
 */
import { lchown, lstat, open, readdir, readFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { HearthError } from '../errors.ts'
import { counter, parseMountinfo, parseSelfCgroup } from './cgroups.ts'
import { hasLinuxKernelFiles } from './platform.ts'
import { apiError, type DockerApi, type DockerCall, StreamDemuxer } from './docker-api.ts'
import type { RunResult, RunSpec } from './runtime.ts'
import { closedWhileRunning, memoryExceeded, roundMs, stopError, watchLimits, within } from './run-support.ts'
import type { Metering, OutputWatch, StopEnding } from './run-support.ts'
import { bytesAdded, sanitizeAfterRun, taskFiles, throwIfAborted } from './task-dir.ts'

/** A program for the `docker` runtime: the image to run, by content hash. The command is the run's argv. */
export interface DockerProgram {
  /** The image id, `sha256:` and 64 hex digits (what `docker images --no-trunc` and the image archive's config name). */
  image: string
}

/** What a run needs of its runtime. */
export interface ContainerContext {
  api: DockerApi
  /** Labels every container of the runtime object. */
  instance: string
  maxProcesses: number
  /** A fresh container name. */
  nextName(): string
  hasImage(id: string): Promise<boolean>
  closed(): boolean
  /** Stops of the runs in flight, for close(). */
  inFlight: Set<() => void>
}

/** The uid and gid a container runs as when Hearth is root (as native's sandbox does). */
export const sandboxId = 1000
const openFilesLimit = 1024
/**
 * RLIMIT_NPROC counts every process of the uid on the host, not per container: the default pid_max, so that parallel
 * runs never meet it (PidsLimit is the per-run cap), but set, because podman otherwise asks for 1048576 and runc fails
 * where the engine may not raise limits (STACK.md). Measured on the dev machine: 32768 works, 65536 is refused.
 */
const processesLimit = 32_768
export const instanceLabel = 'org.hearth.runtime-instance'
export const controlTimeoutMs = 30_000
/** How long after the end the attach stream may take to deliver what the program wrote last. */
const drainTimeoutMs = 2_000

type Ending =
  | { kind: 'exit'; code: number }
  | StopEnding
  | { kind: 'crash'; error: unknown }
  | { kind: 'closed' }

export interface ContainerState {
  ExitCode?: number
  OOMKilled?: boolean
  Pid?: number
  Error?: string
}

/** What runs in a container (a task or a server): the command, its env and limits. */
export interface ContainerCommand {
  program: DockerProgram
  args: string[]
  env: Record<string, string>
  maxCpuCores?: number
  gpus?: number[]
  /** RLIMIT_FSIZE in bytes: the largest file the program may write. */
  fileSizeBytes: number
}

/** Where and as whom a container runs: its task directory, user, memory, name and process cap. */
export interface ContainerPlace {
  rootDir: string
  uid: number
  gid: number
  memoryBytes: number
  name: string
  instance: string
  maxProcesses: number
}

/** The request that creates a container, a run's or a server's, with every limit of the sandbox (see docker-runtime.ts). */
export function createRequest(spec: ContainerCommand, where: ContainerPlace): DockerCall {
  const env: Record<string, string> = { HOME: '/task', ...spec.env }
  return {
    method: 'POST',
    path: '/containers/create',
    query: { name: where.name },
    json: {
    Image: spec.program.image,
    Entrypoint: [spec.args[0]],
    Cmd: spec.args.slice(1),
    Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    WorkingDir: '/task',
    User: `${where.uid}:${where.gid}`,
    Hostname: 'hearth-task',
    NetworkDisabled: true,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    OpenStdin: false,
    Labels: { [instanceLabel]: where.instance },
    HostConfig: {
      NetworkMode: 'none',
      ReadonlyRootfs: true,
      Binds: [`${where.rootDir}:/task:rw`],
      Tmpfs: { '/tmp': 'rw,nosuid,nodev,size=64m' },
      Memory: where.memoryBytes,
      // Equal to Memory: no swap on top.
      MemorySwap: where.memoryBytes,
      NanoCpus: Math.round((spec.maxCpuCores ?? 1) * 1e9),
      PidsLimit: where.maxProcesses,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      Ulimits: [
        { Name: 'nofile', Soft: openFilesLimit, Hard: openFilesLimit },
        { Name: 'nproc', Soft: processesLimit, Hard: processesLimit },
        // Bytes (setrlimit's unit).
        { Name: 'fsize', Soft: spec.fileSizeBytes, Hard: spec.fileSizeBytes },
        { Name: 'core', Soft: 0, Hard: 0 },
      ],
      IpcMode: 'private',
      ...gpuDeviceRequests(spec.gpus ?? []),
      // A tiny init as PID 1 (Docker's docker-init, podman's catatonit): the program itself as PID 1 would ignore
      // signals it has no handler for (kill -SEGV does nothing to it) and never reap orphans.
      Init: true,
      AutoRemove: false,
    },
  },
    timeoutMs: controlTimeoutMs,
  }
}

/** The memory a container gets for `maxMemoryBytes`: the engine's floor is 6 MiB. */
export function containerMemoryBytes(maxMemoryBytes: number): number {
  return Math.max(6 << 20, maxMemoryBytes)
}

export async function runContainer(ctx: ContainerContext, spec: RunSpec<DockerProgram>, rootDir: string, signal: AbortSignal | undefined): Promise<RunResult> {
  const { api } = ctx
  const { stdoutPath, stderrPath, inputs } = await taskFiles(rootDir, spec)
  if (!(await ctx.hasImage(spec.program.image))) {
    throw new HearthError('HEARTH_ERR_EXEC_IMAGE_MISSING', `the container image ${spec.program.image} is not loaded on this provider`, {
      hint: 'send the image archive first (loadImageArchive), or ask for an image the provider offers',
      details: { image: spec.program.image },
    })
  }
  throwIfAborted(signal)

  const rootInfo = await lstat(rootDir)
  const asRoot = process.getuid?.() === 0
  const uid = asRoot ? sandboxId : (process.getuid?.() ?? sandboxId)
  const gid = asRoot ? sandboxId : (process.getgid?.() ?? sandboxId)
  const handles: FileHandle[] = []
  let id: string | undefined
  let ending: Ending = { kind: 'crash', error: new Error('the run did not start') }
  let state: ContainerState = {}
  let durationMs = 0
  let cpuMs = 0
  let meter: ContainerMeter | undefined
  const memoryBytes = containerMemoryBytes(spec.maxMemoryBytes)
  let stdoutBytes = 0
  let stderrBytes = 0
  try {
    const stdout = await open(stdoutPath, 'w')
    handles.push(stdout)
    const stderr = await open(stderrPath, 'w')
    handles.push(stderr)
    // Root's files in the task directory become the container user's for the run (given back below).
    if (asRoot) await chownTree(rootDir, uid, gid)

    // RLIMIT_FSIZE one byte over the budget, so that a file that reaches it is over and reported.
    const command = { ...spec, fileSizeBytes: spec.maxOutputBytes + 1 }
    const created = await api.json<{ Id: string }>(createRequest(command, { rootDir, uid, gid, memoryBytes, name: ctx.nextName(), instance: ctx.instance, maxProcesses: ctx.maxProcesses }),
      'create a container',
    )
    id = created.Id
    const containerId = id

    // stdout/stderr: written as they come, never past one byte over the budget (the file would only grow for nothing).
    let streamed = 0
    let overflow = false
    const demuxer = new StreamDemuxer((stream, payload) => {
      const room = spec.maxOutputBytes + 1 - streamed
      if (room <= 0) return
      const part = payload.length > room ? payload.subarray(0, room) : payload
      streamed += part.length
      if (stream === 'stdout') stdoutBytes += part.length
      else stderrBytes += part.length
      writes = writes.then(() => (stream === 'stdout' ? stdout : stderr).write(part)).then(() => undefined)
      if (streamed > spec.maxOutputBytes) overflow = true
    })
    let writes: Promise<void> = Promise.resolve()
    const attached = await api.attach(containerId, controlTimeoutMs)
    const drained = new Promise<void>((resolveDrain) => {
      attached.on('data', (chunk: Buffer) => demuxer.push(chunk))
      attached.on('end', () => resolveDrain())
      attached.on('close', () => resolveDrain())
      attached.on('error', () => resolveDrain())
    })

    const startedAt = performance.now()
    const started = await api.call({ method: 'POST', path: `/containers/${containerId}/start`, timeoutMs: controlTimeoutMs })
    if (started.status !== 204 && started.status !== 304) {
      attached.destroy()
      throw apiError(`start the container (image ${spec.program.image}, command ${JSON.stringify(spec.args[0])})`, started)
    }
    // This host's cgroups where it has them (see platform.ts); elsewhere the engine (in Docker Desktop's VM) is asked.
    meter = hasLinuxKernelFiles() ? await cgroupMeter(api, containerId, memoryBytes) : engineStatsMeter(api, containerId, memoryBytes)
    const exited = api
      .json<{ StatusCode?: number }>({ method: 'POST', path: `/containers/${containerId}/wait`, timeoutMs: 2 ** 31 - 1 }, 'wait for the container')
      .then((answer): Ending => ({ kind: 'exit', code: answer?.StatusCode ?? -1 }), (error: unknown): Ending => ({ kind: 'crash', error }))

    const measureOutput = async (): Promise<number> => {
      await meter?.sample()
      return streamed + (await bytesAdded(rootDir, inputs))
    }
    ending = await watch(exited, spec, signal, measureOutput, () => overflow, ctx.closed, ctx.inFlight)
    // One more look as the exit is seen: the engine removes the cgroup soon after, and on a loaded machine the last
    // output poll may have come well before the program's last CPU (a read of a removed cgroup counts nothing).
    await meter.sample()
    if (ending.kind !== 'exit') {
      await api.call({ method: 'POST', path: `/containers/${containerId}/kill`, query: { signal: 'SIGKILL' }, timeoutMs: controlTimeoutMs }).catch(() => undefined)
      await exited
    }
    durationMs = performance.now() - startedAt
    cpuMs = meter.cpuMs
    await within(drained, drainTimeoutMs, undefined)
    attached.destroy()
    await writes
    const inspected = await api.json<{ State?: ContainerState }>({ method: 'GET', path: `/containers/${containerId}/json`, timeoutMs: controlTimeoutMs }, 'inspect the container')
    state = inspected?.State ?? {}
  } finally {
    try {
      if (id !== undefined) await removeContainer(api, id)
    } finally {
      await Promise.allSettled(handles.map((handle) => handle.close()))
      if (asRoot) await chownTree(rootDir, rootInfo.uid, rootInfo.gid).catch(() => undefined)
    }
  }
  return judgeRun(spec, rootDir, { ending, state, memoryHit: meter?.memoryHit === true, memoryUnseen: meter?.looked === false, durationMs, cpuMs, stdoutBytes, stderrBytes, inputs })
}

/** What the run came to once its container is gone: the result, or the error of the limit or failure that ended it. */
async function judgeRun(
spec: RunSpec<DockerProgram>,
rootDir: string,
run: { ending: Ending; state: ContainerState; memoryHit: boolean; memoryUnseen: boolean; durationMs: number; cpuMs: number; stdoutBytes: number; stderrBytes: number; inputs: Map<string, number> },
): Promise<RunResult> {
const { ending, state, stdoutBytes, stderrBytes } = run
  // Before the host looks at the outputs: no links, fifos, setuid bits or locked folders left by the program.
  await sanitizeAfterRun(rootDir)
  const metering = { durationMs: roundMs(run.durationMs), cpuMs: roundMs(run.cpuMs) }
  if (ending.kind !== 'exit') throw endingError(ending, spec, metering)
  // Killed by SIGKILL that Hearth did not send (ending is 'exit'), with the cgroup at its memory limit: the OOM killer.
  // Killed so soon after its start that its cgroup was never found, the OOM killer is the one likely sender (podman on
  // cgroup v1 does not report OOMKilled): taken as out of memory, not as a plain exit.
  if (state.OOMKilled === true || (ending.code === 137 && (run.memoryHit || run.memoryUnseen))) {
    throw memoryExceeded(spec.maxMemoryBytes, { oomKilled: true }, metering)
  }
  const total = stdoutBytes + stderrBytes + (await bytesAdded(rootDir, run.inputs))
  if (total > spec.maxOutputBytes) throw stopError({ kind: 'output', bytes: total }, spec, metering)
  if (ending.code < 0 || (ending.code >= 125 && ending.code <= 127 && state.Error !== undefined && state.Error !== '')) {
    // The engine's own failures (a command not in the image, …) come back as 125-127 with State.Error set.
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', `the container could not run the command: ${state.Error ?? `exit code ${ending.code}`}`, {
      details: { exitCode: ending.code, ...metering },
    })
  }
  return { exitCode: ending.code, ...metering, stdoutBytes, stderrBytes }
}

export async function removeContainer(api: DockerApi, id: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const answer = await api.call({ method: 'DELETE', path: `/containers/${id}`, query: { force: true, v: true }, timeoutMs: controlTimeoutMs })
    if (answer.status === 204 || answer.status === 200 || answer.status === 404) return
    // 409: the engine is still tearing the container down after a kill; it can be removed a moment later.
    if (attempt >= 5) throw apiError(`remove container ${id}`, answer)
    await new Promise((resolveDelay) => setTimeout(resolveDelay, 100 * (attempt + 1)))
  }
}

export interface ContainerMeter {
  /** Reads the cgroup again (while it exists: the engine removes it when the container exits). */
  sample(): Promise<void>
  cpuMs: number
  /** The kernel's OOM killer acted, or memory reached the limit (v1 failcnt, v2 oom_kill): seen at any sample. */
  memoryHit: boolean
  /** The highest memory use seen (cgroup v1's max_usage_in_bytes); 0 where unknown. */
  peakBytes: number
  /**
   * False when the container's memory could never be looked at: it was gone before its cgroup was found (a program
   * killed within moments of its start, as an allocator meeting a small limit is on a busy machine).
   */
  looked: boolean
}

/**
 * CPU time and memory pressure of the container, read from its cgroup on this host: the engine's stats are gone once it
 * exits, an API call per poll costs more than a file read, and podman on cgroup v1 does not report OOMKilled (its
 * conmon misses the event here: measured, a 32 MiB container killed by the OOM killer reports OOMKilled false).
 * Sampled at every output poll and when a run is stopped, so a run shorter than one poll (20 ms) may report less CPU
 * than it used; nothing where the engine runs on another host or the cgroup cannot be read.
 */
export async function cgroupMeter(api: DockerApi, id: string, memoryLimitBytes: number): Promise<ContainerMeter> {
  const meter: ContainerMeter = { sample: async () => {}, cpuMs: 0, memoryHit: false, peakBytes: 0, looked: false }
  const read = (file: string): Promise<string> => readFile(file, 'utf8').catch(() => '')
  try {
    const inspected = await api.json<{ State?: ContainerState }>({ method: 'GET', path: `/containers/${id}/json`, timeoutMs: controlTimeoutMs }, 'inspect the container')
    const pid = inspected?.State?.Pid
    if (pid === undefined || pid <= 0) return meter
    const membership = parseSelfCgroup(await readFile(`/proc/${pid}/cgroup`, 'utf8'))
    // The pid may already belong to another process (the container exited and the pid was reused): only a cgroup
    // named after this container is its own. Reading any other (the host's root) would bill the whole machine's CPU.
    for (const [controller, path] of membership) if (!path.includes(id)) membership.delete(controller)
    const mounts = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'))
    const v1 = (controller: string): string | undefined => {
      const path = membership.get(controller)
      const mount = mounts.find((candidate) => candidate.fsType === 'cgroup' && candidate.superOptions.includes(controller))
      return path === undefined || mount === undefined ? undefined : join(mount.mountPoint, path)
    }
    const cpuDir = v1('cpuacct')
    const memoryDir = v1('memory')
    const v2Path = membership.get('')
    const v2Mount = mounts.find((mount) => mount.fsType === 'cgroup2')
    const v2Dir = v2Path !== undefined && v2Mount !== undefined && cpuDir === undefined ? join(v2Mount.mountPoint, v2Path) : undefined
    meter.sample = async () => {
      if (cpuDir !== undefined) {
        const ns = Number((await read(join(cpuDir, 'cpuacct.usage'))).trim())
        if (ns > 0) meter.cpuMs = Math.max(meter.cpuMs, ns / 1e6)
      } else if (v2Dir !== undefined) {
        meter.cpuMs = Math.max(meter.cpuMs, counter(await read(join(v2Dir, 'cpu.stat')), 'usage_usec') / 1e3)
      }
      if (memoryDir !== undefined) {
        const [failcnt, peak, oom] = await Promise.all(['memory.failcnt', 'memory.max_usage_in_bytes', 'memory.oom_control'].map((name) => read(join(memoryDir, name))))
        // The page cache also fills a cgroup to its limit (and is reclaimed, counting failcnt): only near-limit usage
        // together with a kill the runtime did not send counts as out of memory (see the exit check).
        meter.peakBytes = Math.max(meter.peakBytes, Number(peak!.trim()) || 0)
        if (counter(oom!, 'oom_kill') > 0 || (Number(failcnt!.trim()) > 0 && Number(peak!.trim()) >= memoryLimitBytes * 0.9)) meter.memoryHit = true
      } else if (v2Dir !== undefined) {
        if (counter(await read(join(v2Dir, 'memory.events')), 'oom_kill') > 0) meter.memoryHit = true
      }
    }
    meter.looked = cpuDir !== undefined || memoryDir !== undefined || v2Dir !== undefined
    await meter.sample()
  } catch {
    // a program that exits at once is gone before its cgroup is found: it used next to no CPU or memory
  }
  return meter
}

/** How often the engine's stats are asked for, where the cgroups cannot be read: each answer costs the engine a look. */
const statsEveryMs = 500

/**
 * CPU time and memory pressure from the engine's stats, where this host's cgroups cannot be read (macOS, Windows:
 * Docker Desktop runs the engine in a VM). Asked at most every `statsEveryMs`, and the stats are gone once the
 * container exits: a run shorter than that reports the CPU its last look saw (next to none for a run that short).
 */
function engineStatsMeter(api: DockerApi, id: string, memoryLimitBytes: number): ContainerMeter {
  let lastAtMs = -Infinity
  const meter: ContainerMeter = {
    cpuMs: 0,
    memoryHit: false,
    peakBytes: 0,
    // The engine's stats stand in for the cgroup here; whether they came in time is not known.
    looked: true,
    async sample() {
      if (performance.now() - lastAtMs < statsEveryMs) return
      lastAtMs = performance.now()
      const stats = await api
        .json<EngineStats>({ method: 'GET', path: `/containers/${id}/stats`, query: { stream: false, 'one-shot': true }, timeoutMs: controlTimeoutMs }, "read the container's stats")
        .catch(() => undefined)
      const cpuNs = stats?.cpu_stats?.cpu_usage?.total_usage ?? 0
      if (cpuNs > 0) meter.cpuMs = Math.max(meter.cpuMs, cpuNs / 1e6)
      // As with the cgroup: only near-limit usage together with a kill the runtime did not send counts as out of memory.
      const memory = stats?.memory_stats
      if ((memory?.failcnt ?? 0) > 0 && (memory?.max_usage ?? memory?.usage ?? 0) >= memoryLimitBytes * 0.9) meter.memoryHit = true
    },
  }
  return meter
}

/** The parts of the engine's container stats (GET /containers/{id}/stats) the meter reads. */
interface EngineStats {
  cpu_stats?: { cpu_usage?: { total_usage?: number } }
  memory_stats?: { usage?: number; max_usage?: number; failcnt?: number }
}

/** lchown over a tree (no link is followed: the scan before the run refused them, and the program's are not ours to follow). */
export async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await lchown(dir, uid, gid)
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) await chownTree(path, uid, gid)
    else await lchown(path, uid, gid).catch(() => undefined)
  }
}

/** Waits for the first of: the container's exit, the deadline, an abort, too much output, close(). */
function watch(
  exited: Promise<Ending>,
  spec: RunSpec<DockerProgram>,
  signal: AbortSignal | undefined,
  measureOutput: () => Promise<number>,
  overflowed: () => boolean,
  isClosed: () => boolean,
  inFlight: Set<() => void>,
): Promise<Ending> {
  let limits: OutputWatch | undefined
  return new Promise<Ending>((resolvePromise) => {
    let done = false
    const finish = (ending: Ending): void => {
      if (done) return
      done = true
      limits?.stop()
      clearInterval(streamCheck)
      signal?.removeEventListener('abort', onAbort)
      inFlight.delete(onClose)
      resolvePromise(ending)
    }
    const onAbort = (): void => finish({ kind: 'abort', reason: signal?.reason })
    const onClose = (): void => finish({ kind: 'closed' })
    void exited.then(finish)
    signal?.addEventListener('abort', onAbort, { once: true })
    inFlight.add(onClose)
    // stdout overflow is known the moment a frame arrives; checking it often is cheaper than the directory scan.
    const streamCheck = setInterval(() => {
      if (overflowed()) finish({ kind: 'output', bytes: spec.maxOutputBytes + 1 })
    }, 5)
    limits = watchLimits(spec, measureOutput, finish)
    if (signal?.aborted === true) onAbort()
    // close() while the container was being created and started: it stops this run too.
    if (isClosed()) onClose()
  }).then(async (ending) => {
    await limits?.settled()
    return ending
  })
}

function endingError(ending: Exclude<Ending, { kind: 'exit' }>, spec: RunSpec<DockerProgram>, metering: Metering): HearthError {
  switch (ending.kind) {
    case 'closed':
      return closedWhileRunning('docker', metering)
    case 'crash':
      return new HearthError('HEARTH_ERR_EXEC_FAILED', `the container engine failed during the run: ${(ending.error as Error)?.message ?? String(ending.error)}`, {
        cause: ending.error,
      })
    default:
      return stopError(ending, spec, metering)
  }
}

/**
 * The Engine API's way to hand GPUs to a container: a device request the engine's GPU hook (the NVIDIA Container
 * Toolkit) fulfils by mounting the agreed devices and the driver's libraries. Only the agreed GPUs, by index; none
 * asked, no request, and the container sees no GPU.
 */
export function gpuDeviceRequests(gpus: number[]): { DeviceRequests?: { Driver: string; DeviceIDs: string[]; Capabilities: string[][] }[] } {
  if (gpus.length === 0) return {}
  const ids = [...new Set(gpus)].sort((a, b) => a - b).map(String)
  return { DeviceRequests: [{ Driver: 'nvidia', DeviceIDs: ids, Capabilities: [['gpu', 'utility', 'compute']] }] }
}
