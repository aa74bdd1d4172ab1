/**
 * A long-running service on the testbed (src/testbed), every node a `hearth` process in a host of its own in one of
 * three regions (eu, us, asia; tens of milliseconds apart): the chain, a relay, five providers hosting services
 * (`--services --region R`; two in eu, two in us, one in asia), the owner's `hearth requestor start` (with its own
 * gateway, for eu) and a `hearth gateway` in us and in asia, and a client host per region. The site is busybox httpd
 * (a real server nobody on the team wrote) serving a static file from a container image, one replica per region.
 *
 * Every client gets the file byte for byte from the replica in its own region, through any gateway; a replica reaches
 * no testbed host (only its own loopback); a replica's provider killed with SIGKILL under a steady load costs no GET,
 * and a replacement in its region takes over; a rolling update under load costs no GET, and requests after it get the
 * new version; a POST in flight when its replica dies gets an error, not a retry elsewhere; `hearth service rm`
 * settles, and what it says was paid is what the chain's escrows and the providers' books say.
 *
 * One podman service (outside the testbed) runs every provider's containers: a unix socket on the shared filesystem
 * reaches across network namespaces, and each replica gets a network namespace of its own with only a loopback.
 */
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { importRootfsArchive, saveImageArchive } from '../src/exec/docker-images.ts'
import { createDockerRuntime, type DockerRuntime } from '../src/exec/docker-runtime.ts'
import { buildBusyboxRootfs, startTestEngine, type TestEngine } from '../src/exec/docker-test-image.ts'
import type { EarningsReport } from '../src/provider/earnings.ts'
import type { RequestorNodeStatus } from '../src/requestor/requestor-api.ts'
import type { ServiceStatus } from '../src/requestor/services.ts'
import { fileTestbed, hearthBin, type Started, type TestbedNodes } from './support/testbed-nodes.ts'

const clientScript = fileURLToPath(new URL('./support/service-client.ts', import.meta.url))
const escrowScript = fileURLToPath(new URL('./support/read-escrows.ts', import.meta.url))
const regions = ['eu', 'us', 'asia'] as const
type Region = (typeof regions)[number]
const providerHosts: { name: string; region: Region }[] = [
  { name: 'eu1', region: 'eu' }, { name: 'eu2', region: 'eu' }, { name: 'us1', region: 'us' }, { name: 'us2', region: 'us' }, { name: 'asia1', region: 'asia' },
]
/**
 * GETs per second of the steady load (one client). On a 2-core machine that runs the whole testbed beside other tests
 * and CPU hogs, busybox httpd closing every connection costs a new tunnel per request (several ms of CPU each, see
 * bench/services.ts): 20/s is what it sustains there; `SERVICE_LOAD_RATE=200` asks for the rate elsewhere.
 */
const loadRate = Number(process.env['SERVICE_LOAD_RATE'] ?? 20)
const port = 8080

let engine: TestEngine | undefined
let docker: DockerRuntime | undefined
// Registered before the testbed's own cleanup, so that it runs first: nodes, then the engine and what it still runs.
after(async () => {
  opened.nodes?.stopAll()
  // Replicas of killed providers outlive them: the engine removes what is left.
  const api = docker?.api
  const left = await api?.json<{ Id: string }[]>({ method: 'GET', path: '/containers/json', query: { all: 'true' }, timeoutMs: 30_000 }, 'list containers').catch(() => [])
  for (const { Id } of left ?? []) await api?.json({ method: 'DELETE', path: `/containers/${Id}`, query: { force: 'true' }, timeoutMs: 30_000 }, 'remove a container').catch(() => undefined)
  await docker?.close()
  await engine?.stop()
})

const opened: { nodes?: TestbedNodes } = {}

const { testbed, dir, nodes } = await fileTestbed('hs', 'service', {
  regions: { eu: {}, us: {}, asia: {} },
  rttMs: { 'eu-us': 40, 'eu-asia': 60, 'us-asia': 50 },
  hosts: [
    { name: 'chain', region: 'eu' }, { name: 'relay', region: 'eu' }, { name: 'req', region: 'eu' },
    { name: 'gw-us', region: 'us' }, { name: 'gw-asia', region: 'asia' },
    ...providerHosts, ...regions.map((region) => ({ name: `cl-${region}`, region })),
  ],
})
opened.nodes = nodes
const address = (host: string): string => testbed.hosts[host]!.address
/** The gateway serving each region's clients (the owner's own for eu), and its URL. */
const gatewayHost: Record<Region, string> = { eu: 'req', us: 'gw-us', asia: 'gw-asia' }
const gatewayUrl = (region: Region): string => `http://${address(gatewayHost[region])}:${port}`

