/**
 * Request/response protocols over libp2p streams: one stream per request, one length-prefixed JSON frame each way; or,
 * for a protocol with sessions (protocol-session.ts), requests one after another on one stream, each still one frame
 * each way, read, checked and answered alone.
 *
 * The responder validates everything before its handler sees it (size on the length prefix, JSON, schema, and for
 * signed protocols a signature by the connection's own remote peer) and answers every refusal with an error frame,
 * so a misbehaving peer learns what was wrong and the node keeps serving everyone else.
 *
 * Wire format: request frame = the request body (or, when signed, a Signed<body> envelope); response frame =
 * `{ ok: true, body }` (`{ ok: true, body, session: true }` where the responder reads on) or
 * `{ ok: false, error: { code, message, hint? } }`.
 */
import './polyfill.ts'
import type { ComponentLogger, Connection, Libp2p, Logger, PeerId, Stream } from '@libp2p/interface'
import type { Address } from 'viem'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { signedEnvelopeSchema, signPayload, verifySigned } from '../identity/signed.ts'
import type { Signed } from '../identity/signed.ts'
import { callDeadline, openCallStream, remoteAnswerError, remoteErrorSchema, requestOpenFailure, writeAndReadAnswer } from './call-support.ts'
import { closeKept, continuesSession, keepStream, sessionIdleMs, takeKeptStream } from './protocol-session.ts'
import { describeIssues } from './describe-issues.ts'
import { toDialTarget } from './dial-target.ts'
import type { PeerTarget } from './dial-target.ts'
import { guardedFrames, guardRefusal, inboundGuardFor } from './inbound-guard.ts'
import type { InboundGuard, ServeOptions } from './inbound-guard.ts'
import { encodeJsonFrame, FrameError, jsonFrames } from './json-frames.ts'
import type { JsonFrame, JsonFrameStream } from './json-frames.ts'
import { asError, errorFrame, errorFrameLimit, handleGuarded, protocolIdPattern, raceSignal, refusalWriteMs, releaseStream, serveSignals, writeAnswer } from './serve-support.ts'
import type { ServeSignals } from './serve-support.ts'
import type { NetMetricsRecorder, RequestRejectReason } from './net-metrics.ts'

export interface ProtocolSpec<Req extends z.ZodType, Res extends z.ZodType> {
  /** `/hearth/<area>/<name>/<major>`, e.g. `/hearth/market/negotiate/1`. */
  id: string
  /** Schema of the request body (for signed protocols: of the signed payload). Keep it JSON-shaped. */
  request: Req
  response: Res
  /** Largest request frame accepted, in bytes of JSON (envelope included). */
  maxRequestBytes: number
  /** Largest response frame accepted, in bytes of JSON (envelope and `{ ok, body }` wrapper included). */
  maxResponseBytes: number
  /** How long the whole exchange may take (dial, request, handler, response); the handler's signal aborts then. */
  timeoutMs: number
  /** Both bodies are Signed<T> envelopes, each signed by the node that sends it. */
  signed?: boolean
  /** Streams of this protocol open at once on one connection, each way (libp2p's default of 32 is low for fan-in). */
  maxConcurrentStreams?: number
  /**
   * Requests to one peer may follow one another on one stream (see protocol-session.ts): for protocols a node sends
   * the same peer often, where opening a stream would cost more than the request. Each request is still read, checked,
   * signed, timed and answered as it would be alone.
   */
  session?: boolean
}

export interface Protocol<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  readonly id: string
  readonly request: Req
  readonly response: Res
  readonly maxRequestBytes: number
  readonly maxResponseBytes: number
  readonly timeoutMs: number
  readonly signed: boolean
  readonly maxConcurrentStreams: number
  readonly session: boolean
}

