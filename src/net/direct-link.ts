/**
 * Direct links: a TCP connection of its own between two peers that already share a libp2p connection, for bytes
 * Hearth carries but does not read (a service's HTTP traffic from a gateway to a provider), where the libp2p stream
 * path (noise, yamux, a stream per connection) costs more CPU than the traffic itself. libp2p sets a link up; TCP and
 * TLS carry it:
 * - the responder grants the opener a ticket over an authenticated libp2p exchange, whose protocol decides who may
 *   have one: a random id, a random 256-bit key, a lifetime, its port and addresses, and what a connection made with
 *   the ticket joins (`join`);
 * - the opener connects to that port and speaks TLS 1.3 with the ticket as external pre-shared key (RFC 8446 §2.2, with
 *   an ECDHE exchange: both sides prove they hold the key, and each connection has keys of its own). No certificate,
 *   and nobody without a live ticket gets past the handshake. A link so far is a spare: openers keep a few ready, so
 *   that a new connection to the target costs no round trip of TCP or TLS (replica-link.ts);
 * - the opener sends the join byte (1) when it wants the link, its first frame right behind it; the responder then
 *   joins the connection to its target and answers one byte: 1, or 0 followed by a JSON error (`{ code, message,
 *   hint }`) and the end (then nothing the opener sent reached the target). A spare not asked to join within
 *   `spareTimeoutMs` is refused so. Then the bytes both ways in frames (link-frames.ts) whose last says "end":
 *   half-closes pass through, and a link that fails or is cut reaches the far side as a failure, never as an end, so
 *   a body delimited by the connection's close and cut by its server fails at the gateway as it would in a tunnel.
 *
 * A ticket serves any number of connections until it expires; connections made with it go on after that. The responder
 * bounds tickets (per holder and in all), open connections per holder, handshakes in progress (in all and per remote
 * address) and each handshake in time.
 */
import { randomBytes } from 'node:crypto'
import { connect as tcpConnect, createServer, isIPv4, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect, createSecureContext, TLSSocket } from 'node:tls'
import type { ConnectionOptions, TLSSocketOptions } from 'node:tls'
import { z } from 'zod'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { answerJoined, answerRefused, FramedLink, joinByte } from './link-frames.ts'
import { raceSignal } from './serve-support.ts'
import { cut, splice } from './tunnel.ts'

/** What the opener needs to make connections: sent only over an encrypted, authenticated channel (the key is secret). */
export const directGrantSchema = z.strictObject({
  /** The ticket's id: the TLS PSK identity, sent in the clear. */
  ticket: z.string().regex(/^[0-9a-f]{32}$/),
  /** The ticket's key, hex: the TLS pre-shared key. */
  key: z.string().regex(/^[0-9a-f]{64}$/),
  /** Connections may be made with the ticket for this long from the grant. */
  expiresInMs: z.number().int().positive().max(24 * 3_600_000),
  port: z.number().int().min(1).max(65_535),
  /** The responder's own addresses: the opener connects only where it already reaches the peer at one of them. */
  hosts: z.array(z.string().max(64)).max(64),
})
export type DirectGrant = z.output<typeof directGrantSchema>

export interface DirectLimits {
  ticketTtlMs: number
  maxTickets: number
  /** A holder's oldest ticket is dropped when it asks for one more. */
  maxTicketsPerHolder: number
  maxConnectionsPerHolder: number
  /** TLS handshakes in progress at once, in all and from one remote address; beyond them a connection is reset. */
  maxHandshakes: number
  maxHandshakesPerIp: number
  /** A connection that has not finished its handshake in this time is reset. */
  handshakeTimeoutMs: number
  /** How long the target may take to be reached (`join`) before the connection is refused. */
  joinTimeoutMs: number
  /** A link whose opener has not asked it to join within this time is refused (openers keep spares for less). */
  spareTimeoutMs: number
  /** A link that carries no byte either way for this long is reset. */
  idleTimeoutMs: number
}

export const defaultDirectLimits: Readonly<DirectLimits> = Object.freeze({
  ticketTtlMs: 10 * 60_000,
  maxTickets: 4096,
  maxTicketsPerHolder: 8,
  maxConnectionsPerHolder: 1024,
  maxHandshakes: 256,
  maxHandshakesPerIp: 32,
  handshakeTimeoutMs: 10_000,
  joinTimeoutMs: 15_000,
  spareTimeoutMs: 60_000,
  idleTimeoutMs: 5 * 60_000,
})

/** Reaches what a connection made with a ticket joins; throw a HearthError to refuse it (the opener reads why). */
export type DirectJoin = () => Promise<Duplex>

