/**
 * Binary request/response protocols over libp2p streams: a JSON request, answered by a small JSON header followed by
 * a body of raw bytes. For moving blobs: the bytes cross the wire as they are, with no JSON or base64 around them.
 *
 * Wire format (length-prefixed frames, see json-frames.ts), one stream per request:
 * - requester → responder: one JSON frame, the request body; then the requester closes its side.
 * - responder → requester: `{ ok: true, header, bodyBytes }` then one binary frame of exactly `bodyBytes` bytes, then
 *   the responder closes its side; or `{ ok: false, error: { code, message, hint? } }` alone. A protocol with a
 *   `bodyFrameBytes` below its `maxBodyBytes` sends a larger body as consecutive binary frames of at most that many
 *   bytes, `bodyBytes` in all, each written once the requester has taken in the ones before (back-pressure), and its
 *   requesters read them as they come (`requestBlobStream`): one stream carries a whole blob, with no round trip per
 *   piece and never more than a frame or two of it in memory on either side.
 *
 * Every frame is bounded before it is read: the request and header by their limits, the body by the size its header
 * declares, which is itself bounded by the protocol's hard cap and the requester's own limit. A body longer or shorter
 * than declared, or anything after it, is refused. The whole exchange has a deadline. Failures become HearthErrors on
 * the requester and error frames (or a reset stream) on the responder; nothing escapes into libp2p.
 */
import './polyfill.ts'
import type { ComponentLogger, Connection, Libp2p, Logger, PeerId, Stream } from '@libp2p/interface'
import type { Address } from 'viem'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import { callDeadline, openCallStream, remoteAnswerError, remoteErrorSchema, requestOpenFailure, writeAndReadAnswer } from './call-support.ts'
import type { OpenCall } from './call-support.ts'
import { describeIssues } from './describe-issues.ts'
import { toDialTarget } from './dial-target.ts'
import type { PeerTarget } from './dial-target.ts'
import { guardedFrames, guardRefusal, inboundGuardFor } from './inbound-guard.ts'
import type { InboundGuard, ServeOptions } from './inbound-guard.ts'
import { encodeJsonFrame, FrameError, jsonFrames } from './json-frames.ts'
import type { JsonFrameStream } from './json-frames.ts'
import { asError, errorFrame, errorFrameLimit, handleGuarded, protocolIdPattern, refusalWriteMs, releaseStream, serveSignals, writeAnswer } from './serve-support.ts'

export interface BlobProtocolSpec<Req extends z.ZodType, Head extends z.ZodType> {
  /** `/hearth/<area>/<name>/<major>`. */
  id: string
  /** Schema of the request (JSON-shaped). */
  request: Req
  /** Schema of the header that precedes the body (JSON-shaped). */
  header: Head
  /** Largest request frame, in bytes of JSON. */
  maxRequestBytes: number
  /** Largest header frame, in bytes of JSON (the `{ ok, header, bodyBytes }` wrapper included). */
  maxHeaderBytes: number
  /** Hard cap on one body, whatever a header declares. */
  maxBodyBytes: number
  /** How long the whole exchange may take (dial, request, handler, header and body). */
  timeoutMs: number
  /** Streams of this protocol open at once on one connection, each way (default 32). */
  maxConcurrentStreams?: number
  /**
   * Largest frame of a body (default: `maxBodyBytes`, one frame). Below it, a body travels as several frames, each
   * under a deadline of its own (10 s plus its size at 64 KiB/s, a slow home uplink) on both sides, so that a long
   * body needs no long deadline for the whole exchange to bound a peer that stalls.
   */
  bodyFrameBytes?: number
}

export type BlobProtocol<Req extends z.ZodType = z.ZodType, Head extends z.ZodType = z.ZodType> =
  Readonly<Required<BlobProtocolSpec<Req, Head>>>

export interface BlobRequestContext {
  /** The remote peer, as authenticated by the connection's noise handshake. */
  peerId: PeerId
  /** The Ethereum address of the remote peer's key. */
  remoteAddress: Address
  /** Aborts when the protocol's timeout passes or the requester goes away. */
  signal: AbortSignal
}

export interface BlobAnswer<Head extends z.ZodType> {
  header: z.input<Head>
  body: Uint8Array
}

/** Throw a HearthError to refuse: its code, message and hint reach the requester. */
export type BlobHandler<Req extends z.ZodType, Head extends z.ZodType> =
  (request: z.output<Req>, context: BlobRequestContext) => BlobAnswer<Head> | Promise<BlobAnswer<Head>>

