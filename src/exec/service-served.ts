/**
 * What the runtimes that serve (docker, native) share about a served program: the checks on its spec, the hold on its
 * directory while it runs, and the ServedProgram they hand out — connect through the forwarder (service-netns.ts),
 * waitListening, usage, stop — over the parts each runtime starts its own way.
 */
import { resolve } from 'node:path'
import type { Duplex } from 'node:stream'
import { HearthError, toHearthError } from '../errors.ts'
import type { ServeEnding, ServeSpec, ServedProgram } from './runtime.ts'
import type { BoundedLog } from './service-log.ts'
import { endedForwarder, startForwarder } from './service-netns.ts'
import type { NetnsForwarder } from './service-netns.ts'
import { outsideRoot, realDirectory, scanSmallTree, scanTree } from './task-dir.ts'
import type { RootClaims } from './task-dir.ts'

/** Checks the fields every serving runtime shares; the program itself is the runtime's business. */
export function validateServeSpec(spec: ServeSpec<unknown>, runtime: string): void {
  const invalid = (message: string): HearthError => new HearthError('HEARTH_ERR_CONFIG_INVALID', `invalid ${runtime} server: ${message}`)
  if (!Array.isArray(spec.args) || spec.args.length === 0 || spec.args.some((arg) => typeof arg !== 'string' || arg.includes('\0'))) {
    throw invalid('args must be a non-empty list of strings without NUL characters (argv, program name first)')
  }
  if (typeof spec.env !== 'object' || spec.env === null) throw invalid('env must be an object of strings')
  for (const [key, value] of Object.entries(spec.env)) {
    if (key === '' || key.includes('=') || key.includes('\0') || typeof value !== 'string' || value.includes('\0')) {
      throw invalid(`env entry ${JSON.stringify(key)} is not a valid variable`)
    }
  }
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65_535) throw invalid(`port must be a TCP port (1 to 65535), got ${spec.port}`)
  for (const name of ['maxLogBytes', 'maxMemoryBytes', 'maxDiskBytes'] as const) {
    const value = spec[name]
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw invalid(`${name} must be a non-negative integer, got ${value}`)
  }
  const cores = spec.maxCpuCores
  if (cores !== undefined && (typeof cores !== 'number' || !Number.isFinite(cores) || cores <= 0)) {
    throw invalid(`maxCpuCores must be a positive finite number, got ${cores}`)
  }
  if (typeof spec.logPath !== 'string' || spec.logPath === '') throw invalid('logPath must name a host file')
}

/** A served program's directory, held against other runs and servers of the runtime until release(). */
export interface HeldRoot {
  rootDir: string
  /** Where the log goes: outside rootDir, resolved. */
  logPath: string
  release(): void
}

/**
 * Claims the directory (as given and as its real path) as a run would, refuses the log inside it and a directory
 * holding links or special files, and keeps the claim until release().
 */
export async function holdRoot(claims: RootClaims, spec: ServeSpec<unknown>): Promise<HeldRoot> {
  const claimed: string[] = []
  const release = (): void => {
    for (const path of claimed.splice(0)) claims.release(path)
  }
  try {
    const givenRoot = resolve(spec.rootDir)
    claims.claim(givenRoot)
    claimed.push(givenRoot)
    const rootDir = await realDirectory(givenRoot)
    if (rootDir !== givenRoot) {
      claims.claim(rootDir)
      claimed.push(rootDir)
    }
    const logPath = await outsideRoot(rootDir, spec.logPath, 'logPath', 'server')
    if (scanSmallTree(rootDir, true) === undefined) await scanTree(rootDir, true)
    return { rootDir, logPath, release }
  } catch (error) {
    release()
    throw error
  }
}

/** Whether `exited` settles within a short while: a server whose namespace could not be entered may have ended. */
export function exitedSoon(exited: Promise<unknown>, ms = 2_000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>((resolveLate) => (timer = setTimeout(() => resolveLate(false), ms)))
  return Promise.race([exited.then(() => true), late]).finally(() => clearTimeout(timer))
}

/**
 * The path into a server that has just started (its sandbox's process `pid`): its forwarder, or one that refuses
 * connections when the server ended as it started (the caller hears of that through `ended`). A server that runs but
 * cannot be reached is stopped (`stop`) and the error thrown.
 */
export async function pathInto(pid: number | undefined, port: number, what: string, inSandbox: () => Promise<boolean>, server: { exited: Promise<unknown>; stop(): Promise<void> }): Promise<NetnsForwarder> {
  try {
    return pid === undefined || pid <= 0 ? endedForwarder(what) : await startForwarder(pid, port, what, inSandbox)
  } catch (error) {
    if (await exitedSoon(server.exited)) return endedForwarder(what)
    await server.stop()
    throw error
  }
}

/** A runtime's servers: those starting and those running, for close(). */
export interface ServerSet {
  /** Starts in flight (close() waits for them). */
  starting: Set<Promise<unknown>>
  running: Set<ServedProgram>
  isClosed(): boolean
}

