/**
 * Length-prefixed JSON frames on a libp2p stream: an unsigned varint byte count, then that many bytes of UTF-8 JSON.
 * The same stream may also carry binary frames (the same prefix, then raw bytes), each read with its own limit.
 *
 * Every size limit is enforced on the length prefix, so an oversized frame is refused before its body is read. A
 * server also passes a gate, asked with the declared length before the body is read (it reserves the bytes, or
 * refuses the frame unread), and a deadline per frame (an allowance plus the frame's size at a minimum rate), so that
 * a peer that announces a large frame and trickles it cannot hold memory for longer than an honest sender would.
 *
 * The reader holds what arrives in its own buffer (stream-inbox.ts) and pauses the stream (yamux then stops granting the sender window)
 * once it holds more than the frame being read needs plus a small slack: bytes nobody asked for are not buffered.
 */
import './polyfill.ts'
import type { Stream } from '@libp2p/interface'
import { createInbox } from './stream-inbox.ts'
import type { Inbox } from './stream-inbox.ts'

export type FrameFailure = 'too-large' | 'malformed' | 'too-slow'

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

/**
 * Asked once a frame's length prefix has been read, before any of its body is: resolves to the function that gives
 * back what it reserved (called once the caller releases the frame, or at once when the frame is abandoned), or
 * throws to refuse the frame unread; `read` then rejects with what it threw.
 */
export type FrameGate = (declaredBytes: number) => Promise<() => void>

export interface FrameDeadline {
  /** Time for a frame's length prefix (from its first byte, or from the read when the frame is due), and on top of its body's transfer time. */
  allowanceMs: number
  /** The slowest transfer accepted: a body of n bytes must arrive within allowanceMs + n / minBytesPerSecond. */
  minBytesPerSecond: number
}

export interface JsonFrame {
  value: unknown
  bytes: number
  /** Gives back what the gate reserved for this frame; call it once the frame is handled (later calls do nothing). */
  release(): void
}

export interface JsonFrameStream {
  /**
   * Reads one frame and parses it; throws FrameError, what the gate threw, or the signal's reason when `signal` aborts
   * first. `due`: the frame is expected now (a request), so the deadline counts from this call rather than from the
   * frame's first byte.
   */
  read(options?: { signal?: AbortSignal; due?: boolean }): Promise<JsonFrame>
  /** Writes already-encoded JSON bytes (see encodeJsonFrame) as one frame. */
  write(json: Uint8Array, options?: { signal?: AbortSignal }): Promise<void>
  /**
   * Reads one binary frame of at most `maxBytes` (itself at most the stream's `maxBinaryBytes`): its raw bytes, not
   * parsed. Throws FrameError as `read` does; a prefix announcing more than `maxBytes` is refused unread. Binary frames
   * are for requesters reading an answer they asked for: the gate is not asked about them.
   */
  readBytes(options: { maxBytes: number; signal?: AbortSignal }): Promise<Uint8Array>
  /** Writes each of `frames` (JSON or raw bytes) as a frame of its own, in one write. */
  writeFrames(frames: Uint8Array[], options?: { signal?: AbortSignal }): Promise<void>
  /**
   * Waits for the far side to end the stream; throws FrameError when another frame (or the prefix of one) arrives
   * first, i.e. the peer sent more than the exchange allows.
   */
  readEnd(options?: { signal?: AbortSignal }): Promise<void>
  /** Bytes that have arrived and not been read yet (none before the first read). */
  pending(): number
  /**
   * Raw bytes after the frames (a tunnel's body, see tunnel.ts): what has arrived, up to `maxBytes`, once at least one
   * byte has; undefined when the stream ends cleanly. Holds no more than `maxBytes` plus the inbox's slack unread.
   */
  readRaw(options: { maxBytes: number; signal?: AbortSignal }): Promise<Uint8Array | undefined>
}

export interface JsonFrameOptions {
  /** Largest binary frame `readBytes` may accept on this stream (default: none are accepted). */
  maxBinaryBytes?: number
  /** Asked before each JSON frame's body is read (default: every frame within the limit is read). */
  gate?: FrameGate
  /** Each JSON frame's own deadline (default: none; the caller's signal alone bounds a read). */
  deadline?: FrameDeadline
}

/** Longest varint we accept for a length: 5 bytes holds any length up to 2^35, far above every limit. */
const maxLengthBytes = 5
const encoder = new TextEncoder()

