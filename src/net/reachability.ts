/**
 * Whether other nodes can dial this one, found out rather than guessed from address ranges (a testbed's or a company's
 * "public" network may well be 10.x, and a 192.168.x address may be reachable through a port forward).
 *
 * A node asks peers that serve `/hearth/net/dialback/1` (relays, and public nodes whose config says so) to open a TCP
 * connection to its listening ports at the IP address they see it come from. One success confirms a public address,
 * announced from then on. Where none succeeds within a few seconds (a home router drops unsolicited connections, a
 * symmetric NAT maps every flow anew), the node reserves a slot on up to `maxRelays` relays and announces its
 * `/p2p-circuit` addresses only; a keeper reserves again after a relay restarts (libp2p does not: js-libp2p#3601).
 *
 * Served dial-backs only ever dial the asker's own observed IP, a few ports at most, rate-limited per peer and per
 * IP: the service cannot be used to make a relay connect anywhere else.
 */
import { connect } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p, PeerId } from '@libp2p/interface'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { isRelayed } from './dial-target.ts'
import { createPortMapper, defaultGateway, protocolNames, type PortMapper, type PortMapping } from './port-mapping.ts'
import { defineProtocol } from './protocol.ts'
import type { RequestHandler } from './protocol.ts'

export const dialbackProtocol = defineProtocol({
  id: '/hearth/net/dialback/1',
  request: z.strictObject({ ports: z.array(z.number().int().min(1).max(65535)).min(1).max(4) }),
  response: z.strictObject({
    /** The address the asker's connection came from, as the server sees it (its NAT's public side, if any). */
    observed: z.string().max(200),
    /** The ports a fresh TCP connection to the observed IP reached. */
    reachable: z.array(z.number().int()).max(4),
  }),
  maxRequestBytes: 1024,
  maxResponseBytes: 1024,
  timeoutMs: 15_000,
})

export type ReachabilityKind = 'public' | 'private' | 'unreachable' | 'local' | 'unknown'

export interface ReachabilityStatus {
  /**
   * public: a peer dialled us back (or the owner stated the address: `mode: 'public'`); private: reachable through
   * relays only; unreachable: neither, with the reason (every address is still announced: nothing ruled them out for
   * everyone); local: listening on loopback only (a network on one machine); unknown: still checking, or nobody to ask.
   */
  kind: ReachabilityKind
  /** The addresses this node announces now (without /p2p/<self>). */
  addresses: string[]
  /** How the kind was found: which peer dialled back, or why nothing worked. */
  reason: string
  relays: Array<{ peerId: string; reserved: boolean }>
  /** Ports the home router forwards to this node on request (by NAT-PMP or UPnP IGD: `protocol`), when it offers that. */
  portMappings: PortMapping[]
}

export interface ReachabilityInit {
  /**
   * auto (default): ask peers to dial back, reserve relay slots when none can; public: trust the listen and announce
   * addresses as stated; private: never ask, always reserve.
   */
  mode?: 'auto' | 'public' | 'private'
  /** Relays to reserve on (multiaddrs with /p2p/<id>), in order of preference. Bootstrap peers that relay count too. */
  relays?: string[]
  /** Addresses the owner states others should dial (--announce): announced whatever the checks find. */
  announce?: string[]
  /** How many relay slots to hold at once (at least two where there are two: one relay restarting loses nobody). */
  maxRelays?: number
  /** How long to wait for a dial-back before reserving relay slots. */
  checkTimeoutMs?: number
  /** How often the keeper checks that each wanted reservation still stands. */
  keepEveryMs?: number
  /**
   * Ask the home router to forward the listening ports (NAT-PMP, else UPnP IGD) when no peer can dial this node
   * (default true in 'auto' mode); the mapped address is announced once a peer dialled it back.
   */
  portMapping?: boolean
}

export const defaultReachability = { mode: 'auto', maxRelays: 2, checkTimeoutMs: 5_000, keepEveryMs: 10_000 } as const

/** The parts of libp2p's internal components this module drives (not in @libp2p/interface's public types). */
interface Internals {
  transportManager: { listen(addresses: Multiaddr[]): Promise<void>; getAddrs(): Multiaddr[] }
  addressManager: {
    confirmObservedAddr(address: Multiaddr, options?: { ttl?: number }): void
    addPublicAddressMapping(internalIp: string, internalPort: number, externalIp: string, externalPort: number, protocol: 'tcp'): void
  }
}

