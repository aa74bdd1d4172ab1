/**
 * The libp2p host of a Hearth node: TCP + noise + yamux, identify, ping, gossipsub, and bootstrap / mDNS discovery
 * when asked for. Its PeerId comes from the node's secp256k1 key, so every peer's Ethereum address is known from
 * the connection itself. Protocol and gossip helpers sit on top (see protocol.ts, blob-protocol.ts, stream-protocol.ts
 * and gossip.ts). net/ owns libp2p: code outside it reaches the network only through `Host`'s methods, never through
 * its `libp2p` property (scripts/check-layers.ts enforces this).
 */
import './polyfill.ts' // must come first: libp2p 3 needs Promise.withResolvers, which Node 20 lacks
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
import { createGossip } from './gossip.ts'
import type { GossipHandler, PublishOptions, SubscribeOptions } from './gossip.ts'
import { defaultListen, defaultRelayLimits, nodeOptions } from './host-options.ts'
import type { HostServices, RelayLimits } from './host-options.ts'
import { remoteIpKey, type InboundLimits, type InboundStats } from './inbound-budget.ts'
import { attachInboundGuard, createInboundGuard } from './inbound-guard.ts'
import { attachConnectionReversal, type ConnectionReversal } from './reversal.ts'
import { attachHolePunch, serveObserverPorts, startObserver, type HolePunch, type HolePunchLimits, type HolePunchStats, type Observer } from './hole-punch.ts'
import { createRelayMeter } from './relay-meter.ts'
import type { ServeOptions } from './inbound-guard.ts'
import { createNetMetrics } from './net-metrics.ts'
import { createReachability, dialbackHandler, dialbackProtocol } from './reachability.ts'
import type { Reachability, ReachabilityInit, ReachabilityStatus } from './reachability.ts'
import type { NetMetrics } from './net-metrics.ts'
import { sendRequest, serveProtocol } from './protocol.ts'
import type { Exchange, Protocol, ProtocolDeps, RequestHandler, RequestOptions } from './protocol.ts'
import { openTunnel, serveTunnelProtocol } from './tunnel.ts'
import type { OpenedTunnel, OpenTunnelOptions, TunnelHandler, TunnelProtocol } from './tunnel.ts'
import { requestBlob, requestBlobStream, serveBlobProtocol } from './blob-protocol.ts'
import type { BlobExchange, BlobHandler, BlobProtocol, BlobRequestOptions, BlobStreamExchange } from './blob-protocol.ts'
import { openStream, serveStreamProtocol } from './stream-protocol.ts'
import type { OpenStreamOptions, StreamCall, StreamHandler, StreamProtocol, StreamServer } from './stream-protocol.ts'

