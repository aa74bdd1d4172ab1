/**
 * The requester of an event-stream protocol (wire format: stream-protocol.ts): it sends the signed request, hands the
 * events to the caller as they come, granting the responder credit as the caller reads them, checks every frame
 * against its bounds, and verifies the signed result; a cancel goes to the responder as a cancel frame.
 */
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { z } from 'zod'
import { HearthError, toHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import { signedEnvelopeSchema, signPayload, verifySigned } from '../identity/signed.ts'
import type { Signed } from '../identity/signed.ts'
import { dialFailure, openCallStream, remoteAnswerError } from './call-support.ts'
import { describeIssues } from './describe-issues.ts'
import type { PeerTarget } from './dial-target.ts'
import { encodeJsonFrame, FrameError, jsonFrames } from './json-frames.ts'
import type { JsonFrameStream } from './json-frames.ts'
import { errorFrameLimit, maxErrorText } from './serve-support.ts'
import { responderFrameSchema } from './stream-protocol-spec.ts'
import type { OpenStreamOptions, StreamCall, StreamDeps, StreamProtocol } from './stream-protocol-spec.ts'
import { isUnsupportedProtocol, versionMismatch } from './versions.ts'

type CallResult<Res extends z.ZodType> = { result: z.output<Res>; envelope: Signed<z.input<Res>>; events: number }

/** One call in progress, as the pieces of `openStream` share it. */
interface Calling<Ev extends z.ZodType, Res extends z.ZodType> {
  protocol: StreamProtocol<z.ZodType, Ev, Res>
  /** Events that arrived and that the caller has not read yet. */
  queue: z.output<Ev>[]
  /** Wakes the caller waiting for an event (or the end). */
  wake: (() => void) | undefined
  done: boolean
  failure: unknown
  /** Aborted by `cancel`. */
  local: AbortController
  timeout: AbortSignal
  callerSignal: AbortSignal | undefined
  /** Aborts on the deadline, a cancel, or the caller's signal. */
  signal: AbortSignal
  stream: Stream | undefined
  frames: JsonFrameStream | undefined
  /** Events handed to the consumer since the last credit frame. */
  consumed: number
  /** Events handed to the consumer (or dropped) in all. */
  consumedCount: number
  /** Whether the caller reads the events; a caller that only awaits the result does not hold them up. */
  iterating: boolean
  started: Promise<CallResult<Res>> | undefined
}

/** Sends a signed request and returns its events and result; nothing is sent until `events` or `result` is used. */
export function openStream<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType>(
  deps: StreamDeps,
  target: PeerTarget,
  protocol: StreamProtocol<Req, Ev, Res>,
  request: z.input<Req>,
  options: OpenStreamOptions = {},
): StreamCall<Ev, Res> {
  const local = new AbortController()
  const timeout = AbortSignal.timeout(protocol.timeoutMs)
  const call: Calling<Ev, Res> = {
    protocol,
    queue: [],
    wake: undefined,
    done: false,
    failure: undefined,
    local,
    timeout,
    callerSignal: options.signal,
    signal: AbortSignal.any([timeout, local.signal, ...(options.signal === undefined ? [] : [options.signal])]),
    stream: undefined,
    frames: undefined,
    consumed: 0,
    consumedCount: 0,
    iterating: false,
    started: undefined,
  }
  const start = (): Promise<CallResult<Res>> => startCall(call, () => runCall(call, deps.libp2p, deps, target, request))
  return {
    events: eventsOf(call, start),
    get result() {
      return start()
    },
    cancel: (reason) => cancelCall(call, reason),
  }
}

function notify(call: Calling<z.ZodType, z.ZodType>): void {
  const resolve = call.wake
  call.wake = undefined
  resolve?.()
}

/** What a failure of the call becomes: the caller's abort, a cancel, the deadline, or the cause itself. */
function callFailure(call: Calling<z.ZodType, z.ZodType>, cause: unknown): HearthError {
  const { protocol } = call
  if (call.callerSignal?.aborted === true) return toHearthError(call.callerSignal.reason, 'HEARTH_ERR_NET_REMOTE')
  if (call.local.signal.aborted) return toHearthError(call.local.signal.reason, 'HEARTH_ERR_NET_REMOTE')
  if (call.timeout.aborted) return new HearthError('HEARTH_ERR_NET_TIMEOUT', `${protocol.id} did not finish within ${protocol.timeoutMs} ms`, { cause })
  return toHearthError(cause, 'HEARTH_ERR_NET_REMOTE')
}

/** Runs the call once, whoever asks first (the events or the result), and ends the stream as it ends. */
function startCall<Res extends z.ZodType>(call: Calling<z.ZodType, Res>, run: () => Promise<CallResult<Res>>): Promise<CallResult<Res>> {
  if (call.started !== undefined) return call.started
  const started = run()
    .then((value) => {
      // Our side closes after the result: the exchange is complete.
      void call.stream?.close().catch(() => undefined)
      return value
    })
    .catch((cause: unknown) => {
      const error = callFailure(call, cause)
      const stream = call.stream
      if (stream !== undefined && (stream.status === 'open' || stream.status === 'closing')) {
        if (call.local.signal.aborted) {
          // Cancelled: the cancel frame is on its way; closing (not resetting) lets it arrive first.
          void stream.close({ signal: AbortSignal.timeout(2_000) }).catch(() => stream.abort(error))
        } else {
          stream.abort(error)
        }
      }
      throw error
    })
    .finally(() => {
      call.done = true
      notify(call)
    })
  call.started = started
  started.catch((error: unknown) => {
    call.failure = error
  })
  return started
}

/** Sends the request, then reads events until the result (or a failure) arrives. */
async function runCall<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType>(
  call: Calling<Ev, Res>,
  libp2p: Libp2p,
  deps: StreamDeps,
  target: PeerTarget,
  request: z.input<Req>,
): Promise<CallResult<Res>> {
  const { protocol, signal } = call
  const id = protocol.id
  const checked = protocol.request.safeParse(request)
  if (!checked.success) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `Request for ${id} does not match its schema: ${describeIssues(checked.error).text}`)
  }
  const bytes = encodeJsonFrame(await signPayload(deps.identity, request))
  if (bytes.byteLength > protocol.maxRequestBytes) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `Request for ${id} is ${bytes.byteLength} bytes, over the limit of ${protocol.maxRequestBytes}`)
  }
  const { peer, stream } = await openCallStream(libp2p, target, id, { signal, maxOutboundStreams: protocol.maxConcurrentStreams, optimistic: false }, async (cause, reached) => {
    if (signal.aborted) return callFailure(call, cause)
    // The peer serves another major of this protocol (a node of another release): say which.
    const mismatch = reached !== undefined && isUnsupportedProtocol(cause) ? await versionMismatch(libp2p, reached, id) : undefined
    return mismatch ?? dialFailure(target, id, cause, false)
  })
  call.stream = stream
  const frames = jsonFrames(stream, Math.max(protocol.maxEventBytes, protocol.maxResultBytes, errorFrameLimit))
  call.frames = frames
  await frames.write(bytes, { signal })
  await frames.write(encodeJsonFrame({ credit: protocol.window }), { signal })

  let events = 0
  let totalBytes = 0
  for (;;) {
    const frame = await readFrame(call, frames, peer)
    totalBytes += frame.bytes
    if (totalBytes > protocol.maxTotalBytes) {
      throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `${peer.toString()} sent more than ${protocol.maxTotalBytes} bytes on ${id}`, { hint: 'the provider misbehaves; use another' })
    }
    const shape = responderFrameSchema.safeParse(frame.value)
    if (!shape.success) throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${peer.toString()} sent a frame on ${id} that is not an event or result: ${describeIssues(shape.error).text}`)
    const data = shape.data
    if ('k' in data) continue
    if ('e' in data) {
      takeEvent(call, peer, data.e, frame.bytes, ++events)
      continue
    }
    if (data.ok === false) throw remoteAnswerError(peer, id, data.error, false)
    return await checkResult(call, peer, data, frame.bytes, events)
  }
}

/** The next frame from the responder, which may stay silent for at most the protocol's idle timeout. */
async function readFrame(call: Calling<z.ZodType, z.ZodType>, frames: JsonFrameStream, peer: PeerId): Promise<{ value: unknown; bytes: number }> {
  const { protocol, signal } = call
  const id = protocol.id
  try {
    return await frames.read({ signal: AbortSignal.any([signal, AbortSignal.timeout(protocol.idleTimeoutMs)]) })
  } catch (cause) {
    if (signal.aborted) throw callFailure(call, cause)
    if (cause instanceof FrameError && cause.failure === 'too-large') {
      throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `${peer.toString()} sent a ${id} frame over the limit: ${cause.message}`, { cause })
    }
    if (cause instanceof FrameError) throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${peer.toString()} sent a malformed ${id} frame: ${cause.message}`, { cause })
    if ((cause as Error).name === 'TimeoutError' || (cause as Error).name === 'AbortError') {
      throw new HearthError('HEARTH_ERR_NET_TIMEOUT', `${peer.toString()} sent nothing on ${id} for ${protocol.idleTimeoutMs} ms`, { cause })
    }
    throw new HearthError('HEARTH_ERR_NET_REMOTE', `${peer.toString()} closed the ${id} stream without a result`, { cause })
  }
}

