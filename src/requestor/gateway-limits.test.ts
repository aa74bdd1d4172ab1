import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createGateway } from './gateway.ts'
import type { Gateway, GatewayLimits } from './gateway.ts'
import { send, startReplica } from './gateway-testkit.ts'
import type { TestReplica } from './gateway-testkit.ts'

const cleanups: Array<() => Promise<void> | void> = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

async function setup(limits: Partial<GatewayLimits>, tls?: { cert: string; key: string }): Promise<{ replica: TestReplica; gateway: Gateway; port: number }> {
  const replica = await startReplica('a', 'eu')
  cleanups.push(() => replica.stop())
  const gateway = await createGateway({
    listen: { host: '127.0.0.1', port: 0 },
    region: 'eu',
    routes: { replicas: () => [replica.replica] },
    health: { path: '/health', intervalMs: 60_000 },
    limits,
    ...(tls === undefined ? {} : { tls }),
  })
  cleanups.push(() => gateway.close())
  return { replica, gateway, port: gateway.address().port }
}

/** Opens a raw connection, writes `head`, and resolves with all the gateway sent once it closes the connection. */
function rawExchange(port: number, head: string, drip?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let received = ''
    let timer: NodeJS.Timeout | undefined
    socket.on('connect', () => {
      socket.write(head)
      // A slow client: one more header line now and then, never the blank line that ends the head.
      if (drip !== undefined) timer = setInterval(() => socket.writable && socket.write(drip), 100)
    })
    socket.on('data', (data: Buffer) => (received += data.toString('latin1')))
    socket.on('error', (error: Error & { code?: string }) => (error.code === 'ECONNRESET' || error.code === 'EPIPE' ? undefined : reject(error)))
    socket.on('close', () => {
      clearInterval(timer)
      resolve(received)
    })
  })
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket))
    socket.on('error', reject)
  })
}

/** The status line of the first answer on `socket` to a GET. */
function getOn(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    socket.on('data', (data: Buffer) => {
      text += data.toString('latin1')
      if (text.includes('\r\n')) resolve(text.slice(0, text.indexOf('\r\n')))
    })
    socket.on('error', reject)
    socket.write('GET / HTTP/1.1\r\nhost: gateway\r\n\r\n')
  })
}

describe('gateway: hostile clients', () => {
  it('closes a connection whose headers never finish (slowloris), answering 408', async () => {
    const { port } = await setup({ headersTimeoutMs: 300, requestTimeoutMs: 1_000 })
    const received = await rawExchange(port, 'GET / HTTP/1.1\r\nhost: gateway\r\n', 'x-slow: 1\r\n')
    assert.match(received, /^HTTP\/1\.1 408/)
  })

  it('answers 431 to headers over the limit', async () => {
    const { port, replica } = await setup({ maxHeaderBytes: 8 * 1024 })
    const received = await rawExchange(port, `GET / HTTP/1.1\r\nhost: gateway\r\nx-big: ${'a'.repeat(32 * 1024)}\r\n\r\n`)
    assert.match(received, /^HTTP\/1\.1 431/)
    assert.equal(replica.seen.get('GET /'), undefined)
  })

  it('answers 413 to a body over the limit, announced or streamed', async () => {
    const { port, replica } = await setup({ maxBodyBytes: 64 * 1024 })
    const announced = await rawExchange(port, `POST /sink HTTP/1.1\r\nhost: gateway\r\ncontent-length: ${1024 * 1024}\r\n\r\n`)
    assert.match(announced, /^HTTP\/1\.1 413/)
    assert.equal(replica.seen.get('POST /sink'), undefined)
    const chunk = 'z'.repeat(100 * 1024)
    const streamed = await rawExchange(port, `POST /sink HTTP/1.1\r\nhost: gateway\r\ntransfer-encoding: chunked\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`)
    assert.match(streamed, /^HTTP\/1\.1 413/)
    // Within the limit, the same route answers.
    const fine = await send(port, { method: 'POST', path: '/sink', body: Buffer.alloc(1000) })
    assert.equal(fine.status, 200)
    assert.equal(fine.body.toString(), '1000')
  })

  it('answers 429 to connections from one address beyond its cap', async () => {
    const { port, gateway } = await setup({ maxConnectionsPerAddress: 2 })
    const first = await openSocket(port)
    const second = await openSocket(port)
    cleanups.push(() => void first.destroy(), () => void second.destroy())
    await waitFor(() => gateway.stats().connections === 2)
    const third = await openSocket(port)
    cleanups.push(() => void third.destroy())
    await waitFor(() => gateway.stats().connections === 3)
    assert.match(await getOn(third), /^HTTP\/1\.1 429/)
    assert.match(await getOn(first), /^HTTP\/1\.1 200/)
    assert.match(await getOn(second), /^HTTP\/1\.1 200/)
    assert.equal(gateway.stats().refusedConnections, 1)
  })
})

async function waitFor(test: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000
  while (!test()) {
    if (Date.now() > deadline) throw new Error('the gateway never reached the expected state')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A self-signed certificate for 127.0.0.1, or why none could be made. */
function selfSigned(): { cert: string; key: string } | string {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-gateway-tls-'))
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' })
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') }
  } catch (error) {
    return `openssl could not make a self-signed certificate: ${error instanceof Error ? error.message : String(error)}`
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('gateway: TLS', () => {
  const tls = selfSigned()
  it('serves HTTPS with the given certificate and tells the replica the client used https', { skip: typeof tls === 'string' ? tls : false }, async () => {
    const { cert, key } = tls as { cert: string; key: string }
    const { port } = await setup({}, { cert, key })
    const answer = await new Promise<{ status: number; replica: string; body: string }>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/headers', ca: cert, agent: false }, (res) => {
        let body = ''
        res.on('data', (chunk: Buffer) => (body += chunk.toString()))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, replica: String(res.headers['x-hearth-replica']), body }))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    })
    assert.equal(answer.status, 200)
    assert.equal(answer.replica, 'a')
    const seen = JSON.parse(answer.body) as Record<string, string>
    assert.equal(seen['x-forwarded-proto'], 'https')
    assert.match(seen.forwarded ?? '', /proto=https/)
  })
})
