/**
 * `node --import tsx bench/services-testbed.ts [--json] [--runs 3] [--seconds 5] [--connections 10] [--probe 50] [--kib 1]
 * [--tunnels]`:
 * a long-running service reached through a gateway across regions, on the testbed (src/testbed; needs root,
 * iproute2, iptables and a container engine (podman), as test/testbed-service.test.ts does). Two regions, eu and us,
 * 40 ms apart: the chain, a relay and the owner's node (`hearth requestor start` with its own gateway, for eu) in eu,
 * one provider hosting services (`--services --region us`) on `us1`, and a client host `cl-eu` in eu. The service is
 * busybox httpd from a container image serving a small static file (`--kib`), one replica, in us.
 *
 * From cl-eu, taking turns, each after a 1 s warm-up: autocannon (`--connections`, `--seconds`; run in the client's
 * namespace by lib/cannon.ts's child) and then `--probe` GETs one after another, each timed in µs (light load), two
 * ways: straight to the same busybox httpd run natively on us1 (its testbed address, port 7811: the cross-region
 * baseline), and through the owner's gateway on `req` (eu), which reaches the replica in us (by default over a direct
 * link, TCP and TLS: the TCP connections between req and us1 after each load tell which path, by us1's port).
 * busybox httpd closes every connection, so each request opens a connection (straight) or a link to the replica
 * (through the gateway). Reported: req/s, p50/p99 ms, the throughput ratio gateway/straight and the latency the
 * gateway adds under load and at light load; medians of `--runs`. Skipped where the testbed or podman cannot run.
 *
 * The provider listens on 0.0.0.0, as `hearth provider start` does by default. `--tunnels` starts the owner's node with
 * `--no-direct-links`: its gateway then reaches the replica through libp2p tunnels, for comparison.
 */
import { execFileSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { instanceLabel } from '../src/exec/docker-container.ts'
import { importRootfsArchive, saveImageArchive } from '../src/exec/docker-images.ts'
import { createDockerRuntime, type DockerRuntime } from '../src/exec/docker-runtime.ts'
import { buildBusyboxRootfs, busyboxPath, isStaticElf, startTestEngine, type TestEngine } from '../src/exec/docker-test-image.ts'
import { keyFileName } from '../src/identity/node-identity.ts'
import { build, missingPrerequisites, type Testbed } from '../src/testbed/testbed.ts'
import { hearthBin, testbedNodes, type Started, type TestbedNodes } from '../test/support/testbed-nodes.ts'
import { startCannon, type Cannon, type CannonSummary } from './lib/cannon.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '10' },
    probe: { type: 'string', default: '50' },
    kib: { type: 'string', default: '1' },
    tunnels: { type: 'boolean', default: false },
  },
})
const log = lineLogger(values.json)
const runs = Number(values.runs)
const seconds = Number(values.seconds)
const connections = Number(values.connections)
const probeCount = Number(values.probe)
const rttMs = 40
const tunnelsOnly = values.tunnels
const repoRoot = resolve(import.meta.dirname, '..')
/** The gateway's port on req, the replica's server port (inside its container), and the native server's on us1. */
const gatewayPort = 8080
const straightPort = 7811
const libp2pPort = 7690
const pagePath = '/index.html'

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms))

/**
 * `--probe` light-load GETs, one after another (keep-alive where the third argument is 1): the µs of each and the
 * body's sha256; fails on anything but 200. Plain JS for `node -e` in a host's namespace.
 */
const probeScript = `
const http = require('http'); const crypto = require('crypto')
const [url, count, keepAlive] = process.argv.slice(1)
const agent = keepAlive === '1' ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false
const get = () => new Promise((resolve, reject) => {
  const req = http.request(url, { agent, timeout: 30000 }, (res) => {
    const chunks = []; res.on('data', (c) => chunks.push(c)); res.on('error', reject)
    res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }))
  })
  req.on('timeout', () => req.destroy(new Error('no answer in 30 s'))); req.on('error', reject); req.end()
})
;(async () => {
  const micros = []; let sha = ''
  for (let i = 0; i < Number(count); i++) {
    const t = process.hrtime.bigint(); const answer = await get()
    micros.push(Number(process.hrtime.bigint() - t) / 1000)
    if (answer.status !== 200) throw new Error('status ' + answer.status + ': ' + answer.body.toString().slice(0, 200))
    sha = crypto.createHash('sha256').update(answer.body).digest('hex')
  }
  if (agent) agent.destroy()
  console.log(JSON.stringify({ micros, sha }))
})().catch((error) => { console.error(error.message); process.exit(1) })`