/** Checks the `events`-th event against the protocol's bounds and the credit given, and hands it to the caller. */
function takeEvent<Ev extends z.ZodType>(call: Calling<Ev, z.ZodType>, peer: PeerId, body: unknown, bytes: number, events: number): void {
  const { protocol } = call
  const id = protocol.id
  if (bytes > protocol.maxEventBytes) throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `${peer.toString()} sent a ${bytes}-byte event on ${id}, over the limit of ${protocol.maxEventBytes}`)
  if (events > protocol.maxEvents) throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `${peer.toString()} sent more than ${protocol.maxEvents} events on ${id}`)
  const event = protocol.event.safeParse(body)
  if (!event.success) throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${peer.toString()} sent an event on ${id} that does not match its schema: ${describeIssues(event.error).text}`)
  if (events - call.consumedCount > protocol.window) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${peer.toString()} sent events on ${id} beyond the credit it was given`)
  }
  if (call.iterating) {
    call.queue.push(event.data)
    notify(call)
  } else {
    // Only the result is wanted: events are dropped as they arrive, and their room given back at once.
    grant(call)
  }
}

/** The result frame, its count of events matched and its envelope verified as signed by the responder. */
async function checkResult<Res extends z.ZodType>(
  call: Calling<z.ZodType, Res>,
  peer: PeerId,
  data: { events: number; body: unknown },
  bytes: number,
  events: number,
): Promise<CallResult<Res>> {
  const { protocol } = call
  const id = protocol.id
  if (bytes > protocol.maxResultBytes) throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `the result of ${id} from ${peer.toString()} is over ${protocol.maxResultBytes} bytes`)
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

