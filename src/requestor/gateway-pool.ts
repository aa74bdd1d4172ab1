/**
 * The gateway's view of a service's replicas: one keep-alive connection pool per replica (its connections made by the
 * replica's own `connect`), whether it is in rotation, its measured latency and outstanding requests, and the choice
 * of a replica for a request.
 */
import { Agent } from 'node:http'
import type { ClientRequestArgs } from 'node:http'
import type { Duplex } from 'node:stream'

export interface GatewayReplica {
  /** Shown in the x-hearth-replica response header. */
  id: string
  /** e.g. 'eu', 'us', 'ap'. */
  region: string
  /** The service version the replica runs (for rolling updates; shown in x-hearth-version). */
  version: string
  /** A new byte stream to the replica's HTTP server (speaks HTTP/1.1 as a TCP connection would). */
  connect(signal: AbortSignal): Promise<Duplex>
  /** How its last connection was made: a direct link or a libp2p tunnel (replica-link.ts), where known. */
  path?(): 'direct' | 'tunnel' | undefined
}

export interface GatewayRoutes {
  /** The replicas currently in rotation for the service (the owner's view; may change at any time). */
  replicas(): GatewayReplica[]
  /** Told when the gateway sees a replica fail (connect error, health check failure), so the owner can act. */
  reportDown?(replicaId: string, reason: string): void
  /** The service's health path (its spec's health.path), for the gateway's own checks when it was given none. */
  healthPath?(): string | undefined
}

/** A replica's connect failed: nothing of the request reached it, so any request may go elsewhere. */
export class ReplicaConnectError extends Error {
  override name = 'ReplicaConnectError'
}

export interface ReplicaStats {
  id: string
  region: string
  version: string
  healthy: boolean
  /** Why it is out of rotation, while it is. */
  downReason?: string
  outstanding: number
  requests: number
  failures: number
  /** EWMA of time to response headers and of health checks, in ms; undefined until measured. */
  latencyMs?: number
  /** How the gateway's last connection to it was made. */
  path?: 'direct' | 'tunnel'
}

export interface PoolOptions {
  maxSocketsPerReplica: number
  /** How long an idle connection to a replica is kept for reuse. */
  idleSocketMs: number
  connectTimeoutMs: number
}

/** Weight of a new latency sample in the moving average. */
const ewmaWeight = 0.3

/**
 * Gives a stream what http.Agent and ClientRequest call on a net.Socket, when it lacks them (a libp2p stream does):
 * keep-alive and delay switches do nothing, and the idle timer emits 'timeout' as a socket's would.
 */
function socketLike(stream: Duplex): Duplex {
  const target = stream as Duplex & Record<string, unknown>
  if (typeof target.setKeepAlive === 'function') {
    // A TCP socket: each request is one write, and Nagle's algorithm would hold a write back for the previous ACK.
    if (typeof target.setNoDelay === 'function') (target.setNoDelay as (on: boolean) => void)(true)
    return stream
  }
  let timer: NodeJS.Timeout | undefined
  const self = () => stream
  target.setKeepAlive = self
  target.setNoDelay = self
  target.ref = self
  target.unref = self
  target.setTimeout = (ms: number, listener?: () => void) => {
    clearTimeout(timer)
    if (listener !== undefined) stream.once('timeout', listener)
    if (ms > 0) timer = setTimeout(() => stream.emit('timeout'), ms).unref()
    return stream
  }
  stream.once('close', () => clearTimeout(timer))
  return stream
}

/**
 * A keep-alive agent whose idle connections close after `idleSocketMs` (or before the replica's announced keep-alive
 * timeout, which node's agent reads). Not node's `timeout` option: that also watches every request in flight.
 */
class IdleLimitedAgent extends Agent {
  readonly #idleMs: number

  constructor(options: PoolOptions) {
    super({ keepAlive: true, maxSockets: options.maxSocketsPerReplica, maxFreeSockets: options.maxSocketsPerReplica })
    this.#idleMs = options.idleSocketMs
  }

