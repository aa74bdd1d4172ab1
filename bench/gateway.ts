/**
 * `node --import tsx bench/gateway.ts [--json] [--runs 3] [--seconds 5] [--connections 10] [--probe 2000]`: what the
 * service gateway (src/requestor/gateway.ts) costs in front of a server, for a small static answer.
 *
 * A node:http server answering 12 bytes runs in one child process; a gateway with that server as its one replica
 * (the replica's `connect` is net.connect on loopback, where in use it is a libp2p stream) runs in another. Measured,
 * the two ways taking turns, medians of `--runs` runs after a warm-up:
 * - under load: autocannon (`--connections` keep-alive connections, `--seconds` each) straight to the server, and
 *   through the gateway: requests/s, and p50/p99 latency (autocannon keeps whole milliseconds);
 * - CPU time per request of the gateway's process, and of the server's in the direct run (process.cpuUsage over the
 *   loaded run / requests answered): steadier than wall-clock figures on a machine others share;
 * - at light load: `--probe` requests one after another on one keep-alive connection, each timed in microseconds,
 *   p50/p99, straight and through the gateway: the latency the gateway adds, free of queueing.
 * On a 2-core machine the gateway run has three busy processes (autocannon, gateway, server) on two cores where the
 * direct run has two, so its throughput ratio there understates what the gateway allows on a machine of its own.
 */
import { spawn } from 'node:child_process'
import { createServer, request, Agent } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createGateway } from '../src/requestor/gateway.ts'
import { loopbackConnect } from '../src/requestor/gateway-testkit.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '10' },
    probe: { type: 'string', default: '2000' },
    /** Internal: be the server (`upstream`) or the gateway (`gateway`, in front of `--upstream-port`). */
    role: { type: 'string' },
    'upstream-port': { type: 'string' },
  },
})
const log = lineLogger(values.json)

/** The part of autocannon's result this bench reads (autocannon ships no types). */
interface CannonResult {
  requests: { average: number; total: number }
  latency: { p50: number; p99: number; average: number }
  errors: number
  timeouts: number
  non2xx: number
}
type Cannon = (options: { url: string; connections: number; duration: number; pipelining: number }) => Promise<CannonResult>
const autocannon = createRequire(import.meta.url)('autocannon') as Cannon

/** A child's loop: answers `cpu` on stdin with its CPU time so far (µs), and stops when stdin closes. */
function serveCommands(): void {
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => {
    if (line === 'cpu') {
      const { user, system } = process.cpuUsage()
      process.stdout.write(`${JSON.stringify({ cpuMicros: user + system })}\n`)
    }
  })
  lines.on('close', () => process.exit(0))
}

async function runChild(role: string): Promise<void> {
  let port: number
  if (role === 'upstream') {
    const body = Buffer.from('hello world\n')
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length })
      res.end(body)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  } else {
    const upstreamPort = Number(values['upstream-port'])
    const gateway = await createGateway({
      listen: { host: '127.0.0.1', port: 0 },
      region: 'eu',
      routes: { replicas: () => [{ id: 'bench', region: 'eu', version: 'v1', connect: (signal) => loopbackConnect(upstreamPort, signal) }] },
      health: { path: '/', intervalMs: 5_000 },
    })
    port = gateway.address().port
  }
  process.stdout.write(`${JSON.stringify({ port })}\n`)
  serveCommands()
}

if (values.role !== undefined) {
  await runChild(values.role)
} else {
  await main()
}

interface Child {
  port: number
  cpuMicros(): Promise<number>
  stop(): void
}

async function startChild(args: string[]): Promise<Child> {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })
  const waiting: Array<(line: string) => void> = []
  lines.on('line', (line) => waiting.shift()?.(line))
  const next = () => new Promise<string>((resolve) => waiting.push(resolve))
  const { port } = JSON.parse(await next()) as { port: number }
  return {
    port,
    cpuMicros: async () => {
      const answer = next()
      child.stdin.write('cpu\n')
      return (JSON.parse(await answer) as { cpuMicros: number }).cpuMicros
    },
    stop: () => child.stdin.end(),
  }
}

/** Latencies in µs of `count` requests sent one after another on one keep-alive connection. */
async function probe(port: number, count: number): Promise<{ p50: number; p99: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const times: number[] = []
  for (let i = 0; i < count; i++) {
    const startedAt = process.hrtime.bigint()
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume()
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))))
      })
      req.on('error', reject)
      req.end()
    })
    times.push(Number(process.hrtime.bigint() - startedAt) / 1000)
  }
  agent.destroy()
  times.sort((a, b) => a - b)
  return { p50: times[Math.floor(times.length * 0.5)]!, p99: times[Math.floor(times.length * 0.99)]! }
}

interface LoadRun {
  rps: number
  p50: number
  p99: number
  /** CPU time per request, µs, of the server process and (gateway runs only) of the gateway process. */
  serverCpuMicros: number
  gatewayCpuMicros?: number
}

