/**
 * `node --import tsx bench/services.ts [--json] [--runs 3] [--seconds 3] [--connections 10] [--probe 100] [--rate 200]`:
 * what a long-running service costs and how it heals, on an in-process devnet of providers that host services (as
 * test/service.test.ts runs it): a static file served by busybox httpd in a container image, reached client →
 * gateway (src/requestor/gateway.ts, on loopback) → libp2p tunnel → provider → forwarder into the container's network
 * namespace → httpd. Everything stays on 127.0.0.0/8. Medians of `--runs` runs; skipped, with the reason, where no
 * container engine (podman) can run.
 *
 * 1. Under load, autocannon (`--connections`, `--seconds` each, run in a child process: lib/cannon.ts) for one small
 *    file, four ways taking turns: straight to the same busybox httpd run natively on 127.0.0.1 in a cgroup with the
 *    replica's CPU limit (one core: the baseline the ratios use; where no cgroup can be made, without one, and said),
 *    straight to it without a limit (for reference), through a gateway to one replica over direct links (TCP and TLS
 *    with a ticket granted over libp2p: net/direct-link.ts; the default), and through a gateway over libp2p tunnels
 *    (`directLinks: false`); the connections' paths are printed. busybox httpd closes every connection, so through
 *    the gateway every request opens a new link (and the forwarder a new connection in the container). The same again with a keep-alive server: busybox
 *    nc running a small sh loop that answers each request on the connection it came on (nc -ll, one sh per
 *    connection): the gateway then reuses its tunnels, which is what a keep-alive server gets. That loop is slow
 *    itself (sh reads a byte at a time), so its direct figure, not the gateway's, bounds the throughput.
 *    Reported: requests/s, p50/p99 (whole ms, as autocannon keeps them), the ratio and the added latency against
 *    the aims, and the CPU time per request of this process through the gateway: the gateway, both ends of the
 *    tunnel and the provider all run here (not autocannon, the forwarder nor the servers), where in use the gateway
 *    and the provider are two machines. At light load, `--probe` requests one after another,
 *    each timed in µs: the latency the whole path adds, free of queueing.
 * 2. Failover: a steady `--rate` req/s (autocannon's overallRate; the answers per second achieved are reported, less
 *    where the path cannot keep up) through a gateway to a service of two busybox httpd replicas; after a second,
 *    the provider of the replica that carried the most of it is stopped (agent.stop() in process): failed requests,
 *    when the gateway last sent to the lost replica and took it out of rotation, when the service marked it down and
 *    replaced it (its `onEvent`), and when the gateway first sent to the replacement. Each run loses one more
 *    provider: the devnet has 3 + `--runs` (the hub, priced highest, gets a replica only when the others are gone).
 * 3. Deploy: deploy() wall time of a one-replica service (the image already on the engine, which all the devnet's
 *    providers share: no image transfer), and of the two-replica one; replacement times come from (2).
 * Wall-clock figures on a shared 2-core machine are noisy: prefer the CPU time and the medians.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { Agent, request } from 'node:http'
import { connect, createServer, type AddressInfo } from 'node:net'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { parseEther } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { detectCgroups, type RunCgroup } from '../src/exec/cgroups.ts'
import { saveImageArchive } from '../src/exec/docker-images.ts'
import { createDockerRuntime, type DockerRuntime } from '../src/exec/docker-runtime.ts'
import { busyboxPath, importBusyboxImage, isStaticElf, startTestEngine, type TestEngine } from '../src/exec/docker-test-image.ts'
import type { Pricing } from '../src/market/pricing.ts'
import { createGateway, type Gateway, type GatewayRoutes } from '../src/requestor/gateway.ts'
import { createReplicaLinks } from '../src/requestor/replica-link.ts'
import { createServices, type Service, type Services } from '../src/requestor/services.ts'
import type { ServiceSpecInput } from '../src/requestor/service-spec.ts'
import { startCannon, type Cannon, type CannonSummary } from './lib/cannon.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '10' },
    probe: { type: 'string', default: '100' },
    rate: { type: 'string', default: '200' },
  },
})
const log = lineLogger(values.json)
const runs = Number(values.runs)
const seconds = Number(values.seconds)
const connections = Number(values.connections)

/** The page: the image's /etc/hearth-variant, which busybox httpd serves from /etc. */
const variant = 'hello-world'
const page = `${variant}\n`
const pagePath = '/hearth-variant'
/** A keep-alive HTTP/1.1 server in busybox sh, for nc -e: each request's head is read, the page answered. */
const keepAliveScript = [
  'while read -r line; do',
  `  while read -r h; do case "$h" in ""|$'\\r') break;; esac; done`,
  `  printf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: ${Buffer.byteLength(page)}\\r\\n\\r\\n${page.replace(/\n/g, '\\n')}'`,
  'done',
].join('\n')
const health = { path: pagePath, intervalMs: 500, timeoutMs: 3000, failuresBeforeDown: 2 }
/** Provider 0 is the devnet's hub (every node joined through it): priced highest, so no replica lands there unless nothing else is left. */
const priceRank = (index: number) => (index === 0 ? 100 : index)
const pricing = (index: number): Pricing => ({ model: 'linear', startWei: '0', perCpuSecWei: parseEther('0.001').toString(), perDurationSecWei: (parseEther('0.0001') * BigInt(priceRank(index))).toString() })
/** Provider 1 alone is in region `solo` (the one-replica services); the others in `eu` (the failover service: two replicas, and one replacement a run). */
const providerCount = 3 + runs
const regionOf = (index: number) => (index === 1 ? 'solo' : 'eu')

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