/** A confirmed address stays announced this long (libp2p would otherwise drop a public address after 10 minutes). */
const confirmedTtlMs = 24 * 3600_000

const internals = (libp2p: Libp2p): Internals => (libp2p as unknown as { components: Internals }).components

export interface Reachability {
  status(): ReachabilityStatus
  /** The filter libp2p applies to the addresses it announces (identify, offers): see `announceFilter` in host.ts. */
  filter(addresses: Multiaddr[]): Multiaddr[]
  /**
   * Resolves once the first check has ended (a dial-back confirmed an address, relay slots were reserved, or neither
   * could be): from then on the announced addresses say where others reach this node. Rejects when `signal` aborts first.
   */
  settled(signal?: AbortSignal): Promise<ReachabilityStatus>
  start(): Promise<void>
  stop(): void
}

type Ask = (peer: PeerId | Multiaddr, ports: number[], signal: AbortSignal) => Promise<{ observed: string; reachable: number[] }>

/** A reachability check's state, as the pieces of `createReachability` share it. */
interface Checking {
  libp2p: Libp2p
  ask: Ask
  init: ReachabilityInit
  mode: NonNullable<ReachabilityInit['mode']>
  maxRelays: number
  relays: Multiaddr[]
  /** The addresses the owner states, without /p2p/<self>. */
  announced: string[]
  kind: ReachabilityKind
  reason: string
  /** The addresses a dial-back confirmed. */
  confirmed: Multiaddr[]
  keeper: NodeJS.Timeout | undefined
  stopped: boolean
  mappings: PortMapping[]
  mappedAtMs: number
  mapper: PortMapper | undefined
  /** Why the router forwards no port, when it was asked and does not (shown in the reason while relays serve). */
  mappingProblem: string | undefined
  /** A mapping was just made: the next keeper round asks for a dial-back. */
  recheckSoon: boolean
  stopping: AbortController
  /** Resolved when start's first check has ended (see Reachability.settled). */
  firstCheck: { promise: Promise<void>; resolve: () => void }
}

export function createReachability(libp2p: Libp2p, ask: Ask, init: ReachabilityInit = {}): Reachability {
  const state: Checking = {
    libp2p,
    ask,
    init,
    mode: init.mode ?? defaultReachability.mode,
    maxRelays: init.maxRelays ?? defaultReachability.maxRelays,
    relays: (init.relays ?? []).map((address) => multiaddr(address)),
    announced: (init.announce ?? []).map((address) => address.replace(/\/p2p\/[^/]+$/, '')),
    kind: 'unknown',
    reason: 'checking',
    confirmed: [],
    keeper: undefined,
    stopped: false,
    mappings: [],
    mappedAtMs: 0,
    mapper: undefined,
    mappingProblem: undefined,
    recheckSoon: false,
    stopping: new AbortController(),
    firstCheck: settling(),
  }
  return {
    status: () => status(state),
    filter: (addresses) => filter(state, addresses),
    settled: async (signal) => {
      const aborted = signal === undefined ? undefined : new Promise<never>((_, reject) => {
        if (signal.aborted) reject(signal.reason as Error)
        signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })
      })
      await (aborted === undefined ? state.firstCheck.promise : Promise.race([state.firstCheck.promise, aborted]))
      return status(state)
    },
    start: async () => {
      try {
        await start(state)
      } finally {
        state.firstCheck.resolve()
      }
    },
    stop: () => stop(state),
  }
}

function settling(): Checking['firstCheck'] {
  let resolve!: () => void
  const promise = new Promise<void>((done) => (resolve = done))
  return { promise, resolve }
}

/** Every address the transports listen on (libp2p announces the ones outside private ranges only once confirmed). */
export const listening = (libp2p: Libp2p): Multiaddr[] => internals(libp2p).transportManager.getAddrs()
const isLoopback = (address: Multiaddr): boolean => /^\/ip4\/127\.|^\/ip6\/::1\//.test(address.toString())
const relayId = (address: Multiaddr): string | undefined => /\/p2p\/([^/]+)$/.exec(address.toString())?.[1]
const reservedOn = (libp2p: Libp2p, id: string): boolean => libp2p.getMultiaddrs().some((address) => address.toString().includes(`/p2p/${id}/p2p-circuit`))