  override keepSocketAlive(socket: Duplex): boolean {
    const keep = (Agent.prototype.keepSocketAlive as (socket: Duplex) => boolean).call(this, socket)
    const timed = socket as Duplex & { timeout?: number; setTimeout(ms: number): void }
    if (!(timed.timeout !== undefined && timed.timeout > 0 && timed.timeout <= this.#idleMs)) timed.setTimeout(this.#idleMs)
    return keep
  }
}

export class ReplicaState {
  replica: GatewayReplica
  readonly agent: Agent
  healthy = true
  downReason: string | undefined
  /** Consecutive failed health checks. */
  failedChecks = 0
  latencyMs: number | undefined
  outstanding = 0
  requests = 0
  failures = 0
  /** No longer among the routes' replicas: its pool goes once its last request ends. */
  removed = false
  readonly #connecting = new Set<AbortController>()

  constructor(replica: GatewayReplica, options: PoolOptions) {
    this.replica = replica
    this.agent = new IdleLimitedAgent(options)
    // The agent's sockets are the replica's own streams; the host and port in the request options mean nothing.
    this.agent.createConnection = ((_options: ClientRequestArgs, callback: (error: Error | null, stream?: Duplex) => void) => {
      this.connect(options.connectTimeoutMs).then(
        (stream) => callback(null, stream),
        (error: unknown) => callback(error as Error),
      )
      return undefined
    }) as unknown as Agent['createConnection']
  }

  /** A new stream to the replica, failing with ReplicaConnectError after `timeoutMs`. */
  async connect(timeoutMs: number): Promise<Duplex> {
    const controller = new AbortController()
    this.#connecting.add(controller)
    const timer = setTimeout(() => controller.abort(new Error(`connect timed out after ${timeoutMs} ms`)), timeoutMs)
    try {
      return socketLike(await this.replica.connect(controller.signal))
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error)
      throw new ReplicaConnectError(`connect to replica ${this.replica.id} failed: ${why}`, { cause: error })
    } finally {
      clearTimeout(timer)
      this.#connecting.delete(controller)
    }
  }

  recordLatency(ms: number): void {
    this.latencyMs = this.latencyMs === undefined ? ms : this.latencyMs * (1 - ewmaWeight) + ms * ewmaWeight
  }

  close(): void {
    for (const controller of this.#connecting) controller.abort(new Error('the gateway is closing'))
    this.agent.destroy()
  }

  stats(): ReplicaStats {
    const { id, region, version } = this.replica
    return {
      id, region, version,
      healthy: this.healthy,
      ...(this.downReason === undefined ? {} : { downReason: this.downReason }),
      outstanding: this.outstanding,
      requests: this.requests,
      failures: this.failures,
      ...(this.latencyMs === undefined ? {} : { latencyMs: Math.round(this.latencyMs * 100) / 100 }),
      ...(this.replica.path?.() === undefined ? {} : { path: this.replica.path() }),
    }
  }
}

/** The replicas the routes name, each with its state, kept in step with the routes on every use. */
export class ReplicaPool {
  readonly #routes: GatewayRoutes
  readonly #options: PoolOptions
  readonly #states = new Map<string, ReplicaState>()
  readonly #random: () => number
  /** Called when a replica's state is first made (the health checker starts checking it). */
  onAdded: (state: ReplicaState) => void = () => {}

  constructor(routes: GatewayRoutes, options: PoolOptions, random: () => number = Math.random) {
    this.#routes = routes
    this.#options = options
    this.#random = random
  }

  /** The current replicas' states, new replicas added and those the routes dropped retired. */
  sync(): ReplicaState[] {
    const current = this.#routes.replicas()
    const seen = new Set<string>()
    const states: ReplicaState[] = []
    for (const replica of current) {
      if (seen.has(replica.id)) continue
      seen.add(replica.id)
      let state = this.#states.get(replica.id)
      if (state === undefined) {
        state = new ReplicaState(replica, this.#options)
        this.#states.set(replica.id, state)
        this.onAdded(state)
      }
      state.replica = replica
      states.push(state)
    }
    for (const [id, state] of this.#states) {
      if (seen.has(id)) continue
      this.#states.delete(id)
      state.removed = true
      if (state.outstanding === 0) state.close()
    }
    return states
  }

  /** The state of replica `id` while the routes still name it. */
  get(id: string): ReplicaState | undefined {
    return this.#states.get(id)
  }

  /**
   * A healthy replica for a client in `region`, none of `exclude`: those in the client's region first (all healthy
   * ones when none is there), then the better of two picked at random, by latency × (outstanding + 1).
   */
  choose(region: string, exclude: ReadonlySet<string>): ReplicaState | undefined {
    const healthy = this.sync().filter((state) => state.healthy && !exclude.has(state.replica.id))
    const local = healthy.filter((state) => state.replica.region.toLowerCase() === region)
    const candidates = local.length > 0 ? local : healthy
    if (candidates.length <= 1) return candidates[0]
    // A replica not measured yet counts as fast as the fastest measured one, so that it gets tried.
    const measured = candidates.flatMap((state) => (state.latencyMs === undefined ? [] : [state.latencyMs]))
    const unknown = measured.length === 0 ? 1 : Math.min(...measured)
    const cost = (state: ReplicaState) => Math.max(state.latencyMs ?? unknown, 0.01) * (state.outstanding + 1)
    const first = Math.floor(this.#random() * candidates.length)
    let second = Math.floor(this.#random() * (candidates.length - 1))
    if (second >= first) second++
    const a = candidates[first]!
    const b = candidates[second]!
    return cost(b) < cost(a) ? b : a
  }

  /** Ends a request's hold on `state`; a retired replica's pool closes with its last request. */
  release(state: ReplicaState): void {
    state.outstanding--
    if (state.removed && state.outstanding === 0) state.close()
  }

  all(): ReplicaState[] {
    return [...this.#states.values()]
  }

  close(): void {
    for (const state of this.#states.values()) state.close()
    this.#states.clear()
  }
}
