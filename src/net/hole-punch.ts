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
import { connect, createServer, isIP, type Server, type Socket } from 'node:net'
import type { Connection, IdentifyResult, PeerId, Upgrader } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { defineProtocol, sendRequest, serveProtocol, type ProtocolDeps, type RequestHandler } from './protocol.ts'
import { isRelayed } from './dial-target.ts'
import { PunchedSocketConnection } from './punched-socket.ts'
import { createReversalLimiter } from './reversal.ts'

const port = z.number().int().min(1).max(65535)
const ipText = z.string().max(45).refine((text) => isIP(text) !== 0, 'an IPv4 or IPv6 address')

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

/** What a relay's observer saw of this node: its public address for `localPort`, and whether the NAT keeps it. */
export interface Mapping {
  localPort: number
  ip: string
  port: number
  /** The same public address towards both observer ports: a cone NAT (or none), where punching works. */
  endpointIndependent: boolean
}

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

export interface Observer {
  ports: [number, number]
  close(): Promise<void>
}

const maxObserverConnections = 256

/**
 * A relay's observer: on `host`, two TCP ports that answer each connection with one JSON line, the address and port
 * it came from, then close (the server closes first, so the asker's local port is free again at once).
 */
export async function startObserver(host: string, ports: [number, number] = [0, 0]): Promise<Observer> {
  const servers: Server[] = []
  const bound: number[] = []
  try {
    for (const wanted of ports) {
      const server = createServer({ noDelay: true }, (socket) => {
        socket.on('error', () => {})
        socket.setTimeout(5_000, () => socket.destroy())
        const ip = (socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, '')
        socket.end(`${JSON.stringify({ ip, port: socket.remotePort })}\n`)
      })
      server.maxConnections = maxObserverConnections
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ host, port: wanted }, () => resolve())
      })
      servers.push(server)
      bound.push((server.address() as { port: number }).port)
    }
  } catch (cause) {
    for (const server of servers) server.close()
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `Cannot start the NAT observer on ${host} ports ${ports.join(', ')}: ${(cause as Error).message}`, {
      cause,
      hint: 'choose other --observe-ports, or 0 0 for any free ones',
    })
  }
  return {
    ports: [bound[0]!, bound[1]!],
    close: async () => {
      await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
    },
  }
}

const wildcard = (ip: string): string => (isIP(ip) === 6 ? '::' : '0.0.0.0')

/**
 * One connection from `localPort` (0: any) to an observer port; resolves, once the socket is closed and the port free
 * again, to the address the observer saw. Bound with SO_REUSEADDR (libuv sets it on every bind), as the punch will be.
 */
function observeOnce(localPort: number, ip: string, observerPort: number, signal: AbortSignal): Promise<{ localPort: number; ip: string; port: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: ip, port: observerPort, localAddress: wildcard(ip), localPort, signal })
    let bound = 0
    let text = ''
    socket.once('connect', () => (bound = socket.localPort ?? 0))
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8')
      if (text.length > 256) socket.destroy(new Error('the observer answered more than one short line'))
    })
    socket.once('error', reject)
    socket.once('close', () => {
      try {
        const seen = z.strictObject({ ip: ipText, port }).parse(JSON.parse(text))
        resolve({ localPort: bound, ...seen })
      } catch (cause) {
        reject(new Error(`the observer at ${ip}:${observerPort} answered ${JSON.stringify(text.slice(0, 80))}: ${(cause as Error).message}`))
      }
    })
  })
}

/** This node's public mapping for one local port, seen through the observer's two ports. */
export async function probeMapping(observerIp: string, ports: readonly [number, number], signal: AbortSignal): Promise<Mapping> {
  const first = await observeOnce(0, observerIp, ports[0], signal)
  const second = await retrying(() => observeOnce(first.localPort, observerIp, ports[1], signal), signal)
  return {
    localPort: first.localPort,
    ip: second.ip,
    port: second.port,
    endpointIndependent: first.ip === second.ip && first.port === second.port,
  }
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason as Error) }, { once: true })
  })

/** Tries again (a port a moment ago in use, a SYN answered by a reset) until it works or `signal` aborts. */
async function retrying<T>(attempt: () => Promise<T>, signal: AbortSignal): Promise<T> {
  for (;;) {
    try {
      return await attempt()
    } catch {
      if (signal.aborted) throw signal.reason
      await sleep(100, signal)
    }
  }
}

/**
 * A TCP simultaneous open: connects from `localPort` to `ip:port` while the other side does the same towards us.
 * The kernel retransmits a SYN the other NAT dropped; a reset (a NAT that answers unsolicited SYNs) is retried.
 */