export function encodeJsonFrame(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value))
}

function encodeLength(length: number): Uint8Array {
  const bytes: number[] = []
  let rest = length
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80)
    rest = Math.floor(rest / 0x80)
  }
  bytes.push(rest)
  return Uint8Array.from(bytes)
}

const noop = (): void => {}

export function jsonFrames(stream: Stream, maxBytes: number, options: JsonFrameOptions = {}): JsonFrameStream {
  const maxBinaryBytes = options.maxBinaryBytes ?? 0
  // Made on the first read: a writer-only instance takes nothing in (another reader on the stream may).
  let opened: Inbox | undefined
  const inbox = (): Inbox => (opened ??= createInbox(stream))
  const decoder = new TextDecoder('utf-8', { fatal: true })
  const gated = { ...(options.deadline === undefined ? {} : { deadline: options.deadline }), ...(options.gate === undefined ? {} : { gate: options.gate }) }

  return {
    async read(readOptions = {}) {
      const { body, release } = await readFrame(inbox, maxBytes, { ...readOptions, ...gated })
      return parseFrame(decoder, body, release)
    },
    async write(json, writeOptions = {}) {
      await send(stream, [encodeLength(json.byteLength), json], writeOptions.signal)
    },
    async readBytes(readOptions) {
      if (readOptions.maxBytes > maxBinaryBytes) {
        throw new RangeError(`readBytes asks for up to ${readOptions.maxBytes} bytes, above this stream's maxBinaryBytes of ${maxBinaryBytes}`)
      }
      return (await readFrame(inbox, readOptions.maxBytes, readOptions.signal === undefined ? {} : { signal: readOptions.signal })).body
    },
    async writeFrames(frames, writeOptions = {}) {
      await send(stream, frames.flatMap((frame) => [encodeLength(frame.byteLength), frame]), writeOptions.signal)
    },
    readEnd: (readOptions = {}) => readEnd(inbox, readOptions),
    pending: () => opened?.held() ?? 0,
    async readRaw(readOptions) {
      const box = inbox()
      box.allow(readOptions.maxBytes)
      if (!(await box.wait(1, readOptions.signal ?? neverAborted))) return undefined
      const chunk = new Uint8Array(Math.min(box.held(), readOptions.maxBytes))
      box.takeInto(chunk, 0)
      return chunk
    },
  }
}

const neverAborted = new AbortController().signal

/** A JSON frame's body parsed, with the release of what the gate reserved for it (once only). */
function parseFrame(decoder: TextDecoder, body: Uint8Array, release: () => void): JsonFrame {
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(body))
  } catch (cause) {
    release()
    throw new FrameError('malformed', 'the frame is not UTF-8 JSON', body.byteLength, { cause })
  }
  let released = false
  return {
    value,
    bytes: body.byteLength,
    release() {
      if (released) return
      released = true
      release()
    },
  }
}

async function send(stream: Stream, parts: Uint8Array[], signal: AbortSignal | undefined): Promise<void> {
  let drained = true
  for (const part of parts) drained = stream.send(part) && drained
  if (!drained) await stream.onDrain(signal === undefined ? {} : { signal })
}

/** The prefix of the next frame, or undefined when the stream ends cleanly before one begins. */
async function readPrefix(inbox: () => Inbox, signal: AbortSignal, started: () => void): Promise<number | undefined> {
  if (!(await inbox().wait(1, signal))) return undefined
  started()
  let value = 0
  for (let index = 0; ; index++) {
    if (index >= maxLengthBytes) throw new FrameError('too-large', 'the frame length prefix is longer than 5 bytes')
    if (!(await inbox().wait(index + 1, signal))) {
      throw new FrameError('malformed', 'the stream ended before a complete frame arrived', undefined, { cause: endOfStream() })
    }
    const byte = inbox().peek(index)
    value += (byte & 0x7f) * 2 ** (7 * index)
    if ((byte & 0x80) === 0) {
      inbox().discard(index + 1)
      return value
    }
  }
}

/** How one frame is read: the caller's signal, and for a gated (JSON) frame the stream's gate and deadline. */
interface FrameRead {
  signal?: AbortSignal
  due?: boolean
  gate?: FrameGate
  deadline?: FrameDeadline
}

