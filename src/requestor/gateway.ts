/**
 * The service gateway (`hearth gateway`): the public HTTP(S) endpoint of a service whose replicas run on providers.
 * Each request goes to a healthy replica, those in the client's region first, then by measured latency and
 * outstanding requests; connections to a replica are its own byte streams (`GatewayReplica.connect`), kept alive and
 * reused. The gateway checks every replica's health itself, takes a failing one out of rotation at once, sends an
 * idempotent request that failed before any answer to another replica, and defends itself against hostile clients
 * (slow or oversized headers, oversized bodies, too many connections). Upgraded connections (WebSocket) pass through
 * unread once the replica switched (gateway-upgrade.ts).
 */
import { createServer as createHttpServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { serveUpgrades } from './gateway-upgrade.ts'
import type { AddressInfo, Socket } from 'node:net'
import { HearthError } from '../errors.ts'
import { defaultHealth, HealthChecker } from './gateway-health.ts'
import type { GatewayHealthInit } from './gateway-health.ts'
import { forward, plainReply } from './gateway-forward.ts'
import type { ForwardContext, ForwardCounters } from './gateway-forward.ts'
import { ReplicaPool } from './gateway-pool.ts'
import type { GatewayRoutes, ReplicaState, ReplicaStats } from './gateway-pool.ts'
import { RegionMap } from './gateway-regions.ts'
import type { GatewayRegionsInit } from './gateway-regions.ts'

export type { GatewayReplica, GatewayRoutes, ReplicaStats } from './gateway-pool.ts'
export type { GatewayHealthInit } from './gateway-health.ts'
export type { GatewayRegionsInit } from './gateway-regions.ts'

/** What the gateway allows its clients, and how it treats replicas. */
export interface GatewayLimits {
  /** Time for a client to send a request's headers (slowloris); answered 408 and closed. */
  headersTimeoutMs: number
  /** Time for a client to send a whole request, body included; answered 408 and closed. */
  requestTimeoutMs: number
  /** Largest request head (431 beyond). */
  maxHeaderBytes: number
  /** Largest request body (413 beyond). */
  maxBodyBytes: number
  /** Open connections from one client address; the connections beyond are answered 429 and closed. */
  maxConnectionsPerAddress: number
  /** Open connections in all; those beyond are refused when accepted. */
  maxConnections: number
  /** How long an idle client connection is kept open. */
  keepAliveTimeoutMs: number
  /** Time from sending a request to a replica to its response headers (504 beyond). */
  upstreamTimeoutMs: number
  /** Time for a replica's `connect` to give a stream. */
  connectTimeoutMs: number
  /** Connections to one replica, in use and idle. */
  maxSocketsPerReplica: number
  /** How long an idle connection to a replica is kept for reuse (less when the replica announces less). */
  replicaIdleMs: number
  /** Request bodies up to this size are kept so that a failed attempt can be sent to another replica. */
  retryBodyBytes: number
  /** Replicas tried for one request, the first included. */
  maxAttempts: number
}

export const defaultGatewayLimits: GatewayLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 120_000,
  maxHeaderBytes: 16 * 1024,
  maxBodyBytes: 64 * 1024 * 1024,
  maxConnectionsPerAddress: 256,
  maxConnections: 10_000,
  keepAliveTimeoutMs: 5_000,
  upstreamTimeoutMs: 60_000,
  connectTimeoutMs: 10_000,
  maxSocketsPerReplica: 64,
  replicaIdleMs: 4_000,
  retryBodyBytes: 1024 * 1024,
  maxAttempts: 3,
}

export interface GatewayInit {
  listen: { host: string; port: number }
  /** PEM certificate and key: the gateway then speaks HTTPS. */
  tls?: { cert: string | Buffer; key: string | Buffer }
  routes: GatewayRoutes
  health?: Partial<GatewayHealthInit>
  regions?: GatewayRegionsInit
  /** The gateway's own region: that of clients the region table does not know. */
  region: string
  limits?: Partial<GatewayLimits>
  /** Random numbers for the choice between replicas (tests make it repeatable). */
  random?: () => number
}

export interface GatewayStats {
  /** Client connections open now. */
  connections: number
  requests: number
  retries: number
  responses: Record<string, number>
  cutResponses: number
  /** Connections answered 429 for their address's cap. */
  refusedConnections: number
  replicas: ReplicaStats[]
}

export interface Gateway {
  address(): { host: string; port: number }
  stats(): GatewayStats
  close(): Promise<void>
}

function checkInit(limits: GatewayLimits, health: GatewayHealthInit): void {
  const invalid = (what: string) => new HearthError('HEARTH_ERR_CONFIG_INVALID', `gateway: ${what}`)
  for (const [name, value] of Object.entries({ ...limits, ...health })) {
    if (name === 'path') continue
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw invalid(`${name} must be a number of 0 or more, not ${String(value)}`)
  }
  if (limits.headersTimeoutMs <= 0 || limits.requestTimeoutMs < limits.headersTimeoutMs) {
    throw invalid('headersTimeoutMs must be above 0 and no more than requestTimeoutMs')
  }
  if (limits.maxAttempts < 1 || limits.maxSocketsPerReplica < 1 || limits.maxConnectionsPerAddress < 1) {
    throw invalid('maxAttempts, maxSocketsPerReplica and maxConnectionsPerAddress must be 1 or more')
  }
  if (!health.path.startsWith('/') || health.intervalMs <= 0 || health.failuresBeforeDown < 1) {
    throw invalid('health needs a path starting with /, an intervalMs above 0 and failuresBeforeDown of 1 or more')
  }
}