export function simultaneousOpen(localPort: number, ip: string, remotePort: number, signal: AbortSignal): Promise<Socket> {
  return retrying(() => new Promise<Socket>((resolve, reject) => {
    const socket = connect({ host: ip, port: remotePort, localAddress: wildcard(ip), localPort })
    const onAbort = (): void => { socket.destroy(); reject(signal.reason as Error) }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => {
      signal.removeEventListener('abort', onAbort)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (error) => {
      signal.removeEventListener('abort', onAbort)
      reject(error)
    })
  }), signal)
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

export async function attachHolePunch(init: HolePunchInit): Promise<HolePunch> {
  const { deps, upgrader } = init
  const libp2p = deps.libp2p
  const limits = { ...defaultHolePunchLimits, ...init.limits }
  const allowed = createReversalLimiter(limits)
  const log = deps.logger.forComponent('hearth:hole-punch')
  const stopping = new AbortController()
  const punchedIds = new Set<string>()
  const observerPorts = new Map<string, Promise<[number, number]>>()
  const stats: HolePunchStats = { asked: 0, punched: 0, answered: 0, symmetric: 0, failed: 0 }
  let lastMapping: Mapping | undefined
  let inFlight = 0
  /** The punches this node asked, by peer, until they end. */
  const asking = new Map<string, Promise<void>>()

  /** The relay's observer, reached at the address of this node's own direct connection to the relay. */
  const probeThrough = async (relay: string, signal: AbortSignal): Promise<Mapping> => {
    const relayPeer = peerIdFromString(relay)
    const direct = libp2p.getConnections(relayPeer).find((connection) => !isRelayed(connection.remoteAddr))
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
        lastMapping = await probeMapping(ip, await portsOf(false), signal)
      } catch (error) {
        // A relay that restarted may observe on other ports now: ask it again, once.
        if (signal.aborted) throw error
        lastMapping = await probeMapping(ip, await portsOf(true), signal)
      }
    } catch (cause) {
      throw new HearthError('HEARTH_ERR_NET_DIAL', `Cannot learn this node's public address from the relay ${relay}'s observer at ${ip}: ${(cause as Error).message}`, {
        cause,
        hint: 'the relay may be an older Hearth without an observer; the connection stays relayed',
      })
    }
    return lastMapping
  }

  const usableTarget = (ip: string, targetPort: number): boolean => targetPort >= 1024 && !ownMachine(ip)

  /** Connects, upgrades (the asker as noise initiator), and keeps the connection as punched. */
  const connectAndUpgrade = async (mapping: Mapping, ip: string, targetPort: number, peer: PeerId, initiator: boolean): Promise<Connection> => {
    const signal = AbortSignal.any([stopping.signal, AbortSignal.timeout(limits.connectTimeoutMs)])
    const socket = await simultaneousOpen(mapping.localPort, ip, targetPort, signal)
    const family = isIP(ip) === 6 ? 'ip6' : 'ip4'
    const maConn = new PunchedSocketConnection({ socket, remoteAddr: multiaddr(`/${family}/${ip}/tcp/${targetPort}/p2p/${peer.toString()}`), log: log.newScope('connection'), initiator })
    try {
      const connection = await upgrader.upgradeOutbound(maConn, { initiator, signal: AbortSignal.any([stopping.signal, AbortSignal.timeout(10_000)]) })
      punchedIds.add(connection.id)
      connection.addEventListener('close', () => punchedIds.delete(connection.id), { once: true })
      log('punched a direct connection to %p at %s:%d (%s)', peer, ip, targetPort, initiator ? 'asked' : 'answered')
      return connection
    } catch (error) {
      maConn.abort(error as Error)
      throw error
    }
  }

  const answer: RequestHandler<typeof punchProtocol.request, typeof punchProtocol.response> = async ({ ip, port: targetPort }, ctx) => {
    const relay = relayOf(ctx.remoteMultiaddr)
    if (relay === undefined) {
      throw new HearthError('HEARTH_ERR_NET_REMOTE', 'a hole punch is asked over a relayed connection; this one is direct already', { hint: 'use the direct connection' })
    }
    if (!usableTarget(ip, targetPort)) throw new HearthError('HEARTH_ERR_NET_REMOTE', `will not punch towards ${ip}:${targetPort}: not a public mapping`)
    if (inFlight >= limits.inFlight || !allowed(ctx.peerId.toString(), Date.now())) {
      throw new HearthError('HEARTH_ERR_NET_BUSY', 'too many hole punches asked of this node', { hint: 'stay on the relay and ask again in a minute' })
    }
    inFlight++
    let mapping: Mapping
    try {
      mapping = await probeThrough(relay, ctx.signal)
    } catch (error) {
      inFlight--
      throw error
    }
    if (!mapping.endpointIndependent) {
      inFlight--
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
      connectAndUpgrade(mapping, ip, targetPort, peer, false).then(
        () => {},
        (error: unknown) => log('answered punch to %p failed - %e', peer, error),
      ).finally(() => inFlight--)
    })
    return { ip: mapping.ip, port: mapping.port }
  }

  /** One try: true once punched, false when this NAT cannot be punched; throws when the try failed. */
  const punchOnce = async (peer: PeerId, relay: string): Promise<boolean> => {
    const signal = AbortSignal.any([stopping.signal, AbortSignal.timeout(punchProtocol.timeoutMs)])
    const mapping = await probeThrough(relay, signal)
    if (!mapping.endpointIndependent) {
      stats.symmetric++
      log('not punching to %p: this node is behind a symmetric NAT', peer)
      return false
    }
    const theirs = (await sendRequest(deps, peer, punchProtocol, { ip: mapping.ip, port: mapping.port }, { signal })).response
    if (!usableTarget(theirs.ip, theirs.port)) throw new Error(`the peer named ${theirs.ip}:${theirs.port}, not a public mapping`)
    await connectAndUpgrade(mapping, theirs.ip, theirs.port, peer, true)
    stats.punched++
    return true
  }

  /** Punches, and once more when a try fails (a SYN lost, a busy peer), as the limits allow. */
  const punch = async (peer: PeerId, relay: string): Promise<void> => {
    inFlight++
    stats.asked++
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await punchOnce(peer, relay)
          return
        } catch (error) {
          stats.failed++
          log('could not punch to %p (try %d) - %e', peer, attempt, error)
          const busy = error instanceof HearthError && error.code === 'HEARTH_ERR_NET_BUSY'
          const open = libp2p.getConnections(peer)
          // Asked again only while the peer is still reached through a relay alone.
          if (busy || stopping.signal.aborted || open.length === 0 || open.some((connection) => !isRelayed(connection.remoteAddr))) return
          if (!allowed(peer.toString(), Date.now())) return
        }
      }
    } finally {
      inFlight--
    }
  }

  const onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    const { peerId, connection, protocols } = event.detail
    if (connection === undefined || connection.direction !== 'outbound' || !isRelayed(connection.remoteAddr)) return
    if (!protocols.includes(punchProtocol.id) || init.isPublic()) return
    if (libp2p.getConnections(peerId).some((open) => !isRelayed(open.remoteAddr))) return
    const relay = relayOf(connection.remoteAddr.toString())
    if (relay === undefined || inFlight >= limits.inFlight || !allowed(peerId.toString(), Date.now())) return
    const key = peerId.toString()
    const punching = punch(peerId, relay).finally(() => asking.delete(key))
    asking.set(key, punching)
  }

  await serveProtocol(deps, punchProtocol, answer)
  libp2p.addEventListener('peer:identify', onIdentify)
  let natKnown: { kind: 'cone' | 'symmetric'; atMs: number } | undefined
  const natKind = async (): Promise<'cone' | 'symmetric' | undefined> => {
    if (natKnown !== undefined && Date.now() - natKnown.atMs < 10 * 60_000) return natKnown.kind
    const relays = new Set(libp2p.getMultiaddrs().map((address) => relayOf(address.toString())).filter((id) => id !== undefined))
    for (const relay of relays) {
      try {
        const mapping = await probeThrough(relay, AbortSignal.any([stopping.signal, AbortSignal.timeout(10_000)]))
        natKnown = { kind: mapping.endpointIndependent ? 'cone' : 'symmetric', atMs: Date.now() }
        return natKnown.kind
      } catch (error) {
        log('could not probe the NAT through %s - %e', relay, error)
      }
    }
    return undefined
  }

  return {
    punched: (connection) => punchedIds.has(connection.id),
    mapping: () => lastMapping,
    natKind,
    async settled(peer, signal) {
      const punching = asking.get(peer.toString())
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
    },
    stats: () => ({ ...stats }),
    stop() {
      stopping.abort()
      libp2p.removeEventListener('peer:identify', onIdentify)
    },
  }
}

/** Serves `/hearth/net/observe/1` for a relay whose observer listens on `ports`. */
export async function serveObserverPorts(deps: ProtocolDeps, ports: [number, number]): Promise<void> {
  await serveProtocol(deps, observeProtocol, () => ({ ports }))
}

