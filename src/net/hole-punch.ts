/**
 * Hole punching: a direct TCP connection between two nodes that are both behind NAT routers, by a TCP simultaneous
 * open of our own. libp2p's DCUtR cannot punch TCP from Node.js (Node cannot dial out from its listening port), so:
 *
 * 1. Each side learns its public mapping from a relay's observer: a plain TCP service (`hearth relay` runs it on two
 *    ports, named by `/hearth/net/observe/1`) that answers each connection with the address it came from. Two
 *    connections from one local port to the observer's two ports tell whether the NAT keeps one public port for every
 *    destination (endpoint-independent mapping: a cone NAT, punchable) or picks a new one per destination (symmetric:
 *    not punchable; such a node stays on the relay).
 * 2. The node that dialled through the relay asks the other, over the relayed connection (`/hearth/net/punch/1`), with
 *    its own mapping; the other answers with its own and both connect from their probed local port to the other's
 *    public mapping at once. Each NAT sees its own side's SYN leave first, so the other's SYN arrives as the reply of a
 *    connection it knows and passes: a simultaneous open.
 * 3. The socket is handed to libp2p's upgrader (noise and yamux, the dialler as initiator) and becomes an ordinary,
 *    unlimited connection that libp2p prefers to the relayed one from then on (see dial-target.ts).
 *
 * The asker names where the other side should send SYNs, so a stranger could aim them elsewhere: punches are asked only
 * over relayed connections, rate-limited per peer and in all, never aimed at this machine or at a privileged port, and
 * a connection that reaches somebody else fails at the noise handshake, which names the expected peer.
 */
import { isIP } from 'node:net'
import type { Connection, IdentifyResult, Logger, PeerId, Upgrader } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { defineProtocol, sendRequest, serveProtocol, type ProtocolDeps, type RequestHandler } from './protocol.ts'
import { isRelayed } from './dial-target.ts'
import { ipText, port, probeMapping, simultaneousOpen } from './nat-observer.ts'
import type { Mapping } from './nat-observer.ts'
import { PunchedSocketConnection } from './punched-socket.ts'
import { createReversalLimiter } from './reversal.ts'

// The observer, the probe and the simultaneous open live in nat-observer.ts.
export { probeMapping, simultaneousOpen, startObserver } from './nat-observer.ts'
export type { Mapping, Observer } from './nat-observer.ts'

/** Served by relays: the two TCP ports of their observer. */
export const observeProtocol = defineProtocol({
  id: '/hearth/net/observe/1',
  request: z.strictObject({}),
  response: z.strictObject({ ports: z.tuple([port, port]) }),
  maxRequestBytes: 256,
  maxResponseBytes: 256,
  timeoutMs: 10_000,
})

/** Asked over a relayed connection: "connect to me at ip:port now", answered with where to connect back. */
export const punchProtocol = defineProtocol({
  id: '/hearth/net/punch/1',
  request: z.strictObject({ ip: ipText, port }),
  response: z.strictObject({ ip: ipText, port }),
  maxRequestBytes: 512,
  maxResponseBytes: 512,
  timeoutMs: 15_000,
})

export interface HolePunchLimits {
  /** `perPeer` punches per peer in this window, asked or answered. */
  perPeerMs: number
  /** Punches per peer in `perPeerMs`: a failed punch is asked again once, at once. */
  perPeer: number
  /** Punches a minute, all peers together. */
  perMinute: number
  /** Punches in flight at once. */
  inFlight: number
  /** How long the simultaneous open may take before the pair stays on the relay. */
  connectTimeoutMs: number
}

export const defaultHolePunchLimits: Readonly<HolePunchLimits> = Object.freeze({ perPeerMs: 60_000, perPeer: 2, perMinute: 30, inFlight: 8, connectTimeoutMs: 6_000 })

export interface HolePunchStats {
  /** Punches this node asked for, and those that gave a direct connection. */
  asked: number
  punched: number
  /** Punches it answered (as the other side). */
  answered: number
  /** Punches not tried because one side's NAT maps each destination to a new port. */
  symmetric: number
  failed: number
}