/**
 * Starts a server with `start` and keeps it in `servers` until it ends; a close() of the runtime that came while it
 * was starting stops it again. Failures come out as HearthErrors.
 */
export async function startServer(servers: ServerSet, runtime: string, start: () => Promise<ServedProgram>): Promise<ServedProgram> {
  const starting = (async () => {
    const server = await start()
    servers.running.add(server)
    void server.ended.then(() => servers.running.delete(server))
    if (servers.isClosed()) {
      await server.stop()
      throw new HearthError('HEARTH_ERR_EXEC_FAILED', `the ${runtime} runtime was closed while the server was starting`)
    }
    return server
  })()
  servers.starting.add(starting)
  try {
    return await starting
  } catch (error) {
    throw toHearthError(error, 'HEARTH_ERR_EXEC_FAILED')
  } finally {
    servers.starting.delete(starting)
  }
}

/** Stops every server of a runtime, and waits for those still starting (which stop themselves). */
export async function stopServers(servers: ServerSet): Promise<void> {
  await Promise.allSettled([...servers.starting, ...[...servers.running].map((server) => server.stop())])
}

/** What a runtime started for a server, from which servedProgram() makes the ServedProgram it hands out. */
export interface ServedParts {
  /** Names the server in messages, e.g. `the server /usr/bin/httpd`. */
  what: string
  port: number
  log: BoundedLog
  forwarder: NetnsForwarder
  /** performance.now() when it started. */
  startedAt: number
  /** Settles (never rejects) once the server ended and everything of it was removed. */
  ended: Promise<ServeEnding>
  /** CPU time of its processes so far, in ms. */
  cpuMs(): Promise<number>
  /** Kills the server (ended then settles with reason 'stopped'); never throws. */
  kill(): Promise<void>
}

const maxRetryDelayMs = 200

export function servedProgram(parts: ServedParts): ServedProgram {
  let ending: ServeEnding | undefined
  let endedAt: number | undefined
  let lastCpuMs = 0
  let stopping: Promise<void> | undefined
  void parts.ended.then((settled) => {
    ending = settled
    endedAt = performance.now()
  })

  const endedError = (settled: ServeEnding): HearthError =>
    new HearthError('HEARTH_ERR_EXEC_FAILED', `${parts.what} has ended (${describeEnding(settled)})`, { details: { ...settled } })

  const exitedBeforeListening = async (settled: ServeEnding): Promise<HearthError> => {
    const tail = await parts.log.tail(10)
    return new HearthError('HEARTH_ERR_EXEC_FAILED', `${parts.what} ended (${describeEnding(settled)}) before it listened on port ${parts.port}${tail === '' ? ', with an empty log' : `; its log ends:\n${tail}`}`, {
      details: { ...settled, port: parts.port },
    })
  }

  return {
    ended: parts.ended,
    async connect(): Promise<Duplex> {
      if (ending !== undefined) throw endedError(ending)
      return parts.forwarder.connect()
    },
    async waitListening(timeoutMs: number): Promise<void> {
      const deadline = performance.now() + timeoutMs
      let delayMs = 10
      for (;;) {
        if (ending !== undefined) throw await exitedBeforeListening(ending)
        let failure: unknown
        try {
          const socket = await parts.forwarder.connect()
          socket.destroy()
          return
        } catch (error) {
          failure = error
        }
        // A forwarder that died cannot recover: say so now rather than at the deadline (the server's end, if that was why).
        if (!parts.forwarder.alive) {
          if (await exitedSoon(parts.ended)) throw await exitedBeforeListening(await parts.ended)
          throw failure
        }
        const leftMs = deadline - performance.now()
        if (leftMs <= 0) {
          throw new HearthError('HEARTH_ERR_EXEC_TIMEOUT', `${parts.what} did not listen on port ${parts.port} within ${timeoutMs} ms`, {
            hint: 'check that the program listens on the port it was given, on 127.0.0.1 or 0.0.0.0, and read its log',
            details: { port: parts.port, timeoutMs },
            cause: failure,
          })
        }
        await Promise.race([new Promise((resolveDelay) => setTimeout(resolveDelay, Math.min(delayMs, leftMs))), parts.ended])
        delayMs = Math.min(maxRetryDelayMs, delayMs * 2)
      }
    },
    async usage() {
      if (ending === undefined) lastCpuMs = Math.max(lastCpuMs, await parts.cpuMs().catch(() => 0))
      return { cpuMs: Math.round(lastCpuMs * 1000) / 1000, uptimeMs: Math.round((endedAt ?? performance.now()) - parts.startedAt) }
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        if (ending === undefined) lastCpuMs = Math.max(lastCpuMs, await parts.cpuMs().catch(() => 0))
        await parts.kill().catch(() => undefined)
        await parts.ended
      })()
      return stopping
    },
  }
}

function describeEnding(ending: ServeEnding): string {
  switch (ending.reason) {
    case 'memory':
      return `killed at its memory limit, exit code ${ending.exitCode}`
    case 'stopped':
      return 'stopped'
    default:
      return `exit code ${ending.exitCode}`
  }
}