async function untilListening(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`${String(child.spawnfile)} exited with ${child.exitCode} before it listened`)
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`nothing listened on 127.0.0.1:${port}`)
}

interface Native {
  port: number
  stop(): Promise<void>
}

/** The replica's CPU limit (docker-container.ts: one core unless the service asks for more). */
const replicaLimits = { cpuCores: 1, memoryBytes: 512 * 1024 * 1024, maxProcesses: 512 }

/**
 * `busybox <args>` run natively, with PORT in args replaced by a free loopback port; within `cgroup` where given (the
 * server's children, forked per connection, are born in it).
 */
async function startNative(args: string[], cgroup?: RunCgroup): Promise<Native> {
  const port = await freePort()
  const child = spawn(busyboxPath, args.map((arg) => arg.replace('PORT', String(port))), { stdio: 'ignore' })
  if (cgroup !== undefined) for (const file of cgroup.procsFiles) await writeFile(file, String(child.pid))
  await untilListening(port, child)
  return {
    port,
    stop: async () => {
      child.kill('SIGKILL')
      if (cgroup !== undefined) {
        await cgroup.killAll()
        await cgroup.remove()
      }
    },
  }
}

/** A cgroup with the replica's limits, or why none can be made here. */
async function replicaCgroup(): Promise<{ cgroup?: RunCgroup; why?: string }> {
  const found = await detectCgroups()
  if (!found.ok) return { why: found.reason }
  try {
    return { cgroup: await found.cgroups.create(replicaLimits) }
  } catch (error) {
    return { why: (error as Error).message }
  }
}

/** Latencies in µs of `count` GETs sent one after another (on one keep-alive connection where `keepAlive`). */
async function probe(port: number, count: number, keepAlive: boolean): Promise<{ p50: number; p99: number }> {
  const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: 1 }) : false
  const times: number[] = []
  for (let i = 0; i < count; i++) {
    const startedAt = process.hrtime.bigint()
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: pagePath, agent }, (res) => {
        res.resume()
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))))
      })
      req.on('error', reject)
      req.end()
    })
    times.push(Number(process.hrtime.bigint() - startedAt) / 1000)
  }
  if (agent !== false) agent.destroy()
  times.sort((a, b) => a - b)
  return { p50: times[Math.floor(times.length * 0.5)]!, p99: times[Math.floor(times.length * 0.99)]! }
}

function failedOf(result: CannonSummary): number {
  return result.errors + result.timeouts + result.non2xx
}

interface LoadRun extends CannonSummary {
  /** CPU time of this process per answered request, µs. */
  cpuMicros: number
}

async function loaded(cannon: Cannon, port: number, duration: number): Promise<LoadRun> {
  const before = process.cpuUsage()
  const result = await cannon.run({ url: `http://127.0.0.1:${port}${pagePath}`, connections, duration }).done
  const cpu = process.cpuUsage(before)
  if (failedOf(result) > 0) throw new Error(`autocannon saw ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx answers on port ${port}`)
  return { ...result, cpuMicros: (cpu.user + cpu.system) / Math.max(1, result.total) }
}

