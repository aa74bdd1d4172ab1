/**
 * What every kind of Hearth protocol shares on the serving side (request/response in protocol.ts, streams of events in
 * stream-protocol.ts, binary bodies in blob-protocol.ts): the id's shape, the error frame a refusal sends, the rule
 * that one node serves a protocol once, and a libp2p handler that nothing thrown can escape from. How their inbound
 * frames are budgeted, admitted and timed is inbound-guard.ts. An exchange's signals (its deadline, the requester
 * going away), the writer of its answer (or error frame) and the release of a finished stream are shared here too;
 * the calling side's counterparts are in call-support.ts.
 */
import type { Libp2p, Stream, Connection } from '@libp2p/interface'
import type { Logger } from '@libp2p/interface'
import { HearthError } from '../errors.ts'
import { encodeJsonFrame } from './json-frames.ts'
import type { JsonFrameStream } from './json-frames.ts'

/** `/hearth/<area>/<name>/<major>`. */
export const protocolIdPattern = /^\/hearth\/[a-z0-9][a-z0-9-]*\/[a-z0-9][a-z0-9-]*\/[1-9][0-9]*$/
/** Error frames are small; readers let one through even when a protocol's own limit is tinier. */
export const errorFrameLimit = 16 * 1024
export const maxErrorText = 1000
/** Longest wait for a refusal (an error frame) to go out; a peer that does not read it must not hold the stream. */
export const refusalWriteMs = 10_000

/**
 * The local code for a peer's error answer: a timeout stays a timeout and a busy node stays busy wherever it happened
 * (callers branch on one code, and retry a busy node later); anything else is HEARTH_ERR_NET_REMOTE with the peer's
 * code in `details.remoteCode`.
 */
export function remoteErrorCode(remoteCode: string): 'HEARTH_ERR_NET_TIMEOUT' | 'HEARTH_ERR_NET_BUSY' | 'HEARTH_ERR_NET_REMOTE' {
  if (remoteCode === 'HEARTH_ERR_NET_TIMEOUT' || remoteCode === 'HEARTH_ERR_NET_BUSY') return remoteCode
  return 'HEARTH_ERR_NET_REMOTE'
}

/** `{ ok: false, error }`: a refusal with the error's code, message and hint, cut to size. */
export function errorFrame(error: HearthError): Uint8Array {
  return encodeJsonFrame({
    ok: false,
    error: {
      code: error.code,
      message: error.shortMessage.slice(0, maxErrorText),
      ...(error.hint === undefined ? {} : { hint: error.hint.slice(0, maxErrorText) }),
    },
  })
}

/**
 * Registers `serve` for `id` on the node. A second handler for the same id is a configuration error (`hint` says how
 * to replace it). Whatever `serve` throws is logged and the stream dropped: the node keeps serving.
 */
export async function handleGuarded(
  libp2p: Pick<Libp2p, 'getProtocols' | 'handle'>,
  protocol: { id: string; maxConcurrentStreams: number },
  log: Logger,
  hint: string,
  serve: (stream: Stream, connection: Connection) => Promise<void>,
): Promise<void> {
  if (libp2p.getProtocols().includes(protocol.id)) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `${protocol.id} already has a handler on this node`, { hint, details: { protocol: protocol.id } })
  }
  await libp2p.handle(
    protocol.id,
    async (stream, connection) => {
      try {
        await serve(stream, connection)
      } catch (error) {
        // Nothing may escape into libp2p: log, drop the stream, keep serving.
        log.error('unexpected failure serving a request from %p - %e', connection.remotePeer, error)
        stream.abort(error instanceof Error ? error : new Error(String(error)))
      }
    },
    // Relayed connections carry a relay's limits (a Hearth relay's let a whole package through): every Hearth
    // protocol runs over them, so a provider behind a NAT serves through its relay.
    { maxInboundStreams: protocol.maxConcurrentStreams, maxOutboundStreams: protocol.maxConcurrentStreams, runOnLimitedConnection: true },
  )
}

/** `promise`, or the signal's reason as soon as it aborts (the promise is left to settle on its own). */
export function raceSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

/** `value` as an Error, to abort a stream with. */
export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}

/** The signals of one served exchange. */
export interface ServeSignals {
  /** Aborts when the protocol's timeout passes. */
  deadline: AbortSignal
  /** Aborted when the requester closes or resets the stream (and by whoever else ends the exchange early). */
  gone: AbortController
  /** Aborts on any of them, or on the signals the exchange was started with: what the handler is given. */
  signal: AbortSignal
  /** Stops watching the stream: call it once the exchange is over. */
  detach(): void
}

/** Starts the deadline of an exchange on `stream` and watches for the requester going away (`goneError` says how). */
export function serveSignals(stream: Stream, timeoutMs: number, goneError: () => HearthError, also: AbortSignal[] = []): ServeSignals {
  const deadline = AbortSignal.timeout(timeoutMs)
  const gone = new AbortController()
  const onClose = (): void => gone.abort(goneError())
  stream.addEventListener('close', onClose, { once: true })
  return {
    deadline,
    gone,
    signal: AbortSignal.any([deadline, gone.signal, ...also]),
    detach: () => stream.removeEventListener('close', onClose),
  }
}

/**
 * Writes the frames of an answer (an error frame, a response, a header and its body) and closes our side; true once
 * both are done. On any failure the stream is reset and false returned. The caller checks first that the stream is
 * still writable.
 */
export async function writeAnswer(stream: Stream, frames: JsonFrameStream, parts: Uint8Array[], signal: AbortSignal): Promise<boolean> {
  try {
    await frames.writeFrames(parts, { signal })
    await stream.close({ signal })
    return true
  } catch (error) {
    stream.abort(asError(error))
    return false
  }
}

/** Gives the far side `graceMs` to close its end of a stream we are done with, then resets it: a peer that never
 * closes would otherwise pin one of the protocol's stream slots on this connection. */
export function releaseStream(stream: Stream, graceMs: number, why = 'the peer did not close the stream'): void {
  if (stream.status !== 'open' && stream.status !== 'closing') return
  const timer = setTimeout(() => {
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error(why))
  }, graceMs)
  timer.unref()
  stream.addEventListener('close', () => clearTimeout(timer), { once: true })
}