export interface RequestContext<Req extends z.ZodType = z.ZodType> {
  /** The remote peer, as authenticated by the connection's noise handshake. */
  peerId: PeerId
  /** The Ethereum address of the remote peer's key. */
  remoteAddress: Address
  /** Aborts when the protocol's timeout passes or the requester goes away. */
  signal: AbortSignal
  /** For signed protocols: the verified envelope, with the payload exactly as signed (keep it as proof). */
  envelope: Signed<z.input<Req>> | undefined
  /** The connection's remote multiaddr as this node sees it (through a relay: the relay's, ending in /p2p-circuit). */
  remoteMultiaddr: string
}

export type RequestHandler<Req extends z.ZodType, Res extends z.ZodType> =
  (request: z.output<Req>, context: RequestContext<Req>) => z.input<Res> | Promise<z.input<Res>>

export interface RequestOptions {
  signal?: AbortSignal
  /** Overrides the protocol's timeoutMs on this side; the responder still allows its handler only the protocol's. */
  timeoutMs?: number
}

export interface Exchange<Res extends z.ZodType> {
  response: z.output<Res>
  /** For signed protocols: the responder's verified envelope. */
  envelope: Signed<z.input<Res>> | undefined
  peerId: PeerId
}

/** What the responder and requester need from the host. */
export interface ProtocolDeps {
  libp2p: Libp2p
  identity: NodeIdentity
  metrics: NetMetricsRecorder
  logger: ComponentLogger
  /** The node's inbound budget and frame deadlines (default: the one attached to `libp2p`, see inbound-guard.ts). */
  inbound?: InboundGuard
}

const defaultMaxConcurrentStreams = 256

export function defineProtocol<Req extends z.ZodType, Res extends z.ZodType>(spec: ProtocolSpec<Req, Res>): Protocol<Req, Res> {
  if (!protocolIdPattern.test(spec.id)) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `Protocol id "${spec.id}" is not of the form /hearth/<area>/<name>/<major>`, {
      hint: 'use lower-case words and a major version, e.g. /hearth/market/negotiate/1',
      details: { id: spec.id },
    })
  }
  const positive = { maxRequestBytes: spec.maxRequestBytes, maxResponseBytes: spec.maxResponseBytes, timeoutMs: spec.timeoutMs, maxConcurrentStreams: spec.maxConcurrentStreams ?? defaultMaxConcurrentStreams }
  for (const [name, value] of Object.entries(positive)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new HearthError('HEARTH_ERR_API_MISUSE', `Protocol ${spec.id}: ${name} must be a positive integer, got ${String(value)}`, { details: { id: spec.id, [name]: value } })
    }
  }
  return Object.freeze({ ...spec, ...positive, signed: spec.signed ?? false, session: spec.session ?? false })
}

// ---------------------------------------------------------------------------------------------------------------
// Responder

export async function serveProtocol<Req extends z.ZodType, Res extends z.ZodType>(
  deps: ProtocolDeps,
  protocol: Protocol<Req, Res>,
  handler: RequestHandler<Req, Res>,
  options: ServeOptions = {},
): Promise<void> {
  const log = deps.logger.forComponent(`hearth:net:protocol:${protocol.id}`)
  const guard = deps.inbound ?? inboundGuardFor(deps.libp2p)
  await handleGuarded(deps.libp2p, protocol, log, 'call host.unhandle(protocol) first to replace it', (stream, connection) => respond(deps, guard, options, log, protocol, handler, stream, connection))
}

/** One request being served, as the steps of `respond` share it. */
interface Serving<Req extends z.ZodType, Res extends z.ZodType> {
  deps: ProtocolDeps
  log: Logger
  protocol: Protocol<Req, Res>
  stream: Stream
  frames: JsonFrameStream
  peer: PeerId
  signals: ServeSignals
}

