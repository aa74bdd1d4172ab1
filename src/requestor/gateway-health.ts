/**
 * The gateway's own health checks: an HTTP GET of the health path on a fresh stream to each replica, every interval.
 * A replica that fails `failuresBeforeDown` checks in a row leaves rotation (the routes are told) until one passes.
 */
import { request } from 'node:http'
import type { ReplicaPool, ReplicaState } from './gateway-pool.ts'

export interface GatewayHealthInit {
  /** Path of the replica's health endpoint; any 2xx or 3xx answer passes. */
  path: string
  intervalMs: number
  timeoutMs: number
  failuresBeforeDown: number
}

export const defaultHealth: GatewayHealthInit = { path: '/', intervalMs: 5_000, timeoutMs: 2_000, failuresBeforeDown: 2 }

/** One health check of `state`: resolves with the time to the answer's headers in ms, rejects on any failure. */
function checkOnce(state: ReplicaState, health: GatewayHealthInit): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const startedAt = performance.now()
    const req = request({
      method: 'GET',
      path: health.path,
      headers: { host: 'hearth-gateway-health', connection: 'close', 'user-agent': 'hearth-gateway-health' },
      timeout: health.timeoutMs,
      createConnection: (_options, callback) => {
        state.connect(health.timeoutMs).then((stream) => callback(null, stream), (error: unknown) => callback(error as Error, undefined as never))
        return undefined
      },
    })
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${health.timeoutMs} ms`)), health.timeoutMs)
    req.on('response', (res) => {
      const elapsed = performance.now() - startedAt
      res.resume()
      res.on('end', () => {
        clearTimeout(timer)
        const status = res.statusCode ?? 0
        if (status >= 200 && status < 400) resolve(elapsed)
        else reject(new Error(`health check ${health.path} answered ${status}`))
      })
      res.on('error', (error) => {
        clearTimeout(timer)
        reject(error)
      })
    })
    req.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    req.end()
  })
}

/** Runs the checks of every replica the pool holds, each on its own timer. */
export class HealthChecker {
  readonly #pool: ReplicaPool
  readonly #health: GatewayHealthInit
  /** The service's own health path as its owner says now, where the routes know it (else the configured one). */
  readonly #pathNow: (() => string | undefined) | undefined
  readonly #markDown: (state: ReplicaState, reason: string) => void
  readonly #timers = new Map<ReplicaState, NodeJS.Timeout>()
  #sweep: NodeJS.Timeout | undefined
  #closed = false

  constructor(pool: ReplicaPool, health: GatewayHealthInit, markDown: (state: ReplicaState, reason: string) => void, pathNow?: () => string | undefined) {
    this.#pool = pool
    this.#health = health
    this.#pathNow = pathNow
    this.#markDown = markDown
    pool.onAdded = (state) => this.#schedule(state, 0)
    // New replicas are found when a request asks for one; this finds them (and drops the gone) when none comes.
    this.#sweep = setInterval(() => this.#pool.sync(), health.intervalMs).unref()
  }

  #schedule(state: ReplicaState, delayMs: number): void {
    if (this.#closed || state.removed) return
    const timer = setTimeout(() => void this.#check(state), delayMs)
    timer.unref()
    this.#timers.set(state, timer)
  }

  async #check(state: ReplicaState): Promise<void> {
    this.#timers.delete(state)
    if (this.#closed || state.removed) return
    try {
      const elapsed = await checkOnce(state, { ...this.#health, path: this.#pathNow?.() ?? this.#health.path })
      state.recordLatency(elapsed)
      state.failedChecks = 0
      if (!state.healthy) {
        state.healthy = true
        state.downReason = undefined
      }
    } catch (error) {
      state.failedChecks++
      const why = error instanceof Error ? error.message : String(error)
      if (state.healthy && state.failedChecks >= this.#health.failuresBeforeDown) {
        this.#markDown(state, `${state.failedChecks} health checks failed in a row, the last: ${why}`)
      }
    }
    this.#schedule(state, this.#health.intervalMs)
  }

  close(): void {
    this.#closed = true
    clearInterval(this.#sweep)
    for (const timer of this.#timers.values()) clearTimeout(timer)
    this.#timers.clear()
  }
}