/** Median ms of `count` TCP connects to host:port (the round trip between the regions, plus a little). */
const connectScript = `
const net = require('net'); const [host, port, count] = process.argv.slice(1); const ms = []
const one = () => new Promise((resolve, reject) => { const t = performance.now(); const s = net.connect(Number(port), host, () => { ms.push(performance.now() - t); s.destroy(); resolve() }); s.on('error', reject) })
;(async () => { for (let i = 0; i < Number(count); i++) await one(); ms.sort((a, b) => a - b); console.log(JSON.stringify({ ms: ms[ms.length >> 1] })) })().catch((e) => { console.error(e.message); process.exit(1) })`

interface Site {
  testbed: Testbed
  dir: string
  nodes: TestbedNodes
  address(host: string): string
  /** The page's sha256 as the file holds it. */
  sha: string
  /** Processes started in the namespaces other than the nodes (the native server), killed at the end. */
  spawned: ChildProcess[]
  /** The owner's node's and the provider's logs so far (stderr). */
  logs: Record<string, () => string>
}

async function probe(site: Site, url: string, count: number, keepAlive: boolean): Promise<{ micros: number[]; sha: string }> {
  const done = await site.testbed.run('cl-eu', process.execPath, ['-e', probeScript, url, String(count), keepAlive ? '1' : '0'], { timeoutMs: 300_000 })
  if (done.code !== 0) throw new Error(`GET ${url} from cl-eu: ${done.stderr.trim()}`)
  return JSON.parse(done.stdout) as { micros: number[]; sha: string }
}

/** Until one GET of `url` from cl-eu answers 200 with the page. */
async function untilServes(site: Site, url: string, what: string): Promise<void> {
  let last = ''
  for (const deadline = Date.now() + 180_000; Date.now() < deadline; await sleep(500)) {
    const answer = await probe(site, url, 1, false).catch((error: Error) => ({ sha: '', error: error.message }))
    if (answer.sha === site.sha) return
    last = 'error' in answer ? answer.error : `a body other than the page (sha256 ${answer.sha})`
  }
  throw new Error(`${what} did not serve the page: ${last}`)
}

/** The image (busybox, the page at /www/index.html, /www/healthz), saved beside its service file; returns the file. */
async function siteService(docker: DockerRuntime, dir: string, page: Buffer): Promise<string> {
  const stage = join(dir, 'stage')
  await mkdir(join(stage, 'www'), { recursive: true, mode: 0o755 })
  await writeFile(join(stage, 'www', 'index.html'), page)
  await writeFile(join(stage, 'www', 'healthz'), 'ok\n')
  const rootfs = await buildBusyboxRootfs(join(dir, 'rootfs'), 'site')
  execFileSync('tar', ['-C', stage, '--owner=0', '--group=0', '--numeric-owner', '-rf', rootfs, './www'])
  const id = await importRootfsArchive(docker, rootfs, 'hearth-site-bench')
  await saveImageArchive(docker, id, join(dir, 'site.tar'))
  const file = join(dir, 'site.json')
  await writeFile(file, JSON.stringify({
    name: 'site', version: 'v1', runtime: 'docker', image: 'site.tar', port: gatewayPort,
    args: ['httpd', '-f', '-p', '${PORT}', '-h', '/www'],
    replicas: { perRegion: { us: 1 } },
    health: { path: '/healthz', intervalMs: 1000, timeoutMs: 5000, failuresBeforeDown: 2 },
    agreementSec: 600,
  }))
  return file
}

/** The provider on us1 hosting services in region us, as test/support/testbed-nodes.ts starts one, libp2p on 0.0.0.0. */
async function startProvider(site: Site, deployment: string, relay: string, key: string, socketPath: string): Promise<Started<{ address: string }>> {
  const dataDir = join(site.dir, 'us1')
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await writeFile(join(dataDir, keyFileName), key, { mode: 0o600 })
  return site.nodes.start('us1', [
    'provider', 'start', '--data-dir', dataDir, '--listen', `/ip4/0.0.0.0/tcp/${libp2pPort}`, '--no-idle', '--deployment', deployment,
    '--threads', '1', '--memory-gib', '1', '--disk-gib', '1', '--bootstrap', relay,
    '--services', '--docker-socket', socketPath, '--region', 'us',
    '--pricing-model', 'linear', '--start-htt', '0', '--per-cpu-hour-htt', '3.6', '--per-hour-htt', '0.36',
  ])
}

