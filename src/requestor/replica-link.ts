/**
 * How a gateway, or the owner's node checking its replicas, reaches a replica's server: over a direct link
 * (net/direct-link.ts: TCP and TLS with a ticket the provider granted over libp2p) where this node reaches the provider
 * with no relay or NAT between them, else through the provider's connect tunnel over libp2p. A ticket is asked once
 * per replica and renewed before it expires. A direct link that does not come about (a firewall that lets only
 * libp2p's port through, a provider that offers none) sends the replica's connections through the tunnel for a while;
 * a refusal from the provider itself (the replica ended, its server does not answer) is the replica's failure either
 * way, and is passed on as it came.
 *
 * A few spare links per replica are kept ready (their TCP and TLS handshakes done, not yet joined to the server), so
 * that a new connection costs no round trip beyond the request's own: a server that closes every connection would
 * otherwise pay two more per request across regions. A provider's refusal of a link then comes on the link, before
 * any answer, as an error with details.refusedLink: nothing reached the server (gateway-forward.ts may retry).
 */
import type { Duplex } from 'node:stream'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { serviceConnectProtocol, serviceDirectProtocol } from '../exec/exescript-protocols.ts'
import { peerOfTarget, type PeerTarget } from '../net/dial-target.ts'
import { dialDirect, type DirectGrant } from '../net/direct-link.ts'
import type { FramedLink } from '../net/link-frames.ts'
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
  /** Spare direct links kept ready per replica in use (default 4, up to 8 times that while connections find none; 0: none). */
  spareLinks?: number
  /** A spare older than this is not used (providers refuse spares after a minute: direct-link.ts). */
  spareMaxAgeMs?: number
  log?(line: string): void
}

export interface ReplicaLinks {
  /** A new byte stream to the replica's server. */
  connect(replica: ReplicaAddress, signal: AbortSignal): Promise<Duplex>
  /** How the replica's last connection was made; undefined before the first. */
  pathOf(activityId: string): ReplicaPath | undefined
  /** Closes the spare links; connections made go on. */
  close(): void
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
  spares: SpareLinks
}

/**
 * A replica's direct links ready for its next connections: handshaken, not joined, oldest first. It keeps `count`,
 * one more each time a connection found none ready (a server that closes every connection, under load, needs a
 * link per request), up to eight times `count`, and one fewer each time a spare grew too old unused.
 */
class SpareLinks {
  readonly #ready: Array<{ link: FramedLink; at: number }> = []
  #making = 0
  #made = 0
  #closed = false
  #target: number
  readonly #limits: { count: number; maxAgeMs: number; dialTimeoutMs: number }

  constructor(limits: { count: number; maxAgeMs: number; dialTimeoutMs: number }) {
    this.#limits = limits
    this.#target = limits.count
  }

  /** One that is still open and young enough, out of the pool; undefined when there is none. */
  take(): FramedLink | undefined {
    for (let spare = this.#ready.shift(); spare !== undefined; spare = this.#ready.shift()) {
      if (!spare.link.destroyed && Date.now() - spare.at < this.#limits.maxAgeMs) return spare.link.ref()
      if (!spare.link.destroyed) this.#target = Math.max(this.#limits.count, this.#target - 1)
      spare.link.destroy()
    }
    // The first connection of a replica finds none by nature; later ones that find none want more kept.
    if (this.#made > 0) this.#target = Math.min(this.#limits.count * 8, this.#target + 1)
    return undefined
  }

  /** Makes spares in the background up to the count (one that fails to come about is simply not there). */
  refill(ip: string, grant: DirectGrant): void {
    while (!this.#closed && this.#ready.length + this.#making < this.#target) {
      this.#making++
      this.#made++
      dialDirect(ip, grant.port, grant, { signal: AbortSignal.timeout(this.#limits.dialTimeoutMs) }).then(
        (link) => {
          this.#making--
          // Unused, its failure (e.g. the provider refusing it after a minute) is no one's error.
          link.on('error', () => {})
          if (this.#closed) return void link.destroy()
          const spare = { link: link.unref(), at: Date.now() }
          this.#ready.push(spare)
          link.once('close', () => {
            const index = this.#ready.indexOf(spare)
            if (index >= 0) this.#ready.splice(index, 1)
          })
        },
        () => {
          this.#making--
        },
      )
    }
  }

  /** Closes the spares held; `forever`: and makes no more. */
  drop(forever = false): void {
    if (forever) this.#closed = true
    for (const { link } of this.#ready.splice(0)) link.destroy()
  }
}

/** Remote codes of a grant's refusal that the tunnel would give as well: the replica's own failure. */
const replicaRefusals = new Set(['HEARTH_ERR_SERVICE_NOT_HOSTED', 'HEARTH_ERR_SERVICE_NOT_ALLOWED'])
/** Replicas not connected to for this long are forgotten (their tickets with them). */
const forgetAfterMs = 30 * 60_000

export function createReplicaLinks(host: Host, options: ReplicaLinksOptions = {}): ReplicaLinks {
  const direct = options.direct ?? true
  const fallbackMs = options.fallbackMs ?? 60_000
  const directTimeoutMs = options.directTimeoutMs ?? 3_000
  const spareLimits = { count: options.spareLinks ?? 4, maxAgeMs: options.spareMaxAgeMs ?? 20_000, dialTimeoutMs: directTimeoutMs }
  const states = new Map<string, LinkState>()
  let sweptAt = 0
  let closed = false

  const stateOf = (activityId: string): LinkState => {
    const now = Date.now()
    // Forgetting is not for every connection (a server that closes each one makes a connection per request).
    if (now - sweptAt > 60_000) {
      sweptAt = now
      for (const [id, state] of states) {
        if (now - state.usedAt <= forgetAfterMs) continue
        state.spares.drop(true)
        states.delete(id)
      }
    }
    let state = states.get(activityId)
    if (state === undefined) {
      state = { renewAt: 0, tunnelUntil: 0, usedAt: now, spares: new SpareLinks(closed ? { ...spareLimits, count: 0 } : spareLimits) }
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
      const link = state.spares.take() ?? (await dialDirect(ip, grant.port, grant, { signal: within }))
      state.spares.refill(ip, grant)
      return link.join()
    } catch (error) {
      if (signal.aborted) throw error
      // The provider answered for the replica (gone, not this node's, its server not answering): as the tunnel would.
      // (A provider over its bound on links answers HEARTH_ERR_NET_BUSY instead: the tunnel may still take this one.)
      if (isHearthError(error) && error.code === 'HEARTH_ERR_NET_REMOTE' && (error.details?.refusedLink === true || replicaRefusals.has(String(error.details?.remoteCode)))) throw error
      state.grant = undefined
      state.tunnelUntil = Date.now() + fallbackMs
      state.spares.drop()
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
    close() {
      closed = true
      for (const state of states.values()) state.spares.drop(true)
      states.clear()
    },
  }
}