let deployment: string
const requestorDir = join(dir, 'requestor')
let requestorAddress: string
const pages: Record<'v1' | 'v2', Buffer> = { v1: Buffer.alloc(0), v2: Buffer.alloc(0) }
const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex')
/** Provider processes by host, and provider address (lower case) → host. */
const providers = new Map<string, Started<{ address: string }>>()
const hostOfProvider = new Map<string, string>()
const events: string[] = []
/** What `hearth service deploy` answered. */
let deployed: ServiceStatus

/**
 * The site's image: busybox, the page (a static file of 48 KiB) at /www/index.html, /www/healthz, and two CGI
 * programs: `upload` reads the whole request body before it answers; `reach` tries a TCP connection to the replica's
 * own port and to every testbed host that listens (the gateways, the chain, the relay, a provider) and says what came of
 * each. Saved as a `docker save` archive next to the service file.
 */
async function siteImage(version: 'v1' | 'v2'): Promise<void> {
  pages[version] = Buffer.concat([Buffer.from(`<!doctype html><title>site ${version}</title><pre>\n`), Buffer.from(randomBytes(24 * 1024).toString('hex')), Buffer.from('\n</pre>\n')])
  const stage = join(dir, `stage-${version}`)
  await mkdir(join(stage, 'www', 'cgi-bin'), { recursive: true })
  await writeFile(join(stage, 'www', 'index.html'), pages[version])
  await writeFile(join(stage, 'www', 'healthz'), `${version}\n`)
  const targets = [`127.0.0.1:${port}`, ...Object.values(gatewayHost).map((host) => `${address(host)}:${port}`), `${address('chain')}:8545`, `${address('relay')}:7691`, `${address('eu1')}:7690`]
  const cgi = {
    upload: '#!/bin/sh\ncat >/dev/null\nprintf \'Content-Type: text/plain\\r\\n\\r\\ngot\\n\'\n',
    reach: `#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nfor t in ${targets.join(' ')}; do\n  out=$(nc -w 3 \${t%:*} \${t#*:} -e /bin/true 2>&1)\n  echo "$t $? $out"\ndone\n`,
  }
  for (const [name, text] of Object.entries(cgi)) await writeFile(join(stage, 'www', 'cgi-bin', name), text, { mode: 0o755 })
  await chmod(join(stage, 'www'), 0o755)
  const rootfs = await buildBusyboxRootfs(join(dir, `rootfs-${version}`), `site-${version}`)
  execFileSync('tar', ['-C', stage, '--owner=0', '--group=0', '--numeric-owner', '-rf', rootfs, './www'])
  const id = await importRootfsArchive(docker!, rootfs, `hearth-site-${version}`)
  await saveImageArchive(docker!, id, join(dir, `site-${version}.tar`))
  const gateways = await Promise.all(['gw-us', 'gw-asia'].map(gatewayAddress))
  await writeFile(join(dir, `site-${version}.json`), JSON.stringify({
    name: 'site', version, runtime: 'docker', image: `site-${version}.tar`, port,
    args: ['httpd', '-f', '-vv', '-p', '${PORT}', '-h', '/www'],
    replicas: { perRegion: { eu: 1, us: 1, asia: 1 } },
    health: { path: '/healthz', intervalMs: 1000, timeoutMs: 5000, failuresBeforeDown: 2 },
    // Ten minutes, longer than the test: each escrow holds ten minutes of the price, not a day's.
    agreementSec: 600,
    gateways,
  }))
}

async function gatewayAddress(host: string): Promise<string> {
  const printed = await testbed.run(host, process.execPath, [hearthBin, 'gateway', '--print-address', '--data-dir', join(dir, host)], { timeoutMs: 60_000 })
  assert.equal(printed.code, 0, printed.stderr)
  return (JSON.parse(printed.stdout) as { address: string }).address
}

/** `hearth ARGS --data-dir REQUESTOR --json` on the owner's host (its local API is that host's 127.0.0.1). */
async function owner<T>(...args: string[]): Promise<T> {
  const done = await testbed.run('req', process.execPath, [hearthBin, ...args, '--data-dir', requestorDir, '--json'], { timeoutMs: 300_000 })
  assert.equal(done.code, 0, `hearth ${args.join(' ')}: ${done.stderr}\n${events.slice(-20).join('\n')}`)
  return JSON.parse(done.stdout) as T
}

