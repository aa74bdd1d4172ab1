/**
 * A WASI request handler served as a server (CGI, RFC 3875, in the way of WAGI): every HTTP request runs one fresh
 * instance of the module in the wasi runtime, with the request in its environment (wasi-handler-cgi.ts) and its body
 * on stdin; the instance's stdout is read back as a CGI response. To its caller it is a ServedProgram like a container
 * or native server: connect() gives a byte stream into an in-process HTTP/1.1 server (no TCP port).
 *
 * What an instance sees: its own scratch directory as '/' (writable, empty, removed after the request; stdout, stderr
 * and files written there count against one budget), and the service's directory (`rootDir`) read-only at '/data'.
 * Nothing else of the host: '..' and absolute paths resolve inside those two.
 *
 * - At most maxConcurrent instances run at once; up to maxQueued more requests wait (reading their bodies or queued),
 *   and beyond that a request gets 503 at once, before its body is read: request bodies held in memory are bounded by
 *   (maxConcurrent + maxQueued) × maxRequestBytes. A request whose client goes away is dropped from the queue, or its
 *   instance stopped.
 * - An instance's failure is the request's, never the server's: a trap, a non-zero exit, a malformed or oversize
 *   response is a 502 that says so, a deadline passed a 504. The guest's output is never passed on as a 200 then.
 * - stderr of every instance is appended to logPath (bounded: the older half is dropped when full), with one line per
 *   failed request.
 * - An instance stopped from outside (deadline, abort) cannot close what it had open under /data (uvwasi holds host
 *   descriptors the stopped thread never closes). The server then lets the instances in flight finish, starts no new
 *   one meanwhile, and closes every descriptor of the process under the service's directory, which no other server
 *   may share.
 */
import { mkdtemp, realpath, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { Duplex } from 'node:stream'
import { closeSync } from 'node:fs'
import { HearthError, isHearthError } from '../errors.ts'
import { openDescriptors } from './platform.ts'
import type { ServedProgram, ServeEnding } from './runtime.ts'
import { BoundedLog } from './service-log.ts'
import { RootClaims, realDirectory, scanSmallTree, scanTree, validateEnvAndLimits } from './task-dir.ts'
import { cgiEnvironment, parseCgiResponse } from './wasi-handler-cgi.ts'
import type { WasiRuntime } from './wasi-runtime.ts'

/** Where an instance sees the service's directory. */
export const handlerDataPath = '/data'

export interface WasiHandlerSpec {
  /** The handler: a WASI preview1 command module, run once per request. */
  program: Uint8Array
  /** Its content id (`sha256:<hex>`), where the caller checked it (the runtime then keys its compiled module by it). */
  programId?: string
  /** argv of every instance, program name first. */
  args: string[]
  /** The service's environment; the request's CGI variables are added over it. */
  env: Record<string, string>
  /** The service's directory, seen read-only at /data by every instance. Must hold no link or special file. */
  rootDir: string
  /** Where the per-request scratch directories are made (outside rootDir). Default: the system's temporary directory. */
  scratchDir?: string
  /** Host file outside rootDir for the instances' stderr; created or truncated. */
  logPath: string
  /** Bound on logPath: a write that would pass it first drops the older half of the file. */
  maxLogBytes: number
  /** Memory of each instance. */
  maxMemoryBytes: number
  /** Wall-clock deadline of each instance (504 when it passes). */
  timeoutMs: number
  /** The largest request body passed on (413 beyond). */
  maxRequestBytes: number
  /** The largest CGI output (header section and body) passed on (502 beyond). */
  maxResponseBytes: number
  /** Bytes an instance may write into its scratch directory. Default: 16 MiB. */
  maxScratchBytes?: number
  /** Instances running at once. */
  maxConcurrent: number
  /** Requests that may wait for an instance (503 beyond). Default: 4 × maxConcurrent. */
  maxQueued?: number
  /** How long a request's body may take to arrive (408 after). Default: 30 s. */
  bodyTimeoutMs?: number
}

/** Service directories served now in this process: closing descriptors under one must not touch another's. */
const dataClaims = new RootClaims()
const defaultScratchBytes = 16 << 20
const defaultBodyTimeoutMs = 30_000
/** The wasi runtime's bound on a run's stdin. */
const maxRequestLimit = 64 << 20

/** An HTTP answer the server makes itself (not the handler's). */
class Refusal {
  constructor(
    readonly status: number,
    readonly message: string,
  ) {}
}

export async function serveWasiHandler(runtime: WasiRuntime, spec: WasiHandlerSpec): Promise<ServedProgram> {
  validateSpec(spec)
  if (!WebAssembly.validate(spec.program as Uint8Array<ArrayBuffer>)) {
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'the WASI handler is not a valid WebAssembly module', {
      hint: 'build the handler for wasm32-wasi (WASI preview1)',
    })
  }
  const dataDir = await realDirectory(spec.rootDir)
  if (scanSmallTree(dataDir, true) === undefined) await scanTree(dataDir, true)
  const scratchParent = await mkdtemp(join(await realpath(spec.scratchDir ?? tmpdir()), 'hearth-wasi-handler-'))
  if (scratchParent.startsWith(dataDir + sep)) {
    await rm(scratchParent, { recursive: true, force: true })
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the scratch directory ${scratchParent} lies inside the service's directory ${dataDir}`)
  }
  try {
    dataClaims.claim(dataDir)
  } catch (error) {
    await rm(scratchParent, { recursive: true, force: true })
    throw error
  }
  let log: BoundedLog
  try {
    log = await BoundedLog.open(spec.logPath, spec.maxLogBytes)
  } catch (error) {
    dataClaims.release(dataDir)
    await rm(scratchParent, { recursive: true, force: true })
    throw error
  }
  return new HandlerServer(runtime, spec, dataDir, scratchParent, log)
}