export interface DirectListenerStats {
  tickets: number
  connections: number
  handshakes: number
  /** Connections reset before their handshake: over a limit, too slow, or with no live ticket. */
  refusedHandshakes: number
  /** Connections that passed the handshake and were refused by `join` or a limit. */
  refusedJoins: number
}

export interface DirectListener {
  readonly port: number
  /** The addresses it listens at (every IPv4 address of this machine when bound to 0.0.0.0). */
  hosts(): string[]
  /** A new ticket for `holder` (e.g. the peer's address), whose connections `join` answers. */
  grant(holder: string, join: DirectJoin): DirectGrant
  stats(): DirectListenerStats
  /** Stops listening and ends every link. */
  close(): Promise<void>
}

export interface DirectListenInit {
  /** IPv4 address to listen on. */
  host: string
  /** Default 0: any free port. */
  port?: number
  limits?: Partial<DirectLimits>
  /** The clock tickets expire by (tests). */
  now?: () => number
}

interface Ticket {
  key: Buffer
  holder: string
  expiresAt: number
  join: DirectJoin
}

const tlsOptions = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphersuites: 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256' } as const

function refusal(error: HearthError): Buffer {
  const text = JSON.stringify({ code: error.code, message: error.shortMessage.slice(0, 2000), ...(error.hint === undefined ? {} : { hint: error.hint.slice(0, 2000) }) })
  return Buffer.concat([Buffer.of(answerRefused), Buffer.from(text)])
}

function localIpv4(bound: string): string[] {
  if (bound !== '0.0.0.0') return [bound]
  return Object.values(networkInterfaces()).flatMap((entries) => (entries ?? []).filter((entry) => entry.family === 'IPv4').map((entry) => entry.address))
}

/** The tickets granted and live: bounded in all and per holder, dropped as they expire. */
class TicketBook {
  readonly #tickets = new Map<string, Ticket>()
  /** Each holder's ticket ids, oldest first. */
  readonly #issued = new Map<string, string[]>()
  readonly #limits: DirectLimits
  readonly #now: () => number

  constructor(limits: DirectLimits, now: () => number) {
    this.#limits = limits
    this.#now = now
  }

  size(): number {
    return this.#tickets.size
  }

  /** The ticket `id` while it is live. */
  live(id: string): Ticket | undefined {
    const ticket = this.#tickets.get(id)
    if (ticket !== undefined && ticket.expiresAt <= this.#now()) {
      this.#drop(id)
      return undefined
    }
    return ticket
  }

