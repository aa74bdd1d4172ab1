/**
 * The `docker` runtime: runs a command inside a container image the provider holds, named by its content hash (the
 * image id `sha256:…`), through the Docker Engine API on a unix socket — Docker itself, or podman's compatible
 * service (`podman system service`), which is what runs it on machines without a Docker engine; on macOS, Docker
 * Desktop's socket (Windows' named pipe is not supported: there, run the provider in WSL 2).
 *
 * Each run is one container: no network (NetworkMode none), a read-only root filesystem, every capability dropped,
 * no-new-privileges, a non-root user, memory (+swap) and CPU capped, a process limit (PidsLimit: fork bombs), the
 * task directory bound read-write at /task (its working directory), a fresh /tmp, the task env only (plus HOME=/task),
 * and RLIMIT_FSIZE at the output budget so that one runaway file is stopped by the kernel, as in `native`.
 * stdout and stderr come from attaching before the start (nothing is missed), demultiplexed into the stdio files and
 * counted while the program runs; the bytes it adds under /task are polled as in the other runtimes. The deadline, an
 * abort or close() kill the container; it is removed after every run, whatever happened.
 *
 * Files the program writes belong to the container user on the host (uid 1000 when Hearth runs as root, which owns
 * the task directory for the run and gets it back afterwards; otherwise Hearth's own uid, so that the provider can
 * always read and clean them).
 */
import { existsSync } from 'node:fs'
import { lchown, lstat, open, readdir, readFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { HearthError, toHearthError } from '../errors.ts'
import { counter, parseMountinfo, parseSelfCgroup } from './cgroups.ts'
import { hasLinuxKernelFiles, platform } from './platform.ts'
import { apiError, apiMessage, DockerApi, dockerApiVersion, StreamDemuxer } from './docker-api.ts'
import type { Runtime, RunOptions, RunResult, RunSpec, RuntimeAvailability } from './runtime.ts'
import { closedWhileRunning, memoryExceeded, roundMs, stopError, watchLimits, within } from './run-support.ts'
import type { Metering, OutputWatch, StopEnding } from './run-support.ts'
import { bytesAdded, RootClaims, sanitizeAfterRun, taskFiles, throwIfAborted, validateRunSpec } from './task-dir.ts'

/** A program for the `docker` runtime: the image to run, by content hash. The command is the run's argv. */
export interface DockerProgram {
  /** The image id, `sha256:` and 64 hex digits (what `docker images --no-trunc` and the image archive's config name). */
  image: string
}

export interface DockerRuntimeInit {
  /** The engine's unix socket; default: $DOCKER_HOST (unix://), /var/run/docker.sock, or /run/podman/podman.sock. */
  socketPath?: string
  /** Image ids this provider offers; default: any image the engine holds. */
  images?: string[]
  /** Containers never get a network; the option exists to say so where it is configured. */
  network?: false
  /** Processes and threads one container may have at once (PidsLimit). Default 256. */
  maxProcesses?: number
}

export interface DockerRuntime extends Runtime<DockerProgram> {
  readonly socketPath: string
  /** The engine client, for image management (docker-images.ts). */
  readonly api: DockerApi
  /** Whether the engine holds the image with this id. */
  hasImage(id: string): Promise<boolean>
  /** Containers of this runtime still on the engine (they are removed after every run): [] when clean. */
  leftovers(): Promise<string[]>
}

export const imageIdPattern = /^sha256:[0-9a-f]{64}$/
const defaultMaxProcesses = 256
/** The uid and gid a container runs as when Hearth is root (as native's sandbox does). */
const sandboxId = 1000
const openFilesLimit = 1024
/**
 * RLIMIT_NPROC counts every process of the uid on the host, not per container: the default pid_max, so that parallel
 * runs never meet it (PidsLimit is the per-run cap), but set, because podman otherwise asks for 1048576 and runc fails
 * where the engine may not raise limits (STACK.md). Measured on the dev machine: 32768 works, 65536 is refused.
 */
const processesLimit = 32_768
const instanceLabel = 'org.hearth.runtime-instance'
const controlTimeoutMs = 30_000
/** How long after the end the attach stream may take to deliver what the program wrote last. */
const drainTimeoutMs = 2_000

/**
 * The socket the engine is expected on: $DOCKER_HOST when it names a unix socket, else the usual places (Docker on
 * Linux, podman's service, Docker Desktop's per-user socket on macOS).
 */
export function defaultDockerSocket(env: NodeJS.ProcessEnv = process.env): string {
  const host = env.DOCKER_HOST
  if (host !== undefined && host !== '') {
    if (host.startsWith('unix://')) return host.slice('unix://'.length)
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `DOCKER_HOST=${host} is not a unix socket; the docker runtime talks only to a local engine through its unix socket`, {
      hint: host.startsWith('npipe://')
        ? 'Windows named pipes are not supported yet: run the provider inside WSL 2, where Docker Desktop serves unix:///var/run/docker.sock'
        : 'set DOCKER_HOST=unix:///path/to/docker.sock, or pass socketPath',
    })
  }
  const candidates = ['/var/run/docker.sock', '/run/podman/podman.sock', join(homedir(), '.docker', 'run', 'docker.sock')]
  return candidates.find((candidate) => existsSync(candidate)) ?? '/var/run/docker.sock'
}