export interface BlobDeps {
  libp2p: Libp2p
  logger?: ComponentLogger
  /** The node's inbound budget and frame deadlines (default: the one attached to `libp2p`, see inbound-guard.ts). */
  inbound?: InboundGuard
}

export interface BlobRequestOptions {
  signal?: AbortSignal
  timeoutMs?: number
  /** Refuse a body larger than this (below the protocol's hard cap), e.g. the size the request asked for. */
  maxBodyBytes?: number
}

export interface BlobExchange<Head extends z.ZodType> {
  header: z.output<Head>
  body: Uint8Array
  peerId: PeerId
}

/** An answer whose body is read as it arrives (requestBlobStream). */
export interface BlobStreamExchange<Head extends z.ZodType> {
  header: z.output<Head>
  /** The body's length, as the header declared it (within the limits); `body` yields exactly that many bytes. */
  bodyBytes: number
  /**
   * The body's frames, in order, each checked against what remains of `bodyBytes`; then the end of the stream. Iterate
   * it once; a loop left early (or a failure) resets the stream.
   */
  body: AsyncIterable<Uint8Array>
  peerId: PeerId
}

/** How long one frame of a body may take to cross: 10 s plus its size at 64 KiB/s. */
export function bodyFrameDeadlineMs(bytes: number): number {
  return 10_000 + Math.ceil((bytes * 1000) / (64 * 1024))
}


export function defineBlobProtocol<Req extends z.ZodType, Head extends z.ZodType>(spec: BlobProtocolSpec<Req, Head>): BlobProtocol<Req, Head> {
  if (!protocolIdPattern.test(spec.id)) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `Protocol id "${spec.id}" is not of the form /hearth/<area>/<name>/<major>`, {
      hint: 'use lower-case words and a major version, e.g. /hearth/exec/fetch-blob/3',
      details: { id: spec.id },
    })
  }
  const sizes = {
    maxRequestBytes: spec.maxRequestBytes,
    maxHeaderBytes: spec.maxHeaderBytes,
    maxBodyBytes: spec.maxBodyBytes,
    timeoutMs: spec.timeoutMs,
    maxConcurrentStreams: spec.maxConcurrentStreams ?? 32,
    bodyFrameBytes: Math.min(spec.bodyFrameBytes ?? spec.maxBodyBytes, spec.maxBodyBytes),
  }
  for (const [name, value] of Object.entries(sizes)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new HearthError('HEARTH_ERR_API_MISUSE', `Protocol ${spec.id}: ${name} must be a positive integer, got ${String(value)}`, { details: { id: spec.id, [name]: value } })
    }
  }
  return Object.freeze({ ...spec, ...sizes })
}

// ---------------------------------------------------------------------------------------------------------------
// Responder

export async function serveBlobProtocol<Req extends z.ZodType, Head extends z.ZodType>(
  deps: BlobDeps,
  protocol: BlobProtocol<Req, Head>,
  handler: BlobHandler<Req, Head>,
  options: ServeOptions = {},
): Promise<void> {
  const log = (deps.logger ?? deps.libp2p.logger).forComponent(`hearth:net:blob:${protocol.id}`)
  const guard = deps.inbound ?? inboundGuardFor(deps.libp2p)
  await handleGuarded(deps.libp2p, protocol, log, 'unhandle it first to replace it', (stream, connection) => respond(guard, options, log, protocol, handler, stream, connection))
}