  /** A new ticket for `holder`, its oldest dropped when it holds as many as it may. */
  issue(holder: string, join: DirectJoin): { ticket: string; key: string } {
    for (const id of [...this.#tickets.keys()]) this.live(id)
    if (this.#tickets.size >= this.#limits.maxTickets) {
      throw new HearthError('HEARTH_ERR_NET_BUSY', `this node holds ${this.#tickets.size} direct-link tickets, the most it keeps`, { hint: 'use the libp2p path, or ask again once tickets have expired' })
    }
    const held = this.#issued.get(holder) ?? []
    for (const id of held.slice(0, Math.max(0, held.length - this.#limits.maxTicketsPerHolder + 1))) this.#drop(id)
    const id = randomBytes(16).toString('hex')
    const key = randomBytes(32)
    this.#tickets.set(id, { key, holder, expiresAt: this.#now() + this.#limits.ticketTtlMs, join })
    this.#issued.set(holder, [...(this.#issued.get(holder) ?? []), id])
    return { ticket: id, key: key.toString('hex') }
  }

  clear(): void {
    this.#tickets.clear()
    this.#issued.clear()
  }

  #drop(id: string): void {
    const ticket = this.#tickets.get(id)
    if (ticket === undefined) return
    this.#tickets.delete(id)
    const ids = this.#issued.get(ticket.holder)?.filter((other) => other !== id) ?? []
    if (ids.length === 0) this.#issued.delete(ticket.holder)
    else this.#issued.set(ticket.holder, ids)
  }
}

interface LinkBounds {
  open: Map<string, Set<Duplex>>
  limits: DirectLimits
  counts: { refusedJoins: number }
}

/**
 * The opener's first byte (the join byte, or anything else it sent), without reading further: its frames stay for the
 * link. 'unused' after `timeoutMs`, 'gone' when the connection ended first.
 */
function joinAsked(tls: TLSSocket, timeoutMs: number): Promise<number | 'unused' | 'gone'> {
  return new Promise((resolve) => {
    const done = (outcome: number | 'unused' | 'gone'): void => {
      clearTimeout(timer)
      tls.off('readable', onReadable)
      tls.off('end', onGone)
      tls.off('close', onGone)
      resolve(outcome)
    }
    const onReadable = (): void => {
      const first = tls.read(1) as Buffer | null
      if (first !== null) done(first[0]!)
    }
    const onGone = (): void => done('gone')
    const timer = setTimeout(() => done('unused'), timeoutMs)
    tls.on('readable', onReadable)
    tls.once('end', onGone)
    tls.once('close', onGone)
  })
}

/** Answers a connection that passed its handshake: refused (a JSON error and the end), or joined to its target. */
async function joinLink(tls: TLSSocket, ticket: Ticket, { open, limits, counts }: LinkBounds): Promise<void> {
  const refuse = (error: HearthError): void => {
    counts.refusedJoins++
    tls.end(refusal(error))
    setTimeout(() => tls.destroy(), 5_000).unref()
  }
  const mine = open.get(ticket.holder) ?? new Set<Duplex>()
  if (mine.size >= limits.maxConnectionsPerHolder) {
    return refuse(new HearthError('HEARTH_ERR_NET_BUSY', `${mine.size} direct links are open from this peer, the most it may hold`, { hint: 'close idle connections, or wait for some to end' }))
  }
  open.set(ticket.holder, mine)
  mine.add(tls)
  tls.once('close', () => {
    mine.delete(tls)
    if (mine.size === 0 && open.get(ticket.holder) === mine) open.delete(ticket.holder)
  })
  const asked = await joinAsked(tls, limits.spareTimeoutMs)
  if (asked === 'gone') return
  if (asked === 'unused') return refuse(new HearthError('HEARTH_ERR_NET_TIMEOUT', `the link was not asked to join within ${limits.spareTimeoutMs} ms`, { hint: 'open a new link' }))
  if (asked !== joinByte) {
    tls.destroy()
    return
  }
  let target: Duplex
  const deadline = AbortSignal.timeout(limits.joinTimeoutMs)
  // A join that throws at once (the replica ended since the grant) refuses as one that rejects does.
  const joining = (async () => ticket.join())()
  try {
    target = await raceSignal(joining, deadline)
  } catch (error) {
    if (!deadline.aborted) return refuse(isHearthError(error) ? error : new HearthError('HEARTH_ERR_INTERNAL', 'the link could not be joined to its target'))
    // A target reached after the deadline has nobody to talk to.
    joining.then((late) => late.destroy(), () => undefined)
    return refuse(new HearthError('HEARTH_ERR_NET_TIMEOUT', `the link's target was not reached within ${limits.joinTimeoutMs} ms`))
  }
  if (tls.destroyed) {
    cut(target, new Error('the link\'s opener went away while it was joined'))
    return
  }
  tls.write(Buffer.of(answerJoined))
  splice(new FramedLink(tls), target, limits.idleTimeoutMs)
}

/** Starts a responder's listener for direct links. */
export async function listenDirect(init: DirectListenInit): Promise<DirectListener> {
  if (!isIPv4(init.host)) throw new HearthError('HEARTH_ERR_API_MISUSE', `direct links listen on an IPv4 address, not "${init.host}"`)
  const limits: DirectLimits = { ...defaultDirectLimits, ...init.limits }
  const now = init.now ?? Date.now
  const context = createSecureContext(tlsOptions)
  const tickets = new TicketBook(limits, now)
  const open = new Map<string, Set<Duplex>>()
  const sockets = new Set<TLSSocket>()
  const handshakesPerIp = new Map<string, number>()
  const counts = { handshakes: 0, refusedHandshakes: 0, refusedJoins: 0 }
  let closing = false

  const accept = (raw: Socket): void => {
    const ip = raw.remoteAddress ?? 'unknown'
    const fromIp = handshakesPerIp.get(ip) ?? 0
    if (closing || counts.handshakes >= limits.maxHandshakes || fromIp >= limits.maxHandshakesPerIp) {
      counts.refusedHandshakes++
      raw.resetAndDestroy()
      return
    }
    counts.handshakes++
    handshakesPerIp.set(ip, fromIp + 1)
    let handshaking = true
    const handshakeOver = (): void => {
      if (!handshaking) return
      handshaking = false
      counts.handshakes--
      const left = (handshakesPerIp.get(ip) ?? 1) - 1
      if (left <= 0) handshakesPerIp.delete(ip)
      else handshakesPerIp.set(ip, left)
    }
    let ticket: Ticket | undefined
    // A server-side TLSSocket takes pskCallback as tls.Server passes it (node's typings list it on servers only).
    const options: TLSSocketOptions & { pskCallback(socket: TLSSocket, identity: string): Buffer | null } = {
      isServer: true,
      secureContext: context,
      pskCallback: (_socket, identity) => {
        ticket = tickets.live(identity)
        return ticket?.key ?? null
      },
    }
    const tls = new TLSSocket(raw, options)
    sockets.add(tls)
    tls.once('close', () => sockets.delete(tls))
    const timer = setTimeout(() => {
      if (handshaking) tls.destroy()
    }, limits.handshakeTimeoutMs)
    tls.on('error', () => {})
    tls.once('close', () => {
      clearTimeout(timer)
      if (handshaking) counts.refusedHandshakes++
      handshakeOver()
    })
    tls.once('secure', () => {
      clearTimeout(timer)
      handshakeOver()
      if (ticket === undefined) {
        tls.destroy()
        return
      }
      void joinLink(tls, ticket, { open, limits, counts })
    })
  }

  const server = createServer({ allowHalfOpen: true, noDelay: true }, accept)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port ?? 0, init.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as { port: number }).port
  const hosts = localIpv4(init.host)
  return {
    port,
    hosts: () => hosts,
    grant: (holder, joinTarget) => ({ ...tickets.issue(holder, joinTarget), expiresInMs: limits.ticketTtlMs, port, hosts }),
    stats: () => ({
      tickets: tickets.size(),
      connections: [...open.values()].reduce((sum, set) => sum + set.size, 0),
      handshakes: counts.handshakes,
      refusedHandshakes: counts.refusedHandshakes,
      refusedJoins: counts.refusedJoins,
    }),
    async close() {
      closing = true
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const socket of sockets) socket.destroy()
      tickets.clear()
      await closed
    },
  }
}

export interface DialDirectOptions {
  signal?: AbortSignal
}

/** Waits for `event` on `emitter`; rejects on its 'error' or 'close' first, or when `signal` aborts. */
function until(emitter: Duplex, event: string, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      emitter.off(event, onEvent)
      emitter.off('error', onError)
      emitter.off('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    const onEvent = (): void => {
      cleanup()
      resolve()
    }
    const onError = (error: Error): void => {
      cleanup()
      reject(error)
    }
    const onClose = (): void => {
      cleanup()
      reject(new Error('the connection closed'))
    }
    const onAbort = (): void => {
      cleanup()
      reject(signal!.reason)
    }
    if (signal?.aborted === true) return onAbort()
    emitter.once(event, onEvent)
    emitter.once('error', onError)
    emitter.once('close', onClose)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * A direct link to `host`:`port` with `grant`'s ticket, once its TLS handshake is done: a spare, joined to the target
 * on `join()` or its first write (a Duplex with the socket methods node:http calls; a cut link fails with
 * LinkCutError). Rejects with HEARTH_ERR_NET_DIAL when no connection or handshake came about (a wrong or expired ticket
 * ends the handshake). The responder's refusal comes later, on the link and on `joined`: HEARTH_ERR_NET_REMOTE, or
 * _BUSY or _TIMEOUT as it said, details.refusedLink true and its code in details.remoteCode.
 */
export async function dialDirect(host: string, port: number, grant: Pick<DirectGrant, 'ticket' | 'key'>, options: DialDirectOptions = {}): Promise<FramedLink> {
  const where = `${host}:${port}`
  const raw = tcpConnect({ host, port, noDelay: true, allowHalfOpen: true })
  raw.on('error', () => {})
  let tls: TLSSocket | undefined
  try {
    await until(raw, 'connect', options.signal)
    const key = Buffer.from(grant.key, 'hex')
    const connection: ConnectionOptions & { allowHalfOpen: boolean } = { socket: raw, ...tlsOptions, allowHalfOpen: true, checkServerIdentity: () => undefined, pskCallback: () => ({ psk: key, identity: grant.ticket }) }
    tls = tlsConnect(connection)
    await until(tls, 'secureConnect', options.signal)
    return new FramedLink(tls, { opener: { where } })
  } catch (error) {
    tls?.destroy()
    raw.destroy()
    if (options.signal?.aborted === true && error === options.signal.reason) throw error
    if (isHearthError(error)) throw error
    throw new HearthError('HEARTH_ERR_NET_DIAL', `no direct link to ${where}: ${toHearthError(error).shortMessage}`, { hint: 'the libp2p path still works; a firewall may block the port, or the ticket expired', cause: error })
  }
}
