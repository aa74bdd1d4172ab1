// A bare libp2p node with the transports, encryption, muxer and services a Hearth node uses (TCP, circuit relay v2,
// noise, yamux, identify, ping, gossipsub), listening on loopback and idle: the floor that bench/memory.ts compares a
// provider's memory with. Plain JavaScript, so that no loader's memory is counted.
//
//   node bench/lib/bare-libp2p.mjs [--with-deps]
//
// --with-deps also imports what every Hearth node loads besides libp2p: viem (with its account and signing code),
// better-sqlite3 (with a database open) and zod. Prints {"event":"ready","pid":…} once listening; stops on SIGTERM.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve
    let reject
    const promise = new this((res, rej) => {
      resolve = res
      reject = rej
    })
    return { promise, resolve, reject }
  }
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { circuitRelayTransport } = await import('@libp2p/circuit-relay-v2')
const { noise } = await import('@libp2p/noise')
const { yamux } = await import('@libp2p/yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { gossipsub } = await import('@libp2p/gossipsub')

const keep = []
if (process.argv.includes('--with-deps')) {
  const viem = await import('viem')
  const accounts = await import('viem/accounts')
  const { z } = await import('zod')
  const { default: Database } = await import('better-sqlite3')
  const account = accounts.privateKeyToAccount(accounts.generatePrivateKey())
  await account.signMessage({ message: 'warm up' })
  const db = new Database(':memory:')
  db.exec('create table t (k text primary key, v text)')
  db.prepare('insert into t values (?, ?)').run('a', 'b')
  keep.push(viem, account, z.object({ a: z.string() }).parse({ a: 'x' }), db)
}

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp(), circuitRelayTransport()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) },
})
await node.start()
node.services.pubsub.subscribe('/bench/idle')
process.stdout.write(`${JSON.stringify({ event: 'ready', pid: process.pid, multiaddrs: node.getMultiaddrs().map(String), deps: keep.length > 0 })}\n`)
process.once('SIGTERM', () => {
  void node.stop().then(() => process.exit(0))
})
