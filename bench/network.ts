/**
 * `node --import tsx bench/network.ts [--json] [--runs 3] [--mib 64] [--nodes 50] [--part all|links|propagation]`: Hearth across a network, on the testbed
 * (src/testbed; needs root, iproute2, iptables and a C compiler, as the tests do). Two regions 40 ms apart:
 *
 * - transfer: `--mib` MiB from a host in one region to a host in the other, as the median of `--runs` runs each:
 *   plain TCP (the baseline), one libp2p stream on a direct connection, and the same through a relay (a Hearth relay's
 *   limits, in the first region). Ratios are of the TCP baseline.
 * - offer: from `hearth provider start` behind a NAT to its offer, with its relayed address, in the book of a node in
 *   the other region that joined through the same relay (the provider finds out it is not dialable, reserves a relay
 *   slot and publishes again). Anchor: yagna re-broadcasts offers over minutes; on loopback 10 providers' offers reach
 *   a requestor in 71 ms.
 *
 * - propagation: `--nodes` (50) market nodes, each its own process in its own namespace, spread over three regions
 *   (40 and 80 ms apart), joined through one relay as a newcomer would; a provider in the first region publishes a new
 *   offer, and each node prints when its book holds it. Reported: the median and the slowest node, median over
 *   `--runs` offers. Anchors as above.
 *
 * - reversal: a node with a public address in the other region dials a NATed node through the relay; the time until
 *   it holds a direct connection, which the NATed node opened back to it (connection reversal).
 *
 * - punch: a node behind a NAT in the other region dials the NATed node through the relay; the time until both hold
 *   the connection they punched together (TCP simultaneous open, see src/net/hole-punch.ts).
 */
import '../src/net/polyfill.ts'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { createMarketNode } from '../src/market/market-node.ts'
import { createOffer, OFFERS_TOPIC } from '../src/market/offer.ts'
import { createHost } from '../src/net/host.ts'
import { build, missingPrerequisites, type Testbed } from '../src/testbed/testbed.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean' },
    runs: { type: 'string', default: '3' },
    mib: { type: 'string', default: '64' },
    nodes: { type: 'string', default: '50' },
    // all, links (transfers, offer from a NAT, reversal, punch) or propagation.
    part: { type: 'string', default: 'all' },
    // Internal: this file run inside a testbed namespace as one of the peers below.
    peer: { type: 'string' },
    relay: { type: 'string' },
    target: { type: 'string' },
  },
})
const runs = Number(values.runs)
const blobBytes = Number(values.mib) * 1024 * 1024
const rawProtocol = '/hearth/bench/raw/1'
const self = fileURLToPath(import.meta.url)
const hearthBin = fileURLToPath(new URL('../bin/hearth.js', import.meta.url))

/** Sends `bytes` on a libp2p stream in 64 KiB messages, waiting whenever the stream asks for it, then closes it. */
async function sendAll(stream: Stream, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length; offset += 65_536) {
    if (!stream.send(bytes.subarray(offset, offset + 65_536))) await stream.onDrain()
  }
  await stream.close()
}

/** Resolves when stdin closes: the bench's way of stopping a peer. */
const untilStdinCloses = (): Promise<void> =>
  new Promise((resolve) => {
    process.stdin.resume()
    process.stdin.on('close', resolve)
  })

/**
 * A relay with a Hearth relay's limits, granting anyone a reservation (the sender below has no offer), and holding the
 * market's offers as `hearth relay` does: gossip reaches nodes behind NATs only through a node subscribed to offers.
 */
async function relayPeer(address: string): Promise<void> {
  // Announced as `hearth relay --announce` would: libp2p announces a public address only once something confirms it.
  const host = await createHost({ identity: generateIdentity(), listen: ['/ip4/0.0.0.0/tcp/7691'], announce: [`/ip4/${address}/tcp/7691`], reachability: { mode: 'public', relays: [] }, relay: {} })
  const market = createMarketNode({ host })
  await host.start()
  await market.start()
  process.stdout.write(`${JSON.stringify({ multiaddrs: host.multiaddrs() })}\n`)
  await untilStdinCloses()
  await market.stop()
  await host.stop()
}