function listenPorts(libp2p: Libp2p): number[] {
  const ports = new Set<number>()
  for (const address of listening(libp2p)) {
    const match = /\/tcp\/(\d+)/.exec(address.toString())
    if (match !== null && !isRelayed(address)) ports.add(Number(match[1]))
  }
  return [...ports].slice(0, 4)
}

function status(state: Checking): ReachabilityStatus {
  const { libp2p } = state
  return {
    kind: state.kind,
    reason: state.reason,
    addresses: libp2p.getMultiaddrs().map((address) => address.toString().replace(new RegExp(`/p2p/${libp2p.peerId.toString()}$`), '')),
    relays: state.relays.map((address) => {
      const id = relayId(address) ?? address.toString()
      return { peerId: id, reserved: reservedOn(libp2p, id) }
    }),
    portMappings: state.mappings.map((mapping) => ({ ...mapping })),
  }
}

function filter(state: Checking, addresses: Multiaddr[]): Multiaddr[] {
  const { announced, confirmed, kind } = state
  const stated = (address: Multiaddr): boolean => announced.some((a) => address.toString().startsWith(a))
  const own = (address: Multiaddr): boolean => confirmed.some((c) => address.toString().startsWith(c.toString()))
  // Private: peers reach this node through its relays (and an address its owner states); its LAN and loopback
  // addresses would only cost every dialler a timeout. Public: the addresses that were confirmed or stated.
  if (kind === 'private') return addresses.filter((a) => isRelayed(a) || stated(a))
  if (kind === 'public' && (confirmed.length > 0 || announced.length > 0)) return addresses.filter((a) => isRelayed(a) || stated(a) || own(a))
  return addresses
}

async function start(state: Checking): Promise<void> {
  const { libp2p, mode } = state
  const own = listening(libp2p).filter((address) => !isRelayed(address))
  if (own.length > 0 && own.every(isLoopback)) {
    state.kind = 'local'
    state.reason = 'listening on loopback only: reachable from this machine'
    return
  }
  if (mode === 'public') {
    // libp2p announces an address outside the private ranges only once something confirms it: the owner has.
    for (const address of own) internals(libp2p).addressManager.confirmObservedAddr(address, { ttl: confirmedTtlMs })
    state.kind = 'public'
    state.reason = 'stated by the node\'s owner (reachability: public)'
    return
  }
  if (state.relays.length === 0) {
    state.kind = 'unknown'
    state.reason = 'no relay or dial-back peer is configured to check with'
    return
  }
  if (mode === 'auto' && (await check(state))) return
  await reserve(state)
  startKeeper(state)
  // Behind a router that forwards ports on request (NAT-PMP or UPnP IGD), the node is dialable through the mapped
  // port: asked once the relays serve, so that a router without it (some say nothing, and are waited for) delays
  // nobody. The dial-back is asked again at the keeper's next round (a relay answers one a peer every ten seconds).
  if (mode === 'auto' && (await mapPorts(state)).length > 0) state.recheckSoon = true
}

function stop(state: Checking): void {
  state.stopped = true
  state.firstCheck.resolve()
  state.stopping.abort()
  if (state.keeper !== undefined) clearInterval(state.keeper)
  // The router's forwards end with the node, each removed by the protocol that made it (a timed one would lapse
  // anyway; a permanent one, where a UPnP router gives only those, would not).
  for (const mapping of state.mappings) void state.mapper?.unmap(mapping, AbortSignal.timeout(2_000)).catch(() => undefined)
  state.mappings = []
}

/**
 * Asks the default gateway to forward each listening port (NAT-PMP, else UPnP IGD), the same port number outside
 * where it agrees. Resolves to the public ports mapped; none where the router offers no mapping (many answer nothing,
 * or refuse). A router that says nothing is waited for: about 4 s for NAT-PMP, 2.5 s for the UPnP search.
 */