const serviceStatus = (): Promise<ServiceStatus> => owner<ServiceStatus>('service', 'status', 'site')

async function until<T>(what: string | (() => string), check: () => Promise<T | undefined>, timeoutMs = 180_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) assert.fail(`${typeof what === 'string' ? what : what()}\n${events.slice(-20).join('\n')}`)
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}

interface Answer { url: string; status: number; replica: string; version: string; body: string }

/** GETs from a client host: each answer with its body (base64). */
async function getFrom(client: string, ...urls: string[]): Promise<Answer[]> {
  const done = await testbed.run(client, process.execPath, ['--import', 'tsx', clientScript, 'get', ...urls], { timeoutMs: 120_000 })
  assert.equal(done.code, 0, done.stderr)
  return done.stdout.trim().split('\n').map((line) => JSON.parse(line) as Answer)
}

type Sample = [startMs: number, endMs: number, status: number, replica: string, version: string, body: string]

/** A steady load of GETs from a client host at `rate` per second, until `stop` (which returns every request). */
async function startLoad(client: string, url: string, rate: number): Promise<{ stop(): Promise<Sample[]> }> {
  const child = testbed.exec(client, process.execPath, ['--import', 'tsx', clientScript, 'load', url, String(rate)], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const lines: string[] = []
  const started = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line)
      if (lines.length === 1) resolve()
    })
    child.once('exit', (code) => reject(new Error(`the load on ${client} exited with ${code}: ${stderr}`)))
  })
  await started
  const exited = new Promise((resolve) => child.once('exit', resolve))
  return {
    async stop() {
      child.stdin!.end('stop\n')
      await exited
      return (JSON.parse(lines[1] ?? '{"results":[]}') as { results: Sample[] }).results
    },
  }
}

/** Kills a provider's process with SIGKILL and waits until it is gone. */
async function kill(host: string): Promise<number> {
  const child: ChildProcess = providers.get(host)!.child
  const gone = new Promise((resolve) => child.once('exit', resolve))
  const at = Date.now()
  child.kill('SIGKILL')
  await gone
  return at
}

before(async () => {
  // Outside the testbed's folder: the engine's folder goes with the engine, once its containers are gone.
  const running = (engine = await startTestEngine(await mkdtemp(join(tmpdir(), 'hearth-testbed-service-engine-'))))
  docker = createDockerRuntime({ socketPath: running.socketPath })
  const chain = await nodes.chain('chain', providerHosts.length)
  deployment = chain.deployment
  const relay = await nodes.relay('relay')
  const regionsFile = join(dir, 'regions.json')
  await writeFile(regionsFile, JSON.stringify(Object.fromEntries(Object.values(testbed.hosts).map((host) => [`${host.address}/32`, host.region]))))
  await Promise.all(providerHosts.map(async ({ name, region }, i) => {
    const started = await nodes.provider(name, deployment, [relay.address], chain.keys[i], [
      '--services', '--docker-socket', running.socketPath, '--region', region,
      '--pricing-model', 'linear', '--start-htt', '0', '--per-cpu-hour-htt', '3.6', '--per-hour-htt', '0.36',
    ])
    providers.set(name, started)
    hostOfProvider.set(started.ready.address.toLowerCase(), name)
  }))
  await Promise.all([siteImage('v1'), siteImage('v2')])
  const requestor = await nodes.start<{ multiaddrs: string[]; address: string }>('req', [
    'requestor', 'start', '--data-dir', requestorDir, '--deployment', deployment, '--funder-key-file', chain.funderKey,
    '--bootstrap', relay.address, '--listen', `/ip4/${address('req')}/tcp/7692`,
    '--gateway', `${address('req')}:${port}`, '--gateway-service', 'site', '--gateway-region', 'eu', '--regions', regionsFile, '--health-path', '/healthz',
  ])
  requestor.child.stderr!.on('data', (chunk: Buffer) => events.push(...chunk.toString().split('\n').filter((line) => / replica /.test(line))))
  requestorAddress = requestor.ready.address
  const ownerAddress = requestor.ready.multiaddrs.find((a) => a.includes(`/ip4/${address('req')}/`))
  assert.ok(ownerAddress !== undefined, `the owner listens on its host's address: ${JSON.stringify(requestor.ready)}`)
  await until('the five offers reach the owner', async () => ((await owner<RequestorNodeStatus>('requestor', 'status')).offers >= providerHosts.length ? true : undefined))
  deployed = await owner<ServiceStatus>('service', 'deploy', join(dir, 'site-v1.json'))
  // The gateway processes serve once the owner answers them, that is once the service exists.
  await Promise.all((['us', 'asia'] as const).map((region) => nodes.start(gatewayHost[region], [
    'gateway', '--owner', ownerAddress, '--service', 'site', '--listen', `${address(gatewayHost[region])}:${port}`, '--region', region,
    '--regions', regionsFile, '--health-path', '/healthz', '--data-dir', join(dir, gatewayHost[region]),
  ])))
})

