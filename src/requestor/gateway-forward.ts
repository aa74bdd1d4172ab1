/**
 * One client request through the gateway: to a replica chosen for the client's region, the body streamed both ways
 * with back-pressure, and on a replica's failure before any byte of the answer went out, to another replica when that
 * is safe (an idempotent method, or a connect that never reached the replica) and the body can be replayed.
 */
import { request } from 'node:http'
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { isHearthError } from '../errors.ts'
import { clientResponseHeaders, forwardedRequestHeaders, idempotentMethods } from './gateway-headers.ts'
import { ReplicaConnectError } from './gateway-pool.ts'
import type { ReplicaPool, ReplicaState } from './gateway-pool.ts'

export interface ForwardLimits {
  /** Largest request body accepted (413 beyond). */
  maxBodyBytes: number
  /** Request bodies up to this size are kept in memory so that a failed attempt can be sent again elsewhere. */
  retryBodyBytes: number
  /** Attempts on different replicas for one request, the first included. */
  maxAttempts: number
  /** Time from sending a request to a replica's response headers before the attempt fails. */
  upstreamTimeoutMs: number
}

export interface ForwardCounters {
  requests: number
  retries: number
  /** Responses by status class ('2xx', '5xx', ...), the gateway's own included. */
  responses: Record<string, number>
  /** Responses cut mid-body, their clients' connections reset. */
  cutResponses: number
}

export interface ForwardContext {
  pool: ReplicaPool
  limits: ForwardLimits
  proto: 'http' | 'https'
  counters: ForwardCounters
  /** Seconds a client is told to wait (Retry-After) when no replica is healthy. */
  retryAfterSeconds: number
  regionOf(req: IncomingMessage): string
  markDown(state: ReplicaState, reason: string): void
}

/** The gateway's own answer: a short text body, the connection closed after it when `close`. */
export function plainReply(res: ServerResponse, status: number, text: string, headers: OutgoingHttpHeaders = {}, close = false): void {
  if (res.headersSent || res.destroyed) return
  const body = `${text}\n`
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...(close ? { connection: 'close' } : {}),
    ...headers,
  })
  res.end(body)
}

/** Ends a client's connection with a reset, so that a cut answer can never pass for a whole one. */
export function resetClient(res: ServerResponse): void {
  const socket = res.socket
  if (socket instanceof Socket) {
    try {
      socket.resetAndDestroy()
      return
    } catch {
      // A TLS socket cannot send a bare reset; destroying it still ends the answer short of its length.
    }
  }
  res.destroy()
  socket?.destroy()
}

/** The client's request body: streamed to the current attempt, kept (while small) for the next. */
class RequestBody {
  readonly #req: IncomingMessage
  readonly #keepLimit: number
  readonly #maxBytes: number
  readonly #onTooLarge: () => void
  #kept: Buffer[] | undefined = []
  #keptBytes = 0
  #received = 0
  #ended = false
  #listening = false
  #target: ClientRequest | undefined
  tooLarge = false

  constructor(req: IncomingMessage, keepLimit: number, maxBytes: number, onTooLarge: () => void) {
    this.#req = req
    this.#keepLimit = keepLimit
    this.#maxBytes = maxBytes
    this.#onTooLarge = onTooLarge
  }

  /** Whether a new attempt can be given the whole body: none of it read yet, or all of it kept. */
  get replayable(): boolean {
    return this.#received === 0 || this.#kept !== undefined
  }