/**
 * Reads one frame of at most `limit` bytes, turning every failure into a FrameError (or the abort reason, or what the
 * gate threw). The gate, when there is one, decides before the body is read; the deadline, when there is one, applies.
 */
async function readFrame(inbox: () => Inbox, limit: number, readOptions: FrameRead): Promise<{ body: Uint8Array; release: () => void }> {
  const { deadline, gate } = readOptions
  const late = new AbortController()
  let timer: NodeJS.Timeout | undefined
  let declared: number | undefined
  const arm = (ms: number, message: () => string): void => {
    clearTimeout(timer)
    timer = setTimeout(() => late.abort(new FrameError('too-slow', message(), declared)), ms)
  }
  const signal = readOptions.signal === undefined ? late.signal : AbortSignal.any([readOptions.signal, late.signal])
  let release = noop
  let gateFailed = false
  try {
    if (deadline !== undefined && readOptions.due === true) arm(deadline.allowanceMs, () => `no complete frame prefix arrived within ${deadline.allowanceMs} ms`)
    const length = await readPrefix(inbox, signal, () => {
      if (deadline !== undefined && readOptions.due !== true) arm(deadline.allowanceMs, () => `a frame prefix was begun but not finished within ${deadline.allowanceMs} ms`)
    })
    if (length === undefined) throw new FrameError('malformed', 'the stream ended before a complete frame arrived', undefined, { cause: endOfStream() })
    declared = length
    if (length > limit) throw new FrameError('too-large', `the frame announces ${length} bytes, over the limit of ${limit}`, length)
    clearTimeout(timer)
    if (gate !== undefined) {
      try {
        release = await gate(length)
      } catch (error) {
        gateFailed = true
        throw error
      }
      signal.throwIfAborted()
    }
    if (deadline !== undefined) {
      const ms = deadline.allowanceMs + Math.ceil((length * 1000) / deadline.minBytesPerSecond)
      arm(ms, () => `a frame of ${length} bytes did not arrive within ${ms} ms (${deadline.allowanceMs} ms plus its size at ${deadline.minBytesPerSecond} bytes/s); ${inbox().received(length)} bytes came`)
    }
    return { body: await readBody(inbox, length, signal), release }
  } catch (cause) {
    release()
    if (readOptions.signal?.aborted === true) throw readOptions.signal.reason
    if (late.signal.aborted) throw late.signal.reason
    if (gateFailed || cause instanceof FrameError) throw cause
    throw new FrameError('malformed', `the stream failed while reading a frame: ${(cause as Error).message}`, declared, { cause })
  } finally {
    clearTimeout(timer)
    inbox().allow(0)
  }
}

/** A frame's body of `length` bytes, taken from the inbox as it arrives. */
async function readBody(inbox: () => Inbox, length: number, signal: AbortSignal): Promise<Uint8Array> {
  const body = new Uint8Array(length)
  let filled = 0
  for (;;) {
    filled += inbox().takeInto(body, filled)
    inbox().allow(length - filled)
    if (filled === length) return body
    if (!(await inbox().wait(1, signal))) {
      throw new FrameError('malformed', `the stream ended before a complete frame arrived (${filled} of its ${length} bytes came)`, length, { cause: endOfStream() })
    }
  }
}

/** Waits for the far side to end the stream; a frame (or the prefix of one) that comes first is refused. */
async function readEnd(inbox: () => Inbox, readOptions: { signal?: AbortSignal }): Promise<void> {
  const signal = readOptions.signal ?? new AbortController().signal
  let length: number | undefined
  try {
    length = await readPrefix(inbox, signal, noop)
  } catch (cause) {
    if (readOptions.signal?.aborted === true) throw readOptions.signal.reason
    // The stream ended inside a length prefix: a clean end (a stray partial prefix is let go too).
    if (cause instanceof FrameError && cause.failure === 'malformed') return
    if (cause instanceof FrameError) throw new FrameError(cause.failure, `more data followed the end of the exchange: ${cause.message}`, cause.declaredBytes, { cause })
    throw new FrameError('malformed', `the stream failed after the last frame: ${(cause as Error).message}`, undefined, { cause })
  }
  if (length === undefined) return
  // Nothing more is allowed: even an empty frame is one too many.
  throw new FrameError('too-large', `another frame of ${length} bytes followed the end of the exchange`, length)
}

function endOfStream(): Error {
  const error = new Error('the stream ended')
  error.name = 'UnexpectedEOFError'
  return error
}
