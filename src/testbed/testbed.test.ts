import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { build, down, missingPrerequisites, planTestbed, STATE_ROOT, type Testbed, type TestbedSpec } from './testbed.ts'

/*
 * The programs the tests run inside the testbed's namespaces, as `node -e` scripts (process.argv[1] is the first
 * argument). Servers print "listening" once they accept connections.
 */
const echoServer = `
require('net').createServer((s) => s.pipe(s)).listen(Number(process.argv[1]), () => console.log('listening'))`

/** Sends one byte at a time on one connection, waits for the echo, prints the round trips in ms as JSON. */
const pingClient = `
const [host, port, count] = process.argv.slice(1)
const socket = require('net').connect(Number(port), host, () => {
  socket.setNoDelay(true)
  const rtts = []
  let sent = 0n
  const ping = () => { sent = process.hrtime.bigint(); socket.write('x') }
  socket.on('data', () => {
    rtts.push(Number(process.hrtime.bigint() - sent) / 1e6)
    if (rtts.length < Number(count)) ping(); else { console.log(JSON.stringify(rtts)); socket.end() }
  })
  ping()
})`

/** Tells each client the address and port it came from. */
const sourceServer = `
require('net').createServer((s) => s.end(JSON.stringify({ address: s.remoteAddress.replace(/^::ffff:/, ''), port: s.remotePort })))
  .listen(Number(process.argv[1]), () => console.log('listening'))`

/** Connects to every HOST:PORT at once from one local port, prints what each server saw. */
const sourceClient = `
const net = require('net')
const [localPort, ...targets] = process.argv.slice(1)
Promise.all(targets.map((target) => new Promise((resolve, reject) => {
  const [host, port] = target.split(':')
  const socket = net.connect({ host, port: Number(port), localPort: Number(localPort) || undefined })
  let text = ''
  socket.on('data', (d) => { text += d })
  socket.on('end', () => resolve(JSON.parse(text)))
  socket.on('error', reject)
}))).then((seen) => console.log(JSON.stringify(seen)))`

/** Prints 'connected' or why not, waiting at most 1.5 s. */
const probeClient = `
const socket = require('net').connect(Number(process.argv[2]), process.argv[1])
const timer = setTimeout(() => { console.log('timeout'); process.exit(0) }, 1500)
socket.on('connect', () => { console.log('connected'); process.exit(0) })
socket.on('error', (e) => { clearTimeout(timer); console.log(e.code) })`

/** Receives one TCP stream, prints its length and sha256. */
const sinkServer = `
const hash = require('crypto').createHash('sha256')
let bytes = 0
require('net').createServer((s) => {
  s.on('data', (d) => { bytes += d.length; hash.update(d) })
  s.on('end', () => { console.log(JSON.stringify({ bytes, sha256: hash.digest('hex') })); process.exit(0) })
}).listen(Number(process.argv[1]), () => console.log('listening'))`

/** Sends N random bytes, prints their sha256. */
const sourceSender = `
const crypto = require('crypto')
const data = crypto.randomBytes(Number(process.argv[3]))
console.log(crypto.createHash('sha256').update(data).digest('hex'))
require('net').connect(Number(process.argv[2]), process.argv[1], function () { this.end(data) })`

/**
 * Sends to PEER:PORT from local PORT every 50 ms; prints 'ok' once the peer's datagrams get through (or 'no answer'
 * after 4 s), then keeps sending for half a second so that the peer hears this side too.
 */
const udpPuncher = `
const [peer, port] = process.argv.slice(1)
const socket = require('dgram').createSocket('udp4')
let timer
const finish = (word) => {
  console.log(word)
  clearTimeout(deadline)
  socket.removeAllListeners('message')
  setTimeout(() => { clearInterval(timer); socket.close() }, 500)
}
const deadline = setTimeout(() => finish('no answer'), 4000)
socket.on('message', (_m, from) => { if (from.address === peer) finish('ok') })
socket.bind(Number(port), () => { timer = setInterval(() => socket.send('punch', Number(port), peer), 50) })`