/** The chain, relay, provider on us1, the owner's node with its gateway on req, the service deployed, the native server on us1. */
async function setUp(site: Site, engine: TestEngine, docker: DockerRuntime, page: Buffer): Promise<{ gatewayUrl: string; straightUrl: string }> {
  const { testbed, dir, nodes, address } = site
  const chain = await nodes.chain('chain', 1)
  const relay = await nodes.relay('relay')
  const regionsFile = join(dir, 'regions.json')
  await writeFile(regionsFile, JSON.stringify(Object.fromEntries(Object.values(testbed.hosts).map((host) => [`${host.address}/32`, host.region]))))
  const provider = await startProvider(site, chain.deployment, relay.address, chain.keys[0]!, engine.socketPath)
  const serviceFile = await siteService(docker, dir, page)
  const requestorDir = join(dir, 'requestor')
  const requestor = await nodes.start('req', [
    'requestor', 'start', '--data-dir', requestorDir, '--deployment', chain.deployment, '--funder-key-file', chain.funderKey,
    '--bootstrap', relay.address, '--listen', `/ip4/${address('req')}/tcp/7692`,
    '--gateway', `${address('req')}:${gatewayPort}`, '--gateway-service', 'site', '--gateway-region', 'eu', '--regions', regionsFile, '--health-path', '/healthz',
    ...(tunnelsOnly ? ['--no-direct-links'] : []),
  ])
  site.logs = { req: requestor.stderr, us1: provider.stderr }
  const owner = async <T>(...args: string[]): Promise<T> => {
    const done = await testbed.run('req', process.execPath, [hearthBin, ...args, '--data-dir', requestorDir, '--json'], { timeoutMs: 300_000 })
    if (done.code !== 0) throw new Error(`hearth ${args.join(' ')}: ${done.stderr}`)
    return JSON.parse(done.stdout) as T
  }
  for (let i = 0; (await owner<{ offers: number }>('requestor', 'status')).offers < 1; i++) {
    if (i > 240) throw new Error('the provider\'s offer did not reach the owner\'s node')
    await sleep(500)
  }
  const deployed = await owner<{ replicas: { region: string; state: string }[] }>('service', 'deploy', serviceFile)
  log(`deployed: ${deployed.replicas.map((r) => `${r.region} ${r.state}`).join(', ')}`)
  // The same server, natively on us1's testbed address, serving the same page.
  const www = join(dir, 'www-native')
  await mkdir(www, { mode: 0o755 })
  await writeFile(join(www, 'index.html'), page)
  site.spawned.push(testbed.exec('us1', busyboxPath, ['httpd', '-f', '-p', `${address('us1')}:${straightPort}`, '-h', www], { stdio: 'ignore' }))
  const urls = { gatewayUrl: `http://${address('req')}:${gatewayPort}${pagePath}`, straightUrl: `http://${address('us1')}:${straightPort}${pagePath}` }
  await untilServes(site, urls.straightUrl, 'the native busybox httpd on us1')
  await untilServes(site, urls.gatewayUrl, 'the gateway on req')
  return urls
}

/**
 * TCP connections between req and us1 as `ss` lists them in both namespaces (established or in TIME-WAIT), by us1's
 * port: the direct-link listener's port where the gateway took direct links, libp2p's (7690) where tunnels.
 */
async function linksByPort(site: Site): Promise<Record<string, number>> {
  const req = site.address('req')
  const us1 = site.address('us1')
  const tally: Record<string, number> = {}
  for (const [host, us1Side] of [['req', 'peer'], ['us1', 'local']] as const) {
    const listed = await site.testbed.run(host, 'ss', ['-Htan'], { timeoutMs: 30_000 })
    for (const line of listed.stdout.split('\n')) {
      const [, , , local, peer] = line.trim().split(/\s+/)
      if (local === undefined || peer === undefined) continue
      const [mine, theirs] = us1Side === 'peer' ? [peer, local] : [local, peer]
      // Only connections req dialled to us1 (not the provider's dial to the owner's libp2p port, 7692).
      if (!mine.startsWith(`${us1}:`) || !theirs.startsWith(`${req}:`) || theirs.endsWith(':7692')) continue
      const port = mine.slice(us1.length + 1)
      tally[port] = (tally[port] ?? 0) + 1
    }
  }
  return tally
}

interface Way {
  rps: number
  p50Ms: number
  p99Ms: number
  failed: number
  lightLoadMs: { p50: number; p99: number }
  runsRps: number[]
}

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!