export interface HolePunch {
  /** Whether a connection is one this module punched (reported as 'hole-punched', not plain 'direct'). */
  punched(connection: Pick<Connection, 'id'>): boolean
  /** This node's NAT mapping as last probed (undefined before the first punch). */
  mapping(): Mapping | undefined
  /**
   * What kind of NAT this node is behind, probed through a relay it holds a slot on (kept 10 minutes): 'cone' (it can
   * be hole-punched), 'symmetric' (relay only), or undefined when it holds no slot or no relay observer answers.
   */
  natKind(): Promise<'cone' | 'symmetric' | undefined>
  /**
   * Resolves once no punch this node asked of `peer` is in flight any more (at once when none is): work sent after it
   * goes over the punched connection, if one was made, instead of the relay.
   */
  settled(peer: PeerId, signal?: AbortSignal): Promise<void>
  stats(): HolePunchStats
  stop(): void
}

/** The relay a relayed connection goes through: the peer id just before /p2p-circuit. */
const relayOf = (address: string): string | undefined => /\/p2p\/([^/]+)\/p2p-circuit/.exec(address)?.[1]
const ownMachine = (ip: string): boolean => /^(127\.|0\.0\.0\.0$)/.test(ip) || ip === '::1' || ip === '::'

export interface HolePunchInit {
  deps: ProtocolDeps
  upgrader: Upgrader
  /** Whether others can dial this node: then the other side dials it back instead (connection reversal). */
  isPublic: () => boolean
  limits?: Partial<HolePunchLimits>
}

/** A hole-punch service's state, as the pieces of `attachHolePunch` share it. */
interface Punching {
  deps: ProtocolDeps
  upgrader: Upgrader
  /** Whether others can dial this node (see HolePunchInit). */
  isPublic: () => boolean
  limits: HolePunchLimits
  /** Whether a punch with this peer is within the rate limits now (it counts the punch when it is). */
  allowed: (peer: string, nowMs: number) => boolean
  log: Logger
  stopping: AbortSignal
  /** Ids of the connections this module punched, while they are open. */
  punchedIds: Set<string>
  /** The two observer ports of each relay, by its peer id, as asked of it. */
  observerPorts: Map<string, Promise<[number, number]>>
  stats: HolePunchStats
  lastMapping: Mapping | undefined
  inFlight: number
  /** The punches this node asked, by peer, until they end. */
  asking: Map<string, Promise<void>>
  natKnown: { kind: 'cone' | 'symmetric'; atMs: number } | undefined
}

export async function attachHolePunch(init: HolePunchInit): Promise<HolePunch> {
  const limits = { ...defaultHolePunchLimits, ...init.limits }
  const stopping = new AbortController()
  const state: Punching = {
    deps: init.deps,
    upgrader: init.upgrader,
    isPublic: init.isPublic,
    limits,
    allowed: createReversalLimiter(limits),
    log: init.deps.logger.forComponent('hearth:hole-punch'),
    stopping: stopping.signal,
    punchedIds: new Set(),
    observerPorts: new Map(),
    stats: { asked: 0, punched: 0, answered: 0, symmetric: 0, failed: 0 },
    lastMapping: undefined,
    inFlight: 0,
    asking: new Map(),
    natKnown: undefined,
  }
  const libp2p = state.deps.libp2p
  const onIdentify = (event: CustomEvent<IdentifyResult>): void => askOnIdentify(state, event.detail)

  await serveProtocol(state.deps, punchProtocol, answerPunch(state))
  libp2p.addEventListener('peer:identify', onIdentify)

  return {
    punched: (connection) => state.punchedIds.has(connection.id),
    mapping: () => state.lastMapping,
    natKind: () => natKind(state),
    settled: (peer, signal) => settled(state, peer, signal),
    stats: () => ({ ...state.stats }),
    stop() {
      stopping.abort()
      libp2p.removeEventListener('peer:identify', onIdentify)
    },
  }
}

