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
import { randomBytes } from 'node:crypto'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { HearthError, toHearthError } from '../errors.ts'
import { platform } from './platform.ts'
import { apiError, apiMessage, DockerApi, dockerApiVersion } from './docker-api.ts'
import { controlTimeoutMs, instanceLabel, runContainer, type DockerProgram } from './docker-container.ts'
import { serveContainer } from './docker-serve.ts'
import type { Runtime, RunOptions, RunResult, RunSpec, RuntimeAvailability, ServedProgram, ServeSpec } from './runtime.ts'
import { holdRoot, startServer, stopServers, validateServeSpec } from './service-served.ts'
import type { ServerSet } from './service-served.ts'
import { RootClaims, throwIfAborted, validateRunSpec } from './task-dir.ts'

export { gpuDeviceRequests, type DockerProgram } from './docker-container.ts'

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

/** Whether the engine at `socketPath` can run containers for this runtime, and if not why. */
async function engineAvailability(api: DockerApi, socketPath: string, images: Set<string> | undefined, hasImage: (id: string) => Promise<boolean>): Promise<RuntimeAvailability> {
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
  const servers: ServerSet = { starting: new Set(), running: new Set(), isClosed: () => closed }
  let runCount = 0
  let closed = false
  let availability: Promise<RuntimeAvailability> | undefined

  const check = (): Promise<RuntimeAvailability> => engineAvailability(api, socketPath, images, hasImage)

  async function hasImage(id: string): Promise<boolean> {
    if (!imageIdPattern.test(id)) return false
    const answer = await api.call({ method: 'GET', path: `/images/${id}/json` })
    if (answer.status === 404) return false
    if (answer.status !== 200) throw apiError(`look up image ${id}`, answer)
    // An engine resolves names and short ids too: only the exact id counts.
    return (JSON.parse(answer.body.toString('utf8')) as { Id?: string }).Id === id
  }

  const context = { api, instance, maxProcesses, nextName: () => `hearth-${instance}-${runCount++}`, hasImage, closed: () => closed, inFlight }

  async function ready(): Promise<void> {
    const answer = await (availability ??= check())
    if (!answer.ok) {
      // Asked again next time: an engine that was starting may be up by then.
      availability = undefined
      throw unavailable(answer.reason)
    }
  }

  async function run(spec: RunSpec<DockerProgram>, options: RunOptions = {}): Promise<RunResult> {
    const { signal } = options
    if (closed) throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the docker runtime is closed')
    validateRunSpec(spec, 'docker')
    const image = offeredImage(spec.program, images)
    throwIfAborted(signal)
    const task = claims.inRoot(
      spec.rootDir,
      ready,
      async (rootDir) => {
        try {
          return await runContainer(context, { ...spec, program: { image } }, rootDir, signal)
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

  async function serve(spec: ServeSpec<DockerProgram>): Promise<ServedProgram> {
    if (closed) throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the docker runtime is closed')
    validateServeSpec(spec, 'docker')
    const image = offeredImage(spec.program, images)
    await ready()
    const held = await holdRoot(claims, spec)
    return startServer(servers, 'docker', () => serveContainer(context, { ...spec, program: { image } }, held))
  }

  return {
    name: 'docker',
    socketPath,
    api,
    hasImage,
    available: () => (availability ??= check()),
    run,
    serve,
    async close() {
      closed = true
      for (const stop of [...inFlight]) stop()
      // Every run removes its container on the way out: close() returns when they all did.
      await Promise.allSettled([...running, stopServers(servers)])
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

/** The image a run or server names, checked: an id, and one this provider offers (all the engine holds when `images` is undefined). */
function offeredImage(program: DockerProgram, images: Set<string> | undefined): string {
  const image = (program as Partial<DockerProgram> | undefined)?.image
  if (typeof image !== 'string' || !imageIdPattern.test(image)) {
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `a docker program names its image by id (sha256:<64 hex>), got ${JSON.stringify(image)}`)
  }
  if (images !== undefined && !images.has(image)) {
    throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this provider does not offer the image ${image}`, {
      hint: `offered images: ${[...images].join(', ') || 'none'}`,
      details: { image },
    })
  }
  return image
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
