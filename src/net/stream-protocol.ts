/**
 * Streaming protocols over libp2p: one signed request, then a sequence of events, ending with one signed result.
 *
 * Wire format (every frame is a length-prefixed JSON frame, see json-frames.ts):
 * - requester → responder: the request as a Signed<body> envelope; then control frames `{ credit: n }` (the requester
 *   is ready for n more events) or `{ cancel: reason }`; the requester closes its side only after the result.
 * - responder → requester: event frames `{ e: body }`, keep-alive frames `{ k: 1 }` while the handler is quiet, and one
 *   final frame `{ ok: true, events, body: Signed<result> }` or `{ ok: false, error: { code, message, hint? } }`.
 *
 * Back-pressure is by credit: the responder sends an event only while the requester has granted room for it, so a
 * slow reader slows the producer instead of filling buffers. Either side may cancel: the requester by a cancel frame,
 * by closing or resetting the stream (the handler's signal aborts), the responder by ending with an error frame.
 * Every frame is bounded (per frame and in total, in bytes and in count), the whole exchange has a deadline and the
 * gap between two frames is bounded, so a hostile peer can waste at most those bounds and never crashes the node.
 */
import './polyfill.ts'
import type { ComponentLogger, Connection, Libp2p, Logger, PeerId, Stream } from '@libp2p/interface'
import type { Address } from 'viem'
import { z } from 'zod'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { signedEnvelopeSchema, signPayload, verifySigned } from '../identity/signed.ts'
import type { Signed } from '../identity/signed.ts'
import { describeIssues } from './describe-issues.ts'
import { connectTo } from './dial-target.ts'
import type { PeerTarget } from './dial-target.ts'
import { guardedFrames, guardRefusal, inboundGuardFor } from './inbound-guard.ts'
import type { InboundGuard, ServeOptions } from './inbound-guard.ts'
import { encodeJsonFrame, FrameError, jsonFrames } from './json-frames.ts'
import { errorFrame, errorFrameLimit, maxErrorText, protocolIdPattern, raceSignal, remoteErrorCode } from './serve-support.ts'
import type { JsonFrameStream } from './json-frames.ts'
import { isUnsupportedProtocol, versionMismatch } from './versions.ts'

export interface StreamProtocolSpec<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType> {
  /** `/hearth/<area>/<name>/<major>`. */
  id: string
  /** Schema of the signed request's payload. */
  request: Req
  /** Schema of one event body (events are not signed: the connection is authenticated, the result is). */
  event: Ev
  /** Schema of the signed result's payload. */
  result: Res
  maxRequestBytes: number
  /** Largest event frame. */
  maxEventBytes: number
  /** Largest result frame (envelope included). */
  maxResultBytes: number
  /** Bytes of all frames the responder sends together; past it the requester gives up. */
  maxTotalBytes: number
  /** Events in one exchange. */
  maxEvents: number
  /** The whole exchange's deadline. */
  timeoutMs: number
  /** Longest silence between two frames the requester accepts (the responder sends keep-alives at a third of it). */
  idleTimeoutMs: number
  /** Events the requester lets the responder send ahead of its reading (default 64). */
  window?: number
  /** Streams of this protocol open at once on one connection, each way (default 64). */
  maxConcurrentStreams?: number
}

export type StreamProtocol<Req extends z.ZodType = z.ZodType, Ev extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> =
  Readonly<Required<StreamProtocolSpec<Req, Ev, Res>>>

export interface StreamContext<Ev extends z.ZodType> {
  peerId: PeerId
  remoteAddress: Address
  /** Aborts on the deadline, when the requester cancels or goes away, or when the node stops serving. */
  signal: AbortSignal
  /** The verified request envelope, as signed (keep it as proof). */
  envelope: Signed<unknown>
  /** Sends one event; resolves once the requester has room for it (back-pressure). Throws once the exchange ended. */
  emit(event: z.input<Ev>): Promise<void>
}

export type StreamHandler<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType> =
  (request: z.output<Req>, context: StreamContext<Ev>) => Promise<z.input<Res>>

export interface StreamDeps {
  libp2p: Libp2p
  identity: NodeIdentity
  logger?: ComponentLogger
  /** The node's inbound budget and frame deadlines (default: the one attached to `libp2p`, see inbound-guard.ts). */
  inbound?: InboundGuard
}