/** Why this system cannot use the docker runtime at all: Windows, whose Docker Desktop serves a named pipe. */
function unsupportedSystemReason(): string | undefined {
  if (process.platform !== 'win32') return undefined
  return (
    'the docker runtime needs a Docker Engine API unix socket; Docker Desktop on Windows serves its API on the named pipe ' +
    '//./pipe/docker_engine, which Hearth does not support yet: run the provider inside WSL 2, where Docker Desktop exposes /var/run/docker.sock'
  )
}

/** What to do when no engine answers at `socketPath`, for this system. */
function missingSocketReason(socketPath: string): string {
  if (platform().kind === 'linux') {
    return (
      `no Docker Engine socket at ${socketPath}: start Docker, or podman's API service (Debian packages podman and runc: ` +
      `podman --runtime runc --cgroup-manager cgroupfs system service --time=0 unix://${socketPath}), or set DOCKER_HOST=unix:///path`
    )
  }
  return (
    `no Docker Engine API socket at ${socketPath}: the docker runtime needs one. Docker Desktop exposes it (on macOS at ` +
    `~/.docker/run/docker.sock, or /var/run/docker.sock with "Allow the default Docker socket to be used"); start it, or set DOCKER_HOST=unix:///path`
  )
}

type Ending =
  | { kind: 'exit'; code: number }
  | StopEnding
  | { kind: 'crash'; error: unknown }
  | { kind: 'closed' }

interface ContainerState {
  ExitCode?: number
  OOMKilled?: boolean
  Pid?: number
  Error?: string
}