async function respond<Req extends z.ZodType, Head extends z.ZodType>(
  guard: InboundGuard,
  options: ServeOptions,
  log: Logger,
  protocol: BlobProtocol<Req, Head>,
  handler: BlobHandler<Req, Head>,
  stream: Stream,
  connection: Connection,
): Promise<void> {
  const id = protocol.id
  const peer = connection.remotePeer
  const signals = serveSignals(stream, protocol.timeoutMs, () => new HearthError('HEARTH_ERR_NET_REMOTE', 'The requester closed the stream'))
  const { signal } = signals
  // The request is reserved from the node's inbound budget (and a large one admitted) before its body is read.
  const frames = guardedFrames(guard, stream, { protocol: id, maxBytes: protocol.maxRequestBytes, connection, admit: options.admit, signal, log })
  /** Gives back the request's reservation once it has been answered. */
  let release = (): void => {}
  const refuse = async (error: HearthError): Promise<void> => {
    log('refused a request from %p: %s', peer, error.shortMessage)
    await send(stream, frames, [errorFrame(error)], signal)
  }

  try {
    let remoteAddress: Address
    try {
      remoteAddress = addressFromPeerId(peer)
    } catch (cause) {
      return await refuse(isHearthError(cause) ? cause : new HearthError('HEARTH_ERR_IDENTITY_KEY', String(cause)))
    }
    let raw: unknown
    try {
      const frame = await frames.read({ signal, due: true })
      raw = frame.value
      release = frame.release
    } catch (cause) {
      const refusal = guardRefusal(guard, id, cause)
      if (refusal !== undefined) {
        guard.metrics.rejected(id, refusal.reason)
        log('refused a request from %p (%s): %s', peer, refusal.reason, refusal.error.shortMessage)
        // The rest of the request is unwanted: reset once the answer is out, and never wait long on a peer that does
        // not read it.
        await send(stream, frames, [errorFrame(refusal.error)], AbortSignal.any([signal, AbortSignal.timeout(refusalWriteMs)]))
        if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error('request refused'))
        return
      }
      if (cause instanceof FrameError) {
        const tooLarge = cause.failure === 'too-large'
        return await refuse(new HearthError(tooLarge ? 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE' : 'HEARTH_ERR_NET_MESSAGE_INVALID', `Request refused by ${id}: ${cause.message}`))
      }
      // The requester went away, or sent nothing in time: there is no one to answer.
      stream.abort(asError(cause))
      return
    }
    const parsed = protocol.request.safeParse(raw)
    if (!parsed.success) {
      return await refuse(new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Request refused by ${id}: ${describeIssues(parsed.error).text}`))
    }

    let answer: BlobAnswer<Head>
    try {
      answer = await handler(parsed.data, { peerId: peer, remoteAddress, signal })
    } catch (error) {
      if (signal.aborted) {
        stream.abort(new Error('the exchange ended before the handler answered'))
        return
      }
      if (isHearthError(error)) return await refuse(error)
      log.error('handler of %s failed on a request from %p - %e', id, peer, error)
      return await refuse(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} failed`))
    }
    const header = protocol.header.safeParse(answer.header)
    const head = header.success ? encodeJsonFrame({ ok: true, header: answer.header, bodyBytes: answer.body.byteLength }) : undefined
    if (head === undefined || head.byteLength > protocol.maxHeaderBytes || answer.body.byteLength > protocol.maxBodyBytes) {
      log.error('handler of %s returned an answer outside the protocol (header valid: %s, body %d bytes)', id, header.success, answer.body.byteLength)
      return await refuse(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} returned an invalid answer`))
    }
    if (answer.body.byteLength <= protocol.bodyFrameBytes) await send(stream, frames, [head, answer.body], signal)
    else await sendInFrames(stream, frames, head, answer.body, protocol.bodyFrameBytes, signal)
  } finally {
    release()
    signals.detach()
    // Answered (or refused): a requester that never closes its side, or never reads the body, would otherwise pin
    // one of the protocol's stream slots on this connection and the unread bytes in the muxer.
    releaseStream(stream, protocol.timeoutMs, 'the requester did not read the answer and close the stream in time')
  }
}


/** Sends the answer's frames and closes our side; on any failure the stream is reset. */
async function send(stream: Stream, frames: JsonFrameStream, parts: Uint8Array[], signal: AbortSignal): Promise<void> {
  if (stream.writeStatus !== 'writable') return
  await writeAnswer(stream, frames, parts, signal)
}

/**
 * Sends the header, then the body in frames of at most `frameBytes`, each once the requester has taken in what came
 * before (the stream drained) and within its own deadline, then closes our side; on any failure the stream is reset.
 */
async function sendInFrames(stream: Stream, frames: JsonFrameStream, head: Uint8Array, body: Uint8Array, frameBytes: number, signal: AbortSignal): Promise<void> {
  if (stream.writeStatus !== 'writable') return
  try {
    await frames.writeFrames([head], { signal })
    for (let at = 0; at < body.byteLength; at += frameBytes) {
      const piece = body.subarray(at, Math.min(at + frameBytes, body.byteLength))
      await frames.writeFrames([piece], { signal: AbortSignal.any([signal, AbortSignal.timeout(bodyFrameDeadlineMs(piece.byteLength))]) })
    }
    await stream.close({ signal })
  } catch (error) {
    stream.abort(asError(error))
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Requester

const headerFrameSchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), header: z.unknown(), bodyBytes: z.number().int().nonnegative() }),
  z.object({ ok: z.literal(false), error: remoteErrorSchema }),
])

export async function requestBlob<Req extends z.ZodType, Head extends z.ZodType>(
  deps: BlobDeps,
  target: PeerTarget,
  protocol: BlobProtocol<Req, Head>,
  request: z.input<Req>,
  options: BlobRequestOptions = {},
): Promise<BlobExchange<Head>> {
  const { call, header, declared } = await openBlobCall(deps, target, protocol, request, options)
  let done = false
  try {
    let body: Uint8Array
    if (declared <= protocol.bodyFrameBytes) {
      body = await readBody(call, declared)
    } else {
      // A body sent in frames, gathered whole for a caller that wants it in one piece.
      body = new Uint8Array(declared)
      let filled = 0
      for await (const piece of bodyFrames(call, declared, protocol.bodyFrameBytes)) {
        body.set(piece, filled)
        filled += piece.byteLength
      }
    }
    done = true
    return { header, body, peerId: call.peer }
  } finally {
    if (!done) abortCall(call)
  }
}

/**
 * Like requestBlob, but resolves once the header has arrived, with the body to be read as it comes: for bodies too
 * large to hold whole (a protocol with `bodyFrameBytes`). The deadline of the whole exchange (the protocol's, or
 * `timeoutMs`) still applies, and each frame of the body has its own.
 */
export async function requestBlobStream<Req extends z.ZodType, Head extends z.ZodType>(
  deps: BlobDeps,
  target: PeerTarget,
  protocol: BlobProtocol<Req, Head>,
  request: z.input<Req>,
  options: BlobRequestOptions = {},
): Promise<BlobStreamExchange<Head>> {
  const { call, header, declared } = await openBlobCall(deps, target, protocol, request, options)
  return { header, bodyBytes: declared, body: bodyFrames(call, declared, protocol.bodyFrameBytes), peerId: call.peer }
}

/** Checks and sends the request, and reads the answer's header; the stream is reset when that fails. */
async function openBlobCall<Req extends z.ZodType, Head extends z.ZodType>(
  deps: BlobDeps,
  target: PeerTarget,
  protocol: BlobProtocol<Req, Head>,
  request: z.input<Req>,
  options: BlobRequestOptions,
): Promise<{ call: OpenCall; header: z.output<Head>; declared: number }> {
  const id = protocol.id
  const checked = protocol.request.safeParse(request)
  if (!checked.success) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Request for ${id} does not match its schema: ${describeIssues(checked.error).text}`, { details: { protocol: id } })
  }
  const bytes = encodeJsonFrame(request)
  if (bytes.byteLength > protocol.maxRequestBytes) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `Request for ${id} is ${bytes.byteLength} bytes, over the limit of ${protocol.maxRequestBytes}`, {
      details: { protocol: id, bytes: bytes.byteLength, limitBytes: protocol.maxRequestBytes },
    })
  }
  toDialTarget(target)
  const maxBodyBytes = Math.min(protocol.maxBodyBytes, options.maxBodyBytes ?? Infinity)
  const deadline = callDeadline(id, target, options.timeoutMs ?? protocol.timeoutMs, options.signal, 'complete answer')
  const { signal } = deadline
  const { peer, stream } = await openCallStream(deps.libp2p, target, id, { signal, maxOutboundStreams: protocol.maxConcurrentStreams, optimistic: true },
    (cause) => requestOpenFailure(deps.libp2p, target, id, cause, deadline))

  const frames = jsonFrames(stream, Math.max(protocol.maxHeaderBytes, errorFrameLimit), { maxBinaryBytes: Math.min(protocol.bodyFrameBytes, maxBodyBytes) })
  const call: OpenCall = { libp2p: deps.libp2p, target, id, peer, stream, frames, deadline }
  try {
    const frame = await writeAndReadAnswer(call, bytes, (cause) => (cause.declaredBytes !== undefined ? invalidAnswer(call, `its header: ${cause.message}`, cause) : undefined))
    return { call, ...checkHeader(call, protocol, frame, maxBodyBytes) }
  } catch (error) {
    abortCall(call)
    throw error
  }
}