/** A client's address as the forwarding headers and the region table take it (IPv4-mapped IPv6 as IPv4). */
function clientAddressOf(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? ''
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice('::ffff:'.length) : address
}

/** Counts connections per client address; those beyond the cap are marked, and answered 429 when they ask. */
function capConnections(server: Server, maxPerAddress: number, onRefused: () => void): { overCap: WeakSet<Socket>; open: () => number } {
  const perAddress = new Map<string, number>()
  const overCap = new WeakSet<Socket>()
  let open = 0
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? ''
    const count = (perAddress.get(address) ?? 0) + 1
    perAddress.set(address, count)
    open++
    if (count > maxPerAddress) {
      overCap.add(socket)
      onRefused()
    }
    socket.once('close', () => {
      open--
      const left = (perAddress.get(address) ?? 1) - 1
      if (left <= 0) perAddress.delete(address)
      else perAddress.set(address, left)
    })
  })
  return { overCap, open: () => open }
}

export async function createGateway(init: GatewayInit): Promise<Gateway> {
  const limits: GatewayLimits = { ...defaultGatewayLimits, ...init.limits }
  const health: GatewayHealthInit = { ...defaultHealth, ...init.health }
  checkInit(limits, health)
  const regions = new RegionMap(init.regions, init.region.toLowerCase())
  const pool = new ReplicaPool(init.routes, {
    maxSocketsPerReplica: limits.maxSocketsPerReplica,
    idleSocketMs: limits.replicaIdleMs,
    connectTimeoutMs: limits.connectTimeoutMs,
  }, init.random)
  const markDown = (state: ReplicaState, reason: string) => {
    if (!state.healthy) return
    state.healthy = false
    state.downReason = reason
    try {
      init.routes.reportDown?.(state.replica.id, reason)
    } catch {
      // The owner's handler failing changes nothing here: the replica is out of rotation either way.
    }
  }
  // A path given to the gateway wins; else the service's own, where its routes say it.
  const checker = new HealthChecker(pool, health, markDown, init.health?.path === undefined ? () => init.routes.healthPath?.() : undefined)
  const regionBySocket = new WeakMap<object, string>()
  const counters: ForwardCounters = { requests: 0, retries: 0, responses: {}, cutResponses: 0 }
  const ctx: ForwardContext = {
    pool,
    limits,
    proto: init.tls === undefined ? 'http' : 'https',
    counters,
    retryAfterSeconds: Math.max(1, Math.ceil(health.intervalMs / 1000)),
    regionOf: (req) => {
      if (regions.readsHeaders) return regions.regionOf(clientAddressOf(req), req.headers)
      // By address alone, a connection's region is found once, on its first request.
      let region = regionBySocket.get(req.socket)
      if (region === undefined) {
        region = regions.regionOf(clientAddressOf(req), req.headers)
        regionBySocket.set(req.socket, region)
      }
      return region
    },
    markDown,
  }

  const serverOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often node looks for connections past headersTimeout and requestTimeout.
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
  }
  const server: Server = init.tls === undefined
    ? createHttpServer(serverOptions)
    : createHttpsServer({ ...serverOptions, cert: init.tls.cert, key: init.tls.key })
  server.maxConnections = limits.maxConnections
  let refusedConnections = 0
  const { overCap, open } = capConnections(server, limits.maxConnectionsPerAddress, () => refusedConnections++)
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (overCap.has(req.socket)) {
      plainReply(res, 429, `too many connections from your address (at most ${limits.maxConnectionsPerAddress})`, { 'retry-after': '1' }, true)
      return
    }
    forward(ctx, req, res, clientAddressOf(req)).catch((error: unknown) => {
      const why = error instanceof Error ? error.message : String(error)
      if (res.headersSent) res.destroy()
      else plainReply(res, 500, `the gateway failed: ${why}`)
    })
  })
  const closeUpgrades = serveUpgrades(server, {
    ctx,
    overCap,
    clientAddressOf,
    maxHeaderBytes: limits.maxHeaderBytes,
    upstreamTimeoutMs: limits.upstreamTimeoutMs,
    connectTimeoutMs: limits.connectTimeoutMs,
  })
  // Client errors (431 for oversized heads, 408 past headersTimeout or requestTimeout, 400 for malformed requests)
  // are node's own answers: the server has no clientError listener, so node writes them and closes the connection.

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.listen.port, init.listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  pool.sync()

  return {
    address() {
      const info = server.address() as AddressInfo
      return { host: info.address, port: info.port }
    },
    stats() {
      return {
        connections: open(),
        requests: counters.requests,
        retries: counters.retries,
        responses: { ...counters.responses },
        cutResponses: counters.cutResponses,
        refusedConnections,
        replicas: pool.all().map((state) => state.stats()),
      }
    },
    async close() {
      checker.close()
      closeUpgrades()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeIdleConnections()
      // Requests under way get a moment to finish; then every connection goes.
      const grace = setTimeout(() => server.closeAllConnections(), 2_000)
      await closed
      clearTimeout(grace)
      pool.close()
    },
  }
}