function validateSpec(spec: WasiHandlerSpec): void {
  const sizes = ['maxLogBytes', 'maxMemoryBytes', 'timeoutMs', 'maxRequestBytes', 'maxResponseBytes', 'maxScratchBytes', 'maxQueued', 'bodyTimeoutMs'] as const
  for (const name of [...sizes, 'maxConcurrent'] as const) {
    const value = spec[name]
    if (value === undefined && name !== 'maxConcurrent' && name !== 'timeoutMs') continue
    const positive = name === 'maxConcurrent' || name === 'timeoutMs'
    if (typeof value !== 'number' || !Number.isInteger(value) || value < (positive ? 1 : 0)) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `invalid WASI handler: ${name} must be a ${positive ? 'positive' : 'non-negative'} integer, got ${value}`)
    }
  }
  if (spec.maxRequestBytes > maxRequestLimit) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `invalid WASI handler: maxRequestBytes may be at most ${maxRequestLimit} (what the runtime passes on stdin)`)
  }
  if (!(spec.program instanceof Uint8Array)) throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'invalid WASI handler: program must be a Uint8Array')
  validateEnvAndLimits({ ...spec, maxOutputBytes: 0 }, (message) => new HearthError('HEARTH_ERR_CONFIG_INVALID', `invalid WASI handler: ${message}`))
}

class HandlerServer implements ServedProgram {
  readonly ended: Promise<ServeEnding>
  private endedResolve!: (ending: ServeEnding) => void
  private readonly server = createServer((request, response) => void this.handle(request, response))
  private readonly sockets = new Set<Duplex>()
  private readonly inFlight = new Set<Promise<void>>()
  private readonly controllers = new Set<AbortController>()
  private readonly waiting: { start: () => void; signal: AbortSignal }[] = []
  private readonly startedAt = performance.now()
  private running = 0
  /** Requests past the door: reading their bodies, queued or running. */
  private admitted = 0
  private cpuMs = 0
  /** Set when a stopped instance may have left descriptors under the service's directory (see the file's comment). */
  private reclaimPending = false
  private stopping: Promise<void> | undefined

