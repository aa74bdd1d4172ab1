/**
 * Whom to dial: a PeerId (we know its addresses, or are connected), a multiaddr, or either written as a string.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { HearthError } from '../errors.ts'

export type PeerTarget = PeerId | Multiaddr | string

export function toDialTarget(target: PeerTarget): PeerId | Multiaddr {
  if (typeof target !== 'string') return target
  try {
    return target.startsWith('/') ? multiaddr(target) : peerIdFromString(target)
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_NET_DIAL', `Cannot dial "${target}": it is neither a multiaddr nor a PeerId`, {
      cause,
      hint: 'use a multiaddr such as /ip4/127.0.0.1/tcp/4001/p2p/16Uiu2... or a bare PeerId of a known peer',
      details: { target },
    })
  }
}
