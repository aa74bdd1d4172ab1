/**
 * A server of the `native` runtime (a service's replica): the offered program in the same bubblewrap sandbox and
 * cgroup as a task (native-sandbox.ts, native-launch.ts) but with no deadline. Its stdout and stderr share one pipe
 * into a bounded log (service-log.ts). bwrap reports the sandboxed program's pid on its status pipe; the forwarder
 * (service-netns.ts) enters that pid's network namespace, after checking that the pid is in the server's cgroup. CPU
 * time and out-of-memory kills come from the cgroup. Whatever ends it, everything left in the cgroup is killed, the
 * cgroup and the forwarder removed and the directory's links and special files removed before `ended` settles.
 */
import type { ChildProcess } from 'node:child_process'
import { constants } from 'node:fs'
import { access, open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { devNull, constants as osConstants } from 'node:os'
import type { Readable } from 'node:stream'
import { HearthError } from '../errors.ts'
import type { RunCgroup } from './cgroups.ts'
import { killGroup, parseStatus, startSandbox, wrapperArgs } from './native-launch.ts'
import { sandboxArgs } from './native-sandbox.ts'
import type { Setup } from './native-setup.ts'
import type { ServeEnding, ServeSpec, ServedProgram } from './runtime.ts'
import { within } from './run-support.ts'
import { BoundedLog } from './service-log.ts'
import type { NetnsForwarder } from './service-netns.ts'
import { pathInto, servedProgram } from './service-served.ts'
import type { HeldRoot } from './service-served.ts'
import { sanitizeTree } from './task-dir.ts'

/** Starts the offered program as a server in `held.rootDir` and resolves once its sandbox is up (not yet listening). */
export async function serveNative(setup: Setup, spec: ServeSpec<string>, held: HeldRoot, maxProcesses: number): Promise<ServedProgram> {
  const { rootDir } = held
  const what = `the server ${spec.program}`
  await access(spec.program, constants.X_OK).catch((error: unknown) => {
    throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', `the native runtime cannot run here: the offered program ${spec.program} is not installed or not executable`, { cause: error })
  })
  const handles: FileHandle[] = []
  let cgroup: RunCgroup | undefined
  let forwarder: NetnsForwarder | undefined
  let log: BoundedLog | undefined
  let cleaned: Promise<void> | undefined
  const cleanUp = (): Promise<void> =>
    (cleaned ??= (async () => {
      await forwarder?.stop()
      if (cgroup !== undefined) {
        await cgroup.killAll().catch(() => undefined)
        await cgroup.remove().catch(() => undefined)
      }
      await Promise.allSettled(handles.map((handle) => handle.close()))
      await log?.close()
      await sanitizeTree(rootDir).catch(() => undefined)
      held.release()
    })())

  try {
    log = await BoundedLog.open(held.logPath, spec.maxLogBytes)
    const stdin = await open(devNull, 'r')
    handles.push(stdin)
    cgroup = await setup.cgroups.create({ memoryBytes: spec.maxMemoryBytes, cpuCores: spec.maxCpuCores ?? 1, maxProcesses })
    const runCgroup = cgroup
    const args = wrapperArgs(Math.floor(spec.maxDiskBytes / 512), cgroup.procsFiles, setup.bwrap, sandboxArgs(setup, spec, rootDir), true)
    const child = startSandbox(args, [stdin.fd, 'pipe', 'ignore'], setup.seccomp)
    const startedAt = performance.now()
    const output = logOutput(child.stdout!, log)
    const status = readStatus(child)
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
      child.once('exit', (code, signal) => resolveExit({ code, signal }))
      child.once('error', () => resolveExit({ code: -1, signal: null }))
    })
    let stopRequested = false
    const kill = async (): Promise<void> => {
      stopRequested = true
      killGroup(child)
      await runCgroup.killAll().catch(() => undefined)
    }
    const serverLog = log
    const ended = exited.then(async ({ code, signal }): Promise<ServeEnding> => {
      // bwrap's pid-namespace init takes the sandbox down with it; the cgroup catches anything in between.
      await runCgroup.killAll().catch(() => undefined)
      const oomKills = await runCgroup.oomKills().catch(() => 0)
      const reported = parseStatus(await within(status.text, 1_000, '')).exitCode
      const exitCode = reported ?? code ?? 128 + (signal === null ? 0 : (osConstants.signals[signal] ?? 0))
      await within(output, 2_000, undefined)
      await serverLog.flush()
      await cleanUp()
      return { exitCode, reason: stopRequested ? 'stopped' : oomKills > 0 ? 'memory' : 'exited' }
    })
    const pid = await Promise.race([status.childPid, exited.then(() => undefined)])
    forwarder = await pathInto(pid, spec.port, what, async () => (await runCgroup.pids()).includes(pid!), { exited, stop: async () => void (await kill(), await ended) })
    // The server ended while its forwarder was starting: the clean-up has run without it.
    if (cleaned !== undefined) await forwarder.stop()
    const cpuMs = async (): Promise<number> => (await runCgroup.cpuNs()) / 1e6
    return servedProgram({ what, port: spec.port, log, forwarder, startedAt, ended, cpuMs, kill })
  } catch (error) {
    await cleanUp()
    throw error
  }
}

/** Copies the sandbox's output pipe into the log, pausing the pipe while the log catches up; resolves at its end. */
function logOutput(stream: Readable, log: BoundedLog): Promise<void> {
  return new Promise((resolveEnd) => {
    stream.on('data', (chunk: Buffer) => {
      if (!log.write(chunk)) {
        stream.pause()
        log.onDrain(() => stream.resume())
      }
    })
    stream.once('end', () => resolveEnd())
    stream.once('close', () => resolveEnd())
    stream.once('error', () => resolveEnd())
  })
}

/** bwrap's status pipe (fd 3): the sandboxed program's pid once it starts, and the whole text at its end. */
function readStatus(child: ChildProcess): { childPid: Promise<number | undefined>; text: Promise<string> } {
  const stream = child.stdio[3] as Readable | null | undefined
  if (stream === null || stream === undefined) return { childPid: Promise.resolve(undefined), text: Promise.resolve('') }
  let text = ''
  let onPid: (pid: number | undefined) => void = () => {}
  const childPid = new Promise<number | undefined>((resolvePid) => (onPid = resolvePid))
  const ended = new Promise<string>((resolveText) => {
    const finish = (): void => {
      onPid(undefined)
      resolveText(text)
    }
    stream.on('data', (chunk: Buffer) => {
      if (text.length < 65_536) text += chunk.toString('utf8')
      const pid = parseStatus(text).childPid
      if (pid !== undefined) onPid(pid)
    })
    stream.once('end', finish)
    stream.once('close', finish)
    stream.once('error', finish)
  })
  return { childPid, text: ended }
}
