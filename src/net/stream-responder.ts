/**
 * The responder of an event-stream protocol (wire format: stream-protocol.ts): it checks the signed request, runs the
 * handler with an `emit` that sends events only while the requester has granted credit for them, reads the requester's
 * credit and cancel frames in the background, sends keep-alives while the handler is quiet, and ends with the signed
 * result or an error frame.
 */
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'
import type { Address } from 'viem'
import type { z } from 'zod'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import { signedEnvelopeSchema, signPayload, verifySigned } from '../identity/signed.ts'
import type { Signed } from '../identity/signed.ts'
import { describeIssues } from './describe-issues.ts'
import { guardedFrames, guardRefusal, inboundGuardFor } from './inbound-guard.ts'
import type { InboundGuard, ServeOptions } from './inbound-guard.ts'
import { encodeJsonFrame, FrameError } from './json-frames.ts'
import type { JsonFrameStream } from './json-frames.ts'
import { asError, errorFrame, errorFrameLimit, raceSignal, releaseStream, serveSignals, writeAnswer } from './serve-support.ts'
import type { ServeSignals } from './serve-support.ts'
import { controlFrameBytes, controlFrameSchema } from './stream-protocol-spec.ts'
import type { StreamDeps, StreamHandler, StreamProtocol, StreamServer } from './stream-protocol-spec.ts'

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
    throw new HearthError('HEARTH_ERR_API_MISUSE', `${protocol.id} already has a handler on this node`, {
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

/** One exchange being served, as the pieces of `respond` share it. */
interface Serving {
  guard: InboundGuard
  log: Logger
  protocol: StreamProtocol
  stream: Stream
  frames: JsonFrameStream
  peer: PeerId
  /** `gone` is aborted when the requester goes away or cancels; `signal` also aborts when the node stops serving. */
  signals: ServeSignals
  /** Aborts when the node stops serving the protocol. */
  stopping: AbortSignal
  /** Gives back the request's reservation once the exchange is over. */
  release: () => void
  /** Set once the final frame is on its way (or the exchange is over): no more events, no more control frames read. */
  ended: boolean
  /** The last write queued: writes go out one at a time, in order. */
  writing: Promise<void>
  /** Events the requester has room for. */
  credit: number
  /** Wakes an `emit` waiting for credit. */
  creditWaiter: (() => void) | undefined
  sentEvents: number
  sentBytes: number
  lastSentMs: number
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
  const signals = serveSignals(stream, protocol.timeoutMs, () => new HearthError('HEARTH_ERR_NET_REMOTE', `the requester of ${id} went away`), [stopping])
  // One reader for the request and the control frames after it; the limit fits whichever is larger. Each frame is
  // reserved from the node's inbound budget (and a large one admitted) before its body is read.
  const frames = guardedFrames(guard, stream, { protocol: id, maxBytes: Math.max(protocol.maxRequestBytes, controlFrameBytes), connection, admit: options.admit, signal: signals.signal, log })
  const serving: Serving = {
    guard, log, protocol, stream, frames, peer, signals, stopping,
    release: () => {},
    ended: false,
    writing: Promise.resolve(),
    credit: 0,
    creditWaiter: undefined,
    sentEvents: 0,
    sentBytes: 0,
    lastSentMs: Date.now(),
  }

  try {
    let remoteAddress: Address
    try {
      remoteAddress = addressFromPeerId(peer)
    } catch (cause) {
      return await refuse(serving, toHearthError(cause, 'HEARTH_ERR_IDENTITY_KEY'))
    }
    const request = await readRequest(serving, remoteAddress)
    if (request === undefined) return

    // Credit and cancel frames from the requester, read in the background for the rest of the exchange.
    const control = readControl(serving)
    control.catch(() => undefined)

    const emit = (event: z.input<Ev>): Promise<void> => emitEvent(serving, event)
    const result = await runHandler(serving, () => handler(request.data as z.output<Req>, { peerId: peer, remoteAddress, signal: signals.signal, envelope: request.envelope, emit }))
    if (result !== undefined) await sendResult(serving, deps, result.value)
  } finally {
    serving.ended = true
    serving.release()
    signals.detach()
    // The requester closes its side after the result; one that never does would pin a stream slot.
    releaseStream(stream, 5_000, 'the requester did not close the stream')
  }
}

/** Queues one frame behind the writes before it. */
function send(serving: Serving, bytes: Uint8Array): Promise<void> {
  const next = serving.writing.then(() => serving.frames.write(bytes, { signal: serving.signals.signal }))
  serving.writing = next.catch(() => undefined)
  return next
}

/** Sends the final frame once the writes before it are out, and closes our side; `reset` then drops the stream. */
async function finish(serving: Serving, bytes: Uint8Array, reset: boolean): Promise<void> {
  const { stream } = serving
  serving.ended = true
  if (stream.writeStatus !== 'writable') return
  await serving.writing
  if (!(await writeAnswer(stream, serving.frames, [bytes], AbortSignal.timeout(5_000)))) return
  if (reset && stream.status !== 'closed') stream.abort(new Error('request refused'))
}

async function refuse(serving: Serving, error: HearthError): Promise<void> {
  serving.log('refused a request from %p: %s', serving.peer, error.shortMessage)
  await finish(serving, errorFrame(error), true)
}

/**
 * The request, its envelope verified as signed by the connection's own peer and its payload checked against the
 * schema; undefined once it has been refused (or the requester went away).
 */
async function readRequest(serving: Serving, remoteAddress: Address): Promise<{ data: unknown; envelope: Signed<unknown> } | undefined> {
  const { guard, protocol, stream, frames, signals } = serving
  const id = protocol.id
  let raw: unknown
  try {
    const frame = await frames.read({ signal: AbortSignal.any([signals.signal, AbortSignal.timeout(protocol.idleTimeoutMs)]), due: true })
    raw = frame.value
    serving.release = frame.release
  } catch (cause) {
    const refusal = guardRefusal(guard, id, cause)
    if (refusal !== undefined) {
      guard.metrics.rejected(id, refusal.reason)
      await refuse(serving, refusal.error)
      return undefined
    }
    if (cause instanceof FrameError) {
      const tooLarge = cause.failure === 'too-large'
      await refuse(serving, new HearthError(tooLarge ? 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE' : 'HEARTH_ERR_NET_MESSAGE_INVALID', `Request refused by ${id}: ${cause.message}`, {
        details: { protocol: id, limitBytes: protocol.maxRequestBytes },
      }))
      return undefined
    }
    if (!signals.gone.signal.aborted) {
      await refuse(serving, new HearthError('HEARTH_ERR_NET_TIMEOUT', `No complete request arrived in time for ${id}`))
      return undefined
    }
    stream.abort(asError(cause))
    return undefined
  }
  const shape = signedEnvelopeSchema.safeParse(raw)
  if (!shape.success) {
    await refuse(serving, new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `Request refused by ${id}: this protocol needs a signed envelope { payload, signer, signature } (${describeIssues(shape.error).text})`))
    return undefined
  }
  const envelope = raw as Signed<unknown>
  try {
    await verifySigned(envelope, { expectedSigner: remoteAddress })
  } catch (cause) {
    await refuse(serving, new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `Request refused by ${id}: ${isHearthError(cause) ? cause.shortMessage : 'the signature is invalid'}; a peer may only send requests it signed itself`))
    return undefined
  }
  const parsed = protocol.request.safeParse(envelope.payload)
  if (!parsed.success) {
    const summary = describeIssues(parsed.error, ['payload'])
    await refuse(serving, new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Request refused by ${id}: ${summary.text}`, { details: { protocol: id, issues: summary.issues } }))
    return undefined
  }
  return { data: parsed.data, envelope }
}

/** Reads the requester's credit and cancel frames until the exchange ends; any other frame ends it. */
async function readControl(serving: Serving): Promise<void> {
  const { guard, log, protocol, frames, peer, signals } = serving
  const id = protocol.id
  const cancelled = signals.gone
  while (!serving.ended) {
    let frame: unknown
    try {
      const read = await frames.read({ signal: signals.signal })
      // A control frame is acted on at once: nothing of it is held.
      read.release()
      frame = read.value
    } catch (cause) {
      if (serving.ended || signals.signal.aborted) return
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
    serving.credit = Math.min(serving.credit + checked.data.credit, protocol.maxEvents)
    serving.creditWaiter?.()
  }
}

/** Keeps the stream from looking idle to the requester while the handler sends nothing. */
function startKeepAlive(serving: Serving): NodeJS.Timeout {
  const { idleTimeoutMs } = serving.protocol
  const keepAlive = setInterval(() => {
    if (serving.ended || Date.now() - serving.lastSentMs < idleTimeoutMs / 3) return
    serving.lastSentMs = Date.now()
    void send(serving, encodeJsonFrame({ k: 1 })).catch(() => undefined)
  }, Math.max(10, Math.floor(idleTimeoutMs / 6)))
  keepAlive.unref()
  return keepAlive
}

/** The handler's `emit`: one event, checked and bounded, sent once the requester has room for it. */
async function emitEvent(serving: Serving, event: unknown): Promise<void> {
  const { protocol, signals } = serving
  const id = protocol.id
  const signal = signals.signal
  if (serving.ended) throw new HearthError('HEARTH_ERR_INTERNAL', `the ${id} exchange has ended; no more events can be sent`)
  if (signal.aborted) throw signal.reason
  const checked = protocol.event.safeParse(event)
  if (!checked.success) throw new HearthError('HEARTH_ERR_INTERNAL', `an event of ${id} does not match its schema: ${describeIssues(checked.error).text}`)
  const bytes = encodeJsonFrame({ e: event })
  if (bytes.byteLength > protocol.maxEventBytes) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `an event of ${id} would be ${bytes.byteLength} bytes, over the limit of ${protocol.maxEventBytes}`)
  }
  if (serving.sentEvents + 1 > protocol.maxEvents || serving.sentBytes + bytes.byteLength + errorFrameLimit > protocol.maxTotalBytes) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `the ${id} exchange would pass its limit of ${protocol.maxEvents} events or ${protocol.maxTotalBytes} bytes`, {
      hint: 'ask for less output per batch (capture at the end, or transfer files instead of printing them)',
    })
  }
  await waitForCredit(serving)
  if (signal.aborted) throw signal.reason
  serving.credit--
  serving.sentEvents++
  serving.sentBytes += bytes.byteLength
  serving.lastSentMs = Date.now()
  await send(serving, bytes)
}

/** Back-pressure: waits until the requester has room, but not for ever: one that stops reading is gone. */
async function waitForCredit(serving: Serving): Promise<void> {
  if (serving.credit !== 0) return
  const { protocol, signals } = serving
  const stalled = AbortSignal.timeout(protocol.idleTimeoutMs)
  const waiting = AbortSignal.any([signals.signal, stalled])
  while (serving.credit === 0 && !waiting.aborted) {
    await new Promise<void>((resolve) => {
      serving.creditWaiter = resolve
      waiting.addEventListener('abort', () => resolve(), { once: true })
    })
    serving.creditWaiter = undefined
  }
  if (serving.credit === 0 && stalled.aborted && !signals.signal.aborted) {
    throw new HearthError('HEARTH_ERR_NET_TIMEOUT', `the requester of ${protocol.id} read no events for ${protocol.idleTimeoutMs} ms`, {
      hint: 'read the events of a call as they come (or only await its result)',
    })
  }
}

/** The handler's result, with keep-alives sent meanwhile; undefined once its failure has been answered (or the requester went away). */
async function runHandler(serving: Serving, run: () => Promise<unknown>): Promise<{ value: unknown } | undefined> {
  const { log, protocol, stream, peer, signals, stopping } = serving
  const id = protocol.id
  const cancelled = signals.gone.signal
  const keepAlive = startKeepAlive(serving)
  try {
    const handled = Promise.resolve().then(run)
    handled.catch(() => {})
    return { value: await raceSignal(handled, signals.signal) }
  } catch (error) {
    clearInterval(keepAlive)
    if (cancelled.aborted && !stopping.aborted) {
      serving.ended = true
      stream.abort(asError(cancelled.reason))
      return undefined
    }
    if (signals.deadline.aborted && !stopping.aborted) {
      await finish(serving, errorFrame(new HearthError('HEARTH_ERR_NET_TIMEOUT', `${id} did not finish within ${protocol.timeoutMs} ms`)), false)
      return undefined
    }
    if (stopping.aborted) await finish(serving, errorFrame(stopping.reason as HearthError), false)
    else if (isHearthError(error)) await finish(serving, errorFrame(error), false)
    else {
      log.error('handler of %s failed on a request from %p - %e', id, peer, error)
      await finish(serving, errorFrame(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} failed`)), false)
    }
    return undefined
  } finally {
    clearInterval(keepAlive)
  }
}

/** Checks the result against the schema and the size limit, signs it and sends it as the final frame. */
async function sendResult(serving: Serving, deps: StreamDeps, result: unknown): Promise<void> {
  const { log, protocol } = serving
  const id = protocol.id
  let bytes: Uint8Array
  try {
    const checked = protocol.result.safeParse(result)
    if (!checked.success) throw new Error(`result does not match the schema of ${id}: ${describeIssues(checked.error).text}`)
    bytes = encodeJsonFrame({ ok: true, events: serving.sentEvents, body: await signPayload(deps.identity, result) })
  } catch (error) {
    log.error('handler of %s returned an unusable result - %e', id, error)
    return await finish(serving, errorFrame(new HearthError('HEARTH_ERR_INTERNAL', `The handler of ${id} returned an invalid result`)), false)
  }
  if (bytes.byteLength > protocol.maxResultBytes) {
    return await finish(serving, errorFrame(new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `The result of ${id} would be ${bytes.byteLength} bytes, over the limit of ${protocol.maxResultBytes}`)), false)
  }
  await finish(serving, bytes, false)
}