/** This node's mapping, from the relay's observer, reached at the address of this node's own direct connection to the relay. */
async function probeThrough(state: Punching, relay: string, signal: AbortSignal): Promise<Mapping> {
  const { deps, observerPorts } = state
  const relayPeer = peerIdFromString(relay)
  const direct = deps.libp2p.getConnections(relayPeer).find((connection) => !isRelayed(connection.remoteAddr))
  const ip = direct === undefined ? undefined : /^\/ip[46]\/([^/]+)/.exec(direct.remoteAddr.toString())?.[1]
  if (ip === undefined) throw new HearthError('HEARTH_ERR_NET_DIAL', `no direct connection to the relay ${relay} to find this node's public address through`)
  const portsOf = (fresh: boolean): Promise<[number, number]> => {
    let ports = fresh ? undefined : observerPorts.get(relay)
    if (ports === undefined) {
      ports = sendRequest(deps, relayPeer, observeProtocol, {}, { signal }).then((exchange) => exchange.response.ports)
      ports.catch(() => observerPorts.delete(relay))
      if (observerPorts.size > 64) observerPorts.clear()
      observerPorts.set(relay, ports)
    }
    return ports
  }
  try {
    try {
      state.lastMapping = await probeMapping(ip, await portsOf(false), signal)
    } catch (error) {
      // A relay that restarted may observe on other ports now: ask it again, once.
      if (signal.aborted) throw error
      state.lastMapping = await probeMapping(ip, await portsOf(true), signal)
    }
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_NET_DIAL', `Cannot learn this node's public address from the relay ${relay}'s observer at ${ip}: ${(cause as Error).message}`, {
      cause,
      hint: 'the relay may be an older Hearth without an observer; the connection stays relayed',
    })
  }
  return state.lastMapping
}

const usableTarget = (ip: string, targetPort: number): boolean => targetPort >= 1024 && !ownMachine(ip)

/** Connects, upgrades (the asker as noise initiator), and keeps the connection as punched. */
async function connectAndUpgrade(state: Punching, mapping: Mapping, ip: string, targetPort: number, peer: PeerId, initiator: boolean): Promise<Connection> {
  const { log, stopping } = state
  const signal = AbortSignal.any([stopping, AbortSignal.timeout(state.limits.connectTimeoutMs)])
  const socket = await simultaneousOpen(mapping.localPort, ip, targetPort, signal)
  const family = isIP(ip) === 6 ? 'ip6' : 'ip4'
  const maConn = new PunchedSocketConnection({ socket, remoteAddr: multiaddr(`/${family}/${ip}/tcp/${targetPort}/p2p/${peer.toString()}`), log: log.newScope('connection'), initiator })
  try {
    const connection = await state.upgrader.upgradeOutbound(maConn, { initiator, signal: AbortSignal.any([stopping, AbortSignal.timeout(10_000)]) })
    state.punchedIds.add(connection.id)
    connection.addEventListener('close', () => state.punchedIds.delete(connection.id), { once: true })
    log('punched a direct connection to %p at %s:%d (%s)', peer, ip, targetPort, initiator ? 'asked' : 'answered')
    return connection
  } catch (error) {
    maConn.abort(error as Error)
    throw error
  }
}

/** Answers a punch asked over a relayed connection: our mapping back, and our SYN towards the asker's. */
function answerPunch(state: Punching): RequestHandler<typeof punchProtocol.request, typeof punchProtocol.response> {
  const { limits, stats, log } = state
  return async ({ ip, port: targetPort }, ctx) => {
    const relay = relayOf(ctx.remoteMultiaddr)
    if (relay === undefined) {
      throw new HearthError('HEARTH_ERR_NET_REMOTE', 'a hole punch is asked over a relayed connection; this one is direct already', { hint: 'use the direct connection' })
    }
    if (!usableTarget(ip, targetPort)) throw new HearthError('HEARTH_ERR_NET_REMOTE', `will not punch towards ${ip}:${targetPort}: not a public mapping`)
    if (state.inFlight >= limits.inFlight || !state.allowed(ctx.peerId.toString(), Date.now())) {
      throw new HearthError('HEARTH_ERR_NET_BUSY', 'too many hole punches asked of this node', { hint: 'stay on the relay and ask again in a minute' })
    }
    state.inFlight++
    let mapping: Mapping
    try {
      mapping = await probeThrough(state, relay, ctx.signal)
    } catch (error) {
      state.inFlight--
      throw error
    }
    if (!mapping.endpointIndependent) {
      state.inFlight--
      stats.symmetric++
      throw new HearthError('HEARTH_ERR_NET_DIAL', 'this node is behind a NAT that picks a new public port for each destination (symmetric): it cannot be hole-punched', {
        hint: 'keep using the relay',
        details: { reason: 'symmetric-nat' },
      })
    }
    stats.answered++
    const peer = ctx.peerId
    // Our SYN leaves as the answer does, ahead of the asker's, which therefore meets our NAT's fresh mapping.
    setImmediate(() => {
      connectAndUpgrade(state, mapping, ip, targetPort, peer, false).then(
        () => {},
        (error: unknown) => log('answered punch to %p failed - %e', peer, error),
      ).finally(() => state.inFlight--)
    })
    return { ip: mapping.ip, port: mapping.port }
  }
}

