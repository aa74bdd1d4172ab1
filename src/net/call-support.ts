/**
 * What every kind of Hearth protocol shares on the calling side (request/response in protocol.ts, streams of events in
 * stream-caller.ts, binary bodies in blob-protocol.ts): the call's deadline, dialling the peer and opening the
 * protocol's stream on it, the errors a failed dial or a peer's error frame become, and the first answer frame read
 * while the request is written. The serving side's counterparts are in serve-support.ts.
 */
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { connectTo, peerOfTarget } from './dial-target.ts'
import type { PeerTarget } from './dial-target.ts'
import { FrameError } from './json-frames.ts'
import type { JsonFrame, JsonFrameStream } from './json-frames.ts'
import { remoteErrorCode } from './serve-support.ts'
import { isUnsupportedProtocol, versionMismatch } from './versions.ts'

/** The `error` of a peer's error frame `{ ok: false, error }`. */
export const remoteErrorSchema = z.object({ code: z.string().max(200), message: z.string().max(10_000), hint: z.string().max(10_000).optional() })

export type RemoteError = z.output<typeof remoteErrorSchema>

/** A call's deadline, joined with the caller's own signal. */
export interface CallDeadline {
  /** Aborts when the deadline passes or the caller aborts. */
  signal: AbortSignal
  /** Classifies a failure: the caller's abort (its reason, as is), the deadline, or else what `otherwise` makes. */
  failure(cause: unknown, otherwise: () => HearthError): unknown
}

/** Starts a call's deadline of `timeoutMs`; on it, a failure becomes HEARTH_ERR_NET_TIMEOUT: "No `what` to ...". */
export function callDeadline(id: string, target: PeerTarget, timeoutMs: number, callerSignal: AbortSignal | undefined, what = 'answer'): CallDeadline {
  const timeout = AbortSignal.timeout(timeoutMs)
  return {
    signal: callerSignal === undefined ? timeout : AbortSignal.any([callerSignal, timeout]),
    failure(cause, otherwise) {
      if (callerSignal?.aborted === true) return callerSignal.reason
      if (timeout.aborted) {
        return new HearthError('HEARTH_ERR_NET_TIMEOUT', `No ${what} to ${id} from ${String(target)} within ${timeoutMs} ms`, {
          cause,
          details: { protocol: id, timeoutMs },
        })
      }
      return otherwise()
    },
  }
}

const anotherRole = 'the peer runs another version of Hearth or another role'

/**
 * HEARTH_ERR_NET_DIAL: `target` cannot be reached, or does not serve `id`. `detailed` (request and blob protocols) adds
 * the target and reason to the details and names the roles in the hint.
 */
export function dialFailure(target: PeerTarget, id: string, cause: unknown, detailed = true): HearthError {
  const unsupported = (cause as Error).name === 'UnsupportedProtocolError'
  const message = unsupported ? `Peer ${String(target)} does not serve ${id}` : `Cannot reach ${String(target)} for ${id}: ${(cause as Error).message}`
  if (!detailed) return new HearthError('HEARTH_ERR_NET_DIAL', message, { cause, ...(unsupported ? { hint: anotherRole } : {}) })
  return new HearthError('HEARTH_ERR_NET_DIAL', message, {
    cause,
    ...(unsupported ? { hint: `${anotherRole} (provider/requestor)` } : {}),
    details: { protocol: id, target: String(target), ...(unsupported ? { reason: 'unsupported-protocol' } : {}) },
  })
}

export interface OpenCallOptions {
  signal: AbortSignal
  maxOutboundStreams: number
  /**
   * Optimistic protocol selection: the protocol name goes out with the first frame instead of being agreed first, one
   * round trip less per request; a peer that does not serve it then shows when the answer is read.
   */
  optimistic: boolean
}

/**
 * Connects to `target` (an open connection first, see connectTo) and opens a stream of `id` on it, on relayed
 * connections too. On failure throws what `failed` makes of the cause; `reached` is the peer connected to, when the
 * connection was made.
 */