interface GatewayFigures {
  rps: number
  p50Ms: number
  p99Ms: number
  cpuMicrosPerRequest: number
  throughputRatio: number
  addedP50Ms: number
  addedP99Ms: number
  aimsMet: { throughput: boolean; p50: boolean; p99: boolean }
  lightLoad: { micros: { p50: number; p99: number }; addedP50Ms: number; addedP99Ms: number }
}

interface Straight {
  rps: number
  p50Ms: number
  p99Ms: number
  lightLoadMicros: { p50: number; p99: number }
}

interface Comparison {
  /** The server straight, under the replica's CPU limit where `limited`: the baseline of the ratios. */
  direct: Straight & { limited: boolean }
  /** The server straight with no limit (the machine's two cores, shared with autocannon). */
  directUnlimited: Straight
  /** Through a gateway whose connections to the replica are direct links (TCP and TLS, net/direct-link.ts; the default). */
  gateway: GatewayFigures
  /** Through a gateway whose connections are libp2p tunnels. */
  gatewayTunnels: GatewayFigures
}

type Way = 'server' | 'free' | 'link' | 'tunnel'

/** The server straight (limited and not), and through the two gateways, taking turns, `runs` times after a warm-up; medians. */
async function compare(cannon: Cannon, label: string, straight: { server: number; free: number; limited: boolean }, gatewayPorts: { link: number; tunnel: number }, keepAliveServer: boolean): Promise<Comparison> {
  const ports: Record<Way, number> = { server: straight.server, free: straight.free, ...gatewayPorts }
  const loads: Record<Way, LoadRun[]> = { server: [], free: [], link: [], tunnel: [] }
  const probes: Record<Way, Array<{ p50: number; p99: number }>> = { server: [], free: [], link: [], tunnel: [] }
  for (const port of Object.values(ports)) await loaded(cannon, port, 1)
  for (let run = 0; run < runs; run++) {
    for (const [way, port] of Object.entries(ports) as Array<[Way, number]>) {
      loads[way].push(await loaded(cannon, port, seconds))
      probes[way].push(await probe(port, Number(values.probe), way === 'link' || way === 'tunnel' || keepAliveServer))
    }
    const rps = (way: Way) => Math.round(loads[way][run]!.rps)
    log(`  ${label} run ${run + 1}: straight ${rps('server')} req/s (${straight.limited ? 'one core' : 'no limit could be set'}), ${rps('free')} (no limit); gateway ${rps('link')} req/s (direct links), ${rps('tunnel')} (tunnels)`)
  }
  const m = (of: LoadRun[], key: 'rps' | 'p50' | 'p99' | 'cpuMicros') => median(of.map((r) => r[key]))
  const pm = (of: Array<{ p50: number; p99: number }>, key: 'p50' | 'p99') => round(median(of.map((r) => r[key])))
  const figures = (way: 'link' | 'tunnel'): GatewayFigures => {
    const throughputRatio = round(m(loads[way], 'rps') / m(loads.server, 'rps'))
    const addedP50Ms = m(loads[way], 'p50') - m(loads.server, 'p50')
    const addedP99Ms = m(loads[way], 'p99') - m(loads.server, 'p99')
    return {
      rps: round(m(loads[way], 'rps')), p50Ms: m(loads[way], 'p50'), p99Ms: m(loads[way], 'p99'), cpuMicrosPerRequest: round(m(loads[way], 'cpuMicros')),
      throughputRatio, addedP50Ms, addedP99Ms,
      aimsMet: { throughput: throughputRatio >= 0.7, p50: addedP50Ms < 1, p99: addedP99Ms < 5 },
      lightLoad: {
        micros: { p50: pm(probes[way], 'p50'), p99: pm(probes[way], 'p99') },
        addedP50Ms: round((pm(probes[way], 'p50') - pm(probes.server, 'p50')) / 1000),
        addedP99Ms: round((pm(probes[way], 'p99') - pm(probes.server, 'p99')) / 1000),
      },
    }
  }
  const straightFigures = (way: 'server' | 'free'): Straight => ({ rps: round(m(loads[way], 'rps')), p50Ms: m(loads[way], 'p50'), p99Ms: m(loads[way], 'p99'), lightLoadMicros: { p50: pm(probes[way], 'p50'), p99: pm(probes[way], 'p99') } })
  return {
    direct: { ...straightFigures('server'), limited: straight.limited },
    directUnlimited: straightFigures('free'),
    gateway: figures('link'),
    gatewayTunnels: figures('tunnel'),
  }
}