export interface StreamCall<Ev extends z.ZodType, Res extends z.ZodType> {
  /**
   * The events in order; ends when the result arrives, throws what `result` rejects with. Iterate it once, and start
   * iterating before awaiting `result`: a call whose result is awaited first drops its events.
   */
  events: AsyncIterable<z.output<Ev>>
  /** The verified result and its envelope; rejects with a HearthError on any failure. */
  result: Promise<{ result: z.output<Res>; envelope: Signed<z.input<Res>>; events: number }>
  /** Asks the responder to stop; `result` then rejects with the reason. */
  cancel(reason?: string): void
}

const controlFrameBytes = 1024
const defaultWindow = 64

export function defineStreamProtocol<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType>(
  spec: StreamProtocolSpec<Req, Ev, Res>,
): StreamProtocol<Req, Ev, Res> {
  if (!protocolIdPattern.test(spec.id)) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `Protocol id "${spec.id}" is not of the form /hearth/<area>/<name>/<major>`, {
      hint: 'use lower-case words and a major version, e.g. /hearth/exec/activity/1',
    })
  }
  const full = { ...spec, window: spec.window ?? defaultWindow, maxConcurrentStreams: spec.maxConcurrentStreams ?? 64 }
  for (const name of ['maxRequestBytes', 'maxEventBytes', 'maxResultBytes', 'maxTotalBytes', 'maxEvents', 'timeoutMs', 'idleTimeoutMs', 'window', 'maxConcurrentStreams'] as const) {
    const value = full[name]
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `Protocol ${spec.id}: ${name} must be a positive integer, got ${String(value)}`)
    }
  }
  return Object.freeze(full)
}

const controlFrameSchema = z.union([
  z.strictObject({ credit: z.number().int().positive().max(1_000_000) }),
  z.strictObject({ cancel: z.string().max(maxErrorText) }),
])

const remoteErrorSchema = z.object({ code: z.string().max(200), message: z.string().max(10_000), hint: z.string().max(10_000).optional() })
const responderFrameSchema = z.union([
  z.strictObject({ e: z.unknown() }),
  z.strictObject({ k: z.literal(1) }),
  z.strictObject({ ok: z.literal(true), events: z.number().int().nonnegative(), body: z.unknown() }),
  z.strictObject({ ok: z.literal(false), error: remoteErrorSchema }),
])


function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}

// ---------------------------------------------------------------------------------------------------------------
// Responder

export interface StreamServer {
  /** Stops serving: new requests are refused and every exchange in progress is cancelled. */
  close(): Promise<void>
  /** Exchanges in progress. */
  active(): number
}

export async function serveStreamProtocol<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType>(
  deps: StreamDeps,
  protocol: StreamProtocol<Req, Ev, Res>,
  handler: StreamHandler<Req, Ev, Res>,
  options: ServeOptions = {},
): Promise<StreamServer> {
  const guard = deps.inbound ?? inboundGuardFor(deps.libp2p)
  const logger = deps.logger ?? deps.libp2p.logger
  const log = logger.forComponent(`hearth:net:stream:${protocol.id}`)
  if (deps.libp2p.getProtocols().includes(protocol.id)) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `${protocol.id} already has a handler on this node`, {
      hint: 'close the other server of this protocol first',
    })
  }
  const stopping = new AbortController()
  const running = new Set<Promise<void>>()
  await deps.libp2p.handle(protocol.id, async (stream, connection) => {
    const exchange = respond(deps, guard, options, log, protocol, handler, stream, connection, stopping.signal).catch((error: unknown) => {
      // Nothing may escape into libp2p: log, drop the stream, keep serving.
      log.error('unexpected failure serving %p - %e', connection.remotePeer, error)
      stream.abort(asError(error))
    })
    running.add(exchange)
    await exchange.finally(() => running.delete(exchange))
  }, { maxInboundStreams: protocol.maxConcurrentStreams, maxOutboundStreams: protocol.maxConcurrentStreams, runOnLimitedConnection: true })
  return {
    async close() {
      await deps.libp2p.unhandle(protocol.id).catch(() => undefined)
      stopping.abort(new HearthError('HEARTH_ERR_NET_REMOTE', `the node stopped serving ${protocol.id}`, { hint: 'try again later or with another provider' }))
      await Promise.allSettled([...running])
    },
    active: () => running.size,
  }
}

