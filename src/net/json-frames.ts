/**
 * Length-prefixed JSON frames on a libp2p stream: an unsigned varint byte count, then that many bytes of UTF-8 JSON.
 * The same stream may also carry binary frames (the same prefix, then raw bytes), each read with its own limit.
 * Every size limit is enforced on the length prefix, so an oversized frame is refused before its body is read.
 */
import './polyfill.ts'
import { lpStream } from '@libp2p/utils'
import type { LengthPrefixedStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'

export type FrameFailure = 'too-large' | 'malformed'

/** A frame that could not be read; `declaredBytes` is set when the length prefix was read. */
export class FrameError extends Error {
  override name = 'FrameError'
  constructor(
    readonly failure: FrameFailure,
    message: string,
    readonly declaredBytes?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export interface JsonFrameStream {
  /** Reads one frame and parses it; throws FrameError, or the signal's reason when `signal` aborts first. */
  read(options?: { signal?: AbortSignal }): Promise<{ value: unknown; bytes: number }>
  /** Writes already-encoded JSON bytes (see encodeJsonFrame) as one frame. */
  write(json: Uint8Array, options?: { signal?: AbortSignal }): Promise<void>
  /**
   * Reads one binary frame of at most `maxBytes` (itself at most the stream's `maxBinaryBytes`): its raw bytes, not
   * parsed. Throws FrameError as `read` does; a prefix announcing more than `maxBytes` is refused unread.
   */
  readBytes(options: { maxBytes: number; signal?: AbortSignal }): Promise<Uint8Array>
  /** Writes each of `frames` (JSON or raw bytes) as a frame of its own, in one write. */
  writeFrames(frames: Uint8Array[], options?: { signal?: AbortSignal }): Promise<void>
  /**
   * Waits for the far side to end the stream; throws FrameError when another frame (or the prefix of one) arrives
   * first, i.e. the peer sent more than the exchange allows.
   */
  readEnd(options?: { signal?: AbortSignal }): Promise<void>
}

export interface JsonFrameOptions {
  /** Largest binary frame `readBytes` may accept on this stream (default: none are accepted). */
  maxBinaryBytes?: number
}

/** Longest varint we accept for a length: 5 bytes holds any length up to 2^35, far above every limit. */
const maxLengthBytes = 5

// Named through lpStream so we need no direct dependency on uint8arraylist.
type Uint8ArrayList = Awaited<ReturnType<LengthPrefixedStream['read']>>
const defaultBufferBytes = 4 * 1024 * 1024
const encoder = new TextEncoder()

export function encodeJsonFrame(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value))
}

export function jsonFrames(stream: Stream, maxBytes: number, options: JsonFrameOptions = {}): JsonFrameStream {
  let declaredBytes: number | undefined
  const maxBinaryBytes = options.maxBinaryBytes ?? 0
  /** The limit of the frame being read: `maxBytes` for JSON, the caller's for a binary frame. */
  let limit = maxBytes
  const lp: LengthPrefixedStream<Stream> = lpStream(stream, {
    maxDataLength: Math.max(maxBytes, maxBinaryBytes),
    // The whole frame is buffered before it is returned; lpStream's 4 MiB default would reset larger frames. A
    // binary frame may arrive right behind a JSON one, so there is room for both. Never go below the default either:
    // a burst that overflows the buffer resets the stream before we can refuse it.
    maxBufferSize: Math.max(maxBytes + maxBinaryBytes + 2 * maxLengthBytes, defaultBufferBytes),
    maxLengthLength: maxLengthBytes,
    // Our own decoder, so that we can report the announced size (the default one only says "too long").
    lengthDecoder(buffer: Uint8ArrayList): number {
      let value = 0
      for (let index = 0; index < buffer.byteLength; index++) {
        const byte = buffer.get(index)
        value += (byte & 0x7f) * 2 ** (7 * index)
        if ((byte & 0x80) === 0) {
          declaredBytes = value
          if (value > limit) throw new FrameError('too-large', `the frame announces ${value} bytes, over the limit of ${limit}`, value)
          return value
        }
        if (index + 1 >= maxLengthBytes) throw new FrameError('too-large', 'the frame length prefix is longer than 5 bytes')
      }
      // lpStream reads another byte and retries when the decoder throws a RangeError.
      throw new RangeError('incomplete varint')
    },
  })
  const decoder = new TextDecoder('utf-8', { fatal: true })

  /** Reads one frame of at most `frameLimit` bytes, turning every failure into a FrameError (or the abort reason). */
  const readFrame = async (frameLimit: number, signal: AbortSignal | undefined): Promise<Uint8ArrayList> => {
    declaredBytes = undefined
    limit = frameLimit
    try {
      return await lp.read(signal === undefined ? {} : { signal })
    } catch (cause) {
      if (signal?.aborted === true) throw signal.reason
      if (cause instanceof FrameError) throw cause
      const name = (cause as Error).name
      if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError') {
        throw new FrameError('too-large', `the frame announces ${declaredBytes ?? 'more than'} bytes, over the limit of ${frameLimit}`, declaredBytes, { cause })
      }
      if (name === 'UnexpectedEOFError') {
        throw new FrameError('malformed', 'the stream ended before a complete frame arrived', declaredBytes, { cause })
      }
      throw new FrameError('malformed', `the stream failed while reading a frame: ${(cause as Error).message}`, declaredBytes, { cause })
    }
  }

  return {
    async read(options = {}) {
      const frame = await readFrame(maxBytes, options.signal)
      let value: unknown
      try {
        value = JSON.parse(decoder.decode(frame.subarray()))
      } catch (cause) {
        throw new FrameError('malformed', 'the frame is not UTF-8 JSON', frame.byteLength, { cause })
      }
      return { value, bytes: frame.byteLength }
    },
    async write(json, options = {}) {
      await lp.write(json, options)
    },
    async readBytes(options) {
      if (options.maxBytes > maxBinaryBytes) {
        throw new RangeError(`readBytes asks for up to ${options.maxBytes} bytes, above this stream's maxBinaryBytes of ${maxBinaryBytes}`)
      }
      return (await readFrame(options.maxBytes, options.signal)).subarray()
    },
    async writeFrames(frames, options = {}) {
      await lp.writeV(frames, options)
    },
    async readEnd(options = {}) {
      let frame: Uint8ArrayList
      try {
        // Nothing more is allowed: even an empty frame is one too many.
        frame = await readFrame(0, options.signal)
      } catch (cause) {
        if (!(cause instanceof FrameError)) throw cause
        if (cause.failure === 'malformed' && declaredBytes === undefined) {
          // The stream ended before a complete length prefix: a clean end (a stray partial prefix is let go too).
          if ((cause.cause as Error | undefined)?.name === 'UnexpectedEOFError') return
          throw new FrameError('malformed', `the stream failed after the last frame: ${cause.message}`, undefined, { cause })
        }
        throw new FrameError(cause.failure, `more data followed the end of the exchange: ${cause.message}`, cause.declaredBytes, { cause })
      }
      throw new FrameError('too-large', `another frame of ${frame.byteLength} bytes followed the end of the exchange`, frame.byteLength)
    },
  }
}