/** The sender: a TCP server and a libp2p stream that write the blob, reachable directly and through the relay. */
async function senderPeer(relay: string): Promise<void> {
  const blob = randomBytes(blobBytes)
  const tcp = createServer((socket) => socket.end(blob))
  await new Promise<void>((resolve) => tcp.listen(7701, '0.0.0.0', resolve))
  // Private by its owner's word: it takes a relay slot although it is also dialable directly.
  const host = await createHost({ identity: generateIdentity(), listen: ['/ip4/0.0.0.0/tcp/7700'], bootstrap: [relay], reachability: { mode: 'private' } })
  await host.start()
  await host.libp2p.handle(rawProtocol, async (stream) => sendAll(stream, blob).catch((error: Error) => stream.abort(error)), { runOnLimitedConnection: true })
  while (!host.multiaddrs().some((a) => a.includes('/p2p-circuit'))) await new Promise((resolve) => setTimeout(resolve, 100))
  process.stdout.write(`${JSON.stringify({ peerId: host.peerId.toString(), relayed: host.multiaddrs().find((a) => a.includes('/p2p-circuit')) })}\n`)
  await untilStdinCloses()
  tcp.close()
  await host.stop()
}

/** The receiver: each way `runs` times, taking turns; prints the median milliseconds of each. */
async function receiverPeer(target: string): Promise<void> {
  const { address, peerId, relayed } = JSON.parse(target) as { address: string; peerId: string; relayed: string }
  const host = await createHost({ identity: generateIdentity(), listen: ['/ip4/0.0.0.0/tcp/0'] })
  await host.start()
  const tcpOnce = (): Promise<number> =>
    new Promise((resolve, reject) => {
      let received = 0
      const socket = connect(7701, address)
      socket.on('data', (chunk: Buffer) => (received += chunk.length))
      socket.on('end', () => (received === blobBytes ? resolve(received) : reject(new Error(`tcp: ${received} bytes`))))
      socket.on('error', reject)
    })
  const streamOnce = async (to: string): Promise<number> => {
    const stream = await host.libp2p.dialProtocol(multiaddr(to), rawProtocol, { runOnLimitedConnection: true })
    let received = 0
    for await (const chunk of stream) received += chunk.byteLength
    if (received !== blobBytes) throw new Error(`${to}: ${received} bytes`)
    return received
  }
  const direct = `/ip4/${address}/tcp/7700/p2p/${peerId}`
  // Connections are opened once before timing, as a provider holds one to its requestor.
  await host.dial(direct)
  await host.dial(relayed)
  const times: Record<'tcp' | 'direct' | 'relayed', number[]> = { tcp: [], direct: [], relayed: [] }
  for (let run = 0; run < runs; run++) {
    for (const [way, once] of [['tcp', tcpOnce], ['direct', () => streamOnce(direct)], ['relayed', () => streamOnce(relayed)]] as const) {
      const startedAt = performance.now()
      await once()
      times[way].push(performance.now() - startedAt)
    }
  }
  process.stdout.write(`${JSON.stringify({ tcp: median(times.tcp), direct: median(times.direct), relayed: median(times.relayed) })}\n`)
  await host.stop()
}

/** Joins through the relay and prints the wall-clock time at which an offer with a relayed address arrives. */
async function observerPeer(relay: string): Promise<void> {
  const host = await createHost({ identity: generateIdentity(), listen: ['/ip4/0.0.0.0/tcp/0'], bootstrap: [relay] })
  const market = createMarketNode({ host, resyncIntervalMs: 1_000 })
  await host.start()
  await market.start()
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`)
  const [offer] = await market.offerBook.waitFor(1, (o) => o.multiaddrs.some((a) => a.includes('/p2p-circuit')), { signal: AbortSignal.timeout(120_000) })
  process.stdout.write(`${JSON.stringify({ seenAtMs: Date.now(), provider: offer!.payload.provider })}\n`)
  await market.stop()
  await host.stop()
}

/**
 * A market node that joined through the relay; prints `{ready}` once it hears someone on the offers topic, then, for
 * every offer of the provider named by `--target` newer than the last, the time it arrived here.
 */
async function listenerPeer(relay: string, provider: string): Promise<void> {
  const host = await createHost({ identity: generateIdentity(), listen: ['/ip4/0.0.0.0/tcp/0'], bootstrap: [relay] })
  const market = createMarketNode({ host })
  await host.start()
  await market.start()
  while (host.topicPeers(OFFERS_TOPIC).length === 0) await new Promise((resolve) => setTimeout(resolve, 50))
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`)
  let lastIssuedMs = 0
  for (;;) {
    const [signed] = await market.offerBook.waitFor(1, (offer) => offer.provider.toLowerCase() === provider && offer.issuedAtMs > lastIssuedMs)
    lastIssuedMs = signed!.payload.issuedAtMs
    process.stdout.write(`${JSON.stringify({ issuedAtMs: lastIssuedMs, seenAtMs: Date.now() })}\n`)
  }
}