const regionOf = (status: ServiceStatus, replica: string): string | undefined => status.replicas.find((r) => r.id === replica)?.region
const replicaIn = (status: ServiceStatus, region: Region) => status.replicas.find((r) => r.region === region && r.state === 'serving')

test('every client gets the page byte for byte from the replica in its own region, through any gateway', async () => {
  assert.deepEqual(deployed.replicas.map((r) => r.region).sort(), ['asia', 'eu', 'us'])
  assert.ok(deployed.replicas.every((r) => r.state === 'serving' && r.version === 'v1'), JSON.stringify(deployed))
  for (const replica of deployed.replicas) assert.equal(providerHosts.find((p) => p.name === hostOfProvider.get(replica.provider.toLowerCase()))?.region, replica.region)
  // Each gateway process learns the routes from the owner: it answers once it has them.
  for (const region of regions) {
    await until(`the ${region} gateway serves`, async () => ((await getFrom(`cl-${region}`, `${gatewayUrl(region)}/healthz`))[0]!.status === 200 ? true : undefined))
  }
  const status = await serviceStatus()
  for (const region of regions) {
    const answers = await getFrom(`cl-${region}`, ...regions.map((gateway) => `${gatewayUrl(gateway)}/index.html`))
    for (const answer of answers) {
      assert.equal(answer.status, 200, `${answer.url}: ${Buffer.from(answer.body, 'base64').toString()}`)
      assert.ok(Buffer.from(answer.body, 'base64').equals(pages.v1), `${answer.url}: the page as the file holds it`)
      assert.equal(regionOf(status, answer.replica), region, `a client in ${region} was served by ${answer.replica} through ${answer.url}`)
    }
  }
})

test('a replica reaches no testbed host, only its own loopback', async () => {
  for (const region of regions) {
    const [answer] = await getFrom(`cl-${region}`, `${gatewayUrl(region)}/cgi-bin/reach`)
    const report = Buffer.from(answer!.body, 'base64').toString()
    assert.equal(answer!.status, 200, report)
    const lines = report.trim().split('\n').map((line) => line.split(' '))
    // The replica's own server answers on its loopback: the probe works, and only that connects.
    assert.deepEqual(lines[0]!.slice(0, 2), [`127.0.0.1:${port}`, '0'], report)
    assert.equal(lines.length, 7, report)
    for (const [target, code] of lines.slice(1)) assert.notEqual(code, '0', `the replica in ${region} connected to ${target}:\n${report}`)
  }
})

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const showSample = (s: Sample): string => `${new Date(s[0]).toISOString()} +${s[1] - s[0]} ms: ${s[2]} ${s[3]} ${s[4]} ${s[5].slice(0, 80)}`
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN

/** The replica serving in `region` other than `old`, once the owner has one. */
const replacementOf = (region: Region, old: string) => async () => {
  const replica = replicaIn(await serviceStatus(), region)
  return replica !== undefined && replica.id !== old ? replica : undefined
}