  constructor(
    private readonly runtime: WasiRuntime,
    private readonly spec: WasiHandlerSpec,
    private readonly dataDir: string,
    private readonly scratchParent: string,
    private readonly log: BoundedLog,
  ) {
    this.ended = new Promise((resolve) => (this.endedResolve = resolve))
  }

  connect(): Promise<Duplex> {
    if (this.stopping !== undefined) return Promise.reject(stoppedError())
    const [client, server] = duplexPair()
    this.sockets.add(server)
    server.once('close', () => this.sockets.delete(server))
    this.server.emit('connection', server)
    return Promise.resolve(client)
  }

  waitListening(): Promise<void> {
    return this.stopping === undefined ? Promise.resolve() : Promise.reject(stoppedError())
  }

  usage(): Promise<{ cpuMs: number; uptimeMs: number }> {
    return Promise.resolve({ cpuMs: Math.round(this.cpuMs * 1000) / 1000, uptimeMs: Math.round(performance.now() - this.startedAt) })
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown()
    return this.stopping
  }

  private async shutdown(): Promise<void> {
    this.server.close()
    for (const controller of this.controllers) controller.abort(stoppedError())
    for (const socket of this.sockets) socket.destroy()
    await Promise.allSettled([...this.inFlight])
    this.reclaim()
    dataClaims.release(this.dataDir)
    await rm(this.scratchParent, { recursive: true, force: true }).catch(() => undefined)
    await this.log.close()
    this.endedResolve({ exitCode: 0, reason: 'stopped' })
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    if (this.admitted >= this.spec.maxConcurrent + this.maxQueued() || this.stopping !== undefined) {
      return this.refuse(request, response, busy, true, { 'Retry-After': '1' })
    }
    this.admitted++
    const controller = new AbortController()
    this.controllers.add(controller)
    // The client went away (or the server stops) before the answer: drop the request, stop its instance.
    response.once('close', () => controller.abort(new Error('the client closed the connection')))
    const done = this.answer(request, response, controller.signal)
      .catch((error: unknown) => this.refuse(request, response, new Refusal(500, `the server failed: ${(error as Error).message}`)))
      .finally(() => {
        this.admitted--
        this.controllers.delete(controller)
        this.inFlight.delete(done)
      })
    this.inFlight.add(done)
  }

  private async answer(request: IncomingMessage, response: ServerResponse, signal: AbortSignal): Promise<void> {
    const body = await readBody(request, this.spec.maxRequestBytes, this.spec.bodyTimeoutMs ?? defaultBodyTimeoutMs)
    if (body instanceof Refusal) return this.refuse(request, response, body, true)
    const cgi = cgiEnvironment(request, body.length, this.spec.env)
    if (!cgi.ok) return this.refuse(request, response, new Refusal(cgi.status, cgi.message))
    if (!(await this.acquire(signal))) {
      if (signal.aborted) return
      return this.refuse(request, response, busy, false, { 'Retry-After': '1' })
    }
    let outcome: Refusal | { status: number; statusText: string | undefined; headers: [string, string][]; body: Uint8Array }
    try {
      outcome = await this.runInstance(cgi.env, body, signal)
    } finally {
      this.release()
    }
    if (signal.aborted) return
    if (outcome instanceof Refusal) return this.refuse(request, response, outcome)
    try {
      response.statusCode = outcome.status
      if (outcome.statusText !== undefined) response.statusMessage = outcome.statusText
      for (const [name, value] of outcome.headers) response.appendHeader(name, value)
      response.setHeader('Content-Length', outcome.body.length)
    } catch (error) {
      for (const name of response.getHeaderNames()) response.removeHeader(name)
      return this.refuse(request, response, new Refusal(502, `the handler's response has a header node refuses: ${(error as Error).message}`))
    }
    response.end(outcome.body)
  }

