import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { Agent, request } from 'node:http'
import { connect } from 'node:net'
import { createGateway } from './gateway.ts'
import type { Gateway, GatewayInit, GatewayReplica } from './gateway.ts'
import { RegionMap } from './gateway-regions.ts'
import { crashingConnection, refusedConnection, send, startReplica } from './gateway-testkit.ts'
import type { TestReplica } from './gateway-testkit.ts'

const cleanups: Array<() => Promise<void> | void> = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

async function replicas(...specs: Array<[string, string]>): Promise<TestReplica[]> {
  const started = await Promise.all(specs.map(([id, region]) => startReplica(id, region)))
  for (const replica of started) cleanups.push(() => replica.stop())
  return started
}

interface Started {
  gateway: Gateway
  port: number
  down: Array<[string, string]>
}

/** A gateway in region 'eu' on 127.0.0.1 over `list`; health checks rare unless `init.health` says otherwise. */
async function gatewayOver(list: TestReplica[] | (() => GatewayReplica[]), init: Partial<GatewayInit> = {}): Promise<Started> {
  const down: Array<[string, string]> = []
  const gateway = await createGateway({
    listen: { host: '127.0.0.1', port: 0 },
    region: 'eu',
    routes: {
      replicas: typeof list === 'function' ? list : () => list.map((r) => r.replica),
      reportDown: (id, reason) => down.push([id, reason]),
    },
    ...init,
    health: { path: '/health', intervalMs: 60_000, timeoutMs: 5_000, failuresBeforeDown: 1, ...init.health },
  })
  cleanups.push(() => gateway.close())
  return { gateway, port: gateway.address().port, down }
}