async function respond<Req extends z.ZodType, Res extends z.ZodType>(
  deps: ProtocolDeps,
  guard: InboundGuard,
  options: ServeOptions,
  log: Logger,
  protocol: Protocol<Req, Res>,
  handler: RequestHandler<Req, Res>,
  stream: Stream,
  connection: Connection,
): Promise<void> {
  if (protocol.session) return respondSession(deps, guard, options, log, protocol, handler, stream, connection)
  const signals = serveSignals(stream, protocol.timeoutMs, requesterGone)
  const { signal } = signals
  // Each frame is reserved from the node's inbound budget (and a large one admitted) before its body is read.
  const frames = guardedFrames(guard, stream, { protocol: protocol.id, maxBytes: protocol.maxRequestBytes, connection, admit: options.admit, signal, log })
  const peer = connection.remotePeer
  const serving: Serving<Req, Res> = { deps, log, protocol, stream, frames, peer, signals }
  /** Gives back the request's reservation once it has been handled. */
  let release = (): void => {}

  try {
    let remoteAddress: Address
    try {
      remoteAddress = addressFromPeerId(peer)
    } catch (cause) {
      return await refuse(serving, 'peer-key', toHearthErrorWith(cause, 'HEARTH_ERR_IDENTITY_KEY'))
    }
    const frame = await readRequest(serving, guard)
    if (frame === undefined) return
    release = frame.release
    const request = await checkRequest(serving, frame.value, remoteAddress)
    if (request === undefined) return
    const context: RequestContext<Req> = { peerId: peer, remoteAddress, signal, envelope: request.envelope, remoteMultiaddr: connection.remoteAddr.toString() }
    const result = await runHandler(serving, handler, request.data, context)
    if (result !== undefined) await sendResponse(serving, result.value)
  } finally {
    release()
    signals.detach()
  }
}

/** Counts and logs a refused request and answers it with `error`. */
async function refuse(serving: Serving<z.ZodType, z.ZodType>, reason: RequestRejectReason, error: HearthError): Promise<void> {
  const { deps, log, protocol, stream, frames, peer } = serving
  deps.metrics.rejected(protocol.id, reason)
  log('refused a request from %p (%s): %s', peer, reason, error.shortMessage)
  // After a refusal the rest of the request (if any) is unwanted: reset once our answer is out. A peer that does
  // not read our answer does not hold the stream for the protocol's whole timeout.
  await answer(stream, frames, errorFrame(error), Math.min(protocol.timeoutMs, refusalWriteMs), true)
}

const requesterGone = (): HearthError => new HearthError('HEARTH_ERR_NET_REMOTE', 'The requester closed the stream')

/**
 * The requests of a session stream (see protocol-session.ts), one after another, each served as `respond` serves one:
 * its own deadline from when it arrives, its checks, its handler and its answer, which says the stream stays open. The
 * stream ends with any refusal or error answer, when the requester closes its side, and after sessionIdleMs without a
 * request.
 */
async function respondSession<Req extends z.ZodType, Res extends z.ZodType>(
  deps: ProtocolDeps,
  guard: InboundGuard,
  options: ServeOptions,
  log: Logger,
  protocol: Protocol<Req, Res>,
  handler: RequestHandler<Req, Res>,
  stream: Stream,
  connection: Connection,
): Promise<void> {
  const peer = connection.remotePeer
  const gone = new AbortController()
  const onClose = (): void => gone.abort(requesterGone())
  stream.addEventListener('close', onClose, { once: true })
  const frames = guardedFrames(guard, stream, { protocol: protocol.id, maxBytes: protocol.maxRequestBytes, connection, admit: options.admit, signal: gone.signal, log })
  const remoteAddress = (() => {
    try {
      return addressFromPeerId(peer)
    } catch (cause) {
      return toHearthErrorWith(cause, 'HEARTH_ERR_IDENTITY_KEY')
    }
  })()
  try {
    for (let first = true; ; first = false) {
      // The first request is due at once (the stream was opened for it); a later one may come within sessionIdleMs.
      const next = first ? undefined : await nextRequest(frames, gone.signal)
      if (next === 'end') {
        // Our side closed; a requester that never closes its own does not hold the stream past the grace.
        closeKept(stream)
        return releaseStream(stream, refusalWriteMs)
      }
      const signals = serveSignals(stream, protocol.timeoutMs, requesterGone, [gone.signal])
      const serving: Serving<Req, Res> = { deps, log, protocol, stream, frames, peer, signals }
      let release = (): void => {}
      try {
        if (remoteAddress instanceof HearthError) return await refuse(serving, 'peer-key', remoteAddress)
        const frame = next === undefined ? await readRequest(serving, guard) : 'failed' in next ? await readFailure(serving, guard, next.failed) : next
        if (frame === undefined) return
        release = frame.release
        const request = await checkRequest(serving, frame.value, remoteAddress)
        if (request === undefined) return
        const context: RequestContext<Req> = { peerId: peer, remoteAddress, signal: signals.signal, envelope: request.envelope, remoteMultiaddr: connection.remoteAddr.toString() }
        const result = await runHandler(serving, handler, request.data, context)
        if (result === undefined || !(await sendResponse(serving, result.value, true))) return
      } finally {
        release()
        signals.detach()
      }
    }
  } finally {
    stream.removeEventListener('close', onClose)
  }
}

