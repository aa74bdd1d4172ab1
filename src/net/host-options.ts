/**
 * The options a Hearth node's libp2p is created with (see host.ts): its transports, encryption and muxer, the limits
 * that suit a marketplace of home machines, gossipsub tuned for offers, and on a relay the relay service and its
 * limits. Each setting says why it departs from libp2p's default.
 */
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
import type { Libp2pOptions } from 'libp2p'
import type { PeerId, Upgrader } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { gossipMaxBytesCeiling } from './gossip.ts'
import type { RelayMeter } from './relay-meter.ts'

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

export type HostServices = { identify: Identify; ping: Ping; pubsub: GossipSub; relay?: CircuitRelayService; upgraderAccess: object }

export interface NodeOptionsInit {
  identity: NodeIdentity
  /** Multiaddrs to listen on (default: loopback only). */
  listen: string[] | undefined
  /** Addresses announced besides what the node finds out itself. */
  announce: string[] | undefined
  /** Peers to connect to at start and keep connected. */
  bootstrap: string[] | undefined
  mdns: boolean | undefined
  /** On a relay: its limits, and who may hold a reservation. */
  relayLimits: (RelayLimits & { allowReservation?: (peer: PeerId) => boolean }) | undefined
  /** On a relay: what counts the bytes it carries between relayed peers. */
  relayMeter: RelayMeter | undefined
  /** Which of its addresses the node announces (libp2p asks only after start). */
  announceFilter: (addresses: Multiaddr[]) => Multiaddr[]
  /** Given libp2p's upgrader once libp2p is made: hole punching upgrades the sockets it opens itself. */
  onUpgrader: (upgrader: Upgrader) => void
}

/** Where a node listens unless told: loopback only, any free port. */
export const defaultListen = '/ip4/127.0.0.1/tcp/0'

export function nodeOptions(init: NodeOptionsInit): Libp2pOptions<HostServices> {
  const { relayLimits, relayMeter } = init
  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  if (init.bootstrap !== undefined && init.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: init.bootstrap }))
  if (init.mdns === true) peerDiscovery.push(mdns())
  return {
    privateKey: init.identity.libp2pKey,
    start: false,
    addresses: {
      listen: init.listen ?? [defaultListen],
      ...(init.announce === undefined ? {} : { appendAnnounce: init.announce }),
      announceFilter: (addresses) => init.announceFilter(addresses),
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
        init.onUpgrader(components.upgrader)
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
  }
}