/** Both ways, taking turns, `runs` times, each load after a 1 s warm-up and followed by the light-load probe. */
async function measure(site: Site, cannon: Cannon, urls: { straight: string; gateway: string }): Promise<{ ways: Record<'straight' | 'gateway', Way>; links: Record<string, number>[] }> {
  const loads: Record<string, CannonSummary[]> = { straight: [], gateway: [] }
  const probes: Record<string, { p50: number; p99: number }[]> = { straight: [], gateway: [] }
  const links: Record<string, number>[] = []
  for (let run = 0; run < runs; run++) {
    for (const way of ['straight', 'gateway'] as const) {
      await cannon.run({ url: urls[way], connections, duration: 1 }).done
      loads[way]!.push(await cannon.run({ url: urls[way], connections, duration: seconds }).done)
      if (way === 'gateway') links.push(await linksByPort(site))
      const light = await probe(site, urls[way], probeCount, way === 'gateway')
      if (light.sha !== site.sha) throw new Error(`${way}: a body other than the page`)
      const sorted = [...light.micros].sort((a, b) => a - b)
      probes[way]!.push({ p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) })
    }
    const line = (way: string) => { const l = loads[way]![run]!; return `${Math.round(l.rps)} req/s, p50 ${l.p50} ms, p99 ${l.p99} ms` }
    log(`  run ${run + 1}: straight ${line('straight')}; gateway ${line('gateway')}`)
  }
  const way = (name: string): Way => ({
    rps: round(median(loads[name]!.map((l) => l.rps))),
    p50Ms: median(loads[name]!.map((l) => l.p50)),
    p99Ms: median(loads[name]!.map((l) => l.p99)),
    failed: loads[name]!.reduce((sum, l) => sum + l.errors + l.timeouts + l.non2xx, 0),
    lightLoadMs: { p50: round(median(probes[name]!.map((p) => p.p50)) / 1000), p99: round(median(probes[name]!.map((p) => p.p99)) / 1000) },
    runsRps: loads[name]!.map((l) => Math.round(l.rps)),
  })
  return { ways: { straight: way('straight'), gateway: way('gateway') }, links }
}

/** What the TCP connections, and the owner's log, say of the gateway's path to the replica. */
function pathOf(links: Record<string, number>[], ownerLog: string): string {
  const last = links.at(-1) ?? {}
  const [port, count] = Object.entries(last).sort((a, b) => b[1] - a[1])[0] ?? ['', 0]
  const listed = Object.entries(last).map(([p, n]) => `${p}: ${n}`).join(', ')
  const said = ownerLog.split('\n').find((line) => /direct link/.test(line))
  const why = said === undefined ? '' : `; the owner's log: "${said.trim()}"`
  if (port === '') return `unknown (no TCP connection between req and us1 found)${why}`
  if (port === String(libp2pPort)) return `libp2p tunnels (no direct link: TCP connections by us1's port after the last load: ${listed})${why}`
  return `direct links, TCP+TLS to us1:${port} (${count} connections listed after the last load, TIME-WAIT included; by us1's port: ${listed})${why}`
}

function report(ways: Record<'straight' | 'gateway', Way>, measuredRttMs: number, path: string, pageBytes: number): Record<string, unknown> {
  const { straight, gateway } = ways
  const figures = {
    bench: 'services-testbed', tunnelsOnly, rttMs, measuredConnectMs: round(measuredRttMs), pageBytes, runs, seconds, connections, probe: probeCount,
    straight, gateway, path,
    throughputRatio: round(gateway.rps / straight.rps),
    addedP50Ms: gateway.p50Ms - straight.p50Ms,
    addedP99Ms: gateway.p99Ms - straight.p99Ms,
    lightLoad: { addedP50Ms: round(gateway.lightLoadMs.p50 - straight.lightLoadMs.p50), addedP99Ms: round(gateway.lightLoadMs.p99 - straight.lightLoadMs.p99) },
  }
  const line = (w: Way) => `${w.rps} req/s, p50 ${w.p50Ms} ms, p99 ${w.p99Ms} ms${w.failed > 0 ? ` (${w.failed} failed)` : ''}; light load p50 ${w.lightLoadMs.p50} ms, p99 ${w.lightLoadMs.p99} ms (runs: ${w.runsRps.join(', ')} req/s)`
  log(`busybox httpd, ${pageBytes} B page, one replica in us; client and gateway in eu; eu-us RTT ${rttMs} ms (a TCP connect cl-eu → us1 takes ${figures.measuredConnectMs} ms)`)
  log(`${connections} connections, ${seconds} s, medians of ${runs}; light load: ${probeCount} GETs one after another; the gateway ${tunnelsOnly ? 'told to use tunnels only' : 'as by default'}`)
  log(`  straight (native httpd on us1): ${line(straight)}`)
  log(`  through the gateway on req: ${line(gateway)}`)
  log(`    gateway / straight throughput ${figures.throughputRatio}; added under load p50 ${figures.addedP50Ms} ms, p99 ${figures.addedP99Ms} ms; at light load p50 ${figures.lightLoad.addedP50Ms} ms, p99 ${figures.lightLoad.addedP99Ms} ms`)
  log(`  gateway → replica: ${path}`)
  return figures
}