async function mapPorts(state: Checking): Promise<number[]> {
  if (state.init.portMapping === false) return []
  if (state.mapper === undefined) {
    const gateway = await defaultGateway()
    if (gateway === undefined) return []
    state.mapper = createPortMapper(gateway)
  }
  const mapper = state.mapper
  const signal = AbortSignal.any([state.stopping.signal, AbortSignal.timeout(20_000)])
  const mapped: PortMapping[] = []
  for (const port of listenPorts(state.libp2p)) {
    try {
      const wanted = state.mappings.find((mapping) => mapping.internalPort === port)?.externalPort ?? port
      mapped.push(await mapper.map(port, wanted, 3_600, signal))
      state.mappingProblem = undefined
    } catch (error) {
      const late = signal.aborted && !state.stopping.signal.aborted
      state.mappingProblem = late ? 'the router did not finish mapping a port within 20 s' : (error as Error).message
      break // no port mapping here, or it refuses: the relays serve
    }
  }
  if (mapped.length > 0) {
    state.mappings = mapped
    state.mappedAtMs = Date.now()
    // libp2p announces the public side of a forwarded listening address once a dial-back confirms it (check()).
    for (const mapping of mapped) internals(state.libp2p).addressManager.addPublicAddressMapping(mapping.internalIp, mapping.internalPort, mapping.externalIp, mapping.externalPort, 'tcp')
  }
  return mapped.map((mapping) => mapping.externalPort)
}

const mappingsDue = (state: Checking): boolean =>
  state.mappings.length > 0 && Date.now() - state.mappedAtMs > (Math.min(...state.mappings.map((m) => m.lifetimeSec)) * 1000) / 2

/**
 * Asks each relay (and connected peer that serves dial-backs) in turn to dial `ports` (default: the listening ones)
 * at the address it sees this node come from; the first success confirms the address.
 */
async function check(state: Checking): Promise<boolean> {
  const { libp2p } = state
  // The listening ports, and the public ports the router forwards to them (NAT-PMP or UPnP IGD) where it does.
  const mappedPorts = state.mappings.map((mapping) => mapping.externalPort)
  const ports = [...new Set([...listenPorts(libp2p), ...mappedPorts])].slice(0, 4)
  if (ports.length === 0) return false
  const deadline = AbortSignal.any([state.stopping.signal, AbortSignal.timeout(state.init.checkTimeoutMs ?? defaultReachability.checkTimeoutMs)])
  const failures: string[] = []
  for (const relay of state.relays) {
    if (deadline.aborted) break
    try {
      const answer = await state.ask(relay, ports, deadline)
      const observedIp = /^\/(ip4|ip6)\/([^/]+)/.exec(answer.observed)
      if (answer.reachable.length > 0 && observedIp !== null) {
        state.confirmed = answer.reachable.map((port) => multiaddr(`/${observedIp[1]}/${observedIp[2]}/tcp/${port}`))
        for (const address of state.confirmed) internals(libp2p).addressManager.confirmObservedAddr(address, { ttl: confirmedTtlMs })
        state.kind = 'public'
        const forwarded = state.mappings.find((mapping) => answer.reachable.includes(mapping.externalPort))
        const how = forwarded === undefined ? '' : ` (a port the router forwards by ${protocolNames[forwarded.protocol]})`
        state.reason = `dialled back by ${relayId(relay) ?? relay.toString()} at ${state.confirmed.map(String).join(', ')}${how}`
        return true
      }
      failures.push(`${relayId(relay) ?? relay.toString()} could not dial ${answer.observed.replace(/\/tcp\/\d+$/, '')} on port ${ports.join(', ')}`)
    } catch (error) {
      failures.push(`${relayId(relay) ?? relay.toString()}: ${(error as Error).message}`)
    }
  }
  state.reason = failures.length === 0 ? 'no peer answered a dial-back in time' : failures.join('; ')
  return false
}

