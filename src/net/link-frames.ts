/**
 * Framing for a direct link (direct-link.ts), so that each side tells the other's end from a failure, as a tunnel
 * does with its stream's reset. Node reports a TLS close_notify and a bare FIN alike, and a TCP reset under a TLS
 * socket is not safe to send (its handle leaks in Node 20), so the end is said in the bytes themselves.
 *
 * Each way, once the link is joined: frames of a 4-byte big-endian length and that many bytes; a frame of length 0 is
 * the sender's end (its half-close). A connection that ends, fails or is reset before that frame was cut: the reading
 * side fails with an error, never a clean end, and a side that fails closes its connection without the end frame.
 * Bytes after the end frame are refused as a cut. Frames are not kept whole: each piece passes on as it arrives.
 */
import type { Socket } from 'node:net'
import { Duplex } from 'node:stream'

const headerBytes = 4
const endFrame = Buffer.alloc(headerBytes)
/** Largest frame written; a larger chunk is sent as several (readers take any length). */
const maxFrameBytes = 1 << 24
/** A link ended cleanly both ways whose connection has not closed by itself in this time is closed. */
const lingerMs = 30_000

export class LinkCutError extends Error {
  override readonly name = 'LinkCutError'
}

/** A link's connection (a TLS socket) carrying framed bytes, as a Duplex with the socket methods node:http calls. */
export class FramedLink extends Duplex {
  readonly #socket: Socket
  readonly #header = Buffer.alloc(headerBytes)
  #headerHave = 0
  /** Bytes left in the frame being read. */
  #left = 0
  #endRead = false
  #cut: LinkCutError | undefined

  constructor(socket: Socket) {
    super({ allowHalfOpen: true })
    this.#socket = socket
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('end', () => {
      if (!this.#endRead) this.#fail(new LinkCutError('the link was cut: its connection ended before the far side said its end'))
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

  #fail(error: LinkCutError): void {
    if (this.destroyed) return
    this.#cut = error
    this.destroy(error)
  }

  #onData(chunk: Buffer): void {
    let at = 0
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
    // One buffer, one write: TLS would copy the pieces of a vectored write together anyway.
    this.#socket.write(Buffer.concat(parts), (error) => callback(error ?? null))
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#socket.end(endFrame)
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
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