/** The next request of a session: its frame, why it could not be read, or 'end' (the requester closed, or idled out). */
async function nextRequest(frames: JsonFrameStream, gone: AbortSignal): Promise<JsonFrame | { failed: unknown } | 'end'> {
  const idle = AbortSignal.any([gone, AbortSignal.timeout(sessionIdleMs)])
  try {
    return await frames.read({ signal: idle })
  } catch (cause) {
    if (idle.aborted) return 'end'
    // The stream ended cleanly before another request began.
    if (cause instanceof FrameError && cause.declaredBytes === undefined && (cause.cause as Error | undefined)?.name === 'UnexpectedEOFError') return 'end'
    return { failed: cause }
  }
}

/** The request frame; undefined when it could not be read (refused, or the requester went away). */
async function readRequest(serving: Serving<z.ZodType, z.ZodType>, guard: InboundGuard): Promise<JsonFrame | undefined> {
  try {
    return await serving.frames.read({ signal: serving.signals.signal, due: true })
  } catch (cause) {
    return readFailure(serving, guard, cause)
  }
}

/** Answers a request that could not be read (a refusal, a bad frame, the deadline), or drops a requester gone. */
async function readFailure(serving: Serving<z.ZodType, z.ZodType>, guard: InboundGuard, cause: unknown): Promise<undefined> {
  const { protocol, stream, signals } = serving
  const id = protocol.id
  const refusal = guardRefusal(guard, id, cause)
  if (refusal !== undefined) {
    await refuse(serving, refusal.reason, refusal.error)
    return undefined
  }
  if (cause instanceof FrameError) {
    const tooLarge = cause.failure === 'too-large'
    await refuse(serving, tooLarge ? 'too-large' : 'malformed', new HearthError(
      tooLarge ? 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE' : 'HEARTH_ERR_NET_MESSAGE_INVALID',
      `Request refused by ${id}: ${cause.message}`,
      { details: { protocol: id, limitBytes: protocol.maxRequestBytes, declaredBytes: cause.declaredBytes } },
    ))
    return undefined
  }
  if (signals.deadline.aborted) {
    await refuse(serving, 'timeout', new HearthError('HEARTH_ERR_NET_TIMEOUT', `No complete request arrived within ${protocol.timeoutMs} ms`, { details: { protocol: id } }))
    return undefined
  }
  // The requester went away before sending a request: there is no one to answer.
  stream.abort(asError(cause))
  return undefined
}

/**
 * The request as the handler gets it: for signed protocols, its envelope verified as signed by the connection's own
 * peer; then the body checked against the schema. Undefined once a failing check has been answered.
 */
