/**
 * How a served protocol takes in frames, whatever its kind (request/response in protocol.ts, streams in
 * stream-protocol.ts, blobs in blob-protocol.ts): each frame's declared length is reserved from the node's inbound
 * budget (inbound-budget.ts) before its body is read; a large frame is first shown to the protocol's admission check,
 * with the sender's authenticated identity; and every frame has its own deadline, however long the protocol's
 * exchange may last. One guard per node, so that every protocol it serves draws from the same budget.
 */
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'
import type { Address } from 'viem'
import { HearthError, isHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import { createInboundBudget, remoteIpKey } from './inbound-budget.ts'
import type { InboundBudget, InboundLimits, InboundShare } from './inbound-budget.ts'
import { FrameError, jsonFrames } from './json-frames.ts'
import type { FrameDeadline, FrameGate, JsonFrameStream } from './json-frames.ts'
import { createNetMetrics } from './net-metrics.ts'
import type { NetMetricsRecorder, RequestRejectReason } from './net-metrics.ts'
import { raceSignal } from './serve-support.ts'

export interface AdmitContext {
  /** The remote peer, as authenticated by the connection's noise handshake. */
  peerId: PeerId
  /** The Ethereum address of the remote peer's key. */
  remoteAddress: Address
  /** The protocol the frame arrived on. */
  protocol: string
  /** The frame's length as its prefix declares it; none of its body has been read. */
  declaredBytes: number
  /** Aborts when the node stops waiting for the decision (the frame allowance passed, or the stream closed). */
  signal: AbortSignal
}

/** Returns to admit the frame; throws (a HearthError: its code and message reach the sender) to refuse it unread. */
export type AdmitHook = (context: AdmitContext) => void | Promise<void>

export interface ServeOptions {
  /**
   * Asked about every frame larger than the node's `smallFrameBytes` before its body is read, and about smaller ones
   * when the open share of the budget is full. An admitted frame draws from the share that unadmitted traffic cannot
   * take. Without it every frame of the protocol is unadmitted, and one larger than `openPerPeerMaxBytes` never fits.
   */
  admit?: AdmitHook
}

export interface InboundGuard {
  readonly budget: InboundBudget
  /** Where served protocols count what they refuse. */
  readonly metrics: NetMetricsRecorder
  readonly deadline: FrameDeadline
}

export function createInboundGuard(init: { limits?: Partial<InboundLimits>; metrics?: NetMetricsRecorder } = {}): InboundGuard {
  const budget = createInboundBudget(init.limits)
  return {
    budget,
    metrics: init.metrics ?? createNetMetrics(),
    deadline: { allowanceMs: budget.limits.frameAllowanceMs, minBytesPerSecond: budget.limits.minBytesPerSecond },
  }
}

const guards = new WeakMap<object, InboundGuard>()

/** Makes `guard` the one every protocol served on `libp2p` uses (the host does this for its node). */
export function attachInboundGuard(libp2p: object, guard: InboundGuard): void {
  guards.set(libp2p, guard)
}

/** The guard of a libp2p node: its host's, or (for a node made without one) a guard with the default limits. */
export function inboundGuardFor(libp2p: object): InboundGuard {
  let guard = guards.get(libp2p)
  if (guard === undefined) {
    guard = createInboundGuard()
    guards.set(libp2p, guard)
  }
  return guard
}

/** A frame refused before its body was read: the refusal to send, and why (for the protocol's counters). */
export class FrameRefused extends Error {
  override name = 'FrameRefused'
  constructor(
    readonly reason: RequestRejectReason,
    readonly error: HearthError,
  ) {
    super(error.shortMessage, { cause: error })
  }
}

export interface GuardedFramesInit {
  protocol: string
  /** Largest frame the stream reads (the protocol's request limit). */
  maxBytes: number
  connection: Pick<Connection, 'remotePeer' | 'remoteAddr'>
  admit?: AdmitHook
  /** The exchange's signal: admission stops waiting when it aborts. */
  signal: AbortSignal
  log: Logger
}

/**
 * The responder's reader of a served stream: a frame's body is read only once the budget (and for a large frame, the
 * admission check) let it in, and within the frame's deadline. A refused frame makes `read` throw FrameRefused; one
 * past its deadline, FrameError 'too-slow'. Release each frame read once it is handled.
 */
export function guardedFrames(guard: InboundGuard, stream: Stream, init: GuardedFramesInit): JsonFrameStream {
  const peer = init.connection.remotePeer
  const ip = remoteIpKey(init.connection.remoteAddr)
  const limits = guard.budget.limits

  const reserve = (bytes: number, share: InboundShare): (() => void) => {
    try {
      return guard.budget.reserve({ peer: peer.toString(), ip, bytes, share }).release
    } catch (error) {
      const refusal = isHearthError(error) ? error : new HearthError('HEARTH_ERR_INTERNAL', String(error), { cause: error })
      throw new FrameRefused(isHearthError(error, 'HEARTH_ERR_NET_BUSY') ? 'busy' : 'too-large', refusal)
    }
  }

  /** Undefined when the protocol admits the frame, else the error to refuse it with. */
  const admission = async (admit: AdmitHook, bytes: number): Promise<HearthError | undefined> => {
    const waited = AbortSignal.timeout(limits.frameAllowanceMs)
    const signal = AbortSignal.any([init.signal, waited])
    try {
      const remoteAddress = addressFromPeerId(peer)
      await raceSignal(Promise.resolve().then(() => admit({ peerId: peer, remoteAddress, protocol: init.protocol, declaredBytes: bytes, signal })), signal)
      return undefined
    } catch (error) {
      // The exchange ended while we waited: the read fails with its reason, and there is no one to answer.
      if (init.signal.aborted) throw init.signal.reason
      if (waited.aborted) {
        return new HearthError('HEARTH_ERR_NET_BUSY', `${init.protocol} could not decide within ${limits.frameAllowanceMs} ms whether to take a frame of ${bytes} bytes`, {
          hint: 'retry later',
          details: { protocol: init.protocol, declaredBytes: bytes },
        })
      }
      if (isHearthError(error)) return error
      init.log.error('the admission check of %s failed on a frame from %p - %e', init.protocol, peer, error)
      return new HearthError('HEARTH_ERR_INTERNAL', `The admission check of ${init.protocol} failed`)
    }
  }

  const gate: FrameGate = async (bytes) => {
    const admit = init.admit
    if (admit === undefined) return reserve(bytes, 'open')
    if (bytes <= limits.smallFrameBytes) {
      try {
        return reserve(bytes, 'open')
      } catch (refusal) {
        // The open share is full (a crowd of peer ids may share the sender's IP): a sender the protocol admits may
        // still use the admitted share, so a crowd cannot starve it even of small frames.
        if (!(refusal instanceof FrameRefused) || refusal.reason !== 'busy') throw refusal
        if ((await admission(admit, bytes)) !== undefined) throw refusal
        return reserve(bytes, 'admitted')
      }
    }
    const refused = await admission(admit, bytes)
    if (refused !== undefined) {
      guard.budget.countNotAdmitted()
      throw new FrameRefused('not-admitted', refused)
    }
    return reserve(bytes, 'admitted')
  }

  return jsonFrames(stream, init.maxBytes, { gate, deadline: guard.deadline })
}

/**
 * What a guarded read threw, as the refusal to answer with and the reason to count, when it is one the guard made
 * (a frame refused unread, or one past its deadline); undefined for any other failure.
 */
export function guardRefusal(guard: InboundGuard, protocol: string, cause: unknown): FrameRefused | undefined {
  if (cause instanceof FrameRefused) return cause
  if (cause instanceof FrameError && cause.failure === 'too-slow') {
    guard.budget.countFrameTimeout()
    return new FrameRefused('too-slow', new HearthError('HEARTH_ERR_NET_TIMEOUT', `Frame abandoned by ${protocol}: ${cause.message}`, {
      hint: `send each frame within ${guard.deadline.allowanceMs} ms plus its size at ${guard.deadline.minBytesPerSecond} bytes/s`,
      details: { protocol, declaredBytes: cause.declaredBytes },
    }))
  }
  return undefined
}
