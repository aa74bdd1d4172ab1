/**
 * Request/response protocols over libp2p streams: one stream per request, one length-prefixed JSON frame each way.
 *
 * The responder validates everything before its handler sees it (size on the length prefix, JSON, schema, and for
 * signed protocols a signature by the connection's own remote peer) and answers every refusal with an error frame,
 * so a misbehaving peer learns what was wrong and the node keeps serving everyone else.
 *
 * Wire format: request frame = the request body (or, when signed, a Signed<body> envelope); response frame =
 * `{ ok: true, body }` or `{ ok: false, error: { code, message, hint? } }`.
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
import { describeIssues } from './describe-issues.ts'
import { connectTo, peerOfTarget, toDialTarget } from './dial-target.ts'
import type { PeerTarget } from './dial-target.ts'
import { guardedFrames, guardRefusal, inboundGuardFor } from './inbound-guard.ts'
import type { InboundGuard, ServeOptions } from './inbound-guard.ts'
import { encodeJsonFrame, FrameError, jsonFrames } from './json-frames.ts'
import type { JsonFrameStream } from './json-frames.ts'
import { errorFrame, errorFrameLimit, handleGuarded, protocolIdPattern, raceSignal, refusalWriteMs, remoteErrorCode } from './serve-support.ts'
import type { NetMetricsRecorder, RequestRejectReason } from './net-metrics.ts'
import { isUnsupportedProtocol, versionMismatch } from './versions.ts'

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
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `Protocol id "${spec.id}" is not of the form /hearth/<area>/<name>/<major>`, {
      hint: 'use lower-case words and a major version, e.g. /hearth/market/negotiate/1',
      details: { id: spec.id },
    })
  }
  const positive = { maxRequestBytes: spec.maxRequestBytes, maxResponseBytes: spec.maxResponseBytes, timeoutMs: spec.timeoutMs, maxConcurrentStreams: spec.maxConcurrentStreams ?? defaultMaxConcurrentStreams }
  for (const [name, value] of Object.entries(positive)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `Protocol ${spec.id}: ${name} must be a positive integer, got ${String(value)}`, { details: { id: spec.id, [name]: value } })
    }
  }
  return Object.freeze({ ...spec, ...positive, signed: spec.signed ?? false })
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
  const id = protocol.id
  const deadline = AbortSignal.timeout(protocol.timeoutMs)
  const gone = new AbortController()
  const onClose = (): void => gone.abort(new HearthError('HEARTH_ERR_NET_REMOTE', 'The requester closed the stream'))
  stream.addEventListener('close', onClose, { once: true })
  const signal = AbortSignal.any([deadline, gone.signal])
  // Each frame is reserved from the node's inbound budget (and a large one admitted) before its body is read.
  const frames = guardedFrames(guard, stream, { protocol: id, maxBytes: protocol.maxRequestBytes, connection, admit: options.admit, signal, log })
  const peer = connection.remotePeer
  /** Gives back the request's reservation once it has been handled. */
  let release = (): void => {}

  const refuse = async (reason: RequestRejectReason, error: HearthError): Promise<void> => {
    deps.metrics.rejected(id, reason)
    log('refused a request from %p (%s): %s', peer, reason, error.shortMessage)
    // After a refusal the rest of the request (if any) is unwanted: reset once our answer is out. A peer that does
    // not read our answer does not hold the stream for the protocol's whole timeout.
    await answer(stream, frames, errorFrame(error), Math.min(protocol.timeoutMs, refusalWriteMs), true)
  }

  try {
    let remoteAddress: Address
    try {
      remoteAddress = addressFromPeerId(peer)
    } catch (cause) {
      return await refuse('peer-key', toHearthErrorWith(cause, 'HEARTH_ERR_IDENTITY_KEY'))
    }

    let raw: unknown
    try {
      const frame = await frames.read({ signal, due: true })
      raw = frame.value
      release = frame.release
    } catch (cause) {
      const refusal = guardRefusal(guard, id, cause)
      if (refusal !== undefined) return await refuse(refusal.reason, refusal.error)
      if (cause instanceof FrameError) {
        const tooLarge = cause.failure === 'too-large'
        return await refuse(tooLarge ? 'too-large' : 'malformed', new HearthError(
          tooLarge ? 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE' : 'HEARTH_ERR_NET_MESSAGE_INVALID',
          `Request refused by ${id}: ${cause.message}`,
          { details: { protocol: id, limitBytes: protocol.maxRequestBytes, declaredBytes: cause.declaredBytes } },
        ))
      }
      if (deadline.aborted) {
        return await refuse('timeout', new HearthError('HEARTH_ERR_NET_TIMEOUT', `No complete request arrived within ${protocol.timeoutMs} ms`, { details: { protocol: id } }))
      }
      // The requester went away before sending a request: there is no one to answer.
      stream.abort(cause instanceof Error ? cause : new Error(String(cause)))
      return
    }

    let payload: unknown = raw
    let envelope: Signed<z.input<Req>> | undefined
    if (protocol.signed) {
      const shape = signedEnvelopeSchema.safeParse(raw)
      if (!shape.success) {
        return await refuse('unsigned', new HearthError('HEARTH_ERR_SIGNATURE_INVALID',
          `Request refused by ${id}: this protocol needs a signed envelope { payload, signer, signature } (${describeIssues(shape.error).text})`,
          { details: { protocol: id, reason: 'unsigned' } }))
      }
      envelope = raw as Signed<z.input<Req>>
      try {
        await verifySigned(envelope, { expectedSigner: remoteAddress })
      } catch (cause) {
        const mismatch = isHearthError(cause) && cause.details?.reason === 'signer-mismatch'
        const message = mismatch
          ? `Request refused by ${id}: signed by ${shape.data.signer}, but sent by peer ${peer.toString()} whose address is ${remoteAddress}; a peer may only send requests it signed itself`
          : `Request refused by ${id}: ${isHearthError(cause) ? cause.shortMessage : 'the signature is invalid'}`
        return await refuse(mismatch ? 'signer-mismatch' : 'bad-signature', new HearthError('HEARTH_ERR_SIGNATURE_INVALID', message, {
          details: { protocol: id, reason: mismatch ? 'signer-mismatch' : 'bad-signature' },
        }))
      }
      payload = envelope.payload
    }

    const parsed = protocol.request.safeParse(payload)
    if (!parsed.success) {
      const summary = describeIssues(parsed.error, protocol.signed ? ['payload'] : [])
      return await refuse('schema', new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Request refused by ${id}: ${summary.text}`, {
        details: { protocol: id, issues: summary.issues },
      }))
    }

    let result: z.input<Res>
    try {
      const handled = Promise.resolve().then(() => handler(parsed.data, { peerId: peer, remoteAddress, signal, envelope, remoteMultiaddr: connection.remoteAddr.toString() }))
      // A handler that ignores its signal may settle after we gave up on it; its result then goes nowhere.
      handled.catch(() => {})
      result = await raceSignal(handled, signal)
    } catch (error) {
      if (deadline.aborted && !gone.signal.aborted) {
        return await refuse('timeout', new HearthError('HEARTH_ERR_NET_TIMEOUT', `The handler of ${id} did not answer within ${protocol.timeoutMs} ms`, { details: { protocol: id } }))
      }
      if (gone.signal.aborted) {
        stream.abort(new Error('requester went away'))
        return
      }
      if (isHearthError(error)) {
        deps.metrics.served(id)
        await answer(stream, frames, errorFrame(error), protocol.timeoutMs, false)
        return
      }
      deps.metrics.handlerFailed(id)
      log.error('handler of %s failed on a request from %p - %e', id, peer, error)
      await answer(stream, frames, errorFrame(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} failed`)), protocol.timeoutMs, false)
      return
    }

    let bytes: Uint8Array
    try {
      const checked = protocol.response.safeParse(result)
      if (!checked.success) throw new Error(`response does not match the schema of ${id}: ${describeIssues(checked.error).text}`)
      const body = protocol.signed ? await signPayload(deps.identity, result) : result
      bytes = encodeJsonFrame({ ok: true, body })
    } catch (error) {
      deps.metrics.handlerFailed(id)
      log.error('handler of %s returned an unusable response - %e', id, error)
      await answer(stream, frames, errorFrame(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} returned an invalid response`)), protocol.timeoutMs, false)
      return
    }
    if (bytes.byteLength > protocol.maxResponseBytes) {
      deps.metrics.handlerFailed(id)
      log.error('handler of %s returned %d bytes, over the limit of %d', id, bytes.byteLength, protocol.maxResponseBytes)
      await answer(stream, frames, errorFrame(new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE',
        `The response of ${id} would be ${bytes.byteLength} bytes, over the limit of ${protocol.maxResponseBytes}`,
        { details: { protocol: id, limitBytes: protocol.maxResponseBytes } })), protocol.timeoutMs, false)
      return
    }
    deps.metrics.served(id)
    await answer(stream, frames, bytes, protocol.timeoutMs, false)
  } finally {
    release()
    stream.removeEventListener('close', onClose)
  }
}


/** Sends the one response frame and closes our side; `reset` also drops whatever the requester is still sending. */
async function answer(stream: Stream, frames: JsonFrameStream, bytes: Uint8Array, timeoutMs: number, reset: boolean): Promise<void> {
  if (stream.writeStatus !== 'writable') return
  try {
    const signal = AbortSignal.timeout(timeoutMs)
    await frames.write(bytes, { signal })
    await stream.close({ signal })
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)))
    return
  }
  if (stream.status === 'closed') return
  if (reset) {
    // close() resolved, so the answer is already handed to the muxer, ahead of the reset.
    stream.abort(new Error('request refused'))
    return
  }
  releaseStream(stream, timeoutMs)
}

/** Gives the far side `graceMs` to close its end of a stream we are done with, then resets it: a peer that never
 * closes would otherwise pin one of the protocol's stream slots on this connection. */
function releaseStream(stream: Stream, graceMs: number): void {
  if (stream.status !== 'open' && stream.status !== 'closing') return
  const timer = setTimeout(() => {
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error('the peer did not close the stream'))
  }, graceMs)
  timer.unref()
  stream.addEventListener('close', () => clearTimeout(timer), { once: true })
}

// ---------------------------------------------------------------------------------------------------------------
// Requester

const responseFrameSchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), body: z.unknown() }),
  z.object({
    ok: z.literal(false),
    error: z.object({ code: z.string().max(200), message: z.string().max(10_000), hint: z.string().max(10_000).optional() }),
  }),
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
  const timeout = AbortSignal.timeout(timeoutMs)
  const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
  // Classifies a failure: our deadline, the caller's abort (rethrown as is), or something else.
  const failure = (cause: unknown, otherwise: () => HearthError): unknown => {
    if (options.signal?.aborted === true) return options.signal.reason
    if (timeout.aborted) {
      return new HearthError('HEARTH_ERR_NET_TIMEOUT', `No answer to ${id} from ${String(target)} within ${timeoutMs} ms`, {
        cause,
        details: { protocol: id, timeoutMs },
      })
    }
    return otherwise()
  }

  // Sign before dialling: a payload that cannot be signed (a bigint, say) is our bug, not the network's.
  const body = protocol.signed ? await signPayload(deps.identity, request) : request
  const bytes = encodeJsonFrame(body)
  if (bytes.byteLength > protocol.maxRequestBytes) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `Request for ${id} is ${bytes.byteLength} bytes, over the limit of ${protocol.maxRequestBytes}`, {
      details: { protocol: id, bytes: bytes.byteLength, limitBytes: protocol.maxRequestBytes },
    })
  }

  const dialFailure = (cause: unknown): HearthError => {
    const unsupported = (cause as Error).name === 'UnsupportedProtocolError'
    return new HearthError('HEARTH_ERR_NET_DIAL', unsupported
      ? `Peer ${String(target)} does not serve ${id}`
      : `Cannot reach ${String(target)} for ${id}: ${(cause as Error).message}`, {
      cause,
      ...(unsupported ? { hint: 'the peer runs another version of Hearth or another role (provider/requestor)' } : {}),
      details: { protocol: id, target: String(target), ...(unsupported ? { reason: 'unsupported-protocol' } : {}) },
    })
  }

  let connection: Connection
  let stream: Stream
  try {
    connection = await connectTo(deps.libp2p, target, { signal })
    // Optimistic protocol selection sends the protocol name with the request: one round trip less per request.
    stream = await connection.newStream(id, { signal, maxOutboundStreams: protocol.maxConcurrentStreams, negotiateFully: false, runOnLimitedConnection: true })
  } catch (cause) {
    const peer = peerOfTarget(target)
    if (peer !== undefined && isUnsupportedProtocol(cause)) throw (await versionMismatch(deps.libp2p, peer, id)) ?? failure(cause, () => dialFailure(cause))
    throw failure(cause, () => dialFailure(cause))
  }

  const peer = connection.remotePeer
  const frames = jsonFrames(stream, Math.max(protocol.maxResponseBytes, errorFrameLimit))
  let answered = false
  try {
    // Read while writing: a responder that refuses a request early answers before it has read it all.
    const reading = frames.read({ signal })
    reading.catch(() => {})
    let writeError: unknown
    try {
      await frames.write(bytes, { signal })
      await stream.close({ signal })
    } catch (error) {
      writeError = error
    }
    let frame: { value: unknown; bytes: number }
    try {
      frame = await reading
    } catch (cause) {
      // The peer serves another major of this protocol (a node of another release): say which, not "closed".
      if (isUnsupportedProtocol(writeError, cause)) throw (await versionMismatch(deps.libp2p, peer, id)) ?? failure(cause, () => dialFailure(cause))
      throw failure(cause, () => {
        if (cause instanceof FrameError && cause.failure === 'too-large') {
          return new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `Response to ${id} from ${peer.toString()} refused: ${cause.message}`, {
            cause,
            details: { protocol: id, limitBytes: protocol.maxResponseBytes, declaredBytes: cause.declaredBytes },
          })
        }
        if (cause instanceof FrameError && cause.declaredBytes !== undefined) {
          return new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Response to ${id} from ${peer.toString()} is malformed: ${cause.message}`, { cause, details: { protocol: id } })
        }
        // With optimistic selection, "protocol not supported" surfaces here rather than from newStream.
        for (const error of [writeError, cause, (cause as Error).cause]) {
          if ((error as Error | undefined)?.name === 'UnsupportedProtocolError') return dialFailure(error)
        }
        return new HearthError('HEARTH_ERR_NET_REMOTE', `Peer ${peer.toString()} closed the ${id} stream without answering`, {
          cause: writeError ?? cause,
          details: { protocol: id },
        })
      })
    }
    answered = true
    return await readResponse(protocol, peer, frame)
  } finally {
    // After an answer the responder is closing its side already; otherwise nothing more is wanted from it.
    if (answered) releaseStream(stream, Math.min(timeoutMs, 5000))
    else if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error('request failed'))
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
  if (!shape.data.ok) {
    const remote = shape.data.error
    const details = { protocol: id, peerId: peer.toString(), remoteCode: remote.code, remoteMessage: remote.message, remoteHint: remote.hint }
    // A timeout is a timeout (and a busy node busy) wherever it happened: callers branch on one code.
    const code = remoteErrorCode(remote.code)
    throw new HearthError(code, `Peer ${peer.toString()} answered ${id} with ${remote.code}: ${remote.message}`, {
      ...(remote.hint === undefined ? {} : { hint: remote.hint }),
      details,
    })
  }
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
