/**
 * The one path into a served program's sandbox: a small forwarder process (service-forwarder.mjs) that nsenter starts
 * in the sandbox's network namespace, and in none of its other namespaces. The sandbox itself has no network but its
 * own loopback; the forwarder opens TCP connections to the server's port on that loopback and passes each connected
 * socket back over its IPC channel (a file descriptor sent with SCM_RIGHTS), so the provider's process holds the
 * server's connection itself: no byte is copied on the way, and half-closes and resets reach both ends as they are.
 * Connections already handed over live on if the forwarder dies; only new ones then fail.
 *
 * The namespace is pinned before the forwarder starts: its /proc/<pid>/ns/net is opened, then `stillOurs` confirms
 * that the pid still belongs to the sandbox, so a pid reused after the server died cannot lead anywhere else.
 * Linux only; needs nsenter (util-linux) and CAP_SYS_ADMIN over the namespace (the provider runs as root).
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import type { Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { HearthError } from '../errors.ts'
import { findOnPath } from './podman-service.ts'

const forwarderPath = fileURLToPath(new URL('./service-forwarder.mjs', import.meta.url))
/** The forwarder only opens sockets and passes them on: a small heap is plenty. */
const forwarderFlags = ['--max-old-space-size=16', '--max-semi-space-size=1']
const readyTimeoutMs = 30_000
/** A connection the forwarder neither hands over nor refuses in this time fails (its own connect timeout is 10 s). */
const connectTimeoutMs = 15_000

export interface NetnsForwarder {
  /** A new TCP connection to 127.0.0.1:<port> in the namespace. Rejects (HEARTH_ERR_EXEC_FAILED) when nothing listens or the forwarder is gone. */
  connect(): Promise<Socket>
  /** The forwarder's pid (for tests and diagnostics). */
  readonly pid: number | undefined
  /** Whether it is still running. */
  readonly alive: boolean
  /** Kills it; idempotent, never throws. */
  stop(): Promise<void>
}

type ForwarderMessage = { kind: 'ready' } | { kind: 'connected'; id: number } | { kind: 'failed'; id: number; code: string; message: string }

/** Starts the forwarder in the network namespace of `pid`, for `port`; `what` names the server in errors. */
export async function startForwarder(pid: number, port: number, what: string, stillOurs: () => Promise<boolean>): Promise<NetnsForwarder> {
  const nsenter = findOnPath('nsenter') ?? ['/usr/bin/nsenter', '/bin/nsenter'].find((path) => existsSync(path))
  if (nsenter === undefined) {
    throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', `cannot reach ${what}: nsenter is not installed`, { hint: 'install util-linux (Debian: apt-get install util-linux)' })
  }
  let nsFd: number
  try {
    nsFd = openSync(`/proc/${pid}/ns/net`, 'r')
  } catch (error) {
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', `cannot open the network namespace of ${what} (pid ${pid}): ${(error as Error).message}`, { cause: error })
  }
  let child: ChildProcess
  try {
    if (!(await stillOurs())) throw new HearthError('HEARTH_ERR_EXEC_FAILED', `${what} ended before its network namespace could be entered`)
    child = spawn(nsenter, ['--net=/proc/self/fd/3', '--', process.execPath, ...forwarderFlags, forwarderPath, String(port)], {
      stdio: ['ignore', 'ignore', 'pipe', nsFd, 'ipc'],
      // Nothing of this process's environment (NODE_OPTIONS would load tsx into the forwarder).
      env: {},
      cwd: '/',
    })
  } finally {
    closeSync(nsFd)
  }
  return new Forwarder(child, port, what).ready()
}