  /** Runs one instance for a request; what it answered, or the refusal that says why it answered nothing usable. */
  private async runInstance(
    env: Record<string, string>,
    stdin: Uint8Array,
    signal: AbortSignal,
  ): Promise<Refusal | { status: number; statusText: string | undefined; headers: [string, string][]; body: Uint8Array }> {
    const { spec } = this
    const scratch = await mkdtemp(join(this.scratchParent, 'request-'))
    const startedAt = performance.now()
    try {
      const result = await this.runtime.run(
        {
          module: spec.program,
          ...(spec.programId === undefined ? {} : { moduleId: spec.programId }),
          args: spec.args,
          env,
          rootDir: scratch,
          readOnlyDirs: { [handlerDataPath]: this.dataDir },
          stdin,
          maxMemoryBytes: spec.maxMemoryBytes,
          timeoutMs: spec.timeoutMs,
          maxOutputBytes: spec.maxResponseBytes + spec.maxLogBytes + (spec.maxScratchBytes ?? defaultScratchBytes),
        },
        { signal },
      )
      this.cpuMs += result.cpuMs
      if (result.stderr !== undefined && result.stderr.length > 0) this.log.write(Buffer.from(result.stderr.buffer, result.stderr.byteOffset, result.stderr.length))
      if (result.exitCode !== 0) return new Refusal(502, `the handler exited with code ${result.exitCode}`)
      const stdout = result.stdout ?? new Uint8Array(0)
      if (stdout.length > spec.maxResponseBytes) return new Refusal(502, `the handler's response has ${stdout.length} bytes, over the limit of ${spec.maxResponseBytes}`)
      const parsed = parseCgiResponse(stdout)
      return parsed.ok ? parsed : new Refusal(502, parsed.message)
    } catch (error) {
      // A stopped instance's thread cannot be measured: count the time it ran, the most it can have used.
      this.cpuMs += isHearthError(error, 'HEARTH_ERR_EXEC_TIMEOUT') ? spec.timeoutMs : performance.now() - startedAt
      if (!(isHearthError(error) && error.details?.trap !== undefined)) this.reclaimPending = true
      return instanceFailure(error, spec)
    } finally {
      await rm(scratch, { recursive: true, force: true }).catch(() => undefined)
    }
  }

  /** Waits for an instance slot: false when the queue is full, the request was dropped, or the server stops. */
  private acquire(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted || this.stopping !== undefined) return Promise.resolve(false)
    if (!this.reclaimPending && this.running < this.spec.maxConcurrent && this.waiting.length === 0) {
      this.running++
      return Promise.resolve(true)
    }
    if (this.waiting.length >= this.maxQueued()) return Promise.resolve(false)
    return new Promise<boolean>((resolve) => {
      const entry = {
        signal,
        start: () => {
          signal.removeEventListener('abort', onAbort)
          resolve(true)
        },
      }
      const onAbort = (): void => {
        const index = this.waiting.indexOf(entry)
        if (index >= 0) this.waiting.splice(index, 1)
        resolve(false)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(entry)
    })
  }

  private maxQueued(): number {
    return this.spec.maxQueued ?? 4 * this.spec.maxConcurrent
  }

  private release(): void {
    this.running--
    if (this.reclaimPending && this.running === 0) this.reclaim()
    while (!this.reclaimPending && this.running < this.spec.maxConcurrent && this.waiting.length > 0) {
      this.running++
      this.waiting.shift()!.start()
    }
  }

  /** With no instance running: closes every descriptor of this process under the service's directory. */
  private reclaim(): void {
    this.reclaimPending = false
    for (const { fd, target } of openDescriptors() ?? []) {
      if (target !== this.dataDir && !target.startsWith(this.dataDir + sep)) continue
      try {
        closeSync(fd)
      } catch {
        // closed meanwhile
      }
    }
  }

  private refuse(request: IncomingMessage, response: ServerResponse, refusal: Refusal, closeConnection = false, headers: Record<string, string> = {}): void {
    if (refusal.status >= 500) this.log.write(Buffer.from(`[hearth] ${request.method} ${request.url}: ${refusal.status} ${refusal.message}\n`))
    if (response.headersSent || response.destroyed) return void response.destroy()
    const text = Buffer.from(refusal.message + '\n')
    response.writeHead(refusal.status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': text.length,
      ...(closeConnection ? { Connection: 'close' } : {}),
      ...headers,
    })
    response.end(text)
  }
}