test('a replica\'s provider killed with SIGKILL under steady load: no GET fails, and a replacement in its region takes over', async (t) => {
  const victim = replicaIn(await serviceStatus(), 'us')!
  const victimHost = hostOfProvider.get(victim.provider.toLowerCase())!
  const load = await startLoad('cl-us', `${gatewayUrl('us')}/index.html`, loadRate)
  await sleep(5_000)
  const killedAt = await kill(victimHost)
  const replacement = await until('a replacement serves in us', replacementOf('us', victim.id))
  const replacedAt = Date.now()
  // The us gateway learns the new route from the owner; the load goes on until the replacement has served it a while.
  let last = ''
  await until(() => `the us client is served by the replacement ${replacement.id} (it was served by:${last})`, async () => {
    const [answer] = await getFrom('cl-us', `${gatewayUrl('us')}/index.html`)
    last += ` ${answer!.status} ${answer!.replica}`
    return answer!.replica === replacement.id ? true : undefined
  }, 60_000)
  await sleep(3_000)
  const samples = await load.stop()

  const failed = samples.filter((s) => s[2] !== 200 || s[5] !== sha(pages.v1))
  assert.deepEqual(failed.map(showSample), [], `${failed.length} of ${samples.length} GETs failed`)
  assert.equal(replacement.region, 'us')
  assert.notEqual(hostOfProvider.get(replacement.provider.toLowerCase()), victimHost)
  const afterKill = samples.filter((s) => s[0] > killedAt)
  assert.ok(afterKill.length > 0)
  assert.deepEqual(afterKill.filter((s) => s[3] === victim.id).map(showSample), [], 'no answer from the killed replica')
  // The gateway sends the region's clients to the replacement once it has it: the last GETs are its.
  const firstByReplacement = samples.findIndex((s) => s[3] === replacement.id)
  assert.ok(firstByReplacement >= 0, 'the replacement served the load')
  assert.equal(samples.at(-1)![3], replacement.id)

  const span = (samples.at(-1)![0] - samples[0]![0]) / 1000
  const beforeKill = samples.filter((s) => s[1] < killedAt).map((s) => s[1] - s[0])
  const around = samples.filter((s) => s[0] <= killedAt + 2_000 && s[1] >= killedAt).map((s) => s[1] - s[0])
  const firstOther = afterKill.find((s) => s[3] !== victim.id)
  t.diagnostic(`load: ${samples.length} GETs in ${span.toFixed(1)} s (${(samples.length / span).toFixed(0)}/s asked ${loadRate}/s), none failed; ` +
    `latency before the kill: median ${median(beforeKill)} ms; requests in flight at the kill or in the 2 s after: max ${Math.max(...around)} ms; ` +
    `first answer started after the kill: +${firstOther === undefined ? '?' : firstOther[1] - killedAt} ms from replica ${firstOther?.[3]}; ` +
    `replacement serving (owner's status): ${seconds(replacedAt - killedAt)}; first answer by it: +${seconds(samples[firstByReplacement]![1] - killedAt)}`)
})

test('a rolling update under load fails no GET, and the GETs after it get the new version', async (t) => {
  const rate = Math.max(1, Math.round(loadRate / 3))
  const loads = await Promise.all(regions.map((region) => startLoad(`cl-${region}`, `${gatewayUrl(region)}/index.html`, rate)))
  await sleep(3_000)
  const startedAt = Date.now()
  const updated = await owner<ServiceStatus>('service', 'update', 'site', join(dir, 'site-v2.json'))
  const doneAt = Date.now()
  await sleep(3_000)
  const byRegion = await Promise.all(loads.map((load) => load.stop()))
  // The region of each GET's client goes where the version header was not given (a failed GET).
  const samples = byRegion.flatMap((list, i) => list.map((s): Sample => [s[0], s[1], s[2], s[3] || `(client in ${regions[i]})`, s[4], s[5]]))

  const body = { [sha(pages.v1)]: 'v1', [sha(pages.v2)]: 'v2' }
  const failed = samples.filter((s) => s[2] !== 200 || body[s[5]] === undefined || body[s[5]] !== s[4])
  assert.deepEqual(failed.map(showSample), [], `${failed.length} of ${samples.length} GETs failed`)
  assert.ok(samples.some((s) => s[4] === 'v1'), 'the load began on v1')
  const late = samples.filter((s) => s[0] > doneAt)
  assert.ok(late.length > 0)
  assert.deepEqual(late.filter((s) => s[4] !== 'v2').map(showSample), [], 'GETs sent after the update get v2')
  assert.deepEqual(updated.replicas.map((r) => [r.region, r.version, r.state]).sort(), [['asia', 'v2', 'serving'], ['eu', 'v2', 'serving'], ['us', 'v2', 'serving']])
  const status = await serviceStatus()
  for (const region of regions) {
    const [answer] = await getFrom(`cl-${region}`, `${gatewayUrl(region)}/index.html`)
    assert.ok(Buffer.from(answer!.body, 'base64').equals(pages.v2), `${region}: the new page`)
    assert.equal(answer!.version, 'v2')
    assert.equal(regionOf(status, answer!.replica), region)
  }
  t.diagnostic(`update under ${regions.length} × ${rate} GET/s: ${samples.length} GETs, none failed; the update took ${seconds(doneAt - startedAt)}`)
})