/** Counts one event as read and gives the responder its room back. */
function grant(call: Calling<z.ZodType, z.ZodType>): void {
  call.consumedCount++
  call.consumed++
  // Credit goes back in batches of half a window: fewer frames, and the responder never waits on a round trip.
  if (call.consumed >= Math.max(1, Math.floor(call.protocol.window / 2)) && call.frames !== undefined && !call.done) {
    const count = call.consumed
    call.consumed = 0
    void call.frames.write(encodeJsonFrame({ credit: count }), { signal: call.signal }).catch(() => undefined)
  }
}

/** The call's events, as an async iterable that starts the call. */
function eventsOf<Ev extends z.ZodType>(call: Calling<Ev, z.ZodType>, start: () => Promise<unknown>): AsyncIterable<z.output<Ev>> {
  return {
    [Symbol.asyncIterator]() {
      call.iterating = true
      const settled = start()
      return {
        async next(): Promise<IteratorResult<z.output<Ev>>> {
          for (;;) {
            if (call.queue.length > 0) {
              const value = call.queue.shift()!
              grant(call)
              return { value, done: false }
            }
            if (call.done) {
              if (call.failure !== undefined) throw call.failure
              await settled
              return { value: undefined, done: true }
            }
            await new Promise<void>((resolve) => {
              call.wake = resolve
            })
          }
        },
        async return(): Promise<IteratorResult<z.output<Ev>>> {
          // The consumer stopped reading before the end: nothing more is wanted.
          if (!call.done) cancelCall(call, 'the requester stopped reading')
          return { value: undefined, done: true }
        },
      }
    },
  }
}

function cancelCall(call: Calling<z.ZodType, z.ZodType>, reason = 'cancelled by the requester'): void {
  if (call.done) return
  const id = call.protocol.id
  const frames = call.frames
  if (frames !== undefined && call.stream?.writeStatus === 'writable') {
    // Tell the responder first (it stops its work), then stop waiting.
    void frames.write(encodeJsonFrame({ cancel: reason.slice(0, maxErrorText) }), { signal: AbortSignal.timeout(1000) })
      .catch(() => undefined)
      .finally(() => call.local.abort(new HearthError('HEARTH_ERR_NET_REMOTE', `${id} cancelled: ${reason}`, { details: { cancelled: true } })))
  } else {
    call.local.abort(new HearthError('HEARTH_ERR_NET_REMOTE', `${id} cancelled: ${reason}`, { details: { cancelled: true } }))
  }
}