interface Bench {
  dir: string
  devnet: Devnet
  services: Services
  imageId: string
  archive: Uint8Array
  /** Each service event with its time (performance.now()). */
  events: Array<{ at: number; type: string; replica: string; detail: string }>
  gateways: Gateway[]
  cannon: Cannon
}

function spec(name: string, imageId: string, region: string, replicas: number, args: string[]): ServiceSpecInput {
  return { name, version: 'v1', runtime: 'docker', imageId, port: 8080, args, replicas: { perRegion: { [region]: replicas } }, health }
}
const httpdArgs = ['httpd', '-f', '-p', '${PORT}', '-h', '/etc']
const keepAliveArgs = ['nc', '-ll', '-p', '${PORT}', '127.0.0.1', '-e', 'sh', '-c', keepAliveScript]

async function timedDeploy(bench: Bench, input: ServiceSpecInput): Promise<{ service: Service; ms: number }> {
  const startedAt = performance.now()
  const service = await bench.services.deploy(input, bench.archive)
  return { service, ms: performance.now() - startedAt }
}

async function gatewayFor(bench: Bench, service: Service, region: string, routes: GatewayRoutes = service.routes()): Promise<Gateway> {
  const gateway = await createGateway({ listen: { host: '127.0.0.1', port: 0 }, routes, region, health })
  bench.gateways.push(gateway)
  return gateway
}

/** The service's routes, each replica reached through a libp2p tunnel (replica-link.ts) instead of a direct link. */
function tunnelRoutes(bench: Bench, service: Service): GatewayRoutes {
  const links = createReplicaLinks(bench.devnet.requestor.host, { direct: false, log })
  const routes = service.routes()
  return {
    replicas: () => routes.replicas().map((replica) => {
      const route = service.route(replica.id)
      if (route === undefined) return replica
      return { ...replica, connect: (signal: AbortSignal) => links.connect({ target: route.multiaddrs[0] ?? route.peerId, activityId: route.activityId }, signal), path: () => links.pathOf(route.activityId) }
    }),
    healthPath: () => routes.healthPath?.(),
  }
}

/** Port of a gateway to `service` over direct links (the service's own routes), and of one over tunnels. */
async function gatewayPair(bench: Bench, service: Service): Promise<{ link: number; tunnel: number }> {
  const link = await gatewayFor(bench, service, 'solo')
  const tunnel = await gatewayFor(bench, service, 'solo', tunnelRoutes(bench, service))
  return { link: link.address().port, tunnel: tunnel.address().port }
}

interface FailoverRun {
  failed: number
  answered: number
  /** Answers per second over the whole load: below the rate asked for where the path could not keep up. */
  achievedRps: number
  /** The lost replica's share of the gateway's requests in the second before the stop. */
  victimShareBefore: number
  retries: number
  /** From the provider's stop, ms: the gateway's last request to the lost replica (0: none after the stop), the lost replica out of the gateway's rotation, the service's 'down' and 'replaced' events, the gateway's first request to the replacement. */
  lastSentMs: number
  outOfRotationMs: number
  downMs: number
  replacedMs: number
  replacementServesMs: number
}

/**
 * One failover: steady load, then the provider of the replica that carried the most of it in the last second is
 * stopped; until the gateway sends to the replacement.
 */