/** What an instance that failed answers: 504 for its deadline, 502 with what happened for the rest. */
function instanceFailure(error: unknown, spec: WasiHandlerSpec): Refusal {
  if (!isHearthError(error)) return new Refusal(502, `the handler failed: ${(error as Error)?.message ?? String(error)}`)
  switch (error.code) {
    case 'HEARTH_ERR_EXEC_TIMEOUT':
      return new Refusal(504, `the handler did not answer within ${spec.timeoutMs} ms`)
    case 'HEARTH_ERR_EXEC_MEMORY':
      return new Refusal(502, `the handler ran out of memory (its limit is ${spec.maxMemoryBytes} bytes)`)
    case 'HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE':
      return new Refusal(502, 'the handler wrote more than its output limit (response, log and scratch files)')
    default:
      if (error.details?.trap !== undefined) return new Refusal(502, `the handler trapped: ${String(error.details.trap)}`)
      return new Refusal(502, `the handler failed: ${error.shortMessage}`)
  }
}

/** The request's body, at most maxBytes (413 beyond), or 408 when it does not arrive within timeoutMs. */
function readBody(request: IncomingMessage, maxBytes: number, timeoutMs: number): Promise<Uint8Array | Refusal> {
  const tooLarge = new Refusal(413, `the request body is over the limit of ${maxBytes} bytes`)
  const declared = request.headers['content-length']
  if (declared !== undefined && Number(declared) > maxBytes) return Promise.resolve(tooLarge)
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let length = 0
    const finish = (outcome: Uint8Array | Refusal): void => {
      clearTimeout(timer)
      request.off('data', onData)
      request.off('end', onEnd)
      request.off('error', onEnd)
      request.off('aborted', onEnd)
      resolve(outcome)
    }
    const timer = setTimeout(() => finish(new Refusal(408, `the request body did not arrive within ${timeoutMs} ms`)), timeoutMs)
    const onData = (chunk: Buffer): void => {
      length += chunk.length
      if (length > maxBytes) return finish(tooLarge)
      chunks.push(chunk)
    }
    const onEnd = (): void => finish(request.complete ? Buffer.concat(chunks, length) : new Refusal(400, 'the request body ended early'))
    request.on('data', onData)
    request.once('end', onEnd)
    request.once('error', onEnd)
    request.once('aborted', onEnd)
  })
}

const busy = new Refusal(503, 'the handler is busy: every instance is running and the queue is full')

function stoppedError(): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_FAILED', 'the WASI handler has stopped', { hint: 'start the service again' })
}

/** One end of an in-process byte stream; what is written to one end is read from the other, with backpressure. */
class PipeEnd extends Duplex {
  peer!: PipeEnd
  /** The peer's write that waits for this end's reader to take more. */
  resumeWriter: (() => void) | undefined

  override _read(): void {
    const resume = this.resumeWriter
    this.resumeWriter = undefined
    resume?.()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.peer.destroyed) return callback(new Error('the other end of the stream is closed'))
    if (this.peer.push(chunk)) callback()
    else this.peer.resumeWriter = () => callback()
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer.push(null)
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const resume = this.peer.resumeWriter
    this.peer.resumeWriter = undefined
    resume?.()
    this.peer.destroy()
    callback(error)
  }

  // What node:http asks of a socket; an in-process stream has no timer, Nagle, keep-alive probes or handle to set.
  ref(): this {
    return this
  }

  unref(): this {
    return this
  }

  setTimeout(): this {
    return this
  }

  setNoDelay(): this {
    return this
  }

  setKeepAlive(): this {
    return this
  }
}

function duplexPair(): [PipeEnd, PipeEnd] {
  const a = new PipeEnd()
  const b = new PipeEnd()
  a.peer = b
  b.peer = a
  return [a, b]
}
