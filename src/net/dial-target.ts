/**
 * Whom to dial: a PeerId (we know its addresses, or are connected), a multiaddr, or either written as a string.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { isMultiaddr, multiaddr } from '@multiformats/multiaddr'
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { HearthError } from '../errors.ts'

export type PeerTarget = PeerId | Multiaddr | string

/**
 * Parsed targets by string. Parsing one costs about 1 ms: a secp256k1 PeerId carries its compressed public key, which
 * libp2p decompresses (a square root mod p in JavaScript) for every PeerId it builds, and nodes send many requests to
 * the same few peers. PeerId and Multiaddr objects are immutable, so sharing them is safe.
 */
const parsed = new Map<string, { target: PeerId | Multiaddr; peer: PeerId | undefined }>()
const maxParsed = 4096

function parse(target: string): { target: PeerId | Multiaddr; peer: PeerId | undefined } {
  const known = parsed.get(target)
  if (known !== undefined) return known
  let entry: { target: PeerId | Multiaddr; peer: PeerId | undefined }
  try {
    if (target.startsWith('/')) {
      const address = multiaddr(target)
      const peer = address.getComponents().findLast((component) => component.name === 'p2p')?.value
      entry = { target: address, peer: peer === undefined ? undefined : peerIdFromString(peer) }
    } else {
      const peer = peerIdFromString(target)
      entry = { target: peer, peer }
    }
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_NET_DIAL', `Cannot dial "${target}": it is neither a multiaddr nor a PeerId`, {
      cause,
      hint: 'use a multiaddr such as /ip4/127.0.0.1/tcp/4001/p2p/16Uiu2... or a bare PeerId of a known peer',
      details: { target },
    })
  }
  if (parsed.size >= maxParsed) parsed.clear()
  parsed.set(target, entry)
  return entry
}

export function toDialTarget(target: PeerTarget): PeerId | Multiaddr {
  return typeof target === 'string' ? parse(target).target : target
}

/** The peer a target names: the PeerId itself, or a multiaddr's last /p2p/ component (undefined when it has none). */
export function peerOfTarget(target: PeerTarget): PeerId | undefined {
  if (typeof target === 'string') return parse(target).peer
  if (isMultiaddr(target)) {
    const peer = target.getComponents().findLast((component) => component.name === 'p2p')?.value
    return peer === undefined ? undefined : parse(peer).peer
  }
  return target
}

/**
 * A connection to the target's peer: an open one when there is one, else a new dial. libp2p's dial() would return the
 * same open connection, but only after parsing the target again and merging its address into the peer store, which
 * costs more than the request itself on a busy connection.
 */
export async function connectTo(libp2p: Libp2p, target: PeerTarget, options: { signal?: AbortSignal } = {}): Promise<Connection> {
  const peer = peerOfTarget(target)
  if (peer !== undefined) {
    // An open connection: one without relay limits first, a direct one first among those. A relayed connection is
    // used too rather than a new dial: a peer behind a NAT is reachable only through the relay it came through, and a
    // Hearth relay's limits let a task's data through.
    const open = libp2p.getConnections(peer).filter((connection) => connection.status === 'open')
    const unlimited = open.filter((connection) => connection.limits === undefined)
    const chosen = unlimited.find((connection) => connection.direct) ?? unlimited[0] ?? open[0]
    if (chosen !== undefined) return chosen
  }
  return libp2p.dial(toDialTarget(target), options)
}

/** Whether an address (or a connection's remote address) goes through a relay: it holds /p2p-circuit. */
export const isRelayed = (address: string | { toString(): string }): boolean => address.toString().includes('/p2p-circuit')