async function respond<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType>(
  deps: StreamDeps,
  guard: InboundGuard,
  options: ServeOptions,
  log: Logger,
  protocol: StreamProtocol<Req, Ev, Res>,
  handler: StreamHandler<Req, Ev, Res>,
  stream: Stream,
  connection: Connection,
  stopping: AbortSignal,
): Promise<void> {
  const id = protocol.id
  const peer = connection.remotePeer
  const deadline = AbortSignal.timeout(protocol.timeoutMs)
  const cancelled = new AbortController()
  const onClose = (): void => cancelled.abort(new HearthError('HEARTH_ERR_NET_REMOTE', `the requester of ${id} went away`))
  stream.addEventListener('close', onClose, { once: true })
  const signal = AbortSignal.any([deadline, cancelled.signal, stopping])
  // One reader for the request and the control frames after it; the limit fits whichever is larger. Each frame is
  // reserved from the node's inbound budget (and a large one admitted) before its body is read.
  const frames = guardedFrames(guard, stream, { protocol: id, maxBytes: Math.max(protocol.maxRequestBytes, controlFrameBytes), connection, admit: options.admit, signal, log })
  /** Gives back the request's reservation once the exchange is over. */
  let release = (): void => {}
  let ended = false
  // Writes go out one at a time, in order.
  let writing: Promise<void> = Promise.resolve()
  const send = (bytes: Uint8Array): Promise<void> => {
    const next = writing.then(() => frames.write(bytes, { signal }))
    writing = next.catch(() => undefined)
    return next
  }
  const finish = async (bytes: Uint8Array, reset: boolean): Promise<void> => {
    ended = true
    if (stream.writeStatus !== 'writable') return
    try {
      await writing
      const limit = AbortSignal.timeout(5_000)
      await frames.write(bytes, { signal: limit })
      await stream.close({ signal: limit })
    } catch (error) {
      stream.abort(asError(error))
      return
    }
    if (reset && stream.status !== 'closed') stream.abort(new Error('request refused'))
  }
  const refuse = async (error: HearthError): Promise<void> => {
    log('refused a request from %p: %s', peer, error.shortMessage)
    await finish(errorFrame(error), true)
  }

  try {
    let remoteAddress: Address
    try {
      remoteAddress = addressFromPeerId(peer)
    } catch (cause) {
      return await refuse(toHearthError(cause, 'HEARTH_ERR_IDENTITY_KEY'))
    }
    let raw: unknown
    try {
      const frame = await frames.read({ signal: AbortSignal.any([signal, AbortSignal.timeout(protocol.idleTimeoutMs)]), due: true })
      raw = frame.value
      release = frame.release
    } catch (cause) {
      const refusal = guardRefusal(guard, id, cause)
      if (refusal !== undefined) {
        guard.metrics.rejected(id, refusal.reason)
        return await refuse(refusal.error)
      }
      if (cause instanceof FrameError) {
        const tooLarge = cause.failure === 'too-large'
        return await refuse(new HearthError(tooLarge ? 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE' : 'HEARTH_ERR_NET_MESSAGE_INVALID', `Request refused by ${id}: ${cause.message}`, {
          details: { protocol: id, limitBytes: protocol.maxRequestBytes },
        }))
      }
      if (!cancelled.signal.aborted) return await refuse(new HearthError('HEARTH_ERR_NET_TIMEOUT', `No complete request arrived in time for ${id}`))
      stream.abort(asError(cause))
      return
    }
    const shape = signedEnvelopeSchema.safeParse(raw)
    if (!shape.success) {
      return await refuse(new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `Request refused by ${id}: this protocol needs a signed envelope { payload, signer, signature } (${describeIssues(shape.error).text})`))
    }
    const envelope = raw as Signed<unknown>
    try {
      await verifySigned(envelope, { expectedSigner: remoteAddress })
    } catch (cause) {
      return await refuse(new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `Request refused by ${id}: ${isHearthError(cause) ? cause.shortMessage : 'the signature is invalid'}; a peer may only send requests it signed itself`))
    }
    const parsed = protocol.request.safeParse(envelope.payload)
    if (!parsed.success) {
      const summary = describeIssues(parsed.error, ['payload'])
      return await refuse(new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Request refused by ${id}: ${summary.text}`, { details: { protocol: id, issues: summary.issues } }))
    }

    // Credit and cancel frames from the requester, read in the background for the rest of the exchange.
    let credit = 0
    let creditWaiter: (() => void) | undefined
    const control = (async () => {
      while (!ended) {
        let frame: unknown
        try {
          const read = await frames.read({ signal })
          // A control frame is acted on at once: nothing of it is held.
          read.release()
          frame = read.value
        } catch (cause) {
          if (ended || signal.aborted) return
          // A control frame refused unread, or one trickled past its deadline: the exchange ends, its stream reset.
          const refusal = guardRefusal(guard, id, cause)
          if (refusal !== undefined) {
            guard.metrics.rejected(id, refusal.reason)
            log('ended an exchange with %p (%s): %s', peer, refusal.reason, refusal.error.shortMessage)
            cancelled.abort(refusal.error)
            return
          }
          // The requester closed its side before the result: it wants nothing more.
          cancelled.abort(new HearthError('HEARTH_ERR_NET_REMOTE', `the requester of ${id} closed the stream: ${(cause as Error).message}`))
          return
        }
        const checked = controlFrameSchema.safeParse(frame)
        if (!checked.success) {
          cancelled.abort(new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `the requester of ${id} sent a frame that is neither credit nor cancel`))
          return
        }
        if ('cancel' in checked.data) {
          cancelled.abort(new HearthError('HEARTH_ERR_NET_REMOTE', `the requester cancelled: ${checked.data.cancel}`, { details: { cancelled: true } }))
          return
        }
        credit = Math.min(credit + checked.data.credit, protocol.maxEvents)
        creditWaiter?.()
      }
    })()
    control.catch(() => undefined)

    let sentEvents = 0
    let sentBytes = 0
    let lastSentMs = Date.now()
    const keepAlive = setInterval(() => {
      if (ended || Date.now() - lastSentMs < protocol.idleTimeoutMs / 3) return
      lastSentMs = Date.now()
      void send(encodeJsonFrame({ k: 1 })).catch(() => undefined)
    }, Math.max(10, Math.floor(protocol.idleTimeoutMs / 6)))
    keepAlive.unref()

    const emit = async (event: z.input<Ev>): Promise<void> => {
      if (ended) throw new HearthError('HEARTH_ERR_INTERNAL', `the ${id} exchange has ended; no more events can be sent`)
      if (signal.aborted) throw signal.reason
      const checked = protocol.event.safeParse(event)
      if (!checked.success) throw new HearthError('HEARTH_ERR_INTERNAL', `an event of ${id} does not match its schema: ${describeIssues(checked.error).text}`)
      const bytes = encodeJsonFrame({ e: event })
      if (bytes.byteLength > protocol.maxEventBytes) {
        throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `an event of ${id} would be ${bytes.byteLength} bytes, over the limit of ${protocol.maxEventBytes}`)
      }
      if (sentEvents + 1 > protocol.maxEvents || sentBytes + bytes.byteLength + errorFrameLimit > protocol.maxTotalBytes) {
        throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `the ${id} exchange would pass its limit of ${protocol.maxEvents} events or ${protocol.maxTotalBytes} bytes`, {
          hint: 'ask for less output per batch (capture at the end, or transfer files instead of printing them)',
        })
      }
      // Back-pressure: wait until the requester has room, but not for ever: one that stops reading is gone.
      if (credit === 0) {
        const stalled = AbortSignal.timeout(protocol.idleTimeoutMs)
        const waiting = AbortSignal.any([signal, stalled])
        while (credit === 0 && !waiting.aborted) {
          await new Promise<void>((resolve) => {
            creditWaiter = resolve
            waiting.addEventListener('abort', () => resolve(), { once: true })
          })
          creditWaiter = undefined
        }
        if (credit === 0 && stalled.aborted && !signal.aborted) {
          throw new HearthError('HEARTH_ERR_NET_TIMEOUT', `the requester of ${id} read no events for ${protocol.idleTimeoutMs} ms`, {
            hint: 'read the events of a call as they come (or only await its result)',
          })
        }
      }
      if (signal.aborted) throw signal.reason
      credit--
      sentEvents++
      sentBytes += bytes.byteLength
      lastSentMs = Date.now()
      await send(bytes)
    }

    let result: z.input<Res>
    try {
      const handled = Promise.resolve().then(() => handler(parsed.data, { peerId: peer, remoteAddress, signal, envelope, emit }))
      handled.catch(() => {})
      result = await raceSignal(handled, signal)
    } catch (error) {
      clearInterval(keepAlive)
      if (cancelled.signal.aborted && !stopping.aborted) {
        ended = true
        stream.abort(asError(cancelled.signal.reason))
        return
      }
      if (deadline.aborted && !stopping.aborted) {
        return await finish(errorFrame(new HearthError('HEARTH_ERR_NET_TIMEOUT', `${id} did not finish within ${protocol.timeoutMs} ms`)), false)
      }
      if (stopping.aborted) return await finish(errorFrame(stopping.reason as HearthError), false)
      if (isHearthError(error)) return await finish(errorFrame(error), false)
      log.error('handler of %s failed on a request from %p - %e', id, peer, error)
      return await finish(errorFrame(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} failed`)), false)
    }
    clearInterval(keepAlive)
    let bytes: Uint8Array
    try {
      const checked = protocol.result.safeParse(result)
      if (!checked.success) throw new Error(`result does not match the schema of ${id}: ${describeIssues(checked.error).text}`)
      bytes = encodeJsonFrame({ ok: true, events: sentEvents, body: await signPayload(deps.identity, result) })
    } catch (error) {
      log.error('handler of %s returned an unusable result - %e', id, error)
      return await finish(errorFrame(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} returned an invalid result`)), false)
    }
    if (bytes.byteLength > protocol.maxResultBytes) {
      return await finish(errorFrame(new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `The result of ${id} would be ${bytes.byteLength} bytes, over the limit of ${protocol.maxResultBytes}`)), false)
    }
    await finish(bytes, false)
  } finally {
    ended = true
    release()
    stream.removeEventListener('close', onClose)
    // The requester closes its side after the result; one that never does would pin a stream slot.
    if (stream.status === 'open' || stream.status === 'closing') {
      const timer = setTimeout(() => stream.abort(new Error('the requester did not close the stream')), 5_000)
      timer.unref()
      stream.addEventListener('close', () => clearTimeout(timer), { once: true })
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Requester

export interface OpenStreamOptions {
  signal?: AbortSignal
}

/** Sends a signed request and returns its events and result; nothing is sent until `events` or `result` is used. */
export function openStream<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType>(
  deps: StreamDeps,
  target: PeerTarget,
  protocol: StreamProtocol<Req, Ev, Res>,
  request: z.input<Req>,
  options: OpenStreamOptions = {},
): StreamCall<Ev, Res> {
  const id = protocol.id
  const queue: z.output<Ev>[] = []
  let wake: (() => void) | undefined
  let done = false
  let failure: unknown
  const local = new AbortController()
  const timeout = AbortSignal.timeout(protocol.timeoutMs)
  const signal = AbortSignal.any([timeout, local.signal, ...(options.signal === undefined ? [] : [options.signal])])
  let stream: Stream | undefined
  let frames: JsonFrameStream | undefined
  /** Events handed to the consumer since the last credit frame. */
  let consumed = 0

  const notify = (): void => {
    const resolve = wake
    wake = undefined
    resolve?.()
  }
  const fail = (cause: unknown): HearthError => {
    if (options.signal?.aborted === true) return toHearthError(options.signal.reason, 'HEARTH_ERR_NET_REMOTE')
    if (local.signal.aborted) return toHearthError(local.signal.reason, 'HEARTH_ERR_NET_REMOTE')
    if (timeout.aborted) return new HearthError('HEARTH_ERR_NET_TIMEOUT', `${id} did not finish within ${protocol.timeoutMs} ms`, { cause })
    return toHearthError(cause, 'HEARTH_ERR_NET_REMOTE')
  }

  const run = async (): Promise<{ result: z.output<Res>; envelope: Signed<z.input<Res>>; events: number }> => {
    const checked = protocol.request.safeParse(request)
    if (!checked.success) {
      throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Request for ${id} does not match its schema: ${describeIssues(checked.error).text}`)
    }
    const bytes = encodeJsonFrame(await signPayload(deps.identity, request))
    if (bytes.byteLength > protocol.maxRequestBytes) {
      throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `Request for ${id} is ${bytes.byteLength} bytes, over the limit of ${protocol.maxRequestBytes}`)
    }
    let peer: PeerId
    let reached: PeerId | undefined
    try {
      const connection = await connectTo(deps.libp2p, target, { signal })
      peer = reached = connection.remotePeer
      stream = await connection.newStream(id, { signal, maxOutboundStreams: protocol.maxConcurrentStreams, runOnLimitedConnection: true })
    } catch (cause) {
      if (signal.aborted) throw fail(cause)
      // The peer serves another major of this protocol (a node of another release): say which.
      const mismatch = reached !== undefined && isUnsupportedProtocol(cause) ? await versionMismatch(deps.libp2p, reached, id) : undefined
      if (mismatch !== undefined) throw mismatch
      const unsupported = (cause as Error).name === 'UnsupportedProtocolError'
      throw new HearthError('HEARTH_ERR_NET_DIAL', unsupported ? `Peer ${String(target)} does not serve ${id}` : `Cannot reach ${String(target)} for ${id}: ${(cause as Error).message}`, {
        cause,
        ...(unsupported ? { hint: 'the peer runs another version of Hearth or another role' } : {}),
      })
    }
    const readLimit = Math.max(protocol.maxEventBytes, protocol.maxResultBytes, errorFrameLimit)
    frames = jsonFrames(stream, readLimit)
    await frames.write(bytes, { signal })
    await frames.write(encodeJsonFrame({ credit: protocol.window }), { signal })

    let events = 0
    let totalBytes = 0
    for (;;) {
      let frame: { value: unknown; bytes: number }
      try {
        frame = await frames.read({ signal: AbortSignal.any([signal, AbortSignal.timeout(protocol.idleTimeoutMs)]) })
      } catch (cause) {
        if (signal.aborted) throw fail(cause)
        if (cause instanceof FrameError && cause.failure === 'too-large') {
          throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `${peer.toString()} sent a ${id} frame over the limit: ${cause.message}`, { cause })
        }
        if (cause instanceof FrameError) throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${peer.toString()} sent a malformed ${id} frame: ${cause.message}`, { cause })
        if ((cause as Error).name === 'TimeoutError' || (cause as Error).name === 'AbortError') {
          throw new HearthError('HEARTH_ERR_NET_TIMEOUT', `${peer.toString()} sent nothing on ${id} for ${protocol.idleTimeoutMs} ms`, { cause })
        }
        throw new HearthError('HEARTH_ERR_NET_REMOTE', `${peer.toString()} closed the ${id} stream without a result`, { cause })
      }
      totalBytes += frame.bytes
      if (totalBytes > protocol.maxTotalBytes) {
        throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `${peer.toString()} sent more than ${protocol.maxTotalBytes} bytes on ${id}`, { hint: 'the provider misbehaves; use another' })
      }
      const shape = responderFrameSchema.safeParse(frame.value)
      if (!shape.success) throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${peer.toString()} sent a frame on ${id} that is not an event or result: ${describeIssues(shape.error).text}`)
      const data = shape.data
      if ('k' in data) continue
      if ('e' in data) {
        if (frame.bytes > protocol.maxEventBytes) throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `${peer.toString()} sent a ${frame.bytes}-byte event on ${id}, over the limit of ${protocol.maxEventBytes}`)
        events++
        if (events > protocol.maxEvents) throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `${peer.toString()} sent more than ${protocol.maxEvents} events on ${id}`)
        const event = protocol.event.safeParse(data.e)
        if (!event.success) throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${peer.toString()} sent an event on ${id} that does not match its schema: ${describeIssues(event.error).text}`)
        if (events - consumedTotal() > protocol.window) {
          throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${peer.toString()} sent events on ${id} beyond the credit it was given`)
        }
        if (iterating) {
          queue.push(event.data)
          notify()
        } else {
          // Only the result is wanted: events are dropped as they arrive, and their room given back at once.
          grant()
        }
        continue
      }
      if (data.ok === false) {
        const remote = data.error
        const code = remoteErrorCode(remote.code)
        throw new HearthError(code, `Peer ${peer.toString()} answered ${id} with ${remote.code}: ${remote.message}`, {
          ...(remote.hint === undefined ? {} : { hint: remote.hint }),
          details: { protocol: id, remoteCode: remote.code, remoteMessage: remote.message, remoteHint: remote.hint },
        })
      }
      if (frame.bytes > protocol.maxResultBytes) throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `the result of ${id} from ${peer.toString()} is over ${protocol.maxResultBytes} bytes`)
      if (data.events !== events) throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${peer.toString()} says it sent ${data.events} events on ${id}, ${events} arrived`)
      const envelope = signedEnvelopeSchema.safeParse(data.body)
      if (!envelope.success) throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `the result of ${id} from ${peer.toString()} is not a signed envelope`)
      try {
        await verifySigned(data.body as Signed<unknown>, { expectedSigner: addressFromPeerId(peer) })
      } catch (cause) {
        throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `the result of ${id} is not properly signed by ${peer.toString()}`, { cause })
      }
      const parsed = protocol.result.safeParse((data.body as Signed<unknown>).payload)
      if (!parsed.success) throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `the result of ${id} from ${peer.toString()} does not match its schema: ${describeIssues(parsed.error, ['payload']).text}`)
      return { result: parsed.data, envelope: data.body as Signed<z.input<Res>>, events }
    }
  }

  let consumedCount = 0
  /** Whether the caller reads the events; a caller that only awaits the result does not hold them up. */
  let iterating = false
  const consumedTotal = (): number => consumedCount
  let started: Promise<{ result: z.output<Res>; envelope: Signed<z.input<Res>>; events: number }> | undefined
  const start = (): Promise<{ result: z.output<Res>; envelope: Signed<z.input<Res>>; events: number }> => {
    started ??= run()
      .then((value) => {
        // Our side closes after the result: the exchange is complete.
        void stream?.close().catch(() => undefined)
        return value
      })
      .catch((cause: unknown) => {
        const error = fail(cause)
        if (stream !== undefined && (stream.status === 'open' || stream.status === 'closing')) {
          if (local.signal.aborted) {
            // Cancelled: the cancel frame is on its way; closing (not resetting) lets it arrive first.
            const open = stream
            void open.close({ signal: AbortSignal.timeout(2_000) }).catch(() => open.abort(error))
          } else {
            stream.abort(error)
          }
        }
        throw error
      })
      .finally(() => {
        done = true
        notify()
      })
    started.catch((error: unknown) => {
      failure = error
    })
    return started
  }

  const grant = (): void => {
    consumedCount++
    consumed++
    // Credit goes back in batches of half a window: fewer frames, and the responder never waits on a round trip.
    if (consumed >= Math.max(1, Math.floor(protocol.window / 2)) && frames !== undefined && !done) {
      const count = consumed
      consumed = 0
      void frames.write(encodeJsonFrame({ credit: count }), { signal }).catch(() => undefined)
    }
  }

  const events: AsyncIterable<z.output<Ev>> = {
    [Symbol.asyncIterator]() {
      iterating = true
      const settled = start()
      return {
        async next(): Promise<IteratorResult<z.output<Ev>>> {
          for (;;) {
            if (queue.length > 0) {
              const value = queue.shift()!
              grant()
              return { value, done: false }
            }
            if (done) {
              if (failure !== undefined) throw failure
              await settled
              return { value: undefined, done: true }
            }
            await new Promise<void>((resolve) => {
              wake = resolve
            })
          }
        },
        async return(): Promise<IteratorResult<z.output<Ev>>> {
          // The consumer stopped reading before the end: nothing more is wanted.
          if (!done) cancel('the requester stopped reading')
          return { value: undefined, done: true }
        },
      }
    },
  }

  const cancel = (reason = 'cancelled by the requester'): void => {
    if (done) return
    if (frames !== undefined && stream?.writeStatus === 'writable') {
      // Tell the responder first (it stops its work), then stop waiting.
      void frames.write(encodeJsonFrame({ cancel: reason.slice(0, maxErrorText) }), { signal: AbortSignal.timeout(1000) })
        .catch(() => undefined)
        .finally(() => local.abort(new HearthError('HEARTH_ERR_NET_REMOTE', `${id} cancelled: ${reason}`, { details: { cancelled: true } })))
    } else {
      local.abort(new HearthError('HEARTH_ERR_NET_REMOTE', `${id} cancelled: ${reason}`, { details: { cancelled: true } }))
    }
  }

  return {
    events,
    get result() {
      return start()
    },
    cancel,
  }
}