/** A provider's market node: prints its address, then publishes a freshly issued offer for every line on stdin. */
async function publisherPeer(relay: string): Promise<void> {
  const identity = generateIdentity()
  const host = await createHost({ identity, listen: ['/ip4/0.0.0.0/tcp/7695'], bootstrap: [relay] })
  const market = createMarketNode({ host })
  await host.start()
  await market.start()
  process.stdout.write(`${JSON.stringify({ provider: identity.address.toLowerCase() })}\n`)
  for await (const _line of createInterface({ input: process.stdin })) {
    const signed = await createOffer({
      identity,
      multiaddrs: host.multiaddrs(),
      properties: { 'golem.runtime.name': 'wasi' },
      pricing: { model: 'per-task', perTaskWei: '1000' },
      payment: { chainId: 31337, token: '0x0000000000000000000000000000000000000001', escrow: '0x0000000000000000000000000000000000000002' },
      ttlMs: 10 * 60_000,
    })
    await market.publish(signed)
    process.stdout.write(`${JSON.stringify({ issuedAtMs: signed.payload.issuedAtMs })}\n`)
  }
  await market.stop()
  await host.stop()
}

/** A node behind a NAT: prints its relayed address once it holds a relay slot, then serves until stdin closes. */
async function natPeer(relay: string): Promise<void> {
  const host = await createHost({ identity: generateIdentity(), listen: ['/ip4/0.0.0.0/tcp/7700'], bootstrap: [relay] })
  await host.start()
  while (!host.multiaddrs().some((a) => a.includes('/p2p-circuit'))) await new Promise((resolve) => setTimeout(resolve, 100))
  process.stdout.write(`${JSON.stringify({ peerId: host.peerId.toString(), relayed: host.multiaddrs().find((a) => a.includes('/p2p-circuit')) })}\n`)
  await untilStdinCloses()
  await host.stop()
}

/**
 * `--runs` times a fresh node dials `target` through the relay; prints the milliseconds until it holds a direct
 * connection: `reversal`, a public node that the NATed target dials back; `punch`, a node behind its own NAT that
 * punches one together with the target.
 */
async function directPeer(relay: string, target: string, way: 'reversal' | 'punch'): Promise<void> {
  const { peerId, relayed } = JSON.parse(target) as { peerId: string; relayed: string }
  const times: number[] = []
  const wanted = way === 'reversal' ? 'direct' : 'hole-punched'
  for (let run = 0; run < runs; run++) {
    const host = await createHost({ identity: generateIdentity(), listen: ['/ip4/0.0.0.0/tcp/0'], bootstrap: [relay] })
    await host.start()
    if (way === 'reversal') while (host.reachability().kind !== 'public') await new Promise((resolve) => setTimeout(resolve, 50))
    const startedAt = performance.now()
    await host.dial(relayed)
    while (!host.connections().some((c) => c.peerId === peerId && c.kind === wanted)) await new Promise((resolve) => setTimeout(resolve, 5))
    times.push(performance.now() - startedAt)
    await host.stop()
  }
  process.stdout.write(`${JSON.stringify({ times })}\n`)
}

if (values.peer !== undefined) {
  const peers: Record<string, () => Promise<void>> = {
    nat: () => natPeer(values.relay!),
    reversal: () => directPeer(values.relay!, values.target!, 'reversal'),
    punch: () => directPeer(values.relay!, values.target!, 'punch'),
    relay: () => relayPeer(values.target!),
    listener: () => listenerPeer(values.relay!, values.target!),
    publisher: () => publisherPeer(values.relay!),
    sender: () => senderPeer(values.relay!),
    receiver: () => receiverPeer(values.target!),
    observer: () => observerPeer(values.relay!),
  }
  await peers[values.peer]!()
  process.exit(0)
}

// --- the bench ---------------------------------------------------------------------------------------------------

const log = lineLogger(values.json)
const missing = missingPrerequisites()
if (missing.length > 0) {
  console.log(`network: not run (the testbed needs ${missing.join(', ')})`)
  process.exit(0)
}

/** Starts a command on a testbed host; resolves with its process and a reader of its next JSON line. */
function startOn(testbed: Testbed, host: string, args: string[]) {
  const child = testbed.exec(host, process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines: unknown[] = []
  const waiters: Array<(line: unknown) => void> = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const parsed: unknown = JSON.parse(line)
    const waiter = waiters.shift()
    if (waiter !== undefined) waiter(parsed)
    else lines.push(parsed)
  })
  const next = <T>(): Promise<T> => (lines.length > 0 ? Promise.resolve(lines.shift() as T) : new Promise<T>((resolve) => waiters.push(resolve as (line: unknown) => void)))
  return { child, next }
}

