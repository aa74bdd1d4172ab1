/**
 * A server of the `docker` runtime (a service's replica): one container with every limit a task's has (the same
 * create request, docker-container.ts) but no deadline, started detached. Its stdout and stderr come from attaching
 * before the start, demultiplexed into one bounded log (service-log.ts). The only way in is the forwarder that nsenter
 * starts in the container's network namespace (service-netns.ts), found from the container's init pid (State.Pid),
 * which must belong to the container's own cgroup. CPU and memory pressure are read from the container's cgroup as
 * for tasks; an end by SIGKILL that Hearth did not send, with the cgroup at its memory limit, is reason 'memory'.
 * Whatever ends it, the container and the forwarder are removed, the directory's owner is given back and its links
 * and special files removed, before `ended` settles. Needs the engine on this Linux host (its pids and cgroups).
 */
import { readFile, lstat } from 'node:fs/promises'
import { HearthError } from '../errors.ts'
import { apiError, StreamDemuxer } from './docker-api.ts'
import type { ContainerContext, ContainerMeter, ContainerState, DockerProgram } from './docker-container.ts'
import { cgroupMeter, chownTree, containerMemoryBytes, controlTimeoutMs, createRequest, removeContainer, sandboxId } from './docker-container.ts'
import { hasLinuxKernelFiles } from './platform.ts'
import type { ServeEnding, ServeSpec, ServedProgram } from './runtime.ts'
import { BoundedLog } from './service-log.ts'
import type { NetnsForwarder } from './service-netns.ts'
import { pathInto, servedProgram } from './service-served.ts'
import type { HeldRoot } from './service-served.ts'
import { sanitizeTree } from './task-dir.ts'

/**
 * How often a server's cgroup is read while it runs. Its memory peak must be seen before the engine removes the cgroup
 * (podman on cgroup v1 does not report OOMKilled): often while it starts and while it is near its limit, where a
 * runaway allocation takes a fraction of a second, and seldom otherwise.
 */
const meterFastMs = 20
const meterSlowMs = 250
const meterStartupMs = 5_000

/**
 * Starts the server's container in `held.rootDir` and resolves once it runs (not yet listening). `onEnd` is called
 * once everything of it is removed (the directory is then released by the caller's `held.release`).
 */
