/**
 * The libp2p host of a Hearth node: TCP + noise + yamux, identify, ping, gossipsub, and bootstrap / mDNS discovery
 * when asked for. Its PeerId comes from the node's secp256k1 key, so every peer's Ethereum address is known from
 * the connection itself. Protocol and gossip helpers sit on top (see protocol.ts, blob-protocol.ts, stream-protocol.ts
 * and gossip.ts). net/ owns libp2p: code outside it reaches the network only through `Host`'s methods, never through
 * its `libp2p` property (scripts/check-layers.ts enforces this).
 */
import './polyfill.ts' // must come first: libp2p 3 needs Promise.withResolvers, which Node 20 lacks
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import type { CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import type { Libp2pOptions } from 'libp2p'
import type { Libp2p, PeerId, Upgrader } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Address } from 'viem'
import type { z } from 'zod'
import { HearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { Signed } from '../identity/signed.ts'
import { isRelayed, peerOfTarget, toDialTarget } from './dial-target.ts'
import type { PeerTarget } from './dial-target.ts'
import { createGossip, gossipMaxBytesCeiling } from './gossip.ts'
import type { GossipHandler, PublishOptions, SubscribeOptions } from './gossip.ts'
import { remoteIpKey, type InboundLimits, type InboundStats } from './inbound-budget.ts'
import { attachInboundGuard, createInboundGuard } from './inbound-guard.ts'
import { attachConnectionReversal, type ConnectionReversal } from './reversal.ts'
import { attachHolePunch, serveObserverPorts, startObserver, type HolePunch, type HolePunchLimits, type HolePunchStats, type Observer } from './hole-punch.ts'
import { createRelayMeter } from './relay-meter.ts'
import type { ServeOptions } from './inbound-guard.ts'
import { createNetMetrics } from './net-metrics.ts'
import { createReachability, dialbackHandler, dialbackProtocol } from './reachability.ts'
import type { ReachabilityInit, ReachabilityStatus } from './reachability.ts'
import type { NetMetrics } from './net-metrics.ts'
import { sendRequest, serveProtocol } from './protocol.ts'
import type { Exchange, Protocol, RequestHandler, RequestOptions } from './protocol.ts'
import { requestBlob, serveBlobProtocol } from './blob-protocol.ts'
import type { BlobExchange, BlobHandler, BlobProtocol, BlobRequestOptions } from './blob-protocol.ts'
import { openStream, serveStreamProtocol } from './stream-protocol.ts'
import type { OpenStreamOptions, StreamCall, StreamHandler, StreamProtocol, StreamServer } from './stream-protocol.ts'

export interface HostInit {
  identity: NodeIdentity
  /** Multiaddrs to listen on (default: loopback only, `/ip4/127.0.0.1/tcp/0`). */
  listen?: string[]
  /**
   * Addresses other nodes should dial (a public IP and port, a port forward), announced besides what the node finds
   * out itself (see reachability.ts).
   */
  announce?: string[]
  /** Multiaddrs (with /p2p/<PeerId>) to connect to at start and keep connected. */
  bootstrap?: string[]
  /**
   * How the node finds out whether others can dial it, and the relays it reserves slots on when they cannot (default:
   * ask the relays, which default to the bootstrap peers; reserve on two when nobody can dial this node).
   */
  reachability?: ReachabilityInit
  /**
   * Relay other nodes' connections and answer their dial-backs (`hearth relay`, or a public provider whose config says
   * so). Reservations are limited in number, bytes and time per relayed connection, and `allowReservation` decides who
   * may hold one.
   */
  relay?: Partial<RelayLimits> & { allowReservation?: (peer: PeerId) => boolean }
  /** Find and dial peers on the local network by multicast DNS (default false). */
  mdns?: boolean
  /**
   * Bounds on the bytes of inbound frames this node holds (node-wide, per remote IP, per remote peer; an admitted
   * share unadmitted traffic cannot take) and each frame's deadline; see defaultInboundLimits in inbound-budget.ts.
   */
  inbound?: Partial<InboundLimits>
  /** Limits on hole punches asked and answered (see hole-punch.ts). */
  holePunch?: Partial<HolePunchLimits>
}

export interface HostMetrics extends NetMetrics {
  /** Bytes held for inbound frames now and at most, by share, and the frames refused or abandoned. */
  inbound: InboundStats
  /** Hole punches asked, answered and made (see hole-punch.ts). */
  holePunch: HolePunchStats
  /** On a relay: bytes it carried between relayed peers (both ways, since start). */
  relayedBytes?: number
}

export interface RelayLimits {
  /** Reservations held at once. */
  maxReservations: number
  /** Bytes one relayed connection may carry, both ways together: enough for a 64 MiB package and its results. */
  dataLimitBytes: number
  /** How long one relayed connection may stay open. */
  durationLimitMs: number
  /** How long a reservation lasts before its holder must renew it. */
  reservationTtlMs: number
  /**
   * The two TCP ports of the relay's NAT observer, which tells nodes their public address so that two nodes behind
   * NATs can punch a direct connection (0: any free port; nodes learn them over /hearth/net/observe/1).
   */
  observePorts: [number, number]
}

export const defaultRelayLimits: RelayLimits = { maxReservations: 128, dataLimitBytes: 256 * 1024 * 1024, durationLimitMs: 30 * 60_000, reservationTtlMs: 60 * 60_000, observePorts: [0, 0] }

export type ConnectionKind = 'direct' | 'hole-punched' | 'relayed'

/** How this node reaches a peer it holds connections to. */
export interface PeerConnection {
  peerId: string
  /**
   * direct: its own TCP connection; hole-punched: a direct TCP connection two NATed nodes opened together (see
   * hole-punch.ts); relayed: through a relay (the remote address holds /p2p-circuit).
   */
  kind: ConnectionKind
  remoteAddr: string
  direction: 'inbound' | 'outbound'
}

export type HostServices = { identify: Identify; ping: Ping; pubsub: GossipSub; relay?: CircuitRelayService; upgraderAccess: object }

export interface Host {
  readonly peerId: PeerId
  /** Ethereum address of this node's key. */
  readonly address: Address
  /**
   * The libp2p node itself, for net/'s own modules and for tests. Code outside src/net/ must not use it (the layer
   * check, scripts/check-layers.ts, refuses `.libp2p` there): net/ owns libp2p, and the methods below, which
   * validate, bound and count what crosses the network, are what the rest of Hearth uses. A need they do not meet
   * gets a new method here.
   */
  readonly libp2p: Libp2p<HostServices>
  /** Listening addresses, each ending in /p2p/<PeerId>, ready to hand to another node's dial or bootstrap. */
  multiaddrs(): string[]
  start(): Promise<void>
  stop(): Promise<void>
  /** Whether the node is started (between `start` and `stop`): it can dial and answer. */
  isStarted(): boolean
  /** Opens (or reuses) a connection; resolves to the remote PeerId. */
  dial(target: PeerTarget, options?: { signal?: AbortSignal }): Promise<PeerId>
  /** Round-trip time in milliseconds. */
  ping(target: PeerTarget, options?: { signal?: AbortSignal }): Promise<number>
  /** Peers we hold an open connection to. */
  peers(): PeerId[]
  /** Each open connection: to whom, and whether it is direct or relayed. */
  connections(): PeerConnection[]
  /**
   * How this node reaches `target` once a hole punch it asked of it has ended (see hole-punch.ts): the best of its open
   * connections (direct or hole-punched before relayed), or undefined when it holds none.
   */
  reachedBy(target: PeerTarget, options?: { signal?: AbortSignal }): Promise<ConnectionKind | undefined>
  /** Whether others can dial this node, and how (see reachability.ts). */
  reachability(): ReachabilityStatus
  /** The NAT this node is behind, found through a relay it holds a slot on: 'cone' can be hole-punched, 'symmetric' not. */
  natKind(): Promise<'cone' | 'symmetric' | undefined>
  /** Calls `listener` with each peer a connection opens to (either direction); returns a function that stops it. */
  onPeerConnected(listener: (peer: PeerId) => void): () => void
  /**
   * Calls `listener` whenever this node's own record changes, its addresses above all (a relay reservation made or
   * lost, a new announce address; libp2p's `self:peer:update`); returns a function that stops it.
   */
  onAddressesChanged(listener: () => void): () => void
  /** The addresses the peer store holds for `peer` (learnt from identify, offers, dials); empty when it knows none. */
  peerAddresses(peer: PeerId): Promise<string[]>
  /**
   * Adds `addresses` (multiaddrs, without /p2p/<peer>) to what the peer store holds for `peer`, so that a dial by its
   * PeerId tries them too. Rejects, adding none, when one is not a multiaddr.
   */
  addPeerAddresses(peer: PeerId, addresses: string[]): Promise<void>
  /** The remote IP key (see remoteIpKey in inbound-budget.ts) of each open connection to `peer`; empty when none. */
  remoteIps(peer: PeerId): string[]
  /** On a relay: the reservations other nodes hold on it now (0 on a node that relays nothing). */
  relayReservations(): number
  /**
   * Serves `protocol`. `options.admit` is asked, with the sender's identity, about each frame above the node's
   * smallFrameBytes before its body is read; it may refuse it unread (see ServeOptions).
   */
  handle<Req extends z.ZodType, Res extends z.ZodType>(protocol: Protocol<Req, Res>, handler: RequestHandler<Req, Res>, options?: ServeOptions): Promise<void>
  /**
   * Stops serving a protocol: one served by `handle` or `serveBlob` (a stream protocol is stopped by its server's
   * `close`, which also cancels the exchanges in progress).
   */
  unhandle(protocol: Pick<Protocol | BlobProtocol, 'id'>): Promise<void>
  /** Sends one request and returns the validated response (for signed protocols, the verified payload). */
  request<Req extends z.ZodType, Res extends z.ZodType>(target: PeerTarget, protocol: Protocol<Req, Res>, request: z.input<Req>, options?: RequestOptions): Promise<z.output<Res>>
  /** As `request`, also returning the responder's signed envelope (to keep as proof) and PeerId. */
  exchange<Req extends z.ZodType, Res extends z.ZodType>(target: PeerTarget, protocol: Protocol<Req, Res>, request: z.input<Req>, options?: RequestOptions): Promise<Exchange<Res>>
  /** Serves a blob protocol: a JSON request answered by a header and raw bytes (see blob-protocol.ts). */
  serveBlob<Req extends z.ZodType, Head extends z.ZodType>(protocol: BlobProtocol<Req, Head>, handler: BlobHandler<Req, Head>, options?: ServeOptions): Promise<void>
  /** Asks `target` for a blob over `protocol`: the validated header and the body (see blob-protocol.ts). */
  requestBlob<Req extends z.ZodType, Head extends z.ZodType>(target: PeerTarget, protocol: BlobProtocol<Req, Head>, request: z.input<Req>, options?: BlobRequestOptions): Promise<BlobExchange<Head>>
  /**
   * Serves an event-stream protocol: a signed request answered by events and a signed result, signed with this node's
   * key (see stream-protocol.ts). Stop it with the returned server's `close`.
   */
  serveStream<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType>(protocol: StreamProtocol<Req, Ev, Res>, handler: StreamHandler<Req, Ev, Res>, options?: ServeOptions): Promise<StreamServer>
  /**
   * Sends `target` a request signed with this node's key over an event-stream protocol and returns its events and
   * result; nothing is sent until `events` or `result` is used (see stream-protocol.ts).
   */
  openStream<Req extends z.ZodType, Ev extends z.ZodType, Res extends z.ZodType>(target: PeerTarget, protocol: StreamProtocol<Req, Ev, Res>, request: z.input<Req>, options?: OpenStreamOptions): StreamCall<Ev, Res>
  publish(topic: string, signed: Signed<unknown>, options?: PublishOptions): Promise<{ recipients: number }>
  subscribe<P extends z.ZodType>(topic: string, payloadSchema: P, handler: GossipHandler<P>, options?: SubscribeOptions): () => void
  /** Peers known to subscribe to `topic`. */
  topicPeers(topic: string): PeerId[]
  metrics(): HostMetrics
}


export async function createHost(init: HostInit): Promise<Host> {
  const { identity } = init
  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  if (init.bootstrap !== undefined && init.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: init.bootstrap }))
  if (init.mdns === true) peerDiscovery.push(mdns())

  const relayLimits = init.relay === undefined ? undefined : { ...defaultRelayLimits, ...init.relay }
  // The relays default to the bootstrap peers: a network's bootstrap nodes are its public relays (hearth relay).
  const reachabilityInit: ReachabilityInit = {
    relays: init.bootstrap ?? [],
    ...init.reachability,
    ...(init.announce === undefined ? {} : { announce: init.announce }),
  }
  // Filled once libp2p exists; libp2p asks for the filter only after start.
  let announceFilter = (addresses: Multiaddr[]): Multiaddr[] => addresses

  // libp2p's upgrader turns a socket into a connection; hole punching needs it for the sockets it opens itself.
  let upgrader: Upgrader | undefined
  // A relay counts the bytes it carries between relayed peers (libp2p reports each protocol stream to its metrics).
  const relayMeter = relayLimits === undefined ? undefined : createRelayMeter()

  let libp2p: Libp2p<HostServices>
  try {
    libp2p = await createLibp2p({
      privateKey: identity.libp2pKey,
      start: false,
      addresses: {
        listen: init.listen ?? ['/ip4/127.0.0.1/tcp/0'],
        ...(init.announce === undefined ? {} : { appendAnnounce: init.announce }),
        announceFilter: (addresses) => announceFilter(addresses),
      },
      // libp2p refuses more than 5 inbound connections a second from one IP. Every node of a local network shares
      // 127.0.0.1, so loopback is exempt; other addresses keep the limit.
      // (Only local processes share a loopback address: exempting it weakens no public node.)
      connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128'] },
      // libp2p pings every connection each 10 s and aborts one whose ping takes over 5 s (adaptive, from a 5 s floor).
      // A home machine busy with work can stall that long, and aborting drops every stream on the connection: results
      // in flight, held uploads. A connection is aborted only when its ping takes over 30 s.
      connectionMonitor: { pingTimeout: { minTimeout: 30_000 } },
      // Every node can dial /p2p-circuit addresses (a provider behind a NAT is reached through its relay) and listen
      // on them (reachability.ts reserves slots when nobody can dial it).
      transports: [tcp(), circuitRelayTransport({ reservationCompletionTimeout: 10_000 })],
      ...(relayLimits?.allowReservation === undefined
        ? {}
        : { connectionGater: { denyInboundRelayReservation: (peer: PeerId) => relayLimits.allowReservation?.(peer) !== true } }),
      connectionEncrypters: [noise()],
      // A dialer may open streams before the listener has finished its side of the upgrade; past 10 such "early"
      // streams yamux aborts the whole connection, which a burst of concurrent requests on a new connection hits.
      streamMuxers: [yamux({ maxEarlyStreams: 512 })],
      peerDiscovery,
      ...(relayMeter === undefined ? {} : { metrics: () => relayMeter.metrics }),
      services: {
        upgraderAccess: (components: { upgrader: Upgrader }) => {
          upgrader = components.upgrader
          return {}
        },
        identify: identify(),
        ping: ping(),
        pubsub: gossipsub({
          // A lone node, or one whose peers have not subscribed yet, may still publish (offers wait in nobody's mesh).
          allowPublishToZeroTopicPeers: true,
          emitSelf: false,
          maxInboundDataLength: gossipMaxBytesCeiling,
          // No penalty for sharing an IP: twenty providers behind one home router, or every node of a local network on
          // 127.0.0.1, are honest. The market's own intake limits per IP (offer-book.ts) bound what one IP can send.
          scoreParams: { IPColocationFactorWeight: 0 },
          // A relay is a hub: the NATed nodes reserved on it are connected to it and to nobody else. Its mesh holds 6
          // to 12 of them; by default it names each message (IHAVE) to a quarter of the rest per heartbeat, for the
          // three heartbeats it keeps the message, and a node passed over each time never gets it (a new offer reached
          // the last of 50 nodes by the market's resync, 28 s later). Named to every peer outside the mesh, every
          // node has it within a heartbeat. The cost is a list of recent message ids per peer a second, small for
          // offers, which come rarely.
          gossipFactor: 1,
        }),
        ...(relayLimits === undefined
          ? {}
          : {
              relay: circuitRelayServer({
                reservations: {
                  maxReservations: relayLimits.maxReservations,
                  reservationTtl: relayLimits.reservationTtlMs,
                  applyDefaultLimit: true,
                  defaultDataLimit: BigInt(relayLimits.dataLimitBytes),
                  defaultDurationLimit: relayLimits.durationLimitMs,
                },
              }),
            }),
      },
    })
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `Cannot create the libp2p host: ${(cause as Error).message}`, {
      cause,
      hint: 'check the listen and bootstrap multiaddrs',
      details: { listen: init.listen, bootstrap: init.bootstrap },
    })
  }

  const metrics = createNetMetrics()
  // One inbound budget for every protocol this node serves, whichever helper serves it.
  const inbound = createInboundGuard({ ...(init.inbound === undefined ? {} : { limits: init.inbound }), metrics })
  attachInboundGuard(libp2p, inbound)
  const deps = { libp2p: libp2p as unknown as Libp2p, identity, metrics, logger: libp2p.logger, inbound }
  const gossip = createGossip({ pubsub: libp2p.services.pubsub, metrics, logger: libp2p.logger })
  const reachability = createReachability(
    libp2p as unknown as Libp2p,
    async (peer, ports, signal) => sendRequest(deps, peer, dialbackProtocol, { ports }, { signal }).then((exchange) => exchange.response),
    reachabilityInit,
  )
  announceFilter = (addresses) => reachability.filter(addresses)
  // A peer that reached this node through a relay and is itself dialable is dialled back directly.
  let reversal: ConnectionReversal | undefined
  // Two NATed nodes, one of which dialled the other through a relay, punch a direct connection.
  let holePunch: HolePunch | undefined
  let observer: Observer | undefined

  if (init.mdns === true) {
    // Discovery only fills the peer store; bootstrap dials its own list, mDNS finds need dialling by us.
    libp2p.addEventListener('peer:discovery', (event) => {
      const peer = event.detail.id
      if (libp2p.getConnections(peer).length > 0) return
      libp2p.dial(peer).catch(() => {})
    })
  }

  const withDialErrors = async <T>(target: PeerTarget, what: string, run: () => Promise<T>, signal?: AbortSignal): Promise<T> => {
    try {
      return await run()
    } catch (cause) {
      if (signal?.aborted === true) throw signal.reason
      throw new HearthError('HEARTH_ERR_NET_DIAL', `Cannot ${what} ${String(target)}: ${(cause as Error).message}`, { cause, details: { target: String(target) } })
    }
  }

  const connections = (): PeerConnection[] =>
    libp2p.getConnections().map((connection) => ({
      peerId: connection.remotePeer.toString(),
      kind: isRelayed(connection.remoteAddr) ? 'relayed' : holePunch?.punched(connection) === true ? 'hole-punched' : 'direct',
      remoteAddr: connection.remoteAddr.toString(),
      direction: connection.direction,
    }))

  return {
    peerId: libp2p.peerId,
    address: identity.address,
    libp2p,
    multiaddrs: () => libp2p.getMultiaddrs().map((address) => address.toString()),
    async start() {
      try {
        await libp2p.start()
        if (relayLimits !== undefined) {
          await serveProtocol(deps, dialbackProtocol, dialbackHandler())
          observer = await startObserver(observerHost(init.listen), relayLimits.observePorts)
          await serveObserverPorts(deps, observer.ports)
        }
        // In the background: a node is usable at once (on loopback, or dialling out), and dialable once this settles.
        void reachability.start().catch((error: unknown) => libp2p.logger.forComponent('hearth:reachability').error('reachability check failed - %e', error))
        reversal = attachConnectionReversal(libp2p as unknown as Libp2p)
        if (upgrader === undefined) throw new Error('libp2p did not hand over its upgrader')
        holePunch = await attachHolePunch({ deps, upgrader, isPublic: () => reachability.status().kind === 'public', ...(init.holePunch === undefined ? {} : { limits: init.holePunch }) })
      } catch (cause) {
        if (cause instanceof HearthError) throw cause
        throw new HearthError('HEARTH_ERR_NET_DIAL', `Cannot start the libp2p host: ${(cause as Error).message}`, {
          cause,
          hint: 'is another process listening on the same port?',
          details: { listen: init.listen },
        })
      }
    },
    async stop() {
      reachability.stop()
      reversal?.stop()
      holePunch?.stop()
      await observer?.close()
      await libp2p.stop()
    },
    isStarted: () => libp2p.status === 'started',
    async dial(target, options = {}) {
      const dialTarget = toDialTarget(target)
      const connection = await withDialErrors(target, 'dial', () => libp2p.dial(dialTarget, options), options.signal)
      return connection.remotePeer
    },
    async ping(target, options = {}) {
      const dialTarget = toDialTarget(target)
      return withDialErrors(target, 'ping', () => libp2p.services.ping.ping(dialTarget, options), options.signal)
    },
    peers: () => libp2p.getPeers(),
    connections,
    async reachedBy(target, options = {}) {
      const peer = peerOfTarget(target)
      if (peer === undefined) return undefined
      await holePunch?.settled(peer, options.signal)
      const kinds = connections().filter((c) => c.peerId === peer.toString()).map((c) => c.kind)
      return kinds.find((kind) => kind !== 'relayed') ?? kinds[0]
    },
    reachability: () => reachability.status(),
    natKind: async () => (holePunch === undefined ? undefined : holePunch.natKind()),
    onPeerConnected(listener) {
      const handler = (event: CustomEvent<PeerId>): void => listener(event.detail)
      libp2p.addEventListener('peer:connect', handler)
      return () => libp2p.removeEventListener('peer:connect', handler)
    },
    onAddressesChanged(listener) {
      const handler = (): void => listener()
      libp2p.addEventListener('self:peer:update', handler)
      return () => libp2p.removeEventListener('self:peer:update', handler)
    },
    async peerAddresses(peer) {
      try {
        return (await libp2p.peerStore.get(peer)).addresses.map((address) => address.multiaddr.toString())
      } catch {
        return [] // not in the peer store
      }
    },
    async addPeerAddresses(peer, addresses) {
      const multiaddrs = addresses.map((address) => multiaddr(address))
      await libp2p.peerStore.merge(peer, { multiaddrs })
    },
    remoteIps: (peer) => libp2p.getConnections(peer).map((connection) => remoteIpKey(connection.remoteAddr)),
    relayReservations: () => libp2p.services.relay?.reservations.size ?? 0,
    handle: (protocol, handler, options) => serveProtocol(deps, protocol, handler, options),
    async unhandle(protocol) {
      await libp2p.unhandle(protocol.id)
    },
    async request(target, protocol, request, options) {
      return (await sendRequest(deps, target, protocol, request, options)).response
    },
    exchange: (target, protocol, request, options) => sendRequest(deps, target, protocol, request, options),
    serveBlob: (protocol, handler, options) => serveBlobProtocol(deps, protocol, handler, options),
    requestBlob: (target, protocol, request, options) => requestBlob(deps, target, protocol, request, options),
    serveStream: (protocol, handler, options) => serveStreamProtocol(deps, protocol, handler, options),
    openStream: (target, protocol, request, options) => openStream(deps, target, protocol, request, options),
    publish: (topic, signed, options) => gossip.publish(topic, signed, options),
    subscribe: (topic, payloadSchema, handler, options) => gossip.subscribe(topic, payloadSchema, handler, options),
    topicPeers: (topic) => gossip.topicPeers(topic),
    metrics: () => ({
      ...metrics.snapshot(),
      inbound: inbound.budget.snapshot(),
      holePunch: holePunch?.stats() ?? { asked: 0, punched: 0, answered: 0, symmetric: 0, failed: 0 },
      ...(relayMeter === undefined ? {} : { relayedBytes: relayMeter.relayedBytes() }),
    }),
  }
}

/** Where a relay's observer listens: the IP of its first IP listen address (0.0.0.0 listens everywhere). */
function observerHost(listen: string[] | undefined): string {
  for (const address of listen ?? ['/ip4/127.0.0.1/tcp/0']) {
    const ip = /^\/ip[46]\/([^/]+)\//.exec(address)?.[1]
    if (ip !== undefined) return ip
  }
  return '127.0.0.1'
}