/** Links: transfer direct, relayed and over plain TCP, a NATed provider's offer, connection reversal, a hole punch. */
async function links(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-network-'))
  const testbed = await build({
    prefix: `bn${process.pid}`,
    regions: { eu: {}, us: {} },
    rttMs: { 'eu-us': 40 },
    hosts: [
      { name: 'relay', region: 'eu' },
      { name: 'chain', region: 'eu' },
      { name: 'sender', region: 'eu' },
      { name: 'receiver', region: 'us' },
      { name: 'natp', region: 'eu', nat: 'cone' },
      { name: 'natq', region: 'us', nat: 'cone' },
    ],
  })
  try {
    const tsx = ['--import', 'tsx', self]
    const relay = startOn(testbed, 'relay', [...tsx, '--peer', 'relay', '--target', testbed.hosts['relay']!.address])
    const relayAddress = (await relay.next<{ multiaddrs: string[] }>()).multiaddrs.find((a) => a.includes(testbed.hosts['relay']!.address))!

    // Transfer: the same two namespaces, TCP, libp2p direct, libp2p relayed.
    const sender = startOn(testbed, 'sender', [...tsx, '--peer', 'sender', '--relay', relayAddress, '--mib', String(values.mib)])
    const { peerId, relayed } = await sender.next<{ peerId: string; relayed: string }>()
    const receiver = startOn(testbed, 'receiver', [...tsx, '--peer', 'receiver', '--runs', String(runs), '--mib', String(values.mib), '--target', JSON.stringify({ address: testbed.hosts['sender']!.address, peerId, relayed })])
    const ms = await receiver.next<{ tcp: number; direct: number; relayed: number }>()
    sender.child.stdin!.end()
    const mbps = (elapsed: number): number => round(blobBytes / 1e6 / (elapsed / 1000))
    log(`transfer of ${values.mib} MiB between regions 40 ms apart (median of ${runs}):`)
    log(`  tcp      ${round(ms.tcp)} ms  ${mbps(ms.tcp)} MB/s`)
    log(`  direct   ${round(ms.direct)} ms  ${mbps(ms.direct)} MB/s  (${round(ms.tcp / ms.direct)}x of tcp)`)
    log(`  relayed  ${round(ms.relayed)} ms  ${mbps(ms.relayed)} MB/s  (${round(ms.tcp / ms.relayed)}x of tcp, ${round(ms.direct / ms.relayed)}x of direct)`)

    // Offer: a provider behind a NAT, started anew each run, seen by a node in the other region.
    const chain = startOn(testbed, 'chain', [hearthBin, 'chain', '--host', testbed.hosts['chain']!.address, '--port', '8545', '--deployment-out', join(dir, 'deployment.json'), '--json'])
    await chain.next()
    const offerMs: number[] = []
    for (let run = 0; run < runs; run++) {
      const observer = startOn(testbed, 'receiver', [...tsx, '--peer', 'observer', '--relay', relayAddress])
      await observer.next()
      const startedAt = Date.now()
      const provider = startOn(testbed, 'natp', [
        hearthBin, 'provider', 'start', '--data-dir', join(dir, `natp-${run}`), '--listen', '/ip4/0.0.0.0/tcp/7690', '--no-idle',
        '--deployment', join(dir, 'deployment.json'), '--threads', '1', '--memory-gib', '1', '--disk-gib', '1', '--bootstrap', relayAddress,
      ])
      const seen = await observer.next<{ seenAtMs: number }>()
      offerMs.push(seen.seenAtMs - startedAt)
      provider.child.kill('SIGTERM')
      await new Promise((resolve) => provider.child.once('exit', resolve))
    }
    log(`offer of a NATed provider, from its start to a node in the other region holding it with its relayed address: median ${median(offerMs)} ms (${offerMs.join(', ')})`)

    // Reversal: a public node in the other region reaches the NATed host through the relay, and is dialled back.
    const nat = startOn(testbed, 'natp', [...tsx, '--peer', 'nat', '--relay', relayAddress])
    const natTarget = await nat.next<{ peerId: string; relayed: string }>()
    const reversal = startOn(testbed, 'receiver', [...tsx, '--peer', 'reversal', '--runs', String(runs), '--relay', relayAddress, '--target', JSON.stringify(natTarget)])
    const { times: reversalMs } = await reversal.next<{ times: number[] }>()
    log(`a direct connection from a NATed node, by reversal, after a node in the other region (RTT 40 ms) dials it through the relay: median ${round(median(reversalMs))} ms (${reversalMs.map(round).join(', ')})`)
    // Hole punch: a node behind a NAT in the other region reaches the same NATed host through the relay; both punch.
    const punch = startOn(testbed, 'natq', [...tsx, '--peer', 'punch', '--runs', String(runs), '--relay', relayAddress, '--target', JSON.stringify(natTarget)])
    const { times: punchMs } = await punch.next<{ times: number[] }>()
    nat.child.stdin!.end()
    log(`a hole-punched connection between two NATed nodes in regions 40 ms apart, from the dial through the relay: median ${round(median(punchMs))} ms (${punchMs.map(round).join(', ')})`)
    if (values.json === true) console.log(JSON.stringify({ bench: 'network', mib: Number(values.mib), runs, transferMs: ms, offerFromStartMs: median(offerMs), reversalMs: median(reversalMs), punchMs: median(punchMs) }))
    chain.child.kill('SIGTERM')
    relay.child.stdin!.end()
  } finally {
    await testbed.down()
    await rm(dir, { recursive: true, force: true })
  }
}