  /** Streams the body into `target`: what was kept, then the rest as it arrives. */
  attach(target: ClientRequest): void {
    this.#target = target
    for (const chunk of this.#kept ?? []) target.write(chunk)
    if (this.#ended) {
      target.end()
      return
    }
    if (!this.#listening) {
      this.#listening = true
      this.#req.on('data', (chunk: Buffer) => this.#onData(chunk))
      this.#req.on('end', () => {
        this.#ended = true
        this.#target?.end()
      })
    }
    this.#req.resume()
  }

  /** Stops streaming into `target`, if it is still the current one. */
  detach(target: ClientRequest): void {
    if (this.#target !== target) return
    this.#target = undefined
    this.#req.pause()
  }

  #onData(chunk: Buffer): void {
    if (this.tooLarge) return
    this.#received += chunk.length
    if (this.#received > this.#maxBytes) {
      this.tooLarge = true
      this.#kept = undefined
      this.#req.pause()
      this.#onTooLarge()
      return
    }
    if (this.#kept !== undefined) {
      this.#keptBytes += chunk.length
      if (this.#keptBytes <= this.#keepLimit) this.#kept.push(chunk)
      else this.#kept = undefined
    }
    const target = this.#target
    if (target !== undefined && !target.write(chunk)) {
      this.#req.pause()
      target.once('drain', () => {
        if (this.#target === target) this.#req.resume()
      })
    }
  }
}

/** How an attempt ended: the answer is the client's (whole, cut, or the client left), or it failed before any byte. */
type Outcome = { kind: 'answered' } | { kind: 'failed'; reason: string; connectFailed: boolean; timedOut: boolean }

class UpstreamTimeout extends Error {
  override name = 'UpstreamTimeout'
}

/** Errors of a kept-alive connection the replica closed as it was reused: no sign the replica is down. */
const staleSocketCodes = new Set(['ECONNRESET', 'EPIPE'])

interface Attempt {
  outcome: Promise<Outcome>
  /** Stops the attempt without blaming the replica (the client left, or its body is over the limit). */
  cancel(): void
}

/** Sends the request to `state`'s replica; once its response headers come, the answer is streamed to the client. */
function attemptOn(ctx: ForwardContext, state: ReplicaState, req: IncomingMessage, res: ServerResponse, body: RequestBody, clientAddress: string): Attempt {
  state.outstanding++
  state.requests++
  let released = false
  const release = () => {
    if (released) return
    released = true
    ctx.pool.release(state)
  }
  let cancelled = false
  let answered = false
  /**
   * The connection failed once the answer had begun. Node's client then takes an answer delimited by the close alone
   * as complete (it ends the parser on the error), so `complete` alone would pass a cut answer as whole.
   */
  let failedMidAnswer = false
  const startedAt = performance.now()
  const upstream = request({
    agent: state.agent,
    method: req.method,
    path: req.url,
    headers: forwardedRequestHeaders(req.headers, clientAddress, ctx.proto),
    setHost: false,
  })
  const outcome = new Promise<Outcome>((resolve) => {
    const timer = setTimeout(() => upstream.destroy(new UpstreamTimeout(`no response within ${ctx.limits.upstreamTimeoutMs} ms`)), ctx.limits.upstreamTimeoutMs)
    upstream.on('response', (upRes) => {
      clearTimeout(timer)
      answered = true
      state.recordLatency(performance.now() - startedAt)
      upRes.on('error', () => {})
      upRes.on('close', () => {
        release()
        if ((upRes.complete && !failedMidAnswer) || cancelled) return
        state.failures++
        ctx.counters.cutResponses++
        ctx.markDown(state, 'its response was cut off mid-body')
        resetClient(res)
      })
      if (cancelled) {
        upRes.destroy()
        return resolve({ kind: 'answered' })
      }
      try {
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, clientResponseHeaders(upRes.rawHeaders, state.replica.id, state.replica.version))
      } catch (error) {
        cancelled = true
        upRes.destroy()
        const why = error instanceof Error ? error.message : String(error)
        return resolve({ kind: 'failed', reason: `its response headers could not be passed on (${why})`, connectFailed: false, timedOut: false })
      }
      countResponse(ctx.counters, upRes.statusCode ?? 502)
      // The answer streams on as it comes, the replica held back while the client is slower (no pipe(): its
      // listeners, added and removed per request, cost more than these three).
      upRes.on('data', (chunk: Buffer) => {
        if (!res.write(chunk)) upRes.pause()
      })
      res.on('drain', () => upRes.resume())
      upRes.on('end', () => {
        if (!failedMidAnswer) res.end()
      })
      resolve({ kind: 'answered' })
    })
    upstream.on('error', (error: Error & { code?: string }) => {
      clearTimeout(timer)
      if (answered) {
        failedMidAnswer = true
        return
      }
      release()
      body.detach(upstream)
      if (cancelled) return resolve({ kind: 'answered' })
      // A direct link the provider refused never reached the server (replica-link.ts), as a failed connect.
      const connectFailed = error instanceof ReplicaConnectError || (isHearthError(error) && error.details?.refusedLink === true)
      const timedOut = error instanceof UpstreamTimeout
      const stale = upstream.reusedSocket && !connectFailed && staleSocketCodes.has(error.code ?? '')
      if (!stale && !timedOut) {
        state.failures++
        ctx.markDown(state, error.message)
      }
      resolve({ kind: 'failed', reason: error.message, connectFailed, timedOut })
    })
    // A request destroyed before its socket came may close without an error; the outcome is settled either way.
    upstream.on('close', () => {
      clearTimeout(timer)
      if (answered) return
      release()
      body.detach(upstream)
      resolve(cancelled ? { kind: 'answered' } : { kind: 'failed', reason: 'the connection closed before a response', connectFailed: false, timedOut: false })
    })
  })
  body.attach(upstream)
  return {
    outcome,
    cancel: () => {
      cancelled = true
      upstream.destroy()
    },
  }
}