/** Waits until `test()` holds, failing after a generous deadline (a broken gateway, not a slow machine). */
async function until(test: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 60_000
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function repliesFrom(port: number, count: number, headers: Record<string, string> = {}): Promise<Set<string>> {
  const ids = new Set<string>()
  for (let i = 0; i < count; i++) {
    const answer = await send(port, { headers })
    assert.equal(answer.status, 200)
    ids.add(String(answer.headers['x-hearth-replica']))
  }
  return ids
}

describe('gateway: routing', () => {
  it('sends clients to replicas in their region, by address table and by a configured header', async () => {
    const list = await replicas(['eu-1', 'eu'], ['us-1', 'us'])
    const byTable = await gatewayOver(list, { regions: { table: { '127.0.0.0/8': 'us', '10.0.0.0/8': 'eu' } } })
    assert.deepEqual([...await repliesFrom(byTable.port, 8)], ['us-1'])
    // The longest prefix wins.
    const longest = await gatewayOver(list, { regions: { table: { '127.0.0.0/8': 'us', '127.0.0.1/32': 'eu' } } })
    assert.deepEqual([...await repliesFrom(longest.port, 8)], ['eu-1'])
    const byHeader = await gatewayOver(list, { regions: { regionHeader: 'X-Client-Region', table: { '127.0.0.0/8': 'eu' } } })
    assert.deepEqual([...await repliesFrom(byHeader.port, 8, { 'x-client-region': 'us' })], ['us-1'])
    assert.deepEqual([...await repliesFrom(byHeader.port, 8, { 'x-client-region': 'EU' })], ['eu-1'])
    // A header the operator did not name is not trusted: the gateway's own region applies.
    const noHeader = await gatewayOver(list)
    assert.deepEqual([...await repliesFrom(noHeader.port, 8, { 'x-client-region': 'us' })], ['eu-1'])
    const answer = await send(noHeader.port)
    assert.equal(answer.headers['x-hearth-version'], 'v1')
    assert.equal(answer.body.toString(), 'hello from eu-1')
  })

  it('matches IPv4, IPv6 and IPv4-mapped addresses against the table', () => {
    const map = new RegionMap({ table: { '10.0.0.0/8': 'eu', '2001:db8::/32': 'ap', '2001:db8:1::/48': 'us', '192.168.1.7': 'home' } }, 'xx')
    assert.equal(map.regionOf('10.200.3.4', {}), 'eu')
    assert.equal(map.regionOf('::ffff:10.1.2.3', {}), 'eu')
    assert.equal(map.regionOf('2001:db8:2::5', {}), 'ap')
    assert.equal(map.regionOf('2001:db8:1:ffff::1', {}), 'us')
    assert.equal(map.regionOf('192.168.1.7', {}), 'home')
    assert.equal(map.regionOf('192.168.1.8', {}), 'xx')
    assert.equal(map.regionOf('fe80::1%eth0', {}), 'xx')
    assert.throws(() => new RegionMap({ table: { '10.0.0.0/33': 'eu' } }, 'xx'), /prefix length/)
    assert.throws(() => new RegionMap({ table: { 'nonsense/8': 'eu' } }, 'xx'), /not an IPv4 or IPv6/)
  })

  it('spreads load over healthy replicas and answers 503 with Retry-After when there is none', async () => {
    const list = await replicas(['a', 'eu'], ['b', 'eu'], ['c', 'eu'])
    const { port } = await gatewayOver(list)
    // Concurrent requests: outstanding counts push the choice away from a busy replica.
    const answers = await Promise.all(Array.from({ length: 30 }, () => send(port, { path: '/bytes?n=100000' })))
    assert.ok(new Set(answers.map((a) => a.headers['x-hearth-replica'])).size >= 2)
    const empty = await gatewayOver(() => [])
    const refused = await send(empty.port)
    assert.equal(refused.status, 503)
    assert.ok(Number(refused.headers['retry-after']) >= 1)
    assert.match(refused.body.toString(), /no healthy replica/)
  })

  it('drops hop-by-hop headers and adds the forwarding headers', async () => {
    const list = await replicas(['a', 'eu'])
    const { port } = await gatewayOver(list)
    const answer = await send(port, {
      path: '/headers',
      headers: { connection: 'keep-alive, x-secret', 'x-secret': '1', 'proxy-authorization': 'Basic eA==', te: 'trailers', 'x-kept': 'yes', 'x-forwarded-for': '203.0.113.9' },
    })
    const seen = JSON.parse(answer.body.toString()) as Record<string, string>
    assert.equal(seen['x-secret'], undefined)
    assert.equal(seen['proxy-authorization'], undefined)
    assert.equal(seen.te, undefined)
    assert.equal(seen['x-kept'], 'yes')
    assert.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.1')
    assert.equal(seen['x-forwarded-proto'], 'http')
    assert.match(seen.forwarded ?? '', /^for=127\.0\.0\.1;proto=http;host="?127\.0\.0\.1:\d+"?$/)
  })
})

describe('gateway: streaming and connections', () => {
  it('streams a 20 MiB upload to the replica and back, byte for byte, without waiting for the whole body', async () => {
    const [replica] = await replicas(['a', 'eu'])
    const { port } = await gatewayOver([replica!])
    const body = randomBytes(20 * 1024 * 1024)
    const echoed = await new Promise<Buffer>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/echo', agent: false, headers: { 'content-length': String(body.length) } })
      req.on('error', reject)
      req.on('response', (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', reject)
        res.on('end', () => resolve(Buffer.concat(chunks)))
      })
      void (async () => {
        const piece = 256 * 1024
        const half = body.length / 2
        for (let offset = 0; offset < body.length; offset += piece) {
          // Half the body is sent; the rest waits until the replica has its first bytes: a gateway that held the
          // body back until it had all of it would never pass this point.
          if (offset === half) await replica!.firstEchoBytes
          if (!req.write(body.subarray(offset, offset + piece))) await new Promise((r) => req.once('drain', r))
        }
        req.end()
      })().catch(reject)
    })
    assert.equal(echoed.length, body.length)
    assert.equal(createHash('sha256').update(echoed).digest('hex'), createHash('sha256').update(body).digest('hex'))
  })

  it('reuses connections to a replica across requests', async () => {
    const [replica] = await replicas(['a', 'eu'])
    const { port } = await gatewayOver([replica!])
    const before = replica!.connections
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    for (let i = 0; i < 20; i++) assert.equal((await send(port, { agent })).status, 200)
    agent.destroy()
    const used = replica!.connections - before
    assert.ok(used < 20, `the replica saw ${used} connections for 20 requests`)
  })
})