/** Propagation: one new offer to `--nodes` market nodes in three regions. */
async function propagation(): Promise<void> {
  const nodeCount = Number(values.nodes)
  const regionNames = ['eu', 'us', 'asia'] as const
  const wide = await build({
    prefix: `bp${process.pid}`,
    regions: { eu: {}, us: {}, asia: {} },
    rttMs: { 'eu-us': 40, 'eu-asia': 80, 'us-asia': 80 },
    hosts: [{ name: 'relay', region: 'eu' }, { name: 'pub', region: 'eu' }, ...Array.from({ length: nodeCount }, (_, i) => ({ name: `n${i}`, region: regionNames[i % 3]! }))],
  })
  const started: ReturnType<typeof startOn>[] = []
  try {
    const tsx = ['--import', 'tsx', self]
    const relay = startOn(wide, 'relay', [...tsx, '--peer', 'relay', '--target', wide.hosts['relay']!.address])
    started.push(relay)
    const relayAddress = (await relay.next<{ multiaddrs: string[] }>()).multiaddrs.find((a) => a.includes(wide.hosts['relay']!.address))!
    const publisher = startOn(wide, 'pub', [...tsx, '--peer', 'publisher', '--relay', relayAddress])
    started.push(publisher)
    const { provider } = await publisher.next<{ provider: string }>()
    // The nodes start a few at a time (each is a Node.js process compiling TypeScript), and all are ready before the first offer.
    const listeners: ReturnType<typeof startOn>[] = []
    for (let i = 0; i < nodeCount; i += 5) {
      const batch = Array.from({ length: Math.min(5, nodeCount - i) }, (_, j) => startOn(wide, `n${i + j}`, [...tsx, '--peer', 'listener', '--relay', relayAddress, '--target', provider]))
      started.push(...batch)
      listeners.push(...batch)
      await Promise.all(batch.map((listener) => listener.next()))
    }
    // Gossip's mesh settles over a few heartbeats (1 s each) once the last node has joined.
    await new Promise((resolve) => setTimeout(resolve, 5_000))
    const medians: number[] = []
    const slowest: number[] = []
    for (let run = 0; run < runs; run++) {
      const publishedAt = Date.now()
      publisher.child.stdin!.write('publish\n')
      const { issuedAtMs } = await publisher.next<{ issuedAtMs: number }>()
      const seen = await Promise.all(
        listeners.map(async (listener) => {
          for (;;) {
            const line = await listener.next<{ issuedAtMs: number; seenAtMs: number }>()
            if (line.issuedAtMs === issuedAtMs) return line.seenAtMs - publishedAt
          }
        }),
      )
      medians.push(median(seen))
      slowest.push(Math.max(...seen))
      // Apart, as providers republish: the next offer does not race the last one's gossip.
      await new Promise((resolve) => setTimeout(resolve, 2_000))
    }
    log(`a new offer to ${nodeCount} nodes in three regions (40 and 80 ms apart), joined through one relay: median node ${round(median(medians))} ms, slowest node ${round(median(slowest))} ms (median of ${runs} offers; slowest per offer ${slowest.map(round).join(', ')} ms)`)
    if (values.json === true) console.log(JSON.stringify({ bench: 'network-propagation', nodes: nodeCount, runs, medianNodeMs: median(medians), slowestNodeMs: median(slowest) }))
  } finally {
    for (const { child } of started) child.kill('SIGTERM')
    await wide.down()
  }
}

if (values.part !== 'propagation') await links()
if (values.part !== 'links') await propagation()
