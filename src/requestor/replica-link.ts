/**
 * How a gateway, or the owner's node checking its replicas, reaches a replica's server: over a direct link
 * (net/direct-link.ts: TCP and TLS with a ticket the provider granted over libp2p) where this node reaches the provider
 * with no relay or NAT between them, else through the provider's connect tunnel over libp2p. A ticket is asked once
 * per replica and renewed before it expires. A direct link that does not come about (a firewall that lets only
 * libp2p's port through, a provider that offers none) sends the replica's connections through the tunnel for a while;
 * a refusal from the provider itself (the replica ended, its server does not answer) is the replica's failure either
 * way, and is passed on as it came.
 */
import type { Duplex } from 'node:stream'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { serviceConnectProtocol, serviceDirectProtocol } from '../exec/exescript-protocols.ts'
import { peerOfTarget, type PeerTarget } from '../net/dial-target.ts'
import { dialDirect, type DirectGrant } from '../net/direct-link.ts'
import type { Host } from '../net/host.ts'
import { raceSignal } from '../net/serve-support.ts'

export type ReplicaPath = 'direct' | 'tunnel'

export interface ReplicaAddress {
  /** The provider: a multiaddr with /p2p/<id>, or its peer id when the peer store knows its addresses. */
  target: PeerTarget
  activityId: string
}

export interface ReplicaLinksOptions {
  /** Use direct links where they work (default true); false: tunnels only. */
  direct?: boolean
  /** How long a replica whose direct link failed is reached through the tunnel before a direct link is tried again. */
  fallbackMs?: number
  /** The most a direct link may take to come about before the tunnel is used instead. */
  directTimeoutMs?: number
  log?(line: string): void
}

export interface ReplicaLinks {
  /** A new byte stream to the replica's server. */
  connect(replica: ReplicaAddress, signal: AbortSignal): Promise<Duplex>
  /** How the replica's last connection was made; undefined before the first. */
  pathOf(activityId: string): ReplicaPath | undefined
}

interface LinkState {
  grant?: DirectGrant
  /** When the grant is asked again (before it expires). */
  renewAt: number
  granting?: Promise<DirectGrant>
  tunnelUntil: number
  path?: ReplicaPath
  usedAt: number
  /** Said once in the log: this node reaches the provider at none of the addresses its direct links listen at. */
  toldNotDirect?: boolean
}

/** Remote codes of a grant's refusal that the tunnel would give as well: the replica's own failure. */
const replicaRefusals = new Set(['HEARTH_ERR_SERVICE_NOT_HOSTED', 'HEARTH_ERR_SERVICE_NOT_ALLOWED'])
/** Replicas not connected to for this long are forgotten (their tickets with them). */
const forgetAfterMs = 30 * 60_000

export function createReplicaLinks(host: Host, options: ReplicaLinksOptions = {}): ReplicaLinks {
  const direct = options.direct ?? true
  const fallbackMs = options.fallbackMs ?? 60_000
  const directTimeoutMs = options.directTimeoutMs ?? 3_000
  const states = new Map<string, LinkState>()
  let sweptAt = 0

  const stateOf = (activityId: string): LinkState => {
    const now = Date.now()
    // Forgetting is not for every connection (a server that closes each one makes a connection per request).
    if (now - sweptAt > 60_000) {
      sweptAt = now
      for (const [id, state] of states) if (now - state.usedAt > forgetAfterMs) states.delete(id)
    }
    let state = states.get(activityId)
    if (state === undefined) {
      state = { renewAt: 0, tunnelUntil: 0, usedAt: now }
      states.set(activityId, state)
    }
    state.usedAt = now
    return state
  }

  /** The replica's ticket: the one held while it is fresh, else a new one (one request for all who wait on it). */
  const ticket = (state: LinkState, replica: ReplicaAddress): Promise<DirectGrant> => {
    if (state.grant !== undefined && Date.now() < state.renewAt) return Promise.resolve(state.grant)
    state.granting ??= host.request(replica.target, serviceDirectProtocol, { activityId: replica.activityId }).then(
      (grant) => {
        state.grant = grant
        state.renewAt = Date.now() + grant.expiresInMs * 0.8
        return grant
      },
    ).finally(() => {
      state.granting = undefined
    })
    return state.granting
  }

  /** The provider's address as this node reaches it with no relay or NAT between: one the provider says is its own. */
  const endpoint = (target: PeerTarget, grant: DirectGrant): string | undefined => {
    const peer = peerOfTarget(target)?.toString()
    for (const connection of host.connections()) {
      if (connection.peerId !== peer || connection.kind !== 'direct') continue
      const ip = /^\/ip4\/([0-9.]+)\/tcp\//.exec(connection.remoteAddr)?.[1]
      if (ip !== undefined && grant.hosts.includes(ip)) return ip
    }
    return undefined
  }

  const tryDirect = async (state: LinkState, replica: ReplicaAddress, signal: AbortSignal): Promise<Duplex | undefined> => {
    const within = AbortSignal.any([signal, AbortSignal.timeout(directTimeoutMs)])
    try {
      const grant = await raceSignal(ticket(state, replica), within)
      const ip = endpoint(replica.target, grant)
      // Reached through a relay or a NAT (or not yet connected): the tunnel, and the question asked again next time.
      if (ip === undefined) {
        if (state.toldNotDirect !== true) options.log?.(`replica ${replica.activityId}: its provider is not reached at an address its direct links listen at (${grant.hosts.join(', ')}); through the libp2p tunnel`)
        state.toldNotDirect = true
        return undefined
      }
      return await dialDirect(ip, grant.port, grant, { signal: within })
    } catch (error) {
      if (signal.aborted) throw error
      // The provider answered for the replica (gone, not this node's, its server not answering): as the tunnel would.
      // (A provider over its bound on links answers HEARTH_ERR_NET_BUSY instead: the tunnel may still take this one.)
      if (isHearthError(error) && error.code === 'HEARTH_ERR_NET_REMOTE' && (error.details?.refusedLink === true || replicaRefusals.has(String(error.details?.remoteCode)))) throw error
      state.grant = undefined
      state.tunnelUntil = Date.now() + fallbackMs
      options.log?.(`replica ${replica.activityId}: no direct link (${toHearthError(error).shortMessage}); through the libp2p tunnel for ${Math.round(fallbackMs / 1000)} s`)
      return undefined
    }
  }

  return {
    async connect(replica, signal) {
      const state = stateOf(replica.activityId)
      if (direct && Date.now() >= state.tunnelUntil) {
        const socket = await tryDirect(state, replica, signal)
        if (socket !== undefined) {
          state.path = 'direct'
          return socket
        }
      }
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new HearthError('HEARTH_ERR_NET_TIMEOUT', 'the connection was given up')
      const { socket } = await host.openTunnel(replica.target, serviceConnectProtocol, { activityId: replica.activityId }, { signal })
      state.path = 'tunnel'
      return socket
    },
    pathOf: (activityId) => states.get(activityId)?.path,
  }
}