test('a POST in flight when its replica dies gets an error, never a silent retry elsewhere', async (t) => {
  const victim = replicaIn(await serviceStatus(), 'eu')!
  const victimHost = hostOfProvider.get(victim.provider.toLowerCase())!
  const child = testbed.exec('cl-eu', process.execPath, ['--import', 'tsx', clientScript, 'post', `${gatewayUrl('eu')}/cgi-bin/upload`, '100000'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: Record<string, string>[] = []
  const sent = new Promise<void>((resolve) => createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(JSON.parse(line) as Record<string, string>)
    if (lines.length === 1) resolve()
  }))
  const exited = new Promise((resolve) => child.once('exit', resolve))
  await sent
  // Killed once the request is at the replica (its server logged it), not before.
  await until('the POST reaches the replica', async () => {
    const logs = await owner<{ replica: string; log: string }[]>('service', 'logs', 'site', '--replica', victim.id, '--tail', '65536')
    return logs[0]?.log.includes('url:/cgi-bin/upload') === true ? true : undefined
  }, 60_000)
  const killedAt = await kill(victimHost)
  await exited
  const outcome = lines.find((line) => line['outcome'] !== undefined)?.['outcome']
  // The CGI program answers 200 only with the whole body: an answer from another replica would be a silent retry.
  assert.ok(outcome === 'reset' || outcome === 'status 502', `the POST ended with ${outcome}`)
  const replacement = await until('a replacement serves in eu', replacementOf('eu', victim.id))
  assert.notEqual(hostOfProvider.get(replacement.provider.toLowerCase()), victimHost)
  t.diagnostic(`the POST ended with ${outcome}; the eu replica was replaced in ${seconds(Date.now() - killedAt)} (at most; polled)`)
})

test('removing the service settles every agreement: what rm says was paid is what the chain and the providers\' books hold', async (t) => {
  const removed = await owner<{ name: string; paid: { agreementId: string; paidWei: string }[] }>('service', 'rm', 'site')
  assert.deepEqual((await owner<RequestorNodeStatus>('requestor', 'status')).services, [])
  const ids = removed.paid.map((p) => p.agreementId)
  // Three first placements and two replacements, each an agreement of its own.
  assert.ok(new Set(ids).size === ids.length && ids.length >= 5, JSON.stringify(removed))
  const read = await testbed.run('chain', process.execPath, ['--import', 'tsx', escrowScript, deployment, requestorAddress, ...ids], { timeoutMs: 120_000 })
  assert.equal(read.code, 0, read.stderr)
  const escrows = JSON.parse(read.stdout) as Record<string, { provider: string; claimedWei: string } | null>
  for (const { agreementId, paidWei } of removed.paid) assert.equal(escrows[agreementId]?.claimedWei, paidWei, `agreement ${agreementId}: paid as the chain records`)
  const alive = new Set([...providers].filter(([, p]) => p.child.exitCode === null && p.child.signalCode === null).map(([host]) => host))
  let total = 0n
  for (const { name: host } of providerHosts) {
    const mine = ids.filter((id) => hostOfProvider.get(escrows[id]!.provider) === host)
    // A live provider's claims are counted once confirmed; a killed one's book is as it was left.
    const book = await until(`${host}'s claims are confirmed`, async () => {
      const done = await testbed.run(host, process.execPath, [hearthBin, 'provider', 'earnings', '--data-dir', join(dir, host), '--json'], { timeoutMs: 60_000 })
      assert.equal(done.code, 0, done.stderr)
      const report = JSON.parse(done.stdout) as EarningsReport
      return !alive.has(host) || BigInt(report.totals.confirmingWei) === 0n ? report : undefined
    }, 60_000)
    const booked = book.agreements.filter((a) => a.requestor.toLowerCase() === requestorAddress.toLowerCase())
    for (const id of mine) {
      const entry = booked.find((a) => a.agreementId === id)
      assert.ok(entry !== undefined, `${host} has agreement ${id} in its book`)
      assert.equal(entry.claimedWei, escrows[id]!.claimedWei, `${host}, agreement ${id}: its book says what the chain says`)
      if (alive.has(host)) assert.ok(BigInt(entry.claimedWei) > 0n, `${host}, agreement ${id}: uptime was paid for`)
      total += BigInt(entry.claimedWei)
    }
    for (const entry of booked) if (BigInt(entry.claimedWei) > 0n) assert.ok(mine.includes(entry.agreementId), `${host} was paid under ${entry.agreementId}, which rm does not name`)
  }
  assert.equal(total, removed.paid.reduce((sum, p) => sum + BigInt(p.paidWei), 0n))
  t.diagnostic(`${ids.length} agreements settled, ${total} wei paid in all (${[...alive].join(', ')} alive)`)
})