// The libp2p options, the relay's limits and the services' types live in host-options.ts.
export { defaultRelayLimits } from './host-options.ts'
export type { HostServices, RelayLimits } from './host-options.ts'

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
  /**
   * Resolves, with the status, once the first reachability check after start has ended: the addresses announced from
   * then on are where others reach this node (before, an address outside the private ranges awaits its dial-back).
   */
  reachabilitySettled(options?: { signal?: AbortSignal }): Promise<ReachabilityStatus>
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
  /** The IPv4 addresses libp2p's TCP listeners are bound to, as bound (0.0.0.0: every interface). */
  tcpListenHosts(): string[]
  /**
   * Serves `protocol`. `options.admit` is asked, with the sender's identity, about each frame above the node's
   * smallFrameBytes before its body is read; it may refuse it unread (see ServeOptions).
   */
  handle<Req extends z.ZodType, Res extends z.ZodType>(protocol: Protocol<Req, Res>, handler: RequestHandler<Req, Res>, options?: ServeOptions): Promise<void>
  /**
   * Stops serving a protocol: one served by `handle` or `serveBlob` (a stream protocol is stopped by its server's
   * `close`, which also cancels the exchanges in progress).
   */
  unhandle(protocol: Pick<Protocol | BlobProtocol | TunnelProtocol, 'id'>): Promise<void>
  /** Sends one request and returns the validated response (for signed protocols, the verified payload). */
  request<Req extends z.ZodType, Res extends z.ZodType>(target: PeerTarget, protocol: Protocol<Req, Res>, request: z.input<Req>, options?: RequestOptions): Promise<z.output<Res>>
  /** As `request`, also returning the responder's signed envelope (to keep as proof) and PeerId. */
  exchange<Req extends z.ZodType, Res extends z.ZodType>(target: PeerTarget, protocol: Protocol<Req, Res>, request: z.input<Req>, options?: RequestOptions): Promise<Exchange<Res>>
  /** Serves a blob protocol: a JSON request answered by a header and raw bytes (see blob-protocol.ts). */
  serveBlob<Req extends z.ZodType, Head extends z.ZodType>(protocol: BlobProtocol<Req, Head>, handler: BlobHandler<Req, Head>, options?: ServeOptions): Promise<void>
  /** Asks `target` for a blob over `protocol`: the validated header and the body (see blob-protocol.ts). */
  requestBlob<Req extends z.ZodType, Head extends z.ZodType>(target: PeerTarget, protocol: BlobProtocol<Req, Head>, request: z.input<Req>, options?: BlobRequestOptions): Promise<BlobExchange<Head>>
  /** As `requestBlob`, resolving with the header once it has come and the body to be read as it arrives. */
  requestBlobStream<Req extends z.ZodType, Head extends z.ZodType>(target: PeerTarget, protocol: BlobProtocol<Req, Head>, request: z.input<Req>, options?: BlobRequestOptions): Promise<BlobStreamExchange<Head>>
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
  /**
   * Serves a tunnel protocol: an opening frame answered by a byte stream both ways (see tunnel.ts). The handler returns
   * what the tunnel joins (e.g. a socket to a server); stop serving with `unhandle`.
   */
  serveTunnel<Open extends z.ZodType>(protocol: TunnelProtocol<Open>, handler: TunnelHandler<Open>, options?: ServeOptions): Promise<void>
  /** Opens a tunnel to `target`: resolves once the peer accepted the opening, with the tunnel as a Node stream. */
  openTunnel<Open extends z.ZodType>(target: PeerTarget, protocol: TunnelProtocol<Open>, open: z.input<Open>, options?: OpenTunnelOptions): Promise<OpenedTunnel>
  publish(topic: string, signed: Signed<unknown>, options?: PublishOptions): Promise<{ recipients: number }>
  subscribe<P extends z.ZodType>(topic: string, payloadSchema: P, handler: GossipHandler<P>, options?: SubscribeOptions): () => void
  /** Peers known to subscribe to `topic`. */
  topicPeers(topic: string): PeerId[]
  metrics(): HostMetrics
}


export async function createHost(init: HostInit): Promise<Host> {
  const { identity } = init
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

  const libp2p = await createNode(init, nodeOptions({
    identity,
    listen: init.listen,
    announce: init.announce,
    bootstrap: init.bootstrap,
    mdns: init.mdns,
    relayLimits,
    relayMeter,
    announceFilter: (addresses) => announceFilter(addresses),
    onUpgrader: (given) => {
      upgrader = given
    },
  }))

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
  const parts: HostParts = { init, libp2p, deps, reachability, relayLimits, upgrader: () => upgrader, reversal: undefined, holePunch: undefined, observer: undefined }

  if (init.mdns === true) {
    // Discovery only fills the peer store; bootstrap dials its own list, mDNS finds need dialling by us.
    libp2p.addEventListener('peer:discovery', (event) => {
      const peer = event.detail.id
      if (libp2p.getConnections(peer).length > 0) return
      libp2p.dial(peer).catch(() => {})
    })
  }

  return {
    peerId: libp2p.peerId,
    address: identity.address,
    libp2p,
    multiaddrs: () => libp2p.getMultiaddrs().map((address) => address.toString()),
    ...lifecycle(parts),
    ...connectionMethods(parts),
    ...peerStoreMethods(libp2p),
    ...protocolMethods(deps),
    publish: (topic, signed, options) => gossip.publish(topic, signed, options),
    subscribe: (topic, payloadSchema, handler, options) => gossip.subscribe(topic, payloadSchema, handler, options),
    topicPeers: (topic) => gossip.topicPeers(topic),
    metrics: () => ({
      ...metrics.snapshot(),
      inbound: inbound.budget.snapshot(),
      holePunch: parts.holePunch?.stats() ?? { asked: 0, punched: 0, answered: 0, symmetric: 0, failed: 0 },
      ...(relayMeter === undefined ? {} : { relayedBytes: relayMeter.relayedBytes() }),
    }),
  }
}

