/**
 * What the gateway's tests and benchmark share: replicas that are node:http servers on 127.0.0.1 reached by
 * net.connect (as a replica is reached over its own byte stream), and a small HTTP client that reports a cut answer as
 * an error.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer, request } from 'node:http'
import type { Agent, IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http'
import { connect } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { HearthError } from '../errors.ts'
import type { GatewayReplica } from './gateway-pool.ts'

export interface TestReplica {
  replica: GatewayReplica
  port: number
  server: Server
  /** Connections the server accepted. */
  connections: number
  /** Requests seen, by `METHOD /path`. */
  seen: Map<string, number>
  /** While true, the health path answers 503. */
  sick: boolean
  /** Paths at which this replica reads the body and then drops the connection, as /die does. */
  dropPaths: Set<string>
  /** Resolves when an /echo request's first body bytes arrive. */
  firstEchoBytes: Promise<void>
  /** Closes the server and drops every connection to it. */
  stop(): Promise<void>
}

/** A stream to `port` on 127.0.0.1, as a replica's `connect` gives one. */
export function loopbackConnect(port: number, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const onAbort = () => socket.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => {
      signal.removeEventListener('abort', onAbort)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}

/**
 * The test server's routes: /health (503 while sick), /headers (the request headers as JSON), /echo (the body
 * streamed back), /sink (the body's length), /cut and /cut-chunked (an answer cut mid-body), /die (the connection
 * dropped once the body is read), /bytes?n=N (N bytes), anything else a short greeting naming the replica.
 */
function route(state: TestReplica, id: string, echoStarted: () => void, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://replica')
  state.seen.set(`${req.method} ${url.pathname}`, (state.seen.get(`${req.method} ${url.pathname}`) ?? 0) + 1)
  const path = state.dropPaths.has(url.pathname) ? '/die' : url.pathname
  switch (path) {
    case '/health':
      res.writeHead(state.sick ? 503 : 200).end(state.sick ? 'sick' : 'ok')
      return
    case '/headers':
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(req.headers))
      return
    case '/echo':
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      res.flushHeaders()
      req.once('data', echoStarted)
      req.pipe(res)
      return
    case '/sink': {
      let bytes = 0
      req.on('data', (chunk: Buffer) => (bytes += chunk.length))
      req.on('end', () => res.writeHead(200).end(String(bytes)))
      return
    }
    case '/cut':
    case '/cut-chunked':
      res.writeHead(200, path === '/cut' ? { 'content-length': '100000' } : {})
      res.write(randomBytes(1000), () => setTimeout(() => req.socket.destroy(), 20))
      return
    case '/die':
      req.resume()
      req.on('end', () => req.socket.destroy())
      return
    case '/bytes':
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.alloc(Number(url.searchParams.get('n') ?? '0'), 7))
      return
    default:
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello from ${id}`)
  }
}

/**
 * An upgrade at a test replica: a WebSocket handshake (its Sec-WebSocket-Accept as RFC 6455 computes it, and the
 * client address the replica was told of) and then every byte echoed back as it came; any other protocol gets 426.
 */
function upgraded(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const key = req.headers['sec-websocket-key']
  if (req.headers.upgrade?.toLowerCase() !== 'websocket' || key === undefined) {
    socket.end('HTTP/1.1 426 Upgrade Required\r\nupgrade: websocket\r\ncontent-length: 14\r\nconnection: close\r\n\r\nwebsocket only')
    return
  }
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\nx-seen-forwarded-for: ${String(req.headers['x-forwarded-for'])}\r\n\r\n`)
  if (head.length > 0) socket.write(head)
  socket.pipe(socket)
}

export async function startReplica(id: string, region: string, version = 'v1'): Promise<TestReplica> {
  let echoStarted: () => void = () => {}
  const firstEchoBytes = new Promise<void>((resolve) => (echoStarted = resolve))
  const server = createServer()
  const state: TestReplica = {
    replica: { id, region, version, connect: (signal) => loopbackConnect(state.port, signal) },
    port: 0,
    server,
    connections: 0,
    seen: new Map(),
    sick: false,
    dropPaths: new Set(),
    firstEchoBytes,
    stop: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      return closed
    },
  }
  server.on('connection', () => state.connections++)
  server.on('request', (req: IncomingMessage, res: ServerResponse) => route(state, id, echoStarted, req, res))
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => upgraded(req, socket, head))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.port = (server.address() as AddressInfo).port
  return state
}

export interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

export interface SendOptions {
  method?: string
  path?: string
  headers?: Record<string, string>
  body?: Buffer
  agent?: Agent
}

/** One request to 127.0.0.1:`port`; rejects when the answer is cut short (a reset, or fewer bytes than announced). */
export function send(port: number, options: SendOptions = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      method: options.method ?? 'GET',
      path: options.path ?? '/',
      headers: options.headers,
      agent: options.agent ?? false,
    })
    req.on('error', reject)
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', reject)
      res.on('close', () => {
        if (res.complete) resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) })
        else reject(new Error(`the answer was cut short after ${Buffer.concat(chunks).length} bytes`))
      })
    })
    req.end(options.body)
  })
}

/**
 * A replica's connection that passes health checks (GET /health) and answers any other first request with `answer`
 * (maybe nothing), then fails with `failure`.
 */
function scriptedConnection(answer: string, failure: Error): Duplex {
  let answered = false
  const connection: Duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      callback()
      if (answered) return
      answered = true
      if (chunk.toString('latin1').startsWith('GET /health ')) {
        connection.push('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok')
        connection.push(null)
        return
      }
      if (answer !== '') connection.push(answer)
      setImmediate(() => connection.destroy(failure))
    },
  })
  return connection
}

/**
 * A replica's connection as a direct link its provider refused (the replica ended after the link was opened): any
 * request fails with the refusal before an answer (details.refusedLink: nothing reached the server).
 */
export function refusedConnection(): Duplex {
  return scriptedConnection('', new HearthError('HEARTH_ERR_NET_REMOTE', 'the provider refused the link with HEARTH_ERR_SERVICE_NOT_HOSTED', { details: { refusedLink: true, remoteCode: 'HEARTH_ERR_SERVICE_NOT_HOSTED' } }))
}

/**
 * A replica's connection that answers its first request with the first half of a 200 delimited by the connection's
 * close alone, then fails: only the way it ends tells the answer was cut.
 */
export function crashingConnection(): Duplex {
  return scriptedConnection('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nthe first half of the pa', new Error('the server crashed'))
}