async function loaded(port: number, seconds: number, server: Child, gateway?: Child): Promise<LoadRun> {
  const serverBefore = await server.cpuMicros()
  const cpuBefore = await gateway?.cpuMicros()
  const result = await autocannon({ url: `http://127.0.0.1:${port}/`, connections: Number(values.connections), duration: seconds, pipelining: 1 })
  const cpuAfter = await gateway?.cpuMicros()
  const serverAfter = await server.cpuMicros()
  if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0) {
    throw new Error(`autocannon saw ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx answers on port ${port}`)
  }
  const run: LoadRun = { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, serverCpuMicros: (serverAfter - serverBefore) / result.requests.total }
  if (cpuBefore !== undefined && cpuAfter !== undefined) run.gatewayCpuMicros = (cpuAfter - cpuBefore) / result.requests.total
  return run
}

async function main(): Promise<void> {
  const runs = Number(values.runs)
  const seconds = Number(values.seconds)
  const upstream = await startChild(['--role', 'upstream'])
  const gateway = await startChild(['--role', 'gateway', '--upstream-port', String(upstream.port)])
  try {
    // Warm-up: JIT, connection pools.
    await loaded(upstream.port, 1, upstream)
    await loaded(gateway.port, 1, upstream, gateway)
    const direct: LoadRun[] = []
    const through: LoadRun[] = []
    const probeDirect: Array<{ p50: number; p99: number }> = []
    const probeThrough: Array<{ p50: number; p99: number }> = []
    for (let run = 0; run < runs; run++) {
      direct.push(await loaded(upstream.port, seconds, upstream))
      through.push(await loaded(gateway.port, seconds, upstream, gateway))
      probeDirect.push(await probe(upstream.port, Number(values.probe)))
      probeThrough.push(await probe(gateway.port, Number(values.probe)))
      log(`run ${run + 1}: direct ${Math.round(direct[run]!.rps)} req/s, gateway ${Math.round(through[run]!.rps)} req/s`)
    }
    const m = (runsOf: LoadRun[], key: 'rps' | 'p50' | 'p99' | 'serverCpuMicros' | 'gatewayCpuMicros') => median(runsOf.map((r) => r[key] ?? 0))
    const pm = (runsOf: Array<{ p50: number; p99: number }>, key: 'p50' | 'p99') => median(runsOf.map((r) => r[key]))
    const report = {
      connections: Number(values.connections),
      seconds,
      runs,
      load: {
        direct: { rps: round(m(direct, 'rps')), p50Ms: m(direct, 'p50'), p99Ms: m(direct, 'p99'), serverCpuMicrosPerRequest: round(m(direct, 'serverCpuMicros')) },
        gateway: { rps: round(m(through, 'rps')), p50Ms: m(through, 'p50'), p99Ms: m(through, 'p99'), cpuMicrosPerRequest: round(m(through, 'gatewayCpuMicros')) },
        throughputRatio: round(m(through, 'rps') / m(direct, 'rps')),
        addedP50Ms: m(through, 'p50') - m(direct, 'p50'),
        addedP99Ms: m(through, 'p99') - m(direct, 'p99'),
      },
      lightLoad: {
        directMicros: { p50: round(pm(probeDirect, 'p50')), p99: round(pm(probeDirect, 'p99')) },
        gatewayMicros: { p50: round(pm(probeThrough, 'p50')), p99: round(pm(probeThrough, 'p99')) },
        addedP50Ms: round((pm(probeThrough, 'p50') - pm(probeDirect, 'p50')) / 1000),
        addedP99Ms: round((pm(probeThrough, 'p99') - pm(probeDirect, 'p99')) / 1000),
      },
    }
    if (values.json) {
      console.log(JSON.stringify(report))
    } else {
      const { load, lightLoad } = report
      log(`under load (${report.connections} connections, ${seconds} s, medians of ${runs}):`)
      log(`  direct:  ${load.direct.rps} req/s, p50 ${load.direct.p50Ms} ms, p99 ${load.direct.p99Ms} ms, ${load.direct.serverCpuMicrosPerRequest} µs server CPU per request`)
      log(`  gateway: ${load.gateway.rps} req/s, p50 ${load.gateway.p50Ms} ms, p99 ${load.gateway.p99Ms} ms, ${load.gateway.cpuMicrosPerRequest} µs gateway CPU per request`)
      log(`  gateway / direct throughput: ${load.throughputRatio} (aim >= 0.7); added p50 ${load.addedP50Ms} ms (aim < 1), p99 ${load.addedP99Ms} ms (aim < 5)`)
      log(`light load (${values.probe} requests in sequence on one connection, medians of ${runs}):`)
      log(`  direct:  p50 ${lightLoad.directMicros.p50} µs, p99 ${lightLoad.directMicros.p99} µs`)
      log(`  gateway: p50 ${lightLoad.gatewayMicros.p50} µs, p99 ${lightLoad.gatewayMicros.p99} µs; added p50 ${lightLoad.addedP50Ms} ms, p99 ${lightLoad.addedP99Ms} ms`)
    }
  } finally {
    gateway.stop()
    upstream.stop()
  }
}
