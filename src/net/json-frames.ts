/**
 * Length-prefixed JSON frames on a libp2p stream: an unsigned varint byte count, then that many bytes of UTF-8 JSON.
 * The size limit is enforced on the length prefix, so an oversized frame is refused before its body is read.
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

export function jsonFrames(stream: Stream, maxBytes: number): JsonFrameStream {
  let declaredBytes: number | undefined
  const lp: LengthPrefixedStream<Stream> = lpStream(stream, {
    maxDataLength: maxBytes,
    // The whole frame is buffered before it is returned; lpStream's 4 MiB default would reset larger frames. Never
    // go below that default either: a burst that overflows the buffer resets the stream before we can refuse it.
    maxBufferSize: Math.max(maxBytes + maxLengthBytes, defaultBufferBytes),
    maxLengthLength: maxLengthBytes,
    // Our own decoder, so that we can report the announced size (the default one only says "too long").
    lengthDecoder(buffer: Uint8ArrayList): number {
      let value = 0
      for (let index = 0; index < buffer.byteLength; index++) {
        const byte = buffer.get(index)
        value += (byte & 0x7f) * 2 ** (7 * index)
        if ((byte & 0x80) === 0) {
          declaredBytes = value
          return value
        }
        if (index + 1 >= maxLengthBytes) throw new FrameError('too-large', 'the frame length prefix is longer than 5 bytes')
      }
      // lpStream reads another byte and retries when the decoder throws a RangeError.
      throw new RangeError('incomplete varint')
    },
  })
  const decoder = new TextDecoder('utf-8', { fatal: true })

  return {
    async read(options = {}) {
      declaredBytes = undefined
      let frame: Uint8ArrayList
      try {
        frame = await lp.read(options)
      } catch (cause) {
        if (options.signal?.aborted === true) throw options.signal.reason
        if (cause instanceof FrameError) throw cause
        const name = (cause as Error).name
        if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError') {
          throw new FrameError('too-large', `the frame announces ${declaredBytes ?? 'more than'} bytes, over the limit of ${maxBytes}`, declaredBytes, { cause })
        }
        if (name === 'UnexpectedEOFError') {
          throw new FrameError('malformed', 'the stream ended before a complete frame arrived', declaredBytes, { cause })
        }
        throw new FrameError('malformed', `the stream failed while reading a frame: ${(cause as Error).message}`, declaredBytes, { cause })
      }
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
  }
}