/** The libp2p node, made with `options`; a HearthError naming the addresses when libp2p refuses them. */
async function createNode(init: HostInit, options: Libp2pOptions<HostServices>): Promise<Libp2p<HostServices>> {
  try {
    return await createLibp2p(options)
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `Cannot create the libp2p host: ${(cause as Error).message}`, {
      cause,
      hint: 'check the listen and bootstrap multiaddrs',
      details: { listen: init.listen, bootstrap: init.bootstrap },
    })
  }
}

/** What the host's method groups share: the node, its helpers, and what `start` attaches. */
interface HostParts {
  init: HostInit
  libp2p: Libp2p<HostServices>
  deps: ProtocolDeps
  reachability: Reachability
  relayLimits: RelayLimits | undefined
  /** libp2p's upgrader, handed over when libp2p was made. */
  upgrader: () => Upgrader | undefined
  /** A peer that reached this node through a relay and is itself dialable is dialled back directly. */
  reversal: ConnectionReversal | undefined
  /** Two NATed nodes, one of which dialled the other through a relay, punch a direct connection. */
  holePunch: HolePunch | undefined
  observer: Observer | undefined
}

/** Starting and stopping: on start, the relay's services, the reachability check, reversal and hole punching. */
function lifecycle(parts: HostParts): Pick<Host, 'start' | 'stop' | 'isStarted'> {
  const { init, libp2p, deps, reachability, relayLimits } = parts
  return {
    async start() {
      try {
        await libp2p.start()
        if (relayLimits !== undefined) {
          await serveProtocol(deps, dialbackProtocol, dialbackHandler())
          parts.observer = await startObserver(observerHost(init.listen), relayLimits.observePorts)
          await serveObserverPorts(deps, parts.observer.ports)
        }
        // In the background: a node is usable at once (on loopback, or dialling out), and dialable once this settles.
        void reachability.start().catch((error: unknown) => libp2p.logger.forComponent('hearth:reachability').error('reachability check failed - %e', error))
        parts.reversal = attachConnectionReversal(libp2p as unknown as Libp2p)
        const upgrader = parts.upgrader()
        if (upgrader === undefined) throw new Error('libp2p did not hand over its upgrader')
        parts.holePunch = await attachHolePunch({ deps, upgrader, isPublic: () => reachability.status().kind === 'public', ...(init.holePunch === undefined ? {} : { limits: init.holePunch }) })
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
      parts.reversal?.stop()
      parts.holePunch?.stop()
      await parts.observer?.close()
      await libp2p.stop()
    },
    isStarted: () => libp2p.status === 'started',
  }
}

async function withDialErrors<T>(target: PeerTarget, what: string, run: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  try {
    return await run()
  } catch (cause) {
    if (signal?.aborted === true) throw signal.reason
    throw new HearthError('HEARTH_ERR_NET_DIAL', `Cannot ${what} ${String(target)}: ${(cause as Error).message}`, { cause, details: { target: String(target) } })
  }
}

/** Dialling, pinging, and the connections held and how they reach their peers. */
function connectionMethods(parts: HostParts): Pick<Host, 'dial' | 'ping' | 'peers' | 'connections' | 'reachedBy' | 'reachability' | 'reachabilitySettled' | 'natKind' | 'remoteIps' | 'relayReservations' | 'tcpListenHosts'> {
  const { libp2p, reachability } = parts
  const connections = (): PeerConnection[] =>
    libp2p.getConnections().map((connection) => ({
      peerId: connection.remotePeer.toString(),
      kind: isRelayed(connection.remoteAddr) ? 'relayed' : parts.holePunch?.punched(connection) === true ? 'hole-punched' : 'direct',
      remoteAddr: connection.remoteAddr.toString(),
      direction: connection.direction,
    }))
  return {
    async dial(target, options = {}) {
      const dialTarget = toDialTarget(target)
      const connection = await withDialErrors(target, 'dial', () => libp2p.dial(dialTarget, options), options.signal)
      return connection.remotePeer
    },
    async ping(target, options = {}) {
      const dialTarget = toDialTarget(target)
      return withDialErrors(target, 'ping', () => libp2p.services.ping.ping(dialTarget, options), options.signal)
    },
    // From the open connections' own PeerIds: libp2p.getPeers() parses each PeerId again from its string, which for a
    // secp256k1 key means decompressing the point, and callers ask on every voucher and negotiation.
    peers: () => {
      const seen = new Map<string, PeerId>()
      for (const connection of libp2p.getConnections()) seen.set(connection.remotePeer.toString(), connection.remotePeer)
      return [...seen.values()]
    },
    connections,
    async reachedBy(target, options = {}) {
      const peer = peerOfTarget(target)
      if (peer === undefined) return undefined
      await parts.holePunch?.settled(peer, options.signal)
      const kinds = connections().filter((c) => c.peerId === peer.toString()).map((c) => c.kind)
      return kinds.find((kind) => kind !== 'relayed') ?? kinds[0]
    },
    reachability: () => reachability.status(),
    reachabilitySettled: (options = {}) => reachability.settled(options.signal),
    natKind: async () => (parts.holePunch === undefined ? undefined : parts.holePunch.natKind()),
    remoteIps: (peer) => libp2p.getConnections(peer).map((connection) => remoteIpKey(connection.remoteAddr)),
    relayReservations: () => libp2p.services.relay?.reservations.size ?? 0,
    // From the addresses asked for: libp2p reports a wildcard listener as one address per interface, loopback first.
    tcpListenHosts: () => [...new Set((parts.init.listen ?? [defaultListen]).flatMap((address) => /^\/ip4\/([0-9.]+)\/tcp\/\d+$/.exec(address)?.slice(1, 2) ?? []))],
  }
}

/** Events about peers and this node's own record, and the addresses the peer store holds. */
function peerStoreMethods(libp2p: Libp2p<HostServices>): Pick<Host, 'onPeerConnected' | 'onAddressesChanged' | 'peerAddresses' | 'addPeerAddresses'> {
  return {
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
  }
}

/** Serving and calling Hearth protocols: request/response, blobs and event streams. */
function protocolMethods(deps: ProtocolDeps): Pick<Host, 'handle' | 'unhandle' | 'request' | 'exchange' | 'serveBlob' | 'requestBlob' | 'requestBlobStream' | 'serveStream' | 'openStream' | 'serveTunnel' | 'openTunnel'> {
  return {
    handle: (protocol, handler, options) => serveProtocol(deps, protocol, handler, options),
    async unhandle(protocol) {
      await deps.libp2p.unhandle(protocol.id)
    },
    async request(target, protocol, request, options) {
      return (await sendRequest(deps, target, protocol, request, options)).response
    },
    exchange: (target, protocol, request, options) => sendRequest(deps, target, protocol, request, options),
    serveBlob: (protocol, handler, options) => serveBlobProtocol(deps, protocol, handler, options),
    requestBlob: (target, protocol, request, options) => requestBlob(deps, target, protocol, request, options),
    requestBlobStream: (target, protocol, request, options) => requestBlobStream(deps, target, protocol, request, options),
    serveStream: (protocol, handler, options) => serveStreamProtocol(deps, protocol, handler, options),
    openStream: (target, protocol, request, options) => openStream(deps, target, protocol, request, options),
    serveTunnel: (protocol, handler, options) => serveTunnelProtocol(deps, protocol, handler, options),
    openTunnel: (target, protocol, open, options) => openTunnel(deps, target, protocol, open, options),
  }
}

/** Where a relay's observer listens: the IP of its first IP listen address (0.0.0.0 listens everywhere). */
function observerHost(listen: string[] | undefined): string {
  for (const address of listen ?? [defaultListen]) {
    const ip = /^\/ip[46]\/([^/]+)\//.exec(address)?.[1]
    if (ip !== undefined) return ip
  }
  return '127.0.0.1'
}