/** One try: true once punched, false when this NAT cannot be punched; throws when the try failed. */
async function punchOnce(state: Punching, peer: PeerId, relay: string): Promise<boolean> {
  const signal = AbortSignal.any([state.stopping, AbortSignal.timeout(punchProtocol.timeoutMs)])
  const mapping = await probeThrough(state, relay, signal)
  if (!mapping.endpointIndependent) {
    state.stats.symmetric++
    state.log('not punching to %p: this node is behind a symmetric NAT', peer)
    return false
  }
  const theirs = (await sendRequest(state.deps, peer, punchProtocol, { ip: mapping.ip, port: mapping.port }, { signal })).response
  if (!usableTarget(theirs.ip, theirs.port)) throw new Error(`the peer named ${theirs.ip}:${theirs.port}, not a public mapping`)
  await connectAndUpgrade(state, mapping, theirs.ip, theirs.port, peer, true)
  state.stats.punched++
  return true
}

/** Punches, and once more when a try fails (a SYN lost, a busy peer), as the limits allow. */
async function punch(state: Punching, peer: PeerId, relay: string): Promise<void> {
  state.inFlight++
  state.stats.asked++
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await punchOnce(state, peer, relay)
        return
      } catch (error) {
        state.stats.failed++
        state.log('could not punch to %p (try %d) - %e', peer, attempt, error)
        const busy = error instanceof HearthError && error.code === 'HEARTH_ERR_NET_BUSY'
        const open = state.deps.libp2p.getConnections(peer)
        // Asked again only while the peer is still reached through a relay alone.
        if (busy || state.stopping.aborted || open.length === 0 || open.some((connection) => !isRelayed(connection.remoteAddr))) return
        if (!state.allowed(peer.toString(), Date.now())) return
      }
    }
  } finally {
    state.inFlight--
  }
}

/** Asks a punch of a peer this node just reached through a relay, when it serves punches and nothing rules it out. */
function askOnIdentify(state: Punching, identified: IdentifyResult): void {
  const { peerId, connection, protocols } = identified
  if (connection === undefined || connection.direction !== 'outbound' || !isRelayed(connection.remoteAddr)) return
  if (!protocols.includes(punchProtocol.id) || state.isPublic()) return
  if (state.deps.libp2p.getConnections(peerId).some((open) => !isRelayed(open.remoteAddr))) return
  const relay = relayOf(connection.remoteAddr.toString())
  if (relay === undefined || state.inFlight >= state.limits.inFlight || !state.allowed(peerId.toString(), Date.now())) return
  const key = peerId.toString()
  const punching = punch(state, peerId, relay).finally(() => state.asking.delete(key))
  state.asking.set(key, punching)
}

async function natKind(state: Punching): Promise<'cone' | 'symmetric' | undefined> {
  const known = state.natKnown
  if (known !== undefined && Date.now() - known.atMs < 10 * 60_000) return known.kind
  const relays = new Set(state.deps.libp2p.getMultiaddrs().map((address) => relayOf(address.toString())).filter((id) => id !== undefined))
  for (const relay of relays) {
    try {
      const mapping = await probeThrough(state, relay, AbortSignal.any([state.stopping, AbortSignal.timeout(10_000)]))
      state.natKnown = { kind: mapping.endpointIndependent ? 'cone' : 'symmetric', atMs: Date.now() }
      return state.natKnown.kind
    } catch (error) {
      state.log('could not probe the NAT through %s - %e', relay, error)
    }
  }
  return undefined
}

async function settled(state: Punching, peer: PeerId, signal: AbortSignal | undefined): Promise<void> {
  const punching = state.asking.get(peer.toString())
  if (punching === undefined) return
  if (signal === undefined) return punching
  signal.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error)
    signal.addEventListener('abort', onAbort, { once: true })
    void punching.finally(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    })
  })
}

/** Serves `/hearth/net/observe/1` for a relay whose observer listens on `ports`. */
export async function serveObserverPorts(deps: ProtocolDeps, ports: [number, number]): Promise<void> {
  await serveProtocol(deps, observeProtocol, () => ({ ports }))
}

