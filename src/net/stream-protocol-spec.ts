/**
 * The shape of an event-stream protocol (see stream-protocol.ts for its wire format): what a protocol declares, what
 * its responder's handler and its requester get, and the frames each side accepts from the other. The responder is
 * stream-responder.ts, the requester stream-caller.ts.
 */
import type { ComponentLogger, Libp2p, PeerId } from '@libp2p/interface'
import type { Address } from 'viem'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { Signed } from '../identity/signed.ts'
import { remoteErrorSchema } from './call-support.ts'
import type { InboundGuard } from './inbound-guard.ts'
import { maxErrorText, protocolIdPattern } from './serve-support.ts'

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

export interface StreamServer {
  /** Stops serving: new requests are refused and every exchange in progress is cancelled. */
  close(): Promise<void>
  /** Exchanges in progress. */
  active(): number
}

export interface OpenStreamOptions {
  signal?: AbortSignal
}

/** Largest control frame (credit or cancel) a responder reads after the request. */
export const controlFrameBytes = 1024
const defaultWindow = 64

export function defineStreamProtocol<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType>(
  spec: StreamProtocolSpec<Req, Ev, Res>,
): StreamProtocol<Req, Ev, Res> {
  if (!protocolIdPattern.test(spec.id)) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `Protocol id "${spec.id}" is not of the form /hearth/<area>/<name>/<major>`, {
      hint: 'use lower-case words and a major version, e.g. /hearth/exec/activity/1',
    })
  }
  const full = { ...spec, window: spec.window ?? defaultWindow, maxConcurrentStreams: spec.maxConcurrentStreams ?? 64 }
  for (const name of ['maxRequestBytes', 'maxEventBytes', 'maxResultBytes', 'maxTotalBytes', 'maxEvents', 'timeoutMs', 'idleTimeoutMs', 'window', 'maxConcurrentStreams'] as const) {
    const value = full[name]
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new HearthError('HEARTH_ERR_API_MISUSE', `Protocol ${spec.id}: ${name} must be a positive integer, got ${String(value)}`)
    }
  }
  return Object.freeze(full)
}

/** requester → responder, after the request: room for `credit` more events, or stop. */
export const controlFrameSchema = z.union([
  z.strictObject({ credit: z.number().int().positive().max(1_000_000) }),
  z.strictObject({ cancel: z.string().max(maxErrorText) }),
])

/** responder → requester: an event, a keep-alive, the result, or an error. */
export const responderFrameSchema = z.union([
  z.strictObject({ e: z.unknown() }),
  z.strictObject({ k: z.literal(1) }),
  z.strictObject({ ok: z.literal(true), events: z.number().int().nonnegative(), body: z.unknown() }),
  z.strictObject({ ok: z.literal(false), error: remoteErrorSchema }),
])