async function nodeOutput(testbed: Testbed, host: string, script: string, args: string[], timeoutMs = 30_000): Promise<string> {
  const result = await testbed.run(host, process.execPath, ['-e', script, ...args], { timeoutMs })
  assert.equal(result.code, 0, `node on ${host} failed: ${result.stderr}`)
  return result.stdout.trim()
}

/** Starts a server script in a host and resolves once it prints "listening". */
function startServer(testbed: Testbed, host: string, script: string, args: string[]): Promise<ChildProcess> {
  const child = testbed.exec(host, process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolvePromise, reject) => {
    child.stdout?.once('data', () => resolvePromise(child))
    child.once('exit', (code) => reject(new Error(`server on ${host} exited (${code}) before listening`)))
  })
}

function min(values: number[]): number {
  return Math.min(...values)
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? NaN
}

const missing = missingPrerequisites()
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false
const prefix = `hb${process.pid}`

describe('testbed plan', () => {
  const spec: TestbedSpec = {
    prefix: 'p',
    regions: { a: {}, b: { intraRttMs: 2 } },
    rttMs: { 'a-b': 80 },
    hosts: [{ name: 'x', region: 'a' }, { name: 'y', region: 'b', nat: 'cone' }],
  }

  it('gives public hosts an address of their own and NATed hosts a LAN behind a router', () => {
    const plan = planTestbed(spec)
    assert.deepEqual(plan.namespaces, ['p-x', 'p-y-gw', 'p-y'])
    assert.deepEqual(plan.hosts.map((h) => [h.address, h.publicAddress]), [['11.0.0.1', '11.0.0.1'], ['192.168.1.2', '11.0.0.2']])
    assert.deepEqual(plan.linkdArgs.slice(2, 8), ['--delay', 'a:a:2500', '--delay', 'a:b:40000', '--delay', 'b:b:1000'])
    assert.equal(planTestbed({ ...spec, publicCidr: '100.64.0.0/10' }).hosts[0]?.address, '100.64.0.1')
  })

  it('rejects a spec it cannot build, before touching anything', () => {
    assert.throws(() => planTestbed({ ...spec, rttMs: {} }), /no round trip between regions a and b/)
    assert.throws(() => planTestbed({ ...spec, hosts: [{ name: 'x', region: 'c' }] }), /region 'c'/)
    assert.throws(() => planTestbed({ ...spec, prefix: 'a-b' }), /prefix/)
    assert.throws(() => planTestbed({ ...spec, hosts: [{ name: 'y-gw', region: 'a' }, ...spec.hosts] }), /share namespace p-y-gw/)
    assert.throws(() => planTestbed({ ...spec, publicCidr: '11.0.0.0/30', hosts: [...spec.hosts, { name: 'z', region: 'a' }] }), /too few/)
  })
})

