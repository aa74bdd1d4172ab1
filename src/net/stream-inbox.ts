/**
 * What has arrived on a libp2p stream and not been read yet, for json-frames.ts's reader: the bytes as they came, and
 * the flow control that keeps them few. Once more is held than the frame being read needs plus a small slack, the
 * stream is paused (yamux then stops granting the sender window): bytes nobody asked for are not buffered.
 */
import type { Stream } from '@libp2p/interface'

/** Bytes the reader holds beyond what the frame being read needs before it pauses the stream. */
const slackBytes = 64 * 1024

/** What has arrived on a stream and not been read yet, with the flow control that keeps it small. */
export interface Inbox {
  /** Waits until `bytes` are held; false when the stream ended first. Throws when the stream failed, or the signal's reason. */
  wait(bytes: number, signal: AbortSignal): Promise<boolean>
  /** The byte at `index` of what is held. */
  peek(index: number): number
  discard(bytes: number): void
  /** Moves what is held (up to the room left) into `target` from `offset`; returns the bytes moved. */
  takeInto(target: Uint8Array, offset: number): number
  /** Bytes the current frame still needs: the stream pauses once more than that plus the slack is held. */
  allow(bytes: number): void
  /** For messages: how much of a frame of `length` bytes is held or was read (an estimate, for a timeout's message). */
  received(length: number): number
  /** Bytes held and not read yet. */
  held(): number
}

/** The bytes held, in the chunks they arrived in. */
interface Held {
  chunks: Uint8Array[]
  bytes: number
}

/** Where the stream stands, as its events report it. */
interface StreamState {
  ended: boolean
  failure: Error | undefined
  /** Wakes the reader waiting for bytes. */
  wake: (() => void) | undefined
}

export function createInbox(stream: Stream): Inbox {
  const held: Held = { chunks: [], bytes: 0 }
  const state: StreamState = { ended: stream.remoteWriteStatus !== 'writable', failure: undefined, wake: undefined }
  let allowance = 0
  let consumedOfFrame = 0
  watch(stream, held, state, () => allowance)

  return {
    wait: (bytes, signal) => waitFor(stream, held, state, bytes, signal),
    peek: (index) => peekHeld(held, index),
    discard(bytes) {
      discardHeld(held, bytes)
      consumedOfFrame = 0
    },
    takeInto(target, offset) {
      const moved = takeHeld(held, target, offset)
      consumedOfFrame = offset + moved
      return moved
    },
    allow(bytes) {
      allowance = bytes
    },
    received(length) {
      return Math.min(length, consumedOfFrame + held.bytes)
    },
    held: () => held.bytes,
  }
}

function notify(state: StreamState): void {
  const resolve = state.wake
  state.wake = undefined
  resolve?.()
}

/** Holds what arrives on `stream` (pausing it once more than `allowance()` plus the slack is held) and notes its end. */
function watch(stream: Stream, held: Held, state: StreamState, allowance: () => number): void {
  stream.addEventListener('message', (event) => {
    const data = event.data
    if (data instanceof Uint8Array) {
      if (data.byteLength > 0) held.chunks.push(data)
      held.bytes += data.byteLength
    } else {
      for (const chunk of data) {
        if (chunk.byteLength > 0) held.chunks.push(chunk)
        held.bytes += chunk.byteLength
      }
    }
    if (held.bytes > allowance() + slackBytes) pause(stream)
    notify(state)
  })
  stream.addEventListener('remoteCloseWrite', () => {
    state.ended = true
    notify(state)
  })
  stream.addEventListener('close', (event) => {
    state.ended = true
    if (event.error !== undefined) state.failure = event.error
    notify(state)
  })
}

function pause(stream: Stream): void {
  if (stream.readStatus !== 'readable') return
  try {
    stream.pause()
  } catch {
    // Closing already: nothing more will come.
  }
}

function resume(stream: Stream): void {
  if (stream.readStatus !== 'paused') return
  try {
    stream.resume()
  } catch {
    // Closing already: what was buffered is gone with it.
  }
}

async function waitFor(stream: Stream, held: Held, state: StreamState, bytes: number, signal: AbortSignal): Promise<boolean> {
  while (held.bytes < bytes) {
    signal.throwIfAborted()
    resume(stream)
    if (held.bytes >= bytes) break
    if (state.failure !== undefined) throw state.failure
    // Paused data still queued in the stream arrives on resume, even after the far side ended.
    if (state.ended && (stream.readBufferLength === 0 || stream.readStatus === 'closed' || stream.readStatus === 'closing')) return false
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason)
      signal.addEventListener('abort', onAbort, { once: true })
      state.wake = () => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
    })
  }
  return true
}

function peekHeld(held: Held, index: number): number {
  let rest = index
  for (const chunk of held.chunks) {
    if (rest < chunk.byteLength) return chunk[rest]!
    rest -= chunk.byteLength
  }
  throw new RangeError(`byte ${index} is not held`)
}

function discardHeld(held: Held, bytes: number): void {
  let rest = bytes
  while (rest > 0) {
    const chunk = held.chunks[0]!
    if (chunk.byteLength <= rest) {
      held.chunks.shift()
      rest -= chunk.byteLength
    } else {
      held.chunks[0] = chunk.subarray(rest)
      rest = 0
    }
  }
  held.bytes -= bytes
}

/** Moves what is held (up to the room left) into `target` from `offset`; returns the bytes moved. */
function takeHeld(held: Held, target: Uint8Array, offset: number): number {
  let moved = 0
  while (offset + moved < target.byteLength && held.chunks.length > 0) {
    const chunk = held.chunks[0]!
    const room = target.byteLength - offset - moved
    if (chunk.byteLength <= room) {
      target.set(chunk, offset + moved)
      moved += chunk.byteLength
      held.chunks.shift()
    } else {
      target.set(chunk.subarray(0, room), offset + moved)
      held.chunks[0] = chunk.subarray(room)
      moved += room
    }
  }
  held.bytes -= moved
  return moved
}
