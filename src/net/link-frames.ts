/**
 * Framing for a direct link (direct-link.ts), so that each side tells the other's end from a failure, as a tunnel
 * does with its stream's reset. Node reports a TLS close_notify and a bare FIN alike, and a TCP reset under a TLS
 * socket is not safe to send (its handle leaks in Node 20), so the end is said in the bytes themselves.
 *
 * Each way, once the link is joined: frames of a 4-byte big-endian length and that many bytes; a frame of length 0 is
 * the sender's end (its half-close). A connection that ends, fails or is reset before that frame was cut: the reading
 * side fails with an error, never a clean end, and a side that fails closes its connection without the end frame.
 * Bytes after the end frame are refused as a cut. Frames are not kept whole: each piece passes on as it arrives.
 *
 * The opener's side (`opener`) also speaks the link's start (direct-link.ts): it sends the join byte (1) before its
 * first frame, or on `join()`, and reads the responder's answer before the frames: 1, or 0 and a JSON refusal
 * (`{ code, message, hint }`) to the end, which fails the link with a HearthError (details.refusedLink: nothing was
 * joined, so nothing the opener sent reached the target).
 */
import type { Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { HearthError } from '../errors.ts'
import { remoteErrorSchema } from './call-support.ts'
import { remoteErrorCode } from './serve-support.ts'

const headerBytes = 4
const endFrame = Buffer.alloc(headerBytes)
/** Largest frame written; a larger chunk is sent as several (readers take any length). */
const maxFrameBytes = 1 << 24
/** A link ended cleanly both ways whose connection has not closed by itself in this time is closed. */
const lingerMs = 30_000

export class LinkCutError extends Error {
  override readonly name = 'LinkCutError'
}

/** The byte an opener sends to have its link joined to the target. */
export const joinByte = 1
/** The responder's answers to the join byte: joined, or refused (a JSON error follows). */
export const answerJoined = 1
export const answerRefused = 0
/** Largest refusal (its JSON) an opener reads. */
const maxRefusalBytes = 8 * 1024

export interface FramedLinkInit {
  /** This is the opener's side: `where` names the responder in errors. */
  opener?: { where: string }
}

/** A link's connection (a TLS socket) carrying framed bytes, as a Duplex with the socket methods node:http calls. */
export class FramedLink extends Duplex {
  /** Resolves once the responder joined the link to its target; rejects with its refusal, or the link's failure first. */
  readonly joined: Promise<void>
  readonly #socket: Socket
  readonly #opener: { where: string } | undefined
  readonly #header = Buffer.alloc(headerBytes)
  #headerHave = 0
  /** Bytes left in the frame being read. */
  #left = 0
  #endRead = false
  #cut: Error | undefined
  /** The opener's: whether the join byte went out, and what is read now (the answer, a refusal, or frames). */
  #joinSent = false
  #reading: 'answer' | 'refusal' | 'frames'
  #refusal: Buffer[] = []
  #refusalBytes = 0
  #settleJoined: { resolve(): void; reject(error: Error): void } | undefined

  constructor(socket: Socket, init: FramedLinkInit = {}) {
    super({ allowHalfOpen: true })
    this.#socket = socket
    this.#opener = init.opener
    this.#reading = init.opener === undefined ? 'frames' : 'answer'
    this.joined = new Promise<void>((resolve, reject) => {
      this.#settleJoined = { resolve, reject }
    })
    // Nobody need wait on it: a failure reaches the link's 'error' too.
    this.joined.catch(() => undefined)
    if (init.opener === undefined) this.#settleJoined?.resolve()
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('end', () => {
      if (this.#reading === 'refusal') this.#fail(this.#refused())
      else if (this.#reading === 'answer') this.#fail(new HearthError('HEARTH_ERR_NET_REMOTE', `${this.#opener!.where} closed the link without an answer`))
      else if (!this.#endRead) this.#fail(new LinkCutError('the link was cut: its connection ended before the far side said its end'))
    })
    socket.on('error', (error: Error) => this.#fail(new LinkCutError(`the link failed: ${error.message}`, { cause: error })))
    socket.on('close', () => {
      if (this.destroyed) return
      if (this.#endRead && this.writableFinished) this.destroy()
      else this.#fail(new LinkCutError('the link was closed before it ended'))
    })
    socket.on('timeout', () => this.emit('timeout'))
    socket.resume()
  }

  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress
  }

  /** Opener: sends the join byte now (else it goes before the first frame). */
  join(): this {
    if (this.#opener !== undefined && !this.#joinSent) {
      this.#joinSent = true
      this.#socket.write(Buffer.of(joinByte))
    }
    return this
  }

  #fail(error: Error): void {
    this.#settleJoined?.reject(error)
    if (this.destroyed) return
    this.#cut = error
    this.destroy(error)
  }

  /** The refusal read to its end, as the error the link fails with. */
  #refused(): HearthError {
    const where = this.#opener!.where
    let parsed: ReturnType<typeof remoteErrorSchema.safeParse>
    try {
      parsed = remoteErrorSchema.safeParse(JSON.parse(Buffer.concat(this.#refusal).toString('utf8')))
    } catch {
      return new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${where} refused the link with something else than JSON`)
    }
    if (!parsed.success) return new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${where} refused the link with something else than { code, message }`)
    const remote = parsed.data
    return new HearthError(remoteErrorCode(remote.code), `${where} refused the link with ${remote.code}: ${remote.message}`, {
      ...(remote.hint === undefined ? {} : { hint: remote.hint }),
      details: { refusedLink: true, remoteCode: remote.code, remoteMessage: remote.message, remoteHint: remote.hint },
    })
  }

  /** Opener: reads the answer byte, and a refusal after 0; returns where the frames start in `chunk`. */
  #readAnswer(chunk: Buffer): number {
    let at = 0
    if (this.#reading === 'answer' && chunk.length > 0) {
      const answer = chunk[0]!
      at = 1
      if (answer === answerJoined) {
        this.#reading = 'frames'
        this.#settleJoined?.resolve()
      } else if (answer === answerRefused) {
        this.#reading = 'refusal'
      } else {
        this.#fail(new HearthError('HEARTH_ERR_NET_MESSAGE_INVALID', `${this.#opener!.where} answered the link with byte ${answer}, neither 1 nor 0`))
        return chunk.length
      }
    }
    if (this.#reading === 'refusal') {
      this.#refusalBytes += chunk.length - at
      if (this.#refusalBytes > maxRefusalBytes) this.#fail(new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `${this.#opener!.where} refused the link with over ${maxRefusalBytes} bytes`))
      else this.#refusal.push(chunk.subarray(at))
      return chunk.length
    }
    return at
  }

  #onData(chunk: Buffer): void {
    let at = this.#reading === 'frames' ? 0 : this.#readAnswer(chunk)
    while (at < chunk.length && !this.destroyed) {
      if (this.#endRead) return this.#fail(new LinkCutError('the far side sent bytes after its end'))
      if (this.#left > 0) {
        const take = Math.min(this.#left, chunk.length - at)
        this.#left -= take
        if (!this.push(chunk.subarray(at, at + take))) this.#socket.pause()
        at += take
        continue
      }
      const take = Math.min(headerBytes - this.#headerHave, chunk.length - at)
      chunk.copy(this.#header, this.#headerHave, at, at + take)
      this.#headerHave += take
      at += take
      if (this.#headerHave < headerBytes) return
      this.#headerHave = 0
      this.#left = this.#header.readUInt32BE(0)
      if (this.#left === 0) {
        this.#endRead = true
        this.push(null)
      }
    }
  }

  override _read(): void {
    this.#socket.resume()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this._writev([{ chunk }], callback)
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    const parts: Buffer[] = []
    for (const { chunk } of chunks) {
      for (let at = 0; at < chunk.length; at += maxFrameBytes) {
        const piece = chunk.subarray(at, at + maxFrameBytes)
        const header = Buffer.allocUnsafe(headerBytes)
        header.writeUInt32BE(piece.length, 0)
        parts.push(header, piece)
      }
    }
    if (parts.length === 0) return callback()
    if (this.#opener !== undefined && !this.#joinSent) {
      this.#joinSent = true
      parts.unshift(Buffer.of(joinByte))
    }
    // One buffer, one write: TLS would copy the pieces of a vectored write together anyway.
    this.#socket.write(Buffer.concat(parts), (error) => callback(error ?? null))
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.join()
    this.#socket.end(endFrame)
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#settleJoined?.reject(error ?? new LinkCutError('the link was closed before it was joined'))
    if (error === null && this.#cut === undefined && this.#endRead && this.writableFinished) {
      // Ended cleanly both ways: the connection closes once both ends are flushed; destroying it now could drop them.
      if (!this.#socket.destroyed) {
        const linger = setTimeout(() => this.#socket.destroy(), lingerMs).unref()
        // Not held for the whole time: a gateway may end thousands of links a second.
        this.#socket.once('close', () => clearTimeout(linger))
      }
    } else {
      // Without the end frame, the far side reads a cut.
      this.#socket.destroy()
    }
    callback(error)
  }

  /** As net.Socket's: emits 'timeout' after `ms` with no byte either way on the connection (0 turns it off). */
  setTimeout(ms: number, listener?: () => void): this {
    if (listener !== undefined) this.once('timeout', listener)
    this.#socket.setTimeout(ms)
    return this
  }

  setNoDelay(noDelay?: boolean): this {
    this.#socket.setNoDelay(noDelay)
    return this
  }

  setKeepAlive(enable?: boolean, initialDelayMs?: number): this {
    this.#socket.setKeepAlive(enable, initialDelayMs)
    return this
  }

  ref(): this {
    this.#socket.ref()
    return this
  }

  unref(): this {
    this.#socket.unref()
    return this
  }
}