async function failover(bench: Bench, pair: Service, gateway: Gateway): Promise<FailoverRun> {
  const known = new Set(pair.status().replicas.map((replica) => replica.id))
  const loadStart = performance.now()
  const load = bench.cannon.run({ url: `http://127.0.0.1:${gateway.address().port}${pagePath}`, connections, duration: 0, overallRate: Number(values.rate) })
  const sentBy = () => {
    const stats = gateway.stats()
    return { all: stats.requests, replicas: new Map(stats.replicas.map((r) => [r.id, r.requests])) }
  }
  const warm = sentBy()
  await sleep(1_000)
  const stopped = sentBy()
  const serving = pair.status().replicas.filter((replica) => replica.state === 'serving')
  const carried = (id: string) => (stopped.replicas.get(id) ?? 0) - (warm.replicas.get(id) ?? 0)
  const victim = serving.reduce((best, replica) => (carried(replica.id) > carried(best.id) ? replica : best))
  const provider = bench.devnet.providers.find((p) => p.agent.address.toLowerCase() === victim.provider.toLowerCase())!
  const atStop = { all: stopped.all, victim: stopped.replicas.get(victim.id) ?? 0 }
  const retriesBefore = gateway.stats().retries
  let lastSent = -Infinity
  let outOfRotation = Infinity
  let replacementServes = Infinity
  let sentToVictim = atStop.victim
  const t0 = performance.now()
  const sampler = setInterval(() => {
    const now = performance.now()
    const replicas = gateway.stats().replicas
    const lost = replicas.find((r) => r.id === victim.id)
    if (lost !== undefined && lost.requests > sentToVictim) {
      sentToVictim = lost.requests
      lastSent = now
    }
    if ((lost === undefined || !lost.healthy) && outOfRotation === Infinity) outOfRotation = now
    if (replacementServes === Infinity && replicas.some((r) => !known.has(r.id) && r.requests > 0)) replacementServes = now
  }, 5)
  const stopping = provider.agent.stop().catch(() => undefined)
  const deadline = t0 + 60_000
  while (replacementServes === Infinity && performance.now() < deadline) await sleep(50)
  clearInterval(sampler)
  await sleep(300)
  load.stop()
  const loadSeconds = (performance.now() - loadStart) / 1000
  const result = await load.done
  await stopping
  const eventAt = (type: string, match: (e: { replica: string; detail: string }) => boolean) => bench.events.find((e) => e.at >= t0 && e.type === type && match(e))?.at ?? Infinity
  const since = (at: number) => round(at - t0)
  return {
    failed: failedOf(result),
    answered: result.total,
    achievedRps: round(result.total / loadSeconds),
    victimShareBefore: round(carried(victim.id) / Math.max(1, atStop.all - warm.all)),
    retries: gateway.stats().retries - retriesBefore,
    lastSentMs: lastSent === -Infinity ? 0 : since(lastSent),
    outOfRotationMs: since(outOfRotation),
    downMs: since(eventAt('down', (e) => e.replica === victim.id)),
    replacedMs: since(eventAt('replaced', (e) => e.detail.includes(victim.id))),
    replacementServesMs: since(replacementServes),
  }
}

async function setUp(dir: string, engine: TestEngine, docker: DockerRuntime): Promise<Bench> {
  const imageId = await importBusyboxImage(docker, join(dir, 'rootfs'), variant)
  const archivePath = join(dir, 'image.tar')
  await saveImageArchive(docker, imageId, archivePath)
  const archive = new Uint8Array(await readFile(archivePath))
  const devnet = await startDevnet({
    providers: providerCount,
    dockerSocket: engine.socketPath,
    providerServices: true,
    providerPricing: pricing,
    providerActivityMeterEveryMs: 1000,
    providerProperties: (index) => ({ 'hearth.geo.region': regionOf(index) }),
  })
  const events: Bench['events'] = []
  const { requestor } = devnet
  const services = createServices({
    host: requestor.host,
    identity: requestor.identity,
    store: requestor.store,
    accounts: requestor.agent.accounts,
    blobs: requestor.agent.blobs,
    offerBook: requestor.agent.offerBook,
    onEvent: (event) => events.push({ at: performance.now(), type: event.type, replica: event.replica, detail: event.detail }),
  })
  await requestor.agent.offerBook.waitFor(providerCount, () => true, { signal: AbortSignal.timeout(60_000) })
  return { dir, devnet, services, imageId, archive, events, gateways: [], cannon: startCannon() }
}