function abortCall(call: OpenCall): void {
  if (call.stream.status === 'open' || call.stream.status === 'closing') call.stream.abort(new Error('request failed'))
}

/**
 * The frames of a body of `declared` bytes sent in frames of at most `frameBytes` (at least one: an empty body is one
 * empty frame), each read within its own deadline and refused unread when its prefix announces more than what
 * remains; then the end of the stream.
 */
async function* bodyFrames(call: OpenCall, declared: number, frameBytes: number): AsyncGenerator<Uint8Array> {
  const { frames, deadline } = call
  let received = 0
  let done = false
  try {
    do {
      const maxBytes = Math.min(frameBytes, declared - received)
      const frameMs = bodyFrameDeadlineMs(maxBytes)
      const late = AbortSignal.timeout(frameMs)
      let piece: Uint8Array
      try {
        piece = await frames.readBytes({ maxBytes, signal: AbortSignal.any([deadline.signal, late]) })
      } catch (cause) {
        throw deadline.failure(cause, () =>
          late.aborted
            ? new HearthError('HEARTH_ERR_NET_TIMEOUT', `No body frame of ${call.id} from ${call.peer.toString()} within ${frameMs} ms (${received} of ${declared} bytes came)`, {
                cause,
                details: { protocol: call.id, timeoutMs: frameMs },
              })
            : invalidAnswer(call, `its body (declared ${declared} bytes, ${received} came): ${cause instanceof Error ? cause.message : String(cause)}`, cause),
        )
      }
      if (piece.byteLength === 0 && declared > 0) throw invalidAnswer(call, `an empty frame in its body after ${received} of ${declared} bytes`)
      received += piece.byteLength
      if (piece.byteLength > 0) yield piece
    } while (received < declared)
    try {
      await frames.readEnd({ signal: deadline.signal })
    } catch (cause) {
      throw deadline.failure(cause, () => invalidAnswer(call, cause instanceof Error ? cause.message : String(cause), cause))
    }
    done = true
  } finally {
    if (!done) abortCall(call)
  }
}