export async function openCallStream(
  libp2p: Libp2p,
  target: PeerTarget,
  id: string,
  options: OpenCallOptions,
  failed: (cause: unknown, reached: PeerId | undefined) => Promise<unknown>,
): Promise<{ peer: PeerId; stream: Stream }> {
  const { signal, maxOutboundStreams } = options
  let reached: PeerId | undefined
  try {
    const connection = await connectTo(libp2p, target, { signal })
    reached = connection.remotePeer
    const stream = await connection.newStream(id, { signal, maxOutboundStreams, ...(options.optimistic ? { negotiateFully: false } : {}), runOnLimitedConnection: true })
    return { peer: reached, stream }
  } catch (cause) {
    throw await failed(cause, reached)
  }
}

/**
 * What a failed dial of a request becomes: HEARTH_ERR_NET_VERSION when the target's peer serves other majors of `id`,
 * else the caller's abort, the deadline, or a dial failure.
 */
export async function requestOpenFailure(libp2p: Libp2p, target: PeerTarget, id: string, cause: unknown, deadline: CallDeadline): Promise<unknown> {
  const peer = peerOfTarget(target)
  if (peer !== undefined && isUnsupportedProtocol(cause)) return (await versionMismatch(libp2p, peer, id)) ?? deadline.failure(cause, () => dialFailure(target, id, cause))
  return deadline.failure(cause, () => dialFailure(target, id, cause))
}

/** One request's stream, once open. */
export interface OpenCall {
  libp2p: Libp2p
  target: PeerTarget
  id: string
  peer: PeerId
  stream: Stream
  frames: JsonFrameStream
  deadline: CallDeadline
}

/**
 * Writes the request and closes our side (unless `keepOpen`: a session stream) while reading the first answer frame: a
 * responder that refuses a request early answers before it has read it all. A failed read becomes, first that applies: HEARTH_ERR_NET_VERSION when the
 * peer serves another major of `id`, the caller's abort or the deadline, what `badFrame` makes of a frame that came
 * wrong, a dial failure when the peer turns out not to serve `id`, else HEARTH_ERR_NET_REMOTE.
 */
export async function writeAndReadAnswer(call: OpenCall, bytes: Uint8Array, badFrame: (cause: FrameError) => HearthError | undefined, options: { keepOpen?: boolean } = {}): Promise<JsonFrame> {
  const { libp2p, target, id, peer, stream, frames, deadline } = call
  const { signal } = deadline
  const reading = frames.read({ signal })
  reading.catch(() => {})
  let writeError: unknown
  try {
    await frames.write(bytes, { signal })
    // A session stream stays open for the next request (protocol-session.ts).
    if (options.keepOpen !== true) await stream.close({ signal })
  } catch (error) {
    writeError = error
  }
  try {
    return await reading
  } catch (cause) {
    // The peer serves another major of this protocol (a node of another release): say which, not "closed".
    if (isUnsupportedProtocol(writeError, cause)) throw (await versionMismatch(libp2p, peer, id)) ?? deadline.failure(cause, () => dialFailure(target, id, cause))
    throw deadline.failure(cause, () => {
      const bad = cause instanceof FrameError ? badFrame(cause) : undefined
      if (bad !== undefined) return bad
      // With optimistic selection, "protocol not supported" surfaces here rather than from newStream.
      for (const error of [writeError, cause, (cause as Error).cause]) {
        if ((error as Error | undefined)?.name === 'UnsupportedProtocolError') return dialFailure(target, id, error)
      }
      return new HearthError('HEARTH_ERR_NET_REMOTE', `Peer ${peer.toString()} closed the ${id} stream without answering`, {
        cause: writeError ?? cause,
        details: { protocol: id },
      })
    })
  }
}

/**
 * The error a peer's error frame becomes. A timeout is a timeout (and a busy node busy) wherever it happened: callers
 * branch on one code. `namePeer` puts the peer in the details too.
 */
export function remoteAnswerError(peer: PeerId, id: string, remote: RemoteError, namePeer = true): HearthError {
  return new HearthError(remoteErrorCode(remote.code), `Peer ${peer.toString()} answered ${id} with ${remote.code}: ${remote.message}`, {
    ...(remote.hint === undefined ? {} : { hint: remote.hint }),
    details: { protocol: id, ...(namePeer ? { peerId: peer.toString() } : {}), remoteCode: remote.code, remoteMessage: remote.message, remoteHint: remote.hint },
  })
}