async function checkRequest<Req extends z.ZodType>(
  serving: Serving<Req, z.ZodType>,
  raw: unknown,
  remoteAddress: Address,
): Promise<{ data: z.output<Req>; envelope: Signed<z.input<Req>> | undefined } | undefined> {
  const { protocol, peer } = serving
  const id = protocol.id
  let payload: unknown = raw
  let envelope: Signed<z.input<Req>> | undefined
  if (protocol.signed) {
    const shape = signedEnvelopeSchema.safeParse(raw)
    if (!shape.success) {
      await refuse(serving, 'unsigned', new HearthError('HEARTH_ERR_SIGNATURE_INVALID',
        `Request refused by ${id}: this protocol needs a signed envelope { payload, signer, signature } (${describeIssues(shape.error).text})`,
        { details: { protocol: id, reason: 'unsigned' } }))
      return undefined
    }
    envelope = raw as Signed<z.input<Req>>
    try {
      await verifySigned(envelope, { expectedSigner: remoteAddress })
    } catch (cause) {
      const mismatch = isHearthError(cause) && cause.details?.reason === 'signer-mismatch'
      const message = mismatch
        ? `Request refused by ${id}: signed by ${shape.data.signer}, but sent by peer ${peer.toString()} whose address is ${remoteAddress}; a peer may only send requests it signed itself`
        : `Request refused by ${id}: ${isHearthError(cause) ? cause.shortMessage : 'the signature is invalid'}`
      await refuse(serving, mismatch ? 'signer-mismatch' : 'bad-signature', new HearthError('HEARTH_ERR_SIGNATURE_INVALID', message, {
        details: { protocol: id, reason: mismatch ? 'signer-mismatch' : 'bad-signature' },
      }))
      return undefined
    }
    payload = envelope.payload
  }

  const parsed = protocol.request.safeParse(payload)
  if (!parsed.success) {
    const summary = describeIssues(parsed.error, protocol.signed ? ['payload'] : [])
    await refuse(serving, 'schema', new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Request refused by ${id}: ${summary.text}`, {
      details: { protocol: id, issues: summary.issues },
    }))
    return undefined
  }
  return { data: parsed.data, envelope }
}

/** The handler's result; undefined once its failure has been answered (or the requester went away). */
async function runHandler<Req extends z.ZodType, Res extends z.ZodType>(
  serving: Serving<Req, Res>,
  handler: RequestHandler<Req, Res>,
  request: z.output<Req>,
  context: RequestContext<Req>,
): Promise<{ value: z.input<Res> } | undefined> {
  const { deps, log, protocol, stream, frames, peer, signals } = serving
  const id = protocol.id
  try {
    const handled = Promise.resolve().then(() => handler(request, context))
    // A handler that ignores its signal may settle after we gave up on it; its result then goes nowhere.
    handled.catch(() => {})
    return { value: await raceSignal(handled, signals.signal) }
  } catch (error) {
    if (signals.deadline.aborted && !signals.gone.signal.aborted) {
      await refuse(serving, 'timeout', new HearthError('HEARTH_ERR_NET_TIMEOUT', `The handler of ${id} did not answer within ${protocol.timeoutMs} ms`, { details: { protocol: id } }))
      return undefined
    }
    if (signals.gone.signal.aborted) {
      stream.abort(new Error('requester went away'))
      return undefined
    }
    if (isHearthError(error)) {
      deps.metrics.served(id)
      await answer(stream, frames, errorFrame(error), protocol.timeoutMs, false)
      return undefined
    }
    deps.metrics.handlerFailed(id)
    log.error('handler of %s failed on a request from %p - %e', id, peer, error)
    await answer(stream, frames, errorFrame(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} failed`)), protocol.timeoutMs, false)
    return undefined
  }
}

/**
 * Checks the handler's result against the schema and the size limit (signing it for signed protocols) and sends it.
 * On a session stream (`session`), the answer says so and the stream stays open: true when it went out.
 */