describe('gateway: failures', () => {
  it('keeps GETs succeeding when a replica goes away, takes it out of rotation and reports it', async () => {
    const [near, far] = await replicas(['near', 'eu'], ['far', 'us'])
    const { gateway, port, down } = await gatewayOver([near!, far!])
    assert.deepEqual([...await repliesFrom(port, 5)], ['near'])
    await near!.stop()
    const ids = await repliesFrom(port, 20)
    assert.deepEqual([...ids], ['far'])
    assert.ok(down.some(([id]) => id === 'near'), 'reportDown was told of the replica that went away')
    const stats = gateway.stats().replicas.find((r) => r.id === 'near')
    assert.equal(stats?.healthy, false)
  })

  it('sends an idempotent request whose replica failed before answering to another replica, body and all', async () => {
    const [near, far] = await replicas(['near', 'eu'], ['far', 'us'])
    const { gateway, port } = await gatewayOver([near!, far!])
    const body = randomBytes(100_000)
    // The near replica (the client's region) reads the body, then drops the connection without an answer.
    near!.dropPaths.add('/echo')
    const retried = await send(port, { method: 'PUT', path: '/echo', body })
    assert.equal(retried.status, 200)
    assert.equal(retried.headers['x-hearth-replica'], 'far')
    assert.ok(retried.body.equals(body))
    assert.equal(near!.seen.get('PUT /echo'), 1)
    assert.ok(gateway.stats().retries >= 1)
  })

  it('answers 502 to a POST whose replica dies in flight, which the replica saw exactly once', async () => {
    const list = await replicas(['a', 'eu'], ['b', 'eu'])
    const { port, down } = await gatewayOver(list)
    const answer = await send(port, { method: 'POST', path: '/die', body: Buffer.from('charge the card') })
    assert.equal(answer.status, 502)
    assert.match(answer.body.toString(), /not idempotent/)
    const seen = list.reduce((sum, r) => sum + (r.seen.get('POST /die') ?? 0), 0)
    assert.equal(seen, 1)
    assert.equal(down.length, 1)
  })

  it('sends a POST on when the provider refused its direct link, which proves the server saw nothing', async () => {
    // The refusing replica is in the client's region, so it is tried first; the other is in another.
    const [other] = await replicas(['b', 'us'])
    const refusing: GatewayReplica = { id: 'refused', region: 'eu', version: 'v1', connect: async () => refusedConnection() }
    const { port, down } = await gatewayOver(() => [refusing, other!.replica])
    const answer = await send(port, { method: 'POST', path: '/echo', body: Buffer.from('charge the card once') })
    assert.equal(answer.status, 200)
    assert.equal(answer.body.toString(), 'charge the card once')
    assert.equal(answer.headers['x-hearth-replica'], 'b')
    assert.equal(other!.seen.get('POST /echo'), 1)
    assert.deepEqual(down.map(([id]) => id), ['refused'])
  })

  it('resets the client connection when a response is cut mid-body, with a length or chunked', async () => {
    for (const path of ['/cut', '/cut-chunked']) {
      const list = await replicas(['a', 'eu'])
      const { gateway, down } = await gatewayOver(list)
      // The client never gets a complete answer: the connection is reset after the bytes that came.
      await assert.rejects(send(gateway.address().port, { path }), /cut short|ECONNRESET|aborted/)
      await until(() => down.length === 1, 'the replica that cut its answer is reported')
      assert.equal(gateway.stats().cutResponses, 1)
    }
  })

  it('resets the client connection when a response delimited by its close alone is cut', async () => {
    // Node's client takes such an answer as complete when its connection fails: the gateway must not.
    const replica: GatewayReplica = { id: 'crashing', region: 'eu', version: 'v1', connect: async () => crashingConnection() }
    const { gateway, down } = await gatewayOver(() => [replica])
    await assert.rejects(send(gateway.address().port, { path: '/page' }), /cut short|ECONNRESET|aborted/)
    await until(() => down.length === 1, 'the replica that cut its answer is reported')
    assert.equal(gateway.stats().cutResponses, 1)
  })

  it('does not blame a replica for a client that leaves mid-answer', async () => {
    const [replica] = await replicas(['a', 'eu'])
    const { gateway, port, down } = await gatewayOver([replica!])
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/bytes?n=20000000', agent: false }, (res) => {
        res.once('data', () => {
          req.destroy()
          resolve()
        })
      })
      req.on('error', (error: Error & { code?: string }) => (error.code === 'ECONNRESET' ? undefined : reject(error)))
      req.end()
    })
    await until(() => gateway.stats().replicas[0]?.outstanding === 0, 'the abandoned request ends')
    assert.deepEqual(down, [])
    assert.equal(gateway.stats().replicas[0]?.healthy, true)
    assert.equal((await send(port)).status, 200)
  })

  it('takes a replica out of rotation after failed health checks and back when one passes', async () => {
    const [replica] = await replicas(['a', 'eu'])
    const { gateway, port, down } = await gatewayOver([replica!], { health: { path: '/health', intervalMs: 50, timeoutMs: 5_000, failuresBeforeDown: 2 } })
    assert.equal((await send(port)).status, 200)
    replica!.sick = true
    await until(() => gateway.stats().replicas[0]?.healthy === false, 'the sick replica leaves rotation')
    assert.match(down[0]?.[1] ?? '', /2 health checks failed/)
    assert.equal((await send(port)).status, 503)
    replica!.sick = false
    await until(() => gateway.stats().replicas[0]?.healthy === true, 'the replica comes back')
    const answer = await send(port)
    assert.equal(answer.status, 200)
    assert.equal(answer.headers['x-hearth-replica'], 'a')
  })

  it('passes an upgraded connection (WebSocket) through to a replica, both ways unread, and any other answer as it came', async () => {
    const [replica] = await replicas(['a', 'eu'])
    const { gateway, port } = await gatewayOver([replica!])
    const key = randomBytes(16).toString('base64')
    const socket = connect(port, '127.0.0.1')
    cleanups.push(() => void socket.destroy())
    const received: Buffer[] = []
    socket.on('data', (chunk: Buffer) => received.push(chunk))
    const all = () => Buffer.concat(received)
    socket.write(`GET /chat HTTP/1.1\r\nhost: example\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${key}\r\n\r\n`)
    await until(() => all().includes('\r\n\r\n'), 'the switch is answered')
    const headEnd = all().indexOf('\r\n\r\n')
    const head = all().subarray(0, headEnd).toString()
    assert.match(head, /^HTTP\/1\.1 101 /)
    assert.match(head, new RegExp(`sec-websocket-accept: ${createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64').replace(/[+/]/g, '\\$&')}`))
    assert.match(head, /x-hearth-replica: a/)
    assert.match(head, /x-seen-forwarded-for: 127\.0\.0\.1/)
    // After the switch, bytes both ways, a large burst included (back-pressure through the stream).
    const burst = randomBytes(4 << 20)
    socket.write(burst)
    await until(() => all().length - headEnd - 4 >= burst.length, 'the burst comes back')
    assert.ok(all().subarray(headEnd + 4).equals(burst))
    assert.equal(gateway.stats().replicas[0]?.outstanding, 1)
    socket.destroy()
    await until(() => gateway.stats().replicas[0]?.outstanding === 0, 'the upgraded connection is let go')

    // A replica that does not switch: its answer reaches the client, and the connection ends.
    const refused = await new Promise<string>((resolve, reject) => {
      const other = connect(port, '127.0.0.1')
      const chunks: Buffer[] = []
      other.on('data', (chunk: Buffer) => chunks.push(chunk)).once('end', () => resolve(Buffer.concat(chunks).toString())).once('error', reject)
      other.write('GET /x HTTP/1.1\r\nhost: example\r\nconnection: Upgrade\r\nupgrade: something-else\r\n\r\n')
    })
    assert.match(refused, /^HTTP\/1\.1 426 /)
    assert.match(refused, /x-hearth-replica: a/)
    assert.match(refused, /websocket only$/)
  })
})
