/**
 * Session streams for request/response protocols that ask for them (`session: true` in the protocol's spec): several
 * requests, one after another, on one stream. Opening a libp2p stream (yamux frames both ways, protocol selection,
 * peer-store updates) costs several times as much as a request on a stream already open, and a requestor sends a
 * provider a request every few milliseconds.
 *
 * The responder answers `{ ok: true, body, session: true }` and then waits, at most `sessionIdleMs`, for the next
 * request on the same stream; anything else (an error answer, a refusal, the requester closing its side, the idle
 * time passing) ends the stream as a one-request exchange ends. The requester keeps a stream whose answer said so, for
 * its next request of that protocol to that peer, for at most `keptStreamIdleMs` (well within the responder's wait,
 * so that a kept stream is never one the responder is just ending). A requester that closes its side after one
 * request, as every requester of a protocol without sessions does, gets its one answer: the wire format is the same.
 */
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerOfTarget, type PeerTarget } from './dial-target.ts'
import type { JsonFrameStream } from './json-frames.ts'

/** How long a responder waits on a session stream for the next request. */
export const sessionIdleMs = 15_000
/** How long a requester keeps an idle session stream for its next request. */
export const keptStreamIdleMs = 5_000
/** Idle session streams kept per peer and protocol: as many as the requests a node sends a peer at once. */
const maxKeptPerPeer = 8

/** A session stream between requests, with its reader (one reader per stream: it holds what arrives). */
export interface KeptStream {
  peer: PeerId
  stream: Stream
  frames: JsonFrameStream
}

interface Idle extends KeptStream {
  timer: NodeJS.Timeout
}

/** Idle session streams by node, then by peer and protocol. */
const kept = new WeakMap<Libp2p, Map<string, Idle[]>>()

function keyOf(peer: PeerId | string, id: string): string {
  return `${peer.toString()} ${id}`
}

/** Whether a kept stream can carry another request: open both ways, and nothing arrived on it unasked. */
function usable(entry: KeptStream): boolean {
  const { stream } = entry
  const reading = stream.readStatus === 'readable' || stream.readStatus === 'paused'
  return stream.status === 'open' && stream.writeStatus === 'writable' && reading && stream.remoteWriteStatus === 'writable' && entry.frames.pending() === 0
}

/** Ends a stream this node will not use again: our side closed (the responder then ends its own), reset if that fails. */
export function closeKept(stream: Stream): void {
  if (stream.status !== 'open') return
  stream.close().catch((error: unknown) => stream.abort(error instanceof Error ? error : new Error(String(error))))
}

/** An idle session stream of `id` to the peer of `target`, taken out of the pool; undefined when there is none. */
export function takeKeptStream(libp2p: Libp2p, target: PeerTarget, id: string): KeptStream | undefined {
  const peer = peerOfTarget(target)
  if (peer === undefined) return undefined
  const byKey = kept.get(libp2p)
  const key = keyOf(peer, id)
  const idle = byKey?.get(key)
  while (idle !== undefined && idle.length > 0) {
    const entry = idle.pop()!
    clearTimeout(entry.timer)
    if (usable(entry)) {
      if (idle.length === 0) byKey!.delete(key)
      return { peer: entry.peer, stream: entry.stream, frames: entry.frames }
    }
    closeKept(entry.stream)
  }
  byKey?.delete(key)
  return undefined
}

/** Keeps a session stream whose answer said the responder reads on, for the next request; closes it otherwise. */
export function keepStream(libp2p: Libp2p, id: string, entry: KeptStream): void {
  if (!usable(entry)) return closeKept(entry.stream)
  let byKey = kept.get(libp2p)
  if (byKey === undefined) {
    byKey = new Map()
    kept.set(libp2p, byKey)
  }
  const key = keyOf(entry.peer, id)
  const idle = byKey.get(key) ?? []
  if (idle.length >= maxKeptPerPeer) return closeKept(entry.stream)
  const held: Idle = {
    ...entry,
    timer: setTimeout(() => {
      const list = byKey.get(key)
      const index = list?.indexOf(held) ?? -1
      if (index >= 0) list!.splice(index, 1)
      if (list?.length === 0) byKey.delete(key)
      closeKept(entry.stream)
    }, keptStreamIdleMs),
  }
  held.timer.unref()
  idle.push(held)
  byKey.set(key, idle)
}

/** Whether a response frame says the responder reads on after it. */
export function continuesSession(frame: unknown): boolean {
  return typeof frame === 'object' && frame !== null && (frame as { session?: unknown }).session === true
}