async function sendResponse<Res extends z.ZodType>(serving: Serving<z.ZodType, Res>, result: z.input<Res>, session = false): Promise<boolean> {
  const { deps, log, protocol, stream, frames } = serving
  const id = protocol.id
  let bytes: Uint8Array
  try {
    const checked = protocol.response.safeParse(result)
    if (!checked.success) throw new Error(`response does not match the schema of ${id}: ${describeIssues(checked.error).text}`)
    const body = protocol.signed ? await signPayload(deps.identity, result) : result
    bytes = encodeJsonFrame(session ? { ok: true, body, session: true } : { ok: true, body })
  } catch (error) {
    deps.metrics.handlerFailed(id)
    log.error('handler of %s returned an unusable response - %e', id, error)
    await answer(stream, frames, errorFrame(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} returned an invalid response`)), protocol.timeoutMs, false)
    return false
  }
  if (bytes.byteLength > protocol.maxResponseBytes) {
    deps.metrics.handlerFailed(id)
    log.error('handler of %s returned %d bytes, over the limit of %d', id, bytes.byteLength, protocol.maxResponseBytes)
    await answer(stream, frames, errorFrame(new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE',
      `The response of ${id} would be ${bytes.byteLength} bytes, over the limit of ${protocol.maxResponseBytes}`,
      { details: { protocol: id, limitBytes: protocol.maxResponseBytes } })), protocol.timeoutMs, false)
    return false
  }
  deps.metrics.served(id)
  if (!session) {
    await answer(stream, frames, bytes, protocol.timeoutMs, false)
    return false
  }
  if (stream.writeStatus !== 'writable') return false
  try {
    await frames.writeFrames([bytes], { signal: serving.signals.signal })
    return true
  } catch (error) {
    stream.abort(asError(error))
    return false
  }
}

/** Sends the one response frame and closes our side; `reset` also drops whatever the requester is still sending. */
async function answer(stream: Stream, frames: JsonFrameStream, bytes: Uint8Array, timeoutMs: number, reset: boolean): Promise<void> {
  if (stream.writeStatus !== 'writable') return
  if (!(await writeAnswer(stream, frames, [bytes], AbortSignal.timeout(timeoutMs)))) return
  if (stream.status === 'closed') return
  if (reset) {
    // close() resolved, so the answer is already handed to the muxer, ahead of the reset.
    stream.abort(new Error('request refused'))
    return
  }
  releaseStream(stream, timeoutMs)
}

// ---------------------------------------------------------------------------------------------------------------
// Requester

const responseFrameSchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), body: z.unknown() }),
  z.object({ ok: z.literal(false), error: remoteErrorSchema }),
])

export async function sendRequest<Req extends z.ZodType, Res extends z.ZodType>(
  deps: ProtocolDeps,
  target: PeerTarget,
  protocol: Protocol<Req, Res>,
  request: z.input<Req>,
  options: RequestOptions = {},
): Promise<Exchange<Res>> {
  const id = protocol.id
  const checked = protocol.request.safeParse(request)
  if (!checked.success) {
    const summary = describeIssues(checked.error)
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Request for ${id} does not match its schema: ${summary.text}`, {
      details: { protocol: id, issues: summary.issues },
    })
  }
  // A target that is neither a multiaddr nor a PeerId is refused before anything is signed or sent.
  toDialTarget(target)
  const timeoutMs = options.timeoutMs ?? protocol.timeoutMs
  const deadline = callDeadline(id, target, timeoutMs, options.signal)
  const { signal } = deadline

  // Sign before dialling: a payload that cannot be signed (a bigint, say) is our bug, not the network's.
  const body = protocol.signed ? await signPayload(deps.identity, request) : request
  const bytes = encodeJsonFrame(body)
  if (bytes.byteLength > protocol.maxRequestBytes) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `Request for ${id} is ${bytes.byteLength} bytes, over the limit of ${protocol.maxRequestBytes}`, {
      details: { protocol: id, bytes: bytes.byteLength, limitBytes: protocol.maxRequestBytes },
    })
  }

  // A session protocol's request goes on a stream kept from an earlier one to the same peer when there is one.
  const kept = protocol.session ? takeKeptStream(deps.libp2p, target, id) : undefined
  const { peer, stream } = kept ?? await openCallStream(deps.libp2p, target, id, { signal, maxOutboundStreams: protocol.maxConcurrentStreams, optimistic: true },
    (cause) => requestOpenFailure(deps.libp2p, target, id, cause, deadline))
  const frames = kept?.frames ?? jsonFrames(stream, Math.max(protocol.maxResponseBytes, errorFrameLimit))
  let answered = false
  let keep = false
  try {
    const frame = await writeAndReadAnswer({ libp2p: deps.libp2p, target, id, peer, stream, frames, deadline }, bytes, (cause) => {
      if (cause.failure === 'too-large') {
        return new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `Response to ${id} from ${peer.toString()} refused: ${cause.message}`, {
          cause,
          details: { protocol: id, limitBytes: protocol.maxResponseBytes, declaredBytes: cause.declaredBytes },
        })
      }
      if (cause.declaredBytes !== undefined) {
        return new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Response to ${id} from ${peer.toString()} is malformed: ${cause.message}`, { cause, details: { protocol: id } })
      }
      return undefined
    }, { keepOpen: protocol.session })
    answered = true
    const exchange = await readResponse(protocol, peer, frame)
    keep = protocol.session && continuesSession(frame.value)
    return exchange
  } finally {
    if (keep) {
      keepStream(deps.libp2p, id, { peer, stream, frames })
    } else if (answered) {
      // After an answer the responder is closing its side already (a session one once we close ours); otherwise
      // nothing more is wanted from it.
      if (protocol.session) closeKept(stream)
      releaseStream(stream, Math.min(timeoutMs, 5000))
    } else if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error('request failed'))
  }
}

async function readResponse<Req extends z.ZodType, Res extends z.ZodType>(
  protocol: Protocol<Req, Res>,
  peer: PeerId,
  frame: { value: unknown; bytes: number },
): Promise<Exchange<Res>> {
  const id = protocol.id
  const shape = responseFrameSchema.safeParse(frame.value)
  if (!shape.success) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Response to ${id} from ${peer.toString()} is not a response frame: ${describeIssues(shape.error).text}`, {
      details: { protocol: id },
    })
  }
  if (!shape.data.ok) throw remoteAnswerError(peer, id, shape.data.error)
  if (frame.bytes > protocol.maxResponseBytes) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `Response to ${id} from ${peer.toString()} is ${frame.bytes} bytes, over the limit of ${protocol.maxResponseBytes}`, {
      details: { protocol: id, limitBytes: protocol.maxResponseBytes },
    })
  }
  let payload: unknown = shape.data.body
  let envelope: Signed<z.input<Res>> | undefined
  if (protocol.signed) {
    envelope = payload as Signed<z.input<Res>>
    try {
      await verifySigned(envelope, { expectedSigner: addressFromPeerId(peer) })
    } catch (cause) {
      throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `Response to ${id} from ${peer.toString()} is not properly signed by that peer: ${isHearthError(cause) ? cause.shortMessage : String(cause)}`, {
        cause,
        details: { protocol: id, ...(isHearthError(cause) ? cause.details : {}) },
      })
    }
    payload = envelope.payload
  }
  const parsed = protocol.response.safeParse(payload)
  if (!parsed.success) {
    const summary = describeIssues(parsed.error, protocol.signed ? ['payload'] : [])
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Response to ${id} from ${peer.toString()} does not match its schema: ${summary.text}`, {
      details: { protocol: id, issues: summary.issues },
    })
  }
  return { response: parsed.data, envelope, peerId: peer }
}

function toHearthErrorWith(cause: unknown, code: HearthError['code']): HearthError {
  return isHearthError(cause) ? cause : new HearthError(code, String(cause), { cause })
}