/** Containers of the runtime (those the provider left, having been killed), then the engine. */
async function stopEngine(engine: TestEngine, docker: DockerRuntime): Promise<void> {
  const api = docker.api
  const filters = JSON.stringify({ label: [instanceLabel] })
  const left = await api.json<{ Id: string }[]>({ method: 'GET', path: '/containers/json', query: { all: 'true', filters }, timeoutMs: 30_000 }, 'list containers').catch(() => [])
  for (const { Id } of left) await api.json({ method: 'DELETE', path: `/containers/${Id}`, query: { force: 'true' }, timeoutMs: 30_000 }, 'remove a container').catch(() => undefined)
  await docker.close()
  await engine.stop()
}

function skip(why: string): void {
  log(`skipped: ${why}`)
  if (values.json) console.log(JSON.stringify({ bench: 'services-testbed', skipped: why }))
}

async function main(): Promise<void> {
  const missing = missingPrerequisites()
  if (missing.length > 0) return skip(`the testbed needs ${missing.join(', ')}`)
  if (!(await isStaticElf(busyboxPath).catch(() => false))) return skip(`${busyboxPath} is missing or not statically linked (Debian package busybox-static)`)
  const engineDir = await mkdtemp(join(tmpdir(), 'hearth-bench-services-testbed-engine-'))
  let engine: TestEngine
  try {
    engine = await startTestEngine(engineDir)
  } catch (error) {
    await rm(engineDir, { recursive: true, force: true })
    return skip((error as Error).message.split('\n').join('; '))
  }
  const docker = createDockerRuntime({ socketPath: engine.socketPath })
  const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-services-testbed-'))
  let testbed: Testbed | undefined
  let nodes: TestbedNodes | undefined
  let cannon: Cannon | undefined
  let site: Site | undefined
  try {
    testbed = await build({
      prefix: `bv${process.pid}`,
      regions: { eu: {}, us: {} },
      rttMs: { 'eu-us': rttMs },
      hosts: [{ name: 'chain', region: 'eu' }, { name: 'relay', region: 'eu' }, { name: 'req', region: 'eu' }, { name: 'us1', region: 'us' }, { name: 'cl-eu', region: 'eu' }],
    })
    nodes = testbedNodes(testbed, dir)
    const page = Buffer.alloc(Number(values.kib) * 1024, 'hearth bench page\n')
    const bed = testbed
    site = { testbed: bed, dir, nodes, address: (host) => bed.hosts[host]!.address, sha: createHash('sha256').update(page).digest('hex'), spawned: [], logs: {} }
    const setUpAt = performance.now()
    const urls = await setUp(site, engine, docker, page)
    log(`set up in ${round((performance.now() - setUpAt) / 1000)} s`)
    const connect = await testbed.run('cl-eu', process.execPath, ['-e', connectScript, site.address('us1'), String(straightPort), '10'], { timeoutMs: 60_000 })
    const measuredRttMs = (JSON.parse(connect.stdout) as { ms: number }).ms
    cannon = startCannon((nodeArgs) => bed.exec('cl-eu', process.execPath, nodeArgs, { stdio: ['pipe', 'pipe', 'inherit'], cwd: repoRoot }))
    const { ways, links } = await measure(site, cannon, { straight: urls.straightUrl, gateway: urls.gatewayUrl })
    const figures = report(ways, measuredRttMs, pathOf(links, site.logs['req']?.() ?? ''), page.length)
    if (values.json) console.log(JSON.stringify(figures))
  } finally {
    cannon?.close()
    for (const child of site?.spawned ?? []) if (child.exitCode === null) child.kill('SIGKILL')
    nodes?.stopAll()
    await stopEngine(engine, docker)
    // Down the namespaces: the native httpd and anything else left in them goes with its namespace's processes.
    await testbed?.down()
    await rm(dir, { recursive: true, force: true })
    await rm(engineDir, { recursive: true, force: true })
  }
}

await main()