describe('testbed', { skip }, () => {
  let testbed: Testbed
  const servers: ChildProcess[] = []

  before(async () => {
    testbed = await build({
      prefix,
      regions: { a: {}, b: {} },
      rttMs: { 'a-b': 80 },
      hosts: [
        { name: 'a1', region: 'a' },
        { name: 'a2', region: 'a' },
        { name: 'b1', region: 'b' },
        { name: 'cone', region: 'a', nat: 'cone' },
        { name: 'coneb', region: 'b', nat: 'cone' },
        { name: 'sym', region: 'a', nat: 'symmetric' },
      ],
    })
    servers.push(await startServer(testbed, 'a1', echoServer, ['7000']))
    servers.push(await startServer(testbed, 'a1', sourceServer, ['7001']))
    servers.push(await startServer(testbed, 'b1', sourceServer, ['7001']))
  })

  after(async () => {
    for (const server of servers) server.kill('SIGKILL')
    await down(prefix)
  })

  it('delays packets by the round trip between regions', async (t) => {
    const a1 = testbed.hosts.a1?.address ?? ''
    const across = JSON.parse(await nodeOutput(testbed, 'b1', pingClient, [a1, '7000', '20'])) as number[]
    const within = JSON.parse(await nodeOutput(testbed, 'a2', pingClient, [a1, '7000', '20'])) as number[]
    t.diagnostic(`80 ms RTT: min ${min(across).toFixed(2)} median ${median(across).toFixed(2)}; ` +
      `5 ms RTT: min ${min(within).toFixed(2)} median ${median(within).toFixed(2)}`)
    // The minimum of many samples shows the configured delay even on a busy machine; medians and maxima would not.
    assert.ok(min(across) >= 64 && min(across) <= 96, `minimum RTT across regions ${min(across)} ms, expected 80`)
    assert.ok(min(within) >= 4 && min(within) <= 9, `minimum RTT within a region ${min(within)} ms, expected 5`)
  })

  it('lets a NATed host out under its router\'s address and nobody in', async () => {
    const { a1, b1, cone } = testbed.hosts
    assert.ok(a1 !== undefined && b1 !== undefined && cone !== undefined)
    const [seen] = JSON.parse(await nodeOutput(testbed, 'cone', sourceClient, ['0', `${a1.address}:7001`])) as Array<{ address: string }>
    assert.equal(seen?.address, cone.publicAddress)
    assert.notEqual(cone.publicAddress, cone.address)
    // The router drops what nobody asked for; the LAN address is not routed on the testbed's internet at all.
    const probes = await Promise.all([cone.publicAddress, cone.address].map((to) => nodeOutput(testbed, 'a1', probeClient, [to, '7001'])))
    assert.deepEqual(probes, ['timeout', 'timeout'])
  })

  it('keeps a cone NAT\'s port for every destination, and not a symmetric NAT\'s', async () => {
    const targets = [`${testbed.hosts.a1?.address}:7001`, `${testbed.hosts.b1?.address}:7001`]
    const ports = async (host: string): Promise<number[]> =>
      (JSON.parse(await nodeOutput(testbed, host, sourceClient, ['40001', ...targets])) as Array<{ port: number }>).map((s) => s.port)
    const [cone1, cone2] = await ports('cone')
    assert.equal(cone1, cone2, 'cone NAT: one mapping for both destinations')
    assert.equal(cone1, 40001, 'cone NAT: the local port is kept')
    const [sym1, sym2] = await ports('sym')
    assert.notEqual(sym1, sym2, 'symmetric NAT: one mapping per destination')
  })

  it('lets two hosts behind cone NATs punch a UDP hole to each other', async () => {
    const { cone, coneb } = testbed.hosts
    assert.ok(cone !== undefined && coneb !== undefined)
    const [fromA, fromB] = await Promise.all([
      nodeOutput(testbed, 'cone', udpPuncher, [coneb.publicAddress, '40002']),
      nodeOutput(testbed, 'coneb', udpPuncher, [cone.publicAddress, '40002']),
    ])
    assert.deepEqual([fromA, fromB], ['ok', 'ok'])
  })

  it('carries 64 MiB across regions intact', async (t) => {
    const sink = await startServer(testbed, 'b1', sinkServer, ['7002'])
    const received = new Promise<string>((resolvePromise) => {
      let text = ''
      sink.stdout?.on('data', (chunk: Buffer) => { text += chunk.toString() })
      sink.once('close', () => resolvePromise(text.trim()))
    })
    const started = performance.now()
    const sent = await nodeOutput(testbed, 'a1', sourceSender, [testbed.hosts.b1?.address ?? '', '7002', String(64 << 20)], 120_000)
    const { bytes, sha256 } = JSON.parse(await received) as { bytes: number; sha256: string }
    t.diagnostic(`64 MiB across an 80 ms RTT in ${((performance.now() - started) / 1000).toFixed(2)} s (random data generation included)`)
    assert.equal(bytes, 64 << 20)
    assert.equal(sha256, sent)
  })

  it('has no link to the root namespace', async () => {
    // The root namespace's view of the testbed's namespaces: "name (id: N)" where it has assigned an id.
    const ids = new Set((await run('ip', ['netns', 'list'])).split('\n')
      .filter((line) => line.startsWith(`${prefix}-`))
      .flatMap((line) => /\(id: (\d+)\)/.exec(line)?.[1] ?? []))
    const rootLinks = JSON.parse(await run('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string; link_netnsid?: number }>
    for (const link of rootLinks) {
      assert.ok(!ids.has(String(link.link_netnsid)), `${link.ifname} in the root namespace leads into the testbed`)
      assert.ok(!['wan0', 'lan0'].includes(link.ifname), `${link.ifname} in the root namespace`)
    }
    // Inside, a TUN to linkd where the host is public, else a veth whose other end is in the host's own router.
    for (const host of Object.values(testbed.hosts)) {
      if (host.routerNetns === undefined) {
        assert.deepEqual(await linksOf(host.netns), ['lo', 'wan0 tun'])
      } else {
        assert.deepEqual(await linksOf(host.netns), ['eth0 veth to ' + host.routerNetns, 'lo'])
        assert.deepEqual(await linksOf(host.routerNetns), ['lan0 veth to ' + host.netns, 'lo', 'wan0 tun'])
      }
    }
  })
})

async function run(command: string, args: string[]): Promise<string> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  const code = await new Promise<number | null>((resolvePromise) => child.on('close', resolvePromise))
  assert.equal(code, 0, `${command} ${args.join(' ')} failed`)
  return out
}

/** A namespace's interfaces as 'NAME KIND', with 'to NETNS' where the other end of a veth lives. */
async function linksOf(netns: string): Promise<string[]> {
  const links = JSON.parse(await run('ip', ['-n', netns, '-j', '-d', 'link', 'show'])) as
    Array<{ ifname: string; link_netnsid?: number; linkinfo?: { info_kind?: string } }>
  const peers = JSON.parse(await run('ip', ['-n', netns, '-j', 'netns', 'list-id'])) as Array<{ nsid: number; name?: string }>
  return links.map((link) => {
    const peer = link.link_netnsid === undefined ? '' : ` to ${peers.find((p) => p.nsid === link.link_netnsid)?.name ?? 'outside'}`
    return `${link.ifname}${link.linkinfo?.info_kind === undefined ? '' : ' ' + link.linkinfo.info_kind}${peer}`
  }).sort()
}

async function linkdsOf(tag: string): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await readdir('/proc')) {
    const argv = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    if (argv.split('\0').includes(`hearth-testbed:${tag}`)) pids.push(Number(entry))
  }
  return pids
}