async function measure(bench: Bench): Promise<Record<string, unknown>> {
  const phases: Record<string, number> = {}
  let phaseStart = performance.now()
  const phase = (name: string) => {
    phases[name] = round((performance.now() - phaseStart) / 1000)
    phaseStart = performance.now()
  }
  const { imageId } = bench
  // 3. Deploys of one replica: the httpd site, the keep-alive server, and a second httpd site.
  const site = await timedDeploy(bench, spec('site', imageId, 'solo', 1, httpdArgs))
  const keepAlive = await timedDeploy(bench, spec('keep-alive', imageId, 'solo', 1, keepAliveArgs))
  const again = await timedDeploy(bench, spec('site-again', imageId, 'solo', 1, httpdArgs))
  const deployMs = [site.ms, keepAlive.ms, again.ms].map(round)
  log(`deploy of one replica: ${deployMs.join(', ')} ms`)
  phase('deploys')

  // 1. Load, straight and through a gateway.
  await writeFile(join(bench.dir, 'www', 'hearth-variant'), page)
  const httpdArgsNative = ['httpd', '-f', '-p', '127.0.0.1:PORT', '-h', join(bench.dir, 'www')]
  const ncArgsNative = ['nc', '-ll', '-p', 'PORT', '127.0.0.1', '-e', 'sh', '-c', keepAliveScript]
  const servers: Native[] = []
  let closing: Comparison
  let keepAliveComparison: Comparison
  try {
    const straight = async (args: string[]) => {
      const { cgroup, why } = await replicaCgroup()
      if (why !== undefined) log(`  no cgroup for the straight server (${why}): its baseline runs without the replica's CPU limit`)
      const limited = await startNative(args, cgroup)
      const free = await startNative(args)
      servers.push(limited, free)
      return { server: limited.port, free: free.port, limited: cgroup !== undefined }
    }
    closing = await compare(bench.cannon, 'busybox httpd', await straight(httpdArgsNative), await gatewayPair(bench, site.service), false)
    keepAliveComparison = await compare(bench.cannon, 'keep-alive sh', await straight(ncArgsNative), await gatewayPair(bench, keepAlive.service), true)
    const paths = bench.gateways.flatMap((gateway) => gateway.stats().replicas.map((replica) => replica.path))
    log(`  connections made by the gateways: ${paths.join(', ')}`)
  } finally {
    for (const server of servers) await server.stop()
  }
  for (const gateway of bench.gateways.splice(0)) await gateway.close()
  phase('load')
  await Promise.all([site.service.remove(), keepAlive.service.remove(), again.service.remove()])
  phase('remove')

  // 2. Failover, and the deploy of two replicas.
  const pair = await timedDeploy(bench, spec('pair', imageId, 'eu', 2, httpdArgs))
  const gateway = await gatewayFor(bench, pair.service, 'eu')
  const failovers: FailoverRun[] = []
  for (let run = 0; run < runs; run++) {
    for (let i = 0; i < 200 && pair.service.status().replicas.filter((r) => r.state === 'serving').length < 2; i++) await sleep(100)
    failovers.push(await failover(bench, pair.service, gateway))
    const f = failovers[run]!
    log(`  failover run ${run + 1}: ${f.failed} failed of ${f.answered}, gateway last sent ${f.lastSentMs} ms, down ${f.downMs} ms, replaced ${f.replacedMs} ms, replacement serves ${f.replacementServesMs} ms`)
  }
  phase('failover')
  const fm = (key: keyof FailoverRun) => round(median(failovers.map((f) => f[key])))
  return {
    runs,
    seconds,
    connections,
    load: { closingServer: closing, keepAliveServer: keepAliveComparison },
    failover: {
      rate: Number(values.rate),
      failedRequests: failovers.map((f) => f.failed),
      answered: failovers.map((f) => f.answered),
      achievedRps: failovers.map((f) => f.achievedRps),
      victimShareBefore: failovers.map((f) => f.victimShareBefore),
      retries: failovers.map((f) => f.retries),
      lastSentMs: fm('lastSentMs'),
      outOfRotationMs: fm('outOfRotationMs'),
      downMs: fm('downMs'),
      replacedMs: fm('replacedMs'),
      replacementServesMs: fm('replacementServesMs'),
    },
    deploy: { oneReplicaMs: round(median(deployMs)), oneReplicaRunsMs: deployMs, twoReplicasMs: round(pair.ms), replaceMs: fm('replacedMs') },
    phaseSeconds: phases,
  }
}

