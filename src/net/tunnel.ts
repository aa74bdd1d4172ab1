/**
 * Tunnels: a byte stream between two peers, opened by one small JSON frame, for traffic Hearth carries but does not
 * read (an HTTP connection from a service's gateway to a replica's server). The fourth kind of exchange beside
 * request/response, event streams and binary bodies; it shares their id rules, inbound budget and error frames.
 *
 * Wire format (length-prefixed frames, see json-frames.ts), one libp2p stream per tunnel:
 * - opener → responder: one JSON frame, the opening (checked against the protocol's schema and size limit, within the
 *   node's frame deadline, from its inbound budget);
 * - responder → opener: `{ ok: true }`, or `{ ok: false, error }` and the end;
 * - then raw bytes both ways, each side half-closing when its source ends, until both have ended or either resets.
 *
 * The opener writes nothing after its opening until the answer came, so the responder reads no bytes it did not
 * accept. The peer is authenticated by the connection (noise): the handler decides by `peerId` whether to let it in.
 * A tunnel idle both ways for the protocol's `idleTimeoutMs` is reset on both sides. Flow control is libp2p's: a side
 * that does not read pauses its stream, and yamux stops granting the sender window.
 */
import './polyfill.ts'
import { Socket } from 'node:net'
import { Duplex } from 'node:stream'
import type { ComponentLogger, Connection, Libp2p, Logger, PeerId, Stream } from '@libp2p/interface'
import type { Address } from 'viem'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import { callDeadline, openCallStream, remoteAnswerError, remoteErrorSchema, requestOpenFailure, writeAndReadAnswer } from './call-support.ts'
import { describeIssues } from './describe-issues.ts'
import { toDialTarget } from './dial-target.ts'
import type { PeerTarget } from './dial-target.ts'
import { guardedFrames, guardRefusal, inboundGuardFor } from './inbound-guard.ts'
import type { InboundGuard, ServeOptions } from './inbound-guard.ts'
import { encodeJsonFrame, FrameError, jsonFrames } from './json-frames.ts'
import type { JsonFrameStream } from './json-frames.ts'
import { asError, errorFrame, errorFrameLimit, handleGuarded, protocolIdPattern, refusalWriteMs } from './serve-support.ts'

export interface TunnelProtocolSpec<Open extends z.ZodType> {
  /** `/hearth/<area>/<name>/<major>`. */
  id: string
  /** Schema of the opening frame (JSON-shaped). */
  open: Open
  /** Largest opening frame, in bytes of JSON. */
  maxOpenBytes: number
  /** How long opening may take: dial, opening frame, the handler's connection to its target, the answer. */
  openTimeoutMs: number
  /** A tunnel that carries no byte either way for this long is reset on both sides. */
  idleTimeoutMs: number
  /** Tunnels of this protocol open at once on one connection, each way (default 256). */
  maxConcurrentStreams?: number
}

export type TunnelProtocol<Open extends z.ZodType = z.ZodType> = Readonly<Required<TunnelProtocolSpec<Open>>>

export interface TunnelContext {
  /** The opener, as the connection's noise handshake authenticated it. */
  peerId: PeerId
  /** The Ethereum address of the opener's key. */
  remoteAddress: Address
  /** Aborts when opening takes longer than the protocol allows, or the opener goes away before the answer. */
  signal: AbortSignal
}

/**
 * Answers an opening with the byte stream the tunnel joins (e.g. a socket to a server); throw a HearthError to refuse:
 * its code, message and hint reach the opener.
 */
export type TunnelHandler<Open extends z.ZodType> = (open: z.output<Open>, context: TunnelContext) => Promise<Duplex>

export interface TunnelDeps {
  libp2p: Libp2p
  logger?: ComponentLogger
  inbound?: InboundGuard
}

export interface OpenTunnelOptions {
  signal?: AbortSignal
  /** Below the protocol's openTimeoutMs. */
  timeoutMs?: number
}

export interface OpenedTunnel {
  peerId: PeerId
  /** The tunnel as a Node stream, with the socket methods node:http calls (setTimeout, setNoDelay, setKeepAlive, ref, unref). */
  socket: TunnelSocket
}