/** HEARTH_ERR_NET_MESSAGE_INVALID (TOO_LARGE for a frame over its limit): the peer's answer is refused. */
function invalidAnswer(call: OpenCall, message: string, cause?: unknown): HearthError {
  return new HearthError(
    cause instanceof FrameError && cause.failure === 'too-large' ? 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE' : 'HEARTH_ERR_NET_MESSAGE_INVALID',
    `Answer to ${call.id} from ${call.peer.toString()} refused: ${message}`,
    { cause, details: { protocol: call.id, peerId: call.peer.toString() } },
  )
}

/** The answer's header, checked, and the body size it declares; throws the peer's error frame as a HearthError. */
function checkHeader<Head extends z.ZodType>(
  call: OpenCall,
  protocol: BlobProtocol<z.ZodType, Head>,
  frame: { value: unknown; bytes: number },
  maxBodyBytes: number,
): { header: z.output<Head>; declared: number } {
  const shape = headerFrameSchema.safeParse(frame.value)
  if (!shape.success) throw invalidAnswer(call, `not a header frame: ${describeIssues(shape.error).text}`)
  if (!shape.data.ok) throw remoteAnswerError(call.peer, call.id, shape.data.error)
  // Error frames may be larger (their text is bounded on its own), a header may not.
  if (frame.bytes > protocol.maxHeaderBytes) throw invalidAnswer(call, `its header is ${frame.bytes} bytes, over the limit of ${protocol.maxHeaderBytes}`)
  const header = protocol.header.safeParse(shape.data.header)
  if (!header.success) throw invalidAnswer(call, `its header does not match the schema: ${describeIssues(header.error).text}`)
  const declared = shape.data.bodyBytes
  if (declared > maxBodyBytes) throw invalidAnswer(call, `its header declares a body of ${declared} bytes, over the limit of ${maxBodyBytes}`)
  return { header: header.data, declared }
}

/** The body of exactly `declared` bytes, and then the end of the stream: anything more is refused. */
async function readBody(call: OpenCall, declared: number): Promise<Uint8Array> {
  const { frames, deadline } = call
  const { signal } = deadline
  let body: Uint8Array
  try {
    // The length prefix may not exceed what the header declared: a longer body is refused before it is read.
    body = await frames.readBytes({ maxBytes: declared, signal })
  } catch (cause) {
    throw deadline.failure(cause, () => invalidAnswer(call, `its body (declared ${declared} bytes): ${cause instanceof Error ? cause.message : String(cause)}`, cause))
  }
  if (body.byteLength !== declared) throw invalidAnswer(call, `its header declared ${declared} bytes, but the body holds ${body.byteLength}`)
  try {
    await frames.readEnd({ signal })
  } catch (cause) {
    throw deadline.failure(cause, () => invalidAnswer(call, cause instanceof Error ? cause.message : String(cause), cause))
  }
  return body
}