function print(report: Record<string, unknown>): void {
  const { load, failover: f, deploy } = report as { load: Record<string, Comparison>; failover: Record<string, unknown>; deploy: Record<string, unknown> }
  const yes = (met: boolean) => (met ? 'met' : 'not met')
  for (const [name, c] of Object.entries({ 'busybox httpd (closes every connection)': load.closingServer!, 'keep-alive sh server (busybox nc)': load.keepAliveServer! })) {
    log(`${name}, ${connections} connections, ${seconds} s, medians of ${runs}:`)
    const straightLine = (s: Straight) => `${s.rps} req/s, p50 ${s.p50Ms} ms, p99 ${s.p99Ms} ms; light load p50 ${s.lightLoadMicros.p50} µs, p99 ${s.lightLoadMicros.p99} µs`
    log(`  straight, ${c.direct.limited ? 'one core as the replica has' : 'no limit (none could be set)'}: ${straightLine(c.direct)}`)
    log(`  straight, no limit: ${straightLine(c.directUnlimited)}`)
    for (const [way, g] of [['gateway, direct links', c.gateway], ['gateway, tunnels', c.gatewayTunnels]] as const) {
      log(`  ${way}: ${g.rps} req/s, p50 ${g.p50Ms} ms, p99 ${g.p99Ms} ms, ${g.cpuMicrosPerRequest} µs CPU per request in this process`)
      log(`    / straight throughput ${g.throughputRatio} (aim >= 0.7: ${yes(g.aimsMet.throughput)}); added p50 ${g.addedP50Ms} ms (aim < 1: ${yes(g.aimsMet.p50)}), p99 ${g.addedP99Ms} ms (aim < 5: ${yes(g.aimsMet.p99)})`)
      log(`    light load: p50 ${g.lightLoad.micros.p50} µs, p99 ${g.lightLoad.micros.p99} µs; added p50 ${g.lightLoad.addedP50Ms} ms, p99 ${g.lightLoad.addedP99Ms} ms`)
    }
  }
  log(`failover at ${String(f.rate)} req/s, two replicas, one provider stopped (medians of ${runs}, ms from the stop):`)
  log(`  failed requests ${JSON.stringify(f.failedRequests)} of ${JSON.stringify(f.answered)} answered (${JSON.stringify(f.achievedRps)} req/s achieved); gateway retries ${JSON.stringify(f.retries)}`)
  log(`  the lost replica's share of requests before the stop ${JSON.stringify(f.victimShareBefore)}`)
  log(`  gateway last sent to the lost replica ${String(f.lastSentMs)} ms (0: not after the stop), out of its rotation ${String(f.outOfRotationMs)} ms; service marked it down ${String(f.downMs)} ms, replaced ${String(f.replacedMs)} ms; gateway first sent to the replacement ${String(f.replacementServesMs)} ms`)
  log(`deploy: one replica ${String(deploy.oneReplicaMs)} ms (runs ${JSON.stringify(deploy.oneReplicaRunsMs)}), two replicas ${String(deploy.twoReplicasMs)} ms; replacing a lost replica ${String(deploy.replaceMs)} ms from its provider's stop`)
  log(`(seconds by phase: ${JSON.stringify(report.phaseSeconds)})`)
}

async function main(): Promise<void> {
  if (!(await isStaticElf(busyboxPath).catch(() => false))) {
    log(`skipped: ${busyboxPath} is missing or not statically linked (Debian package busybox-static)`)
    if (values.json) console.log(JSON.stringify({ skipped: `${busyboxPath} missing` }))
    return
  }
  const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-services-'))
  let engine: TestEngine
  try {
    engine = await startTestEngine(join(dir, 'engine'))
  } catch (error) {
    const why = (error as Error).message.split('\n').join('; ')
    log(`skipped: ${why}`)
    if (values.json) console.log(JSON.stringify({ skipped: why }))
    await rm(dir, { recursive: true, force: true })
    return
  }
  const docker = createDockerRuntime({ socketPath: engine.socketPath })
  let bench: Bench | undefined
  try {
    await mkdir(join(dir, 'www'))
    const setUpAt = performance.now()
    bench = await setUp(dir, engine, docker)
    const setUpSeconds = round((performance.now() - setUpAt) / 1000)
    const report = await measure(bench)
    report.phaseSeconds = { setUp: setUpSeconds, ...(report.phaseSeconds as Record<string, number>) }
    if (values.json) console.log(JSON.stringify(report))
    else print(report)
  } finally {
    bench?.cannon.close()
    bench?.services.close()
    for (const gateway of bench?.gateways ?? []) await gateway.close()
    await bench?.devnet.stop()
    await docker.close()
    await engine.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