const defaultMaxConcurrentStreams = 256
/** Largest piece read from a stream at once. */
const readPieceBytes = 64 * 1024
const answerSchema = z.union([z.object({ ok: z.literal(true) }), z.object({ ok: z.literal(false), error: remoteErrorSchema })])

export function defineTunnelProtocol<Open extends z.ZodType>(spec: TunnelProtocolSpec<Open>): TunnelProtocol<Open> {
  if (!protocolIdPattern.test(spec.id)) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `Protocol id "${spec.id}" is not of the form /hearth/<area>/<name>/<major>`, {
      hint: 'use lower-case words and a major version, e.g. /hearth/service/connect/1',
      details: { id: spec.id },
    })
  }
  const sizes = {
    maxOpenBytes: spec.maxOpenBytes,
    openTimeoutMs: spec.openTimeoutMs,
    idleTimeoutMs: spec.idleTimeoutMs,
    maxConcurrentStreams: spec.maxConcurrentStreams ?? defaultMaxConcurrentStreams,
  }
  for (const [name, value] of Object.entries(sizes)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new HearthError('HEARTH_ERR_API_MISUSE', `Protocol ${spec.id}: ${name} must be a positive integer, got ${String(value)}`, { details: { id: spec.id, [name]: value } })
    }
  }
  return Object.freeze({ ...spec, ...sizes })
}

/**
 * A libp2p stream as a Node Duplex: writes go out with the stream's back-pressure, `end()` half-closes our side, the
 * far side's end ends the readable side, and destroying it resets the stream. `setTimeout` arms an inactivity timer
 * that emits 'timeout', as a net.Socket's does.
 */
export class TunnelSocket extends Duplex {
  readonly remotePeer: PeerId
  private readonly stream: Stream
  private readonly frames: JsonFrameStream
  private reading = false
  private idleMs = 0
  private idleTimer: NodeJS.Timeout | undefined
  private readonly onStreamClose: (event: Event) => void

  constructor(stream: Stream, frames: JsonFrameStream, remotePeer: PeerId) {
    super({ allowHalfOpen: true })
    this.stream = stream
    this.frames = frames
    this.remotePeer = remotePeer
    this.onStreamClose = (event) => {
      const error = (event as Event & { error?: Error }).error
      // A reset from the far side fails whatever is in flight here; a clean close has already ended both directions.
      if (error !== undefined && !this.destroyed) this.destroy(error)
    }
    stream.addEventListener('close', this.onStreamClose)
  }