export function createDockerRuntime(init: DockerRuntimeInit = {}): DockerRuntime {
  if (init.network !== undefined && init.network !== false) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'docker runtime: containers never get a network; network may only be false')
  }
  const images = init.images === undefined ? undefined : new Set(init.images)
  for (const image of images ?? []) {
    if (!imageIdPattern.test(image)) throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `docker runtime: ${JSON.stringify(image)} is not an image id (sha256:<64 hex>)`)
  }
  const maxProcesses = init.maxProcesses ?? defaultMaxProcesses
  if (!Number.isInteger(maxProcesses) || maxProcesses < 1) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `docker runtime: maxProcesses must be a positive integer, got ${maxProcesses}`)
  }
  const socketPath = init.socketPath ?? defaultDockerSocket()
  const api = new DockerApi(socketPath)
  // Labels every container of this runtime object, so that leftovers() finds exactly its own.
  const instance = randomBytes(6).toString('hex')
  const claims = new RootClaims()
  const inFlight = new Set<() => void>()
  const running = new Set<Promise<unknown>>()
  let runCount = 0
  let closed = false
  let availability: Promise<RuntimeAvailability> | undefined

  async function check(): Promise<RuntimeAvailability> {
    const unsupported = unsupportedSystemReason()
    if (unsupported !== undefined) return { ok: false, reason: unsupported }
    if (!existsSync(socketPath)) return { ok: false, reason: missingSocketReason(socketPath) }
    let ping
    try {
      ping = await api.call({ method: 'GET', path: '/_ping', versioned: false, timeoutMs: controlTimeoutMs })
    } catch (error) {
      return { ok: false, reason: `the Docker Engine API at ${socketPath} is unreachable: ${(error as Error).message}` }
    }
    if (ping.status !== 200) return { ok: false, reason: `the Docker Engine API at ${socketPath} answered /_ping with HTTP ${ping.status}: ${apiMessage(ping)}` }
    let version: { ApiVersion?: string; Os?: string }
    try {
      version = await api.json({ method: 'GET', path: '/version', versioned: false, timeoutMs: controlTimeoutMs }, 'report its version')
    } catch (error) {
      return { ok: false, reason: `the Docker Engine API at ${socketPath} did not report its version: ${(error as Error).message}` }
    }
    if (typeof version.ApiVersion !== 'string' || compareVersions(version.ApiVersion, dockerApiVersion) < 0) {
      return { ok: false, reason: `the engine at ${socketPath} serves Docker API ${String(version.ApiVersion)}, older than the ${dockerApiVersion} Hearth needs (Docker 20.10+, podman 4+)` }
    }
    if (version.Os !== undefined && version.Os !== 'linux') return { ok: false, reason: `the engine at ${socketPath} runs ${version.Os} containers, not linux` }
    if (images !== undefined) {
      const held = await Promise.all([...images].map((image) => hasImage(image).catch(() => false)))
      if (!held.includes(true)) return { ok: false, reason: `the engine holds none of the offered images: ${[...images].join(', ') || '(none offered)'}` }
    }
    return { ok: true }
  }

  async function hasImage(id: string): Promise<boolean> {
    if (!imageIdPattern.test(id)) return false
    const answer = await api.call({ method: 'GET', path: `/images/${id}/json` })
    if (answer.status === 404) return false
    if (answer.status !== 200) throw apiError(`look up image ${id}`, answer)
    // An engine resolves names and short ids too: only the exact id counts.
    return (JSON.parse(answer.body.toString('utf8')) as { Id?: string }).Id === id
  }

  async function run(spec: RunSpec<DockerProgram>, options: RunOptions = {}): Promise<RunResult> {
    const { signal } = options
    if (closed) throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the docker runtime is closed')
    validateRunSpec(spec, 'docker')
    const image = (spec.program as Partial<DockerProgram> | undefined)?.image
    if (typeof image !== 'string' || !imageIdPattern.test(image)) {
      throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `a docker program names its image by id (sha256:<64 hex>), got ${JSON.stringify(image)}`)
    }
    if (images !== undefined && !images.has(image)) {
      throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this provider does not offer the image ${image}`, {
        hint: `offered images: ${[...images].join(', ') || 'none'}`,
        details: { image },
      })
    }
    throwIfAborted(signal)
    const task = claims.inRoot(
      spec.rootDir,
      async () => {
        const ready = await (availability ??= check())
        if (!ready.ok) {
          // Asked again next time: an engine that was starting may be up by then.
          availability = undefined
          throw unavailable(ready.reason)
        }
      },
      async (rootDir) => {
        try {
          return await runInRoot({ ...spec, program: { image } }, rootDir, signal)
        } catch (error) {
          throw toHearthError(error, 'HEARTH_ERR_EXEC_FAILED')
        }
      },
    )
    running.add(task)
    try {
      return await task
    } finally {
      running.delete(task)
    }
  }

  async function runInRoot(spec: RunSpec<DockerProgram>, rootDir: string, signal: AbortSignal | undefined): Promise<RunResult> {
    const { stdoutPath, stderrPath, inputs } = await taskFiles(rootDir, spec)
    if (!(await hasImage(spec.program.image))) {
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
    const memoryBytes = Math.max(6 << 20, spec.maxMemoryBytes)
    let stdoutBytes = 0
    let stderrBytes = 0
    try {
      const stdout = await open(stdoutPath, 'w')
      handles.push(stdout)
      const stderr = await open(stderrPath, 'w')
      handles.push(stderr)
      // Root's files in the task directory become the container user's for the run (given back below).
      if (asRoot) await chownTree(rootDir, uid, gid)

      const env: Record<string, string> = { HOME: '/task', ...spec.env }
      const created = await api.json<{ Id: string }>(
        {
          method: 'POST',
          path: '/containers/create',
          query: { name: `hearth-${instance}-${runCount++}` },
          json: {
            Image: spec.program.image,
            Entrypoint: [spec.args[0]],
            Cmd: spec.args.slice(1),
            Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
            WorkingDir: '/task',
            User: `${uid}:${gid}`,
            Hostname: 'hearth-task',
            NetworkDisabled: true,
            AttachStdout: true,
            AttachStderr: true,
            Tty: false,
            OpenStdin: false,
            Labels: { [instanceLabel]: instance },
            HostConfig: {
              NetworkMode: 'none',
              ReadonlyRootfs: true,
              Binds: [`${rootDir}:/task:rw`],
              Tmpfs: { '/tmp': 'rw,nosuid,nodev,size=64m' },
              // The engine's floor is 6 MiB.
              Memory: memoryBytes,
              // Equal to Memory: no swap on top.
              MemorySwap: memoryBytes,
              NanoCpus: Math.round((spec.maxCpuCores ?? 1) * 1e9),
              PidsLimit: maxProcesses,
              CapDrop: ['ALL'],
              SecurityOpt: ['no-new-privileges'],
              Ulimits: [
                { Name: 'nofile', Soft: openFilesLimit, Hard: openFilesLimit },
                { Name: 'nproc', Soft: processesLimit, Hard: processesLimit },
                // Bytes (setrlimit's unit): one byte over the budget, so a file that reaches it is over and reported.
                { Name: 'fsize', Soft: spec.maxOutputBytes + 1, Hard: spec.maxOutputBytes + 1 },
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
        },
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
      ending = await watch(exited, spec, signal, measureOutput, () => overflow, () => closed, inFlight)
      if (ending.kind !== 'exit') {
        await meter.sample()
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
    // Before the host looks at the outputs: no links, fifos, setuid bits or locked folders left by the program.
    await sanitizeAfterRun(rootDir)
    const metering = { durationMs: roundMs(durationMs), cpuMs: roundMs(cpuMs) }
    if (ending.kind !== 'exit') throw endingError(ending, spec, metering)
    // Killed by SIGKILL that Hearth did not send (ending is 'exit'), with the cgroup at its memory limit: the OOM killer.
    if (state.OOMKilled === true || (ending.code === 137 && meter?.memoryHit === true)) {
      throw memoryExceeded(spec.maxMemoryBytes, { oomKilled: true }, metering)
    }
    const total = stdoutBytes + stderrBytes + (await bytesAdded(rootDir, inputs))
    if (total > spec.maxOutputBytes) throw stopError({ kind: 'output', bytes: total }, spec, metering)
    if (ending.code < 0 || (ending.code >= 125 && ending.code <= 127 && state.Error !== undefined && state.Error !== '')) {
      // The engine's own failures (a command not in the image, …) come back as 125-127 with State.Error set.
      throw new HearthError('HEARTH_ERR_EXEC_FAILED', `the container could not run the command: ${state.Error ?? `exit code ${ending.code}`}`, {
        details: { exitCode: ending.code, ...metering },
      })
    }
    return { exitCode: ending.code, ...metering, stdoutBytes, stderrBytes }
  }

  return {
    name: 'docker',
    socketPath,
    api,
    hasImage,
    available: () => (availability ??= check()),
    run,
    async close() {
      closed = true
      for (const stop of [...inFlight]) stop()
      // Every run removes its container on the way out: close() returns when they all did.
      await Promise.allSettled([...running])
    },
    async leftovers() {
      const answer = await api.json<{ Id: string; Names?: string[]; State?: string }[]>(
        { method: 'GET', path: '/containers/json', query: { all: true, filters: JSON.stringify({ label: [`${instanceLabel}=${instance}`] }) } },
        'list containers',
      )
      return (answer ?? []).map((container) => `container ${container.Names?.[0] ?? container.Id} (${container.State ?? 'unknown state'})`)
    },
  }
}

async function removeContainer(api: DockerApi, id: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const answer = await api.call({ method: 'DELETE', path: `/containers/${id}`, query: { force: true, v: true }, timeoutMs: controlTimeoutMs })
    if (answer.status === 204 || answer.status === 200 || answer.status === 404) return
    // 409: the engine is still tearing the container down after a kill; it can be removed a moment later.
    if (attempt >= 5) throw apiError(`remove container ${id}`, answer)
    await new Promise((resolveDelay) => setTimeout(resolveDelay, 100 * (attempt + 1)))
  }
}

interface ContainerMeter {
  /** Reads the cgroup again (while it exists: the engine removes it when the container exits). */
  sample(): Promise<void>
  cpuMs: number
  /** The kernel's OOM killer acted, or memory reached the limit (v1 failcnt, v2 oom_kill): seen at any sample. */
  memoryHit: boolean
}

/**
 * CPU time and memory pressure of the container, read from its cgroup on this host: the engine's stats are gone once it
 * exits, an API call per poll costs more than a file read, and podman on cgroup v1 does not report OOMKilled (its
 * conmon misses the event here: measured, a 32 MiB container killed by the OOM killer reports OOMKilled false).
 * Sampled at every output poll and when a run is stopped, so a run shorter than one poll (20 ms) may report less CPU
 * than it used; nothing where the engine runs on another host or the cgroup cannot be read.
 */
async function cgroupMeter(api: DockerApi, id: string, memoryLimitBytes: number): Promise<ContainerMeter> {
  const meter: ContainerMeter = { sample: async () => {}, cpuMs: 0, memoryHit: false }
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
        if (counter(oom!, 'oom_kill') > 0 || (Number(failcnt!.trim()) > 0 && Number(peak!.trim()) >= memoryLimitBytes * 0.9)) meter.memoryHit = true
      } else if (v2Dir !== undefined) {
        if (counter(await read(join(v2Dir, 'memory.events')), 'oom_kill') > 0) meter.memoryHit = true
      }
    }
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
async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
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

function unavailable(reason: string): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', `the docker runtime cannot run here: ${reason}`, {
    hint: 'start a Docker engine or podman\'s API service (Debian: apt-get install podman runc), or do not offer the docker runtime',
  })
}

/** -1, 0 or 1 as dotted version `a` is below, equal to or above `b`. */
export function compareVersions(a: string, b: string): number {
  const left = a.split('.').map(Number)
  const right = b.split('.').map(Number)
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0)
    if (difference !== 0) return Math.sign(difference)
  }
  return 0
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