/** Reserves on relays until `maxRelays` hold a slot; the kind follows. Run again by the keeper. */
async function reserve(state: Checking): Promise<void> {
  const { libp2p, relays } = state
  const held = relays.filter((address) => reservedOn(libp2p, relayId(address) ?? '')).length
  const failures: string[] = []
  let holding = held
  for (const relay of relays) {
    if (state.stopped || holding >= state.maxRelays) break
    const id = relayId(relay)
    if (id === undefined || reservedOn(libp2p, id)) continue
    try {
      await internals(libp2p).transportManager.listen([relay.encapsulate('/p2p-circuit')])
      if (reservedOn(libp2p, id)) holding++
    } catch (error) {
      failures.push(`${id}: ${(error as Error).message}`)
    }
  }
  if (state.kind === 'public') return
  if (holding > 0) {
    state.kind = 'private'
    state.reason = `no peer could dial this node directly; reachable through ${holding} relay${holding === 1 ? '' : 's'}${state.mappingProblem === undefined ? '' : `; ${state.mappingProblem}`}`
  } else {
    state.kind = 'unreachable'
    state.reason = relays.length === 0 ? 'no relay is configured, and no peer could dial this node directly' : `no relay has room: ${failures.join('; ') || 'no reservation held'}`
  }
}

/** Renews port mappings, checks the reservations and now and then asks for a dial-back again, every `keepEveryMs`. */
function startKeeper(state: Checking): void {
  let ticks = 0
  state.keeper = setInterval(() => {
    // A router's forward lasts its lifetime: renewed at half of it.
    if (mappingsDue(state)) void mapPorts(state)
    if (state.kind === 'public') return
    // Dial-backs are asked again now and then (every sixth round): a check can fail for passing reasons (a relay
    // restarting, a busy moment), and a node that became dialable (a port forward opened) should say so.
    const recheck = state.mode === 'auto' && (state.recheckSoon || ticks++ % 6 === 5)
    state.recheckSoon = false
    void (async () => {
      if (recheck && (await check(state))) return
      await reserve(state)
    })().catch(() => undefined)
  }, state.init.keepEveryMs ?? defaultReachability.keepEveryMs)
  state.keeper.unref()
}

/** Serves dial-backs: a fresh TCP connection to the asker's observed IP on each port it names. */
export function dialbackHandler(limits: { perPeerEveryMs?: number; perIpPerMinute?: number; connectTimeoutMs?: number } = {}): RequestHandler<typeof dialbackProtocol.request, typeof dialbackProtocol.response> {
  const lastByPeer = new Map<string, number>()
  const byIp = new Map<string, number[]>()
  const perPeerEveryMs = limits.perPeerEveryMs ?? 10_000
  const perIpPerMinute = limits.perIpPerMinute ?? 30
  return async ({ ports }, ctx) => {
    if (isRelayed(ctx.remoteMultiaddr)) {
      throw new HearthError('HEARTH_ERR_NET_REMOTE', 'a dial-back needs a direct connection: this one is relayed', { hint: 'connect to this node directly, not through a relay' })
    }
    const observed = /^\/(ip4|ip6)\/([^/]+)/.exec(ctx.remoteMultiaddr)
    if (observed === null) throw new HearthError('HEARTH_ERR_NET_REMOTE', `cannot dial back ${ctx.remoteMultiaddr}: not an IP address`)
    const ip = observed[2]!
    const now = Date.now()
    const peer = ctx.peerId.toString()
    const recent = (byIp.get(ip) ?? []).filter((at) => at > now - 60_000)
    if ((lastByPeer.get(peer) ?? -Infinity) > now - perPeerEveryMs || recent.length >= perIpPerMinute) {
      throw new HearthError('HEARTH_ERR_NET_BUSY', 'too many dial-back requests from this peer or address', { hint: 'ask again in a minute' })
    }
    lastByPeer.set(peer, now)
    byIp.set(ip, [...recent, now])
    if (lastByPeer.size > 10_000) lastByPeer.clear()
    if (byIp.size > 10_000) byIp.clear()
    const results = await Promise.all(ports.map((port) => tcpReaches(ip, port, limits.connectTimeoutMs ?? 3_000, ctx.signal)))
    return { observed: `/${observed[1]}/${ip}/tcp/${/\/tcp\/(\d+)/.exec(ctx.remoteMultiaddr)?.[1] ?? '0'}`, reachable: ports.filter((_, i) => results[i]) }
  }
}

function tcpReaches(host: string, port: number, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs, signal })
    const done = (reached: boolean): void => {
      socket.destroy()
      resolve(reached)
    }
    socket.once('connect', () => done(true))
    socket.once('timeout', () => done(false))
    socket.once('error', () => done(false))
  })
}