class Forwarder implements NetnsForwarder {
  private readonly waiting = new Map<number, { resolve: (socket: Socket) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>()
  private nextId = 0
  private stderr = ''
  private exit: string | undefined
  private readonly exited: Promise<void>
  private onReady: ((error?: Error) => void) | undefined

  constructor(
    private readonly child: ChildProcess,
    private readonly port: number,
    private readonly what: string,
  ) {
    child.stderr?.on('data', (chunk: Buffer) => {
      if (this.stderr.length < 4096) this.stderr += chunk.toString('utf8')
    })
    child.on('message', (message: ForwarderMessage, handle: unknown) => this.onMessage(message, handle as Socket | undefined))
    // A send to a forwarder that just died fails here rather than as an uncaught error.
    child.on('error', (error) => this.gone(`could not run: ${error.message}`))
    this.exited = new Promise((resolveExit) => {
      child.once('exit', (code, signal) => {
        this.gone(signal !== null ? `killed by ${signal}` : `exit code ${code}`)
        resolveExit()
      })
    })
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  get alive(): boolean {
    return this.exit === undefined
  }

  /** Resolves with itself once the forwarder said it runs; fails with what it wrote when it died first. */
  ready(): Promise<Forwarder> {
    return new Promise((resolveReady, rejectReady) => {
      const timer = setTimeout(() => this.onReady?.(new Error(`no answer in ${readyTimeoutMs} ms`)), readyTimeoutMs)
      this.onReady = (error) => {
        clearTimeout(timer)
        this.onReady = undefined
        if (error === undefined) return resolveReady(this)
        void this.stop()
        rejectReady(new HearthError('HEARTH_ERR_EXEC_FAILED', `the path into ${this.what} did not start: ${error.message}${this.stderrText()}`))
      }
      if (this.exit !== undefined) this.onReady(new Error(this.exit))
    })
  }

  connect(): Promise<Socket> {
    if (this.exit !== undefined) return Promise.reject(this.goneError())
    return new Promise((resolveSocket, rejectSocket) => {
      const id = this.nextId++
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        rejectSocket(new HearthError('HEARTH_ERR_EXEC_FAILED', `no connection to port ${this.port} of ${this.what} within ${connectTimeoutMs} ms`))
      }, connectTimeoutMs)
      this.waiting.set(id, { resolve: resolveSocket, reject: rejectSocket, timer })
      this.child.send({ kind: 'connect', id }, (error) => {
        if (error) this.settle(id, undefined, this.goneError())
      })
    })
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
    await this.exited
  }

  private onMessage(message: ForwarderMessage, handle: Socket | undefined): void {
    if (message.kind === 'ready') return this.onReady?.()
    if (message.kind === 'connected') {
      if (handle === undefined) return this.settle(message.id, undefined, new HearthError('HEARTH_ERR_EXEC_FAILED', `the path into ${this.what} sent no connection`))
      return this.settle(message.id, handle)
    }
    if (message.kind === 'failed') {
      const refused = message.code === 'ECONNREFUSED'
      this.settle(
        message.id,
        undefined,
        new HearthError('HEARTH_ERR_EXEC_FAILED', refused ? `nothing listens on port ${this.port} in ${this.what}` : `cannot connect to port ${this.port} in ${this.what}: ${message.message}`, {
          details: { port: this.port, code: message.code },
        }),
      )
    }
  }

  private settle(id: number, socket: Socket | undefined, error?: Error): void {
    const waiter = this.waiting.get(id)
    if (waiter === undefined) {
      // Asked for, then given up on (its timer passed): nobody wants it any more.
      socket?.destroy()
      return
    }
    this.waiting.delete(id)
    clearTimeout(waiter.timer)
    if (socket !== undefined) waiter.resolve(socket)
    else waiter.reject(error ?? this.goneError())
  }

  private gone(why: string): void {
    this.exit ??= why
    this.onReady?.(new Error(why))
    for (const id of [...this.waiting.keys()]) this.settle(id, undefined, this.goneError())
  }

  private goneError(): HearthError {
    return new HearthError('HEARTH_ERR_EXEC_FAILED', `the path into ${this.what} is gone (its forwarder ended: ${this.exit ?? 'unknown'})${this.stderrText()}`, {
      details: { port: this.port },
    })
  }

  private stderrText(): string {
    const text = this.stderr.trim()
    return text === '' ? '' : `: ${text.split('\n').slice(-3).join(' | ')}`
  }
}

/** The path into a server that ended before it could be entered: every connect() fails, saying so. */
export function endedForwarder(what: string): NetnsForwarder {
  return {
    connect: () => Promise.reject(new HearthError('HEARTH_ERR_EXEC_FAILED', `${what} ended before it could be reached`)),
    pid: undefined,
    alive: false,
    stop: async () => {},
  }
}