  override _read(): void {
    if (this.reading) return
    this.reading = true
    void this.pump()
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const piece = await this.frames.readRaw({ maxBytes: readPieceBytes })
        if (this.destroyed) return
        if (piece === undefined) {
          this.push(null)
          return
        }
        this.touch()
        if (!this.push(piece)) break
      }
    } catch (error) {
      if (!this.destroyed) this.destroy(asError(error))
      return
    }
    this.reading = false
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.touch()
    try {
      if (this.stream.send(chunk)) {
        callback()
        return
      }
      this.stream.onDrain().then(() => callback(), (error: unknown) => callback(asError(error)))
    } catch (error) {
      callback(asError(error))
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.stream.close().then(() => callback(), (error: unknown) => callback(asError(error)))
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.idleTimer)
    this.stream.removeEventListener('close', this.onStreamClose)
    if (this.stream.status === 'open' || this.stream.status === 'closing') {
      // A clean end both ways is a close; anything else resets the far side, so it never takes a cut body for whole.
      if (error === null && this.writableFinished && this.readableEnded) void this.stream.close().catch(() => undefined)
      else this.stream.abort(error ?? new Error('the tunnel was closed before it ended'))
    }
    callback(error)
  }

  /** As net.Socket's: emits 'timeout' after `ms` with no byte either way (0 turns it off). */
  setTimeout(ms: number, listener?: () => void): this {
    this.idleMs = ms
    if (listener !== undefined) this.once('timeout', listener)
    this.touch()
    return this
  }

  setNoDelay(): this {
    return this
  }

  setKeepAlive(): this {
    return this
  }

  ref(): this {
    return this
  }

  unref(): this {
    return this
  }

  private touch(): void {
    clearTimeout(this.idleTimer)
    if (this.idleMs <= 0 || this.destroyed) return
    this.idleTimer = setTimeout(() => this.emit('timeout'), this.idleMs)
    this.idleTimer.unref()
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Responder

export async function serveTunnelProtocol<Open extends z.ZodType>(
  deps: TunnelDeps,
  protocol: TunnelProtocol<Open>,
  handler: TunnelHandler<Open>,
  options: ServeOptions = {},
): Promise<void> {
  const log = (deps.logger ?? deps.libp2p.logger).forComponent(`hearth:net:tunnel:${protocol.id}`)
  const guard = deps.inbound ?? inboundGuardFor(deps.libp2p)
  await handleGuarded(deps.libp2p, protocol, log, 'unhandle it first to replace it', async (stream, connection) => {
    const target = await openServed(guard, options, protocol, handler, stream, connection, log)
    if (target !== undefined) splice(target.socket, target.joined, protocol.idleTimeoutMs)
  })
}

/** Reads and answers an opening; the tunnel's two ends once accepted, else undefined (the refusal was sent). */
async function openServed<Open extends z.ZodType>(
  guard: InboundGuard,
  options: ServeOptions,
  protocol: TunnelProtocol<Open>,
  handler: TunnelHandler<Open>,
  stream: Stream,
  connection: Connection,
  log: Logger,
): Promise<{ socket: TunnelSocket; joined: Duplex } | undefined> {
  const peer = connection.remotePeer
  const gone = new AbortController()
  const onClose = (): void => gone.abort(new HearthError('HEARTH_ERR_NET_REMOTE', 'The opener closed the tunnel before it was answered'))
  stream.addEventListener('close', onClose, { once: true })
  const signal = AbortSignal.any([AbortSignal.timeout(protocol.openTimeoutMs), gone.signal])
  const frames = guardedFrames(guard, stream, { protocol: protocol.id, maxBytes: protocol.maxOpenBytes, connection, admit: options.admit, signal, log })
  const refuse = async (error: HearthError): Promise<undefined> => {
    log('refused a tunnel from %p: %s', peer, error.shortMessage)
    try {
      await frames.writeFrames([errorFrame(error)], { signal: AbortSignal.any([signal, AbortSignal.timeout(refusalWriteMs)]) })
      await stream.close({ signal: AbortSignal.timeout(refusalWriteMs) })
    } catch {
      // The opener does not read its refusal: it goes with the stream.
    }
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error('tunnel refused'))
    return undefined
  }
  let joined: Duplex | undefined
  try {
    let value: unknown
    try {
      const frame = await frames.read({ signal, due: true })
      value = frame.value
      frame.release()
    } catch (cause) {
      const refusal = guardRefusal(guard, protocol.id, cause)
      if (refusal !== undefined) {
        guard.metrics.rejected(protocol.id, refusal.reason)
        return await refuse(refusal.error)
      }
      if (signal.aborted) throw signal.reason
      const tooLarge = cause instanceof FrameError && cause.failure === 'too-large'
      return await refuse(new HearthError(tooLarge ? 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE' : 'HEARTH_ERR_NET_MESSAGE_INVALID', `${protocol.id}: ${(cause as Error).message}`))
    }
    const parsed = protocol.open.safeParse(value)
    if (!parsed.success) {
      return await refuse(new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${protocol.id}: the opening is invalid: ${describeIssues(parsed.error).text}`))
    }
    try {
      joined = await handler(parsed.data as z.output<Open>, { peerId: peer, remoteAddress: addressFromPeerId(peer), signal })
    } catch (cause) {
      if (isHearthError(cause)) return await refuse(cause)
      log('the handler of %s failed for %p: %s', protocol.id, peer, (cause as Error).message)
      return await refuse(new HearthError('HEARTH_ERR_INTERNAL', `${protocol.id} failed to open the tunnel`))
    }
    await frames.writeFrames([encodeJsonFrame({ ok: true })], { signal })
    return { socket: new TunnelSocket(stream, frames, peer), joined }
  } catch (error) {
    joined?.destroy()
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(asError(error))
    return undefined
  } finally {
    stream.removeEventListener('close', onClose)
  }
}

/**
 * Destroys `side` because the other side failed: a TCP socket with a reset (a FIN would read as a clean end). Not one
 * whose end was asked (it sent, or is sending, its FIN): a reset behind a pending shutdown fails in libuv (EINVAL),
 * and Node then never closes the handle (its 'close' never comes, and the process spins at exit).
 */
export function cut(side: Duplex, error: Error): void {
  if (side instanceof Socket && !side.destroyed && !side.writableEnded) {
    try {
      side.resetAndDestroy()
      return
    } catch {
      // Not a TCP handle (a TLS socket): destroyed below.
    }
  }
  side.destroy(error)
}

/**
 * Joins two byte streams both ways: each direction ends its destination when its source ends (a half-close), and a
 * failure or a reset of either destroys both, so neither side mistakes a cut stream for a whole one. Idle both ways
 * for `idleMs`: both are reset.
 */
export function splice(a: Duplex & { setTimeout(ms: number, listener?: () => void): unknown }, b: Duplex, idleMs: number): void {
  let done = false
  // Each side is destroyed with an error of its own: one that failed on its own I/O knows its connection is gone,
  // the other must still reset its far end (direct-link.ts tells the two apart).
  const fail = (error: Error, from?: Duplex): void => {
    if (done) return
    done = true
    if (from === a) a.destroy(error)
    else cut(a, new Error(`the far side of the tunnel failed: ${error.message}`, { cause: error }))
    if (from === b) b.destroy(error)
    else cut(b, new Error(`the tunnel failed: ${error.message}`, { cause: error }))
  }
  a.setTimeout(idleMs, () => fail(new Error(`the tunnel carried nothing for ${idleMs} ms`)))
  a.on('error', (error: Error) => fail(error, a))
  b.on('error', (error: Error) => fail(error, b))
  // A side closed without having ended cleanly (destroyed, reset) takes the other with it.
  a.on('close', () => {
    if (!(a.readableEnded && a.writableFinished)) fail(new Error('the tunnel was reset'))
  })
  b.on('close', () => {
    if (!(b.readableEnded && b.writableFinished)) fail(new Error('the connection the tunnel joins was closed'))
    else if (!a.destroyed && a.readableEnded && a.writableFinished) a.destroy()
  })
  a.pipe(b)
  b.pipe(a)
}

// ---------------------------------------------------------------------------------------------------------------
// Opener

export async function openTunnel<Open extends z.ZodType>(
  deps: TunnelDeps,
  target: PeerTarget,
  protocol: TunnelProtocol<Open>,
  open: z.input<Open>,
  options: OpenTunnelOptions = {},
): Promise<OpenedTunnel> {
  const id = protocol.id
  const checked = protocol.open.safeParse(open)
  if (!checked.success) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `${id}: the opening is invalid: ${describeIssues(checked.error).text}`)
  }
  const bytes = encodeJsonFrame(checked.data)
  if (bytes.byteLength > protocol.maxOpenBytes) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `${id}: the opening is ${bytes.byteLength} bytes, over the limit of ${protocol.maxOpenBytes}`)
  }
  const dialTarget = toDialTarget(target)
  const deadline = callDeadline(id, dialTarget, Math.min(options.timeoutMs ?? protocol.openTimeoutMs, protocol.openTimeoutMs), options.signal, 'tunnel answer')
  const { peer, stream } = await openCallStream(deps.libp2p, dialTarget, id, { signal: deadline.signal, maxOutboundStreams: protocol.maxConcurrentStreams, optimistic: true }, (cause) =>
    requestOpenFailure(deps.libp2p, dialTarget, id, cause, deadline))
  const frames = jsonFrames(stream, errorFrameLimit)
  try {
    const frame = await writeAndReadAnswer({ libp2p: deps.libp2p, target: dialTarget, id, peer, stream, frames, deadline }, bytes, () => undefined, { keepOpen: true })
    const answer = answerSchema.safeParse(frame.value)
    if (!answer.success) throw new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${id}: peer ${peer.toString()} answered the opening with something else than { ok }`)
    if (!answer.data.ok) throw remoteAnswerError(peer, id, answer.data.error)
    return { peerId: peer, socket: new TunnelSocket(stream, frames, peer) }
  } catch (error) {
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(asError(error))
    throw error
  }
}
