/**
 * Upgraded connections through the gateway: WebSocket, or any protocol an HTTP/1.1 Upgrade switches to. The request
 * goes to a healthy replica chosen as any request's is (never retried elsewhere: once sent, the replica may have acted
 * on it), over a stream of its own; once the replica answers 101 Switching Protocols, its answer (with the header
 * naming the replica) goes to the client and the bytes then flow both ways unread, with back-pressure, until either
 * side closes. Any other answer goes back as it came and the connection ends with it. An upgraded connection counts
 * as a request in flight on its replica for as long as it lasts, and toward its address's connection cap.
 */
import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import { forwardedRequestHeaders } from './gateway-headers.ts'
import type { ForwardContext } from './gateway-forward.ts'
import type { ReplicaState } from './gateway-pool.ts'

export interface UpgradeInit {
  ctx: ForwardContext
  /** Connections past their address's cap (answered 429 and closed). */
  overCap: WeakSet<Socket>
  clientAddressOf(req: IncomingMessage): string
  /** Largest response head a replica may send before the switch. */
  maxHeaderBytes: number
  /** Time from sending the request to the replica's whole response head. */
  upstreamTimeoutMs: number
  connectTimeoutMs: number
}

/** Serves upgrades on `server`; the returned function ends every upgraded connection (the gateway closing). */
export function serveUpgrades(server: Server, init: UpgradeInit): () => void {
  const open = new Set<Duplex>()
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    open.add(socket)
    socket.once('close', () => open.delete(socket))
    socket.on('error', () => socket.destroy())
    void upgrade(init, req, socket, head).catch(() => socket.destroy())
  })
  return () => {
    for (const socket of open) socket.destroy()
  }
}

/** The gateway's own answer to an upgrade request, and the end of its connection. */
function refuse(socket: Duplex, status: number, reason: string, text: string, headers: Record<string, string> = {}): void {
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text) + 1}\r\nconnection: close\r\n${extra}\r\n${text}\n`)
}

/** The request head as the replica gets it: the forwarding headers, and the Upgrade it asks for. */
function requestHead(req: IncomingMessage, clientAddress: string, proto: 'http' | 'https'): string {
  const headers = forwardedRequestHeaders(req.headers, clientAddress, proto)
  headers.connection = 'upgrade'
  headers.upgrade = req.headers.upgrade ?? ''
  let head = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    for (const one of Array.isArray(value) ? value : [value]) head += `${name}: ${String(one).replace(/[\r\n]/g, ' ')}\r\n`
  }
  return `${head}\r\n`
}

/** Reads the replica's response head (up to the blank line), with what came after it. */
function readHead(stream: Duplex, maxBytes: number, timeoutMs: number): Promise<{ head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0)
    const timer = setTimeout(() => finish(new Error(`the replica sent no answer within ${timeoutMs} ms`)), timeoutMs)
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end >= 0) finish(undefined, { head: buffered.subarray(0, end + 2).toString('latin1'), rest: buffered.subarray(end + 4) })
      else if (buffered.length > maxBytes) finish(new Error(`the replica's answer head passed ${maxBytes} bytes`))
    }
    const onEnd = () => finish(new Error('the replica closed the connection before it answered'))
    function finish(error: Error | undefined, value?: { head: string; rest: Buffer }): void {
      clearTimeout(timer)
      stream.off('data', onData).off('end', onEnd).off('error', finish)
      stream.pause()
      if (error !== undefined) reject(error)
      else resolve(value!)
    }
    stream.on('data', onData).once('end', onEnd).once('error', finish)
  })
}

async function upgrade(init: UpgradeInit, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const { ctx } = init
  ctx.counters.requests++
  if (init.overCap.has(socket as Socket)) return refuse(socket, 429, 'Too Many Requests', 'too many connections from your address', { 'retry-after': '1' })
  const state = ctx.pool.choose(ctx.regionOf(req), new Set())
  if (state === undefined) return refuse(socket, 503, 'Service Unavailable', 'no healthy replica of this service now', { 'retry-after': String(ctx.retryAfterSeconds) })
  state.outstanding++
  state.requests++
  let stream: Duplex | undefined
  const done = () => {
    stream?.destroy()
    socket.destroy()
  }
  socket.once('close', () => {
    stream?.destroy()
    ctx.pool.release(state)
  })
  try {
    stream = await state.connect(init.connectTimeoutMs)
    if (socket.destroyed) return done()
    stream.write(requestHead(req, init.clientAddressOf(req), ctx.proto))
    if (head.length > 0) stream.write(head)
    const answer = await readHead(stream, init.maxHeaderBytes, init.upstreamTimeoutMs)
    const switched = /^HTTP\/1\.1 101 /.test(answer.head)
    // The replica's own answer, naming the replica as every answer through the gateway does.
    socket.write(`${answer.head}x-hearth-replica: ${state.replica.id}\r\nx-hearth-version: ${state.replica.version}\r\n\r\n`)
    if (answer.rest.length > 0) socket.write(answer.rest)
    stream.on('error', done).once('close', done)
    stream.pipe(socket)
    if (switched) socket.pipe(stream)
    else stream.once('end', () => socket.end())
    stream.resume()
  } catch (error) {
    failed(state, ctx, socket, error)
    stream?.destroy()
  }
}

/** A replica that could not take the upgrade: a 502 to the client (before any byte of an answer went out). */
function failed(state: ReplicaState, ctx: ForwardContext, socket: Duplex, error: unknown): void {
  state.failures++
  const why = error instanceof Error ? error.message : String(error)
  if (!socket.destroyed) refuse(socket, 502, 'Bad Gateway', `the replica did not take the upgrade: ${why}`)
}
