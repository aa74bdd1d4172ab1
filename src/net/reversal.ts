/**
 * Connection reversal. A peer that reached this node only through a relay (this node is behind a NAT, or the peer knew
 * only its relayed address) may itself be dialable: then this node dials it back directly, and both sides use that
 * connection from then on (libp2p prefers a direct, unlimited connection to a relayed one), so bulk traffic leaves the
 * relay. The addresses dialled are the ones the peer announces in identify, which a NATed peer limits to its relayed
 * ones: a reversal is tried only where it can work.
 *
 * Those addresses are the peer's word, so a stranger could name someone else's: each dial is a libp2p dial that ends at
 * the noise handshake when the other end is not that peer, reversals are rate-limited per peer and in all, and an
 * address naming this machine (loopback, unspecified) or another peer is never dialled.
 */
import type { IdentifyResult, Libp2p, PeerId } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { isRelayed } from './dial-target.ts'

export interface ReversalLimits {
  /** One reversal per peer in this window. */
  perPeerMs: number
  /** Reversals in a minute, all peers together. */
  perMinute: number
  /** How long one reversal may take. */
  timeoutMs: number
}

export const defaultReversalLimits: Readonly<ReversalLimits> = Object.freeze({ perPeerMs: 60_000, perMinute: 30, timeoutMs: 5_000 })

export interface ConnectionReversal {
  /** Reversals tried and those that gave a direct connection, since start. */
  stats(): { tried: number; direct: number }
  stop(): void
}

/** A loopback or unspecified address names this machine, not the peer's: never dialled on the peer's word. */
const ownMachine = (text: string): boolean => /^\/ip4\/(127\.|0\.0\.0\.0\/)|^\/ip6\/(::1?|0:0:0:0:0:0:0:[01])\//.test(text)

/**
 * Where a peer may be dialled back: its announced plain TCP addresses, none relayed, none naming this machine, and
 * none naming another peer; each ends in the peer's own id, so that the dial fails unless that peer answers.
 */
export function reversalTargets(peer: PeerId, announced: readonly Multiaddr[]): Multiaddr[] {
  const id = peer.toString()
  return announced.flatMap((address) => {
    const match = /^(\/ip[46]\/[^/]+\/tcp\/\d+)(?:\/p2p\/([^/]+))?$/.exec(address.toString())
    if (match === null || ownMachine(match[1]!) || (match[2] !== undefined && match[2] !== id)) return []
    return [multiaddr(`${match[1]}/p2p/${id}`)]
  })
}

/**
 * Whether a reversal (or punch) may be tried now: `perPeer` (default one) per peer per `perPeerMs`, `perMinute` in all.
 * Bounded memory.
 */
export function createReversalLimiter(limits: Pick<ReversalLimits, 'perPeerMs' | 'perMinute'> & { perPeer?: number }): (peer: string, nowMs: number) => boolean {
  const perPeer = limits.perPeer ?? 1
  const tried = new Map<string, number[]>()
  let windowStart = -Infinity
  let inWindow = 0
  return (peer, nowMs) => {
    const recent = (tried.get(peer) ?? []).filter((at) => nowMs - at < limits.perPeerMs)
    if (recent.length >= perPeer) return false
    if (nowMs - windowStart >= 60_000) {
      windowStart = nowMs
      inWindow = 0
    }
    if (inWindow >= limits.perMinute) return false
    inWindow++
    recent.push(nowMs)
    tried.set(peer, recent)
    // Entries older than the window say nothing any more.
    if (tried.size > 4_096) for (const [key, times] of tried) if (times.every((at) => nowMs - at >= limits.perPeerMs)) tried.delete(key)
    return true
  }
}

export function attachConnectionReversal(libp2p: Libp2p, limits: ReversalLimits = defaultReversalLimits): ConnectionReversal {
  const allowed = createReversalLimiter(limits)
  const stats = { tried: 0, direct: 0 }
  const stopping = new AbortController()
  const log = libp2p.logger.forComponent('hearth:reversal')

  const onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    const { peerId, listenAddrs, connection } = event.detail
    log('identified %p over %a (%s), announcing %s', peerId, connection?.remoteAddr, connection?.direction, listenAddrs.map(String).join(' '))
    if (connection === undefined || !isRelayed(connection.remoteAddr) || connection.direction !== 'inbound') return
    if (libp2p.getConnections(peerId).some((open) => !isRelayed(open.remoteAddr))) return
    const targets = reversalTargets(peerId, listenAddrs)
    if (targets.length === 0 || !allowed(peerId.toString(), Date.now())) return
    stats.tried++
    const signal = AbortSignal.any([stopping.signal, AbortSignal.timeout(limits.timeoutMs)])
    void libp2p.dial(targets, { signal, force: true }).then(
      (opened) => {
        log('dialled %p back at %a', peerId, opened.remoteAddr)
        if (!isRelayed(opened.remoteAddr)) stats.direct++
      },
      (error: unknown) => log('could not dial %p back - %e', peerId, error),
    )
  }
  libp2p.addEventListener('peer:identify', onIdentify)
  return {
    stats: () => ({ ...stats }),
    stop() {
      stopping.abort()
      libp2p.removeEventListener('peer:identify', onIdentify)
    },
  }
}