function countResponse(counters: ForwardCounters, status: number): void {
  const key = `${Math.floor(status / 100)}xx`
  counters.responses[key] = (counters.responses[key] ?? 0) + 1
}

function reply(ctx: ForwardContext, res: ServerResponse, status: number, text: string, headers: OutgoingHttpHeaders = {}, close = false): void {
  if (res.headersSent || res.destroyed) return
  countResponse(ctx.counters, status)
  plainReply(res, status, text, headers, close)
}

/** Forwards one client request; resolves once the answer is under way (or given by the gateway itself). */
export async function forward(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse, clientAddress: string): Promise<void> {
  ctx.counters.requests++
  const method = req.method ?? 'GET'
  const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length'])
  if (declared !== undefined && declared > ctx.limits.maxBodyBytes) {
    return reply(ctx, res, 413, `request body of ${declared} bytes is over this gateway's limit of ${ctx.limits.maxBodyBytes} bytes`, {}, true)
  }
  let current: Attempt | undefined
  let clientGone = false
  res.on('close', () => {
    if (res.writableFinished) return
    clientGone = true
    current?.cancel()
  })
  const body = new RequestBody(req, ctx.limits.retryBodyBytes, ctx.limits.maxBodyBytes, () => {
    current?.cancel()
    if (res.headersSent) resetClient(res)
    else reply(ctx, res, 413, `request body is over this gateway's limit of ${ctx.limits.maxBodyBytes} bytes`, {}, true)
  })
  const region = ctx.regionOf(req)
  const tried = new Set<string>()
  let lastFailure: Extract<Outcome, { kind: 'failed' }> | undefined
  while (!clientGone && !body.tooLarge) {
    const state = ctx.pool.choose(region, tried)
    if (state === undefined) break
    tried.add(state.replica.id)
    current = attemptOn(ctx, state, req, res, body, clientAddress)
    const outcome = await current.outcome
    if (outcome.kind === 'answered' || clientGone || body.tooLarge) return
    lastFailure = outcome
    const safe = idempotentMethods.has(method) || outcome.connectFailed
    if (!safe || !body.replayable || tried.size >= ctx.limits.maxAttempts) break
    ctx.counters.retries++
  }
  if (clientGone || body.tooLarge) return
  if (lastFailure === undefined) {
    return reply(ctx, res, 503, 'no healthy replica of this service is available right now; try again shortly', {
      'retry-after': String(ctx.retryAfterSeconds),
    })
  }
  if (lastFailure.timedOut) {
    return reply(ctx, res, 504, `gateway timeout: the replica did not answer in time (${lastFailure.reason})`)
  }
  const why = idempotentMethods.has(method) || lastFailure.connectFailed
    ? `the replicas tried failed (the last: ${lastFailure.reason})`
    : `the replica failed while handling it (${lastFailure.reason}); a ${method} request is not idempotent and may have taken effect, so it was not sent to another replica`
  reply(ctx, res, 502, `bad gateway: ${why}`)
}