describe('testbed teardown', { skip }, () => {
  const other = `${prefix}z`
  let dir = ''
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'hearth-testbed-')) })
  after(async () => {
    await down(other)
    await rm(dir, { recursive: true, force: true })
  })

  it('removes everything after the builder exited, its linkd was killed and a process was left inside', async () => {
    const spec: TestbedSpec = {
      prefix: other,
      regions: { a: {} },
      rttMs: {},
      hosts: [{ name: 'pub', region: 'a' }, { name: 'nat', region: 'a', nat: 'cone' }],
    }
    await writeFile(join(dir, 'spec.json'), JSON.stringify(spec))
    // Built by another process that then exits: down must need nothing from the builder.
    const script = resolve(import.meta.dirname, '..', '..', 'scripts', 'testbed.ts')
    const up = JSON.parse(await run(process.execPath, ['--import', 'tsx', script, 'up', '--spec', join(dir, 'spec.json')])) as Pick<Testbed, 'hosts'>
    assert.deepEqual(Object.keys(up.hosts), ['pub', 'nat'])
    const leftover = spawn('ip', ['netns', 'exec', up.hosts.nat?.netns ?? '', 'sleep', '600'], { stdio: 'ignore' })
    const leftoverExit = new Promise<NodeJS.Signals | null>((resolvePromise) => leftover.on('exit', (_code, signal) => resolvePromise(signal)))
    // `ip netns exec` enters the namespace a moment after it starts; wait until the process is really inside.
    while (!(await run('ip', ['netns', 'pids', up.hosts.nat?.netns ?? ''])).split('\n').includes(String(leftover.pid))) {
      await new Promise((resolvePromise) => setTimeout(resolvePromise, 20))
    }
    const pid = Number(await readFile(join(STATE_ROOT, other, 'linkd.pid'), 'utf8'))
    assert.deepEqual(await linkdsOf(other), [pid])
    process.kill(pid, 'SIGKILL')

    await down(other)
    assert.equal(await leftoverExit, 'SIGKILL')
    assert.deepEqual((await run('ip', ['netns', 'list'])).split('\n').filter((line) => line.startsWith(`${other}-`)), [])
    assert.deepEqual(await linkdsOf(other), [])
    assert.equal(existsSync(join(STATE_ROOT, other)), false)
    await down(other)
  })
})