export async function serveContainer(ctx: ContainerContext, spec: ServeSpec<DockerProgram>, held: HeldRoot): Promise<ServedProgram> {
  const { api } = ctx
  const { rootDir } = held
  if (!hasLinuxKernelFiles()) {
    throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', 'serving from a container needs the engine on this Linux host (its network namespaces), not in a VM')
  }
  if (!(await ctx.hasImage(spec.program.image))) {
    throw new HearthError('HEARTH_ERR_EXEC_IMAGE_MISSING', `the container image ${spec.program.image} is not loaded on this provider`, {
      hint: 'send the image archive first (loadImageArchive), or ask for an image the provider offers',
      details: { image: spec.program.image },
    })
  }
  const rootInfo = await lstat(rootDir)
  const asRoot = process.getuid?.() === 0
  const uid = asRoot ? sandboxId : (process.getuid?.() ?? sandboxId)
  const gid = asRoot ? sandboxId : (process.getgid?.() ?? sandboxId)
  const memoryBytes = containerMemoryBytes(spec.maxMemoryBytes)
  const name = ctx.nextName()
  const what = `the server (container ${name})`
  const log = await BoundedLog.open(held.logPath, spec.maxLogBytes)
  let id: string | undefined
  let forwarder: NetnsForwarder | undefined
  let meterTimer: NodeJS.Timeout | undefined
  let metering = true
  // Everything of the server, removed in order; run once, whether it ended, was stopped, or failed to start.
  let cleaned: Promise<void> | undefined
  const cleanUp = (): Promise<void> =>
    (cleaned ??= (async () => {
      metering = false
      clearTimeout(meterTimer)
      await forwarder?.stop()
      if (id !== undefined) await removeContainer(api, id).catch(() => undefined)
      await log.close()
      if (asRoot) await chownTree(rootDir, rootInfo.uid, rootInfo.gid).catch(() => undefined)
      await sanitizeTree(rootDir).catch(() => undefined)
      held.release()
    })())

  try {
    if (asRoot) await chownTree(rootDir, uid, gid)
    const command = { ...spec, fileSizeBytes: spec.maxDiskBytes }
    const created = await api.json<{ Id: string }>(createRequest(command, { rootDir, uid, gid, memoryBytes, name, instance: ctx.instance, maxProcesses: ctx.maxProcesses }), 'create a container')
    id = created.Id
    const containerId = id
    const attached = await api.attach(containerId, controlTimeoutMs)
    // stdout and stderr in one file, in the order the frames arrive; the attach stream waits while the log catches up.
    const demuxer = new StreamDemuxer((_stream, payload) => {
      if (!log.write(payload)) {
        attached.pause()
        log.onDrain(() => attached.resume())
      }
    })
    attached.on('data', (chunk: Buffer) => demuxer.push(chunk))
    attached.on('error', () => undefined)

    const started = await api.call({ method: 'POST', path: `/containers/${containerId}/start`, timeoutMs: controlTimeoutMs })
    const startedAt = performance.now()
    if (started.status !== 204 && started.status !== 304) {
      attached.destroy()
      throw apiError(`start the container (image ${spec.program.image}, command ${JSON.stringify(spec.args[0])})`, started)
    }
    let stopRequested = false
    const exited = api
      .json<{ StatusCode?: number }>({ method: 'POST', path: `/containers/${containerId}/wait`, timeoutMs: 2 ** 31 - 1 }, 'wait for the container')
      .then((answer) => answer?.StatusCode ?? -1, () => -1)
    const meter = await cgroupMeter(api, containerId, memoryBytes)
    const sampleLater = (): void => {
      if (!metering) return
      const fast = performance.now() - startedAt < meterStartupMs || meter.peakBytes >= memoryBytes / 2
      meterTimer = setTimeout(() => void meter.sample().catch(() => undefined).then(sampleLater), fast ? meterFastMs : meterSlowMs)
      meterTimer.unref()
    }
    sampleLater()
    const kill = async (): Promise<void> => {
      stopRequested = true
      await api.call({ method: 'POST', path: `/containers/${containerId}/kill`, query: { signal: 'SIGKILL' }, timeoutMs: controlTimeoutMs }).catch(() => undefined)
    }
    const ended = exited.then(async (exitCode): Promise<ServeEnding> => {
      const ending = await judgeEnding(ctx, containerId, exitCode, meter, stopRequested, memoryBytes)
      attached.destroy()
      await log.flush()
      await cleanUp()
      return ending
    })
    const pid = (await inspect(ctx, containerId)).Pid
    forwarder = await pathInto(pid, spec.port, what, () => pidInContainer(pid!, containerId), { exited, stop: async () => void (await kill(), await ended) })
    // The server ended while its forwarder was starting: the clean-up has run without it.
    if (cleaned !== undefined) await forwarder.stop()
    return servedProgram({ what, port: spec.port, log, forwarder, startedAt, ended, cpuMs: () => meter.sample().then(() => meter.cpuMs), kill })
  } catch (error) {
    await cleanUp()
    throw error
  }
}

async function inspect(ctx: ContainerContext, id: string): Promise<ContainerState> {
  const inspected = await ctx.api.json<{ State?: ContainerState }>({ method: 'GET', path: `/containers/${id}/json`, timeoutMs: controlTimeoutMs }, 'inspect the container')
  return inspected?.State ?? {}
}

/** How the server's container ended: killed by Hearth ('stopped'), by the OOM killer ('memory'), or by itself. */
async function judgeEnding(ctx: ContainerContext, id: string, exitCode: number, meter: ContainerMeter, stopRequested: boolean, memoryBytes: number): Promise<ServeEnding> {
  // The cgroup may still be there: one last look at the memory peak.
  await meter.sample().catch(() => undefined)
  if (stopRequested) return { exitCode, reason: 'stopped' }
  const state = await inspect(ctx, id).catch((): ContainerState => ({}))
  // A SIGKILL Hearth did not send, in a sandbox whose program has no capabilities, with memory seen at the limit or
  // past half of it: podman on cgroup v1 may remove the cgroup before its last counters are read.
  if (state.OOMKilled === true || (exitCode === 137 && (meter.memoryHit || meter.peakBytes >= memoryBytes / 2))) return { exitCode, reason: 'memory' }
  return { exitCode, reason: 'exited' }
}

/** Whether host pid `pid` is in the container's own cgroup (the engine names its cgroups after the container id). */
async function pidInContainer(pid: number, id: string): Promise<boolean> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '')
  return text.includes(id)
}
