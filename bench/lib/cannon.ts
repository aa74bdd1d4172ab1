/**
 * autocannon (9.0.0) in a child process, so that its CPU time is not the measuring process's: `startCannon` starts
 * the child (once: its start-up costs a second), and each `run` there is one load, for `duration` seconds or until
 * `stop()` where duration is 0, resolving with the figures the benches read.
 *
 * autocannon counts wrongly against a server that closes every connection (busybox httpd, which answers
 * `Connection: close`): after each answer it writes the next request on the closing connection, and that request,
 * never answered, stays at the head of its queue of requests in flight, so every later answer is timed from an older
 * start and the latencies grow without bound. Each client here sends no request after an answer that ends its
 * connection, and starts its queue afresh on each new connection: a request is then timed from its connect to its
 * answer, as a client that opens a connection per request sees it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export interface CannonOptions {
  url: string
  connections: number
  /** Seconds; 0 runs until `stop()`. */
  duration: number
  /** Requests per second over all connections. */
  overallRate?: number
}

export interface CannonSummary {
  /** Requests per second (autocannon's average of its per-second samples). */
  rps: number
  /** Answers received. */
  total: number
  /** Latency percentiles, whole milliseconds as autocannon keeps them. */
  p50: number
  p99: number
  errors: number
  timeouts: number
  non2xx: number
}

export interface CannonRun {
  done: Promise<CannonSummary>
  /** Ends a load started with duration 0 (its figures then come in `done`). */
  stop(): void
}

export interface Cannon {
  /** One load at a time. */
  run(options: CannonOptions): CannonRun
  close(): void
}

const self = fileURLToPath(import.meta.url)

/**
 * Starts the child: with `start` where given (e.g. in a testbed host's namespace: it runs node with these arguments,
 * stdin and stdout piped), else on this machine.
 */
export function startCannon(start: (nodeArgs: string[]) => ChildProcess = (nodeArgs) => spawn(process.execPath, nodeArgs, { stdio: ['pipe', 'pipe', 'inherit'] })): Cannon {
  const child = start([...process.execArgv, self, 'child'])
  const waiting: Array<{ resolve(summary: CannonSummary): void; reject(error: Error): void }> = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const answer = JSON.parse(line) as { summary?: CannonSummary; error?: string }
    const next = waiting.shift()
    if (answer.summary !== undefined) next?.resolve(answer.summary)
    else next?.reject(new Error(`autocannon failed: ${answer.error ?? line}`))
  })
  child.once('exit', (code) => {
    for (const next of waiting.splice(0)) next.reject(new Error(`autocannon's process ended with code ${String(code)}`))
  })
  return {
    run(options) {
      const done = new Promise<CannonSummary>((resolve, reject) => waiting.push({ resolve, reject }))
      child.stdin!.write(`${JSON.stringify({ run: options })}\n`)
      return { done, stop: () => child.stdin!.write(`${JSON.stringify({ stop: true })}\n`) }
    },
    close: () => child.stdin!.end(),
  }
}

/** What this module reads of autocannon's client (lib/httpClient.js) to make it close-aware. */
interface CannonClient {
  on(event: 'headers', listener: (info: { shouldKeepAlive: boolean }) => void): void
  _doRequest(...args: unknown[]): void
  _connect(...args: unknown[]): void
  pipelinedRequests: { clear(): void }
}

function closeAware(client: CannonClient): void {
  let closing = false
  client.on('headers', (info) => {
    if (!info.shouldKeepAlive) closing = true
  })
  const doRequest = client._doRequest
  client._doRequest = function (this: CannonClient, ...args: unknown[]) {
    if (!closing) doRequest.apply(this, args)
  }
  const connect = client._connect
  client._connect = function (this: CannonClient, ...args: unknown[]) {
    closing = false
    this.pipelinedRequests.clear()
    connect.apply(this, args)
  }
}

interface CannonResult {
  requests: { average: number; total: number }
  latency: { p50: number; p99: number }
  errors: number
  timeouts: number
  non2xx: number
}
type Autocannon = (options: Record<string, unknown>, done: (error: Error | null, result: CannonResult) => void) => { stop(): void }

function runOne(autocannon: Autocannon, options: CannonOptions, answer: (line: object) => void): { stop(): void } {
  return autocannon(
    {
      url: options.url,
      connections: options.connections,
      duration: options.duration > 0 ? options.duration : 3_600,
      pipelining: 1,
      ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate }),
      setupClient: closeAware,
    },
    (error, result) => {
      if (error !== null) {
        answer({ error: error.message })
        return
      }
      const summary: CannonSummary = {
        rps: result.requests.average,
        total: result.requests.total,
        p50: result.latency.p50,
        p99: result.latency.p99,
        errors: result.errors,
        timeouts: result.timeouts,
        non2xx: result.non2xx,
      }
      answer({ summary })
    },
  )
}

/** The child: `{"run": options}` starts a load, `{"stop": true}` ends it; each load's figures come back as one line. */
function runChild(): void {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon
  const answer = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`)
  let current: { stop(): void } | undefined
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      const command = JSON.parse(line) as { run?: CannonOptions; stop?: true }
      if (command.run !== undefined) current = runOne(autocannon, command.run, answer)
      else current?.stop()
    })
    .on('close', () => {
      current?.stop()
      process.exitCode = 0
    })
}

if (process.argv[1] === self && process.argv[2] === 'child') runChild()
