import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, request as httpRequest, type Server } from 'node:http'
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { createHost, type Host } from './host.ts'
import { encodeJsonFrame, jsonFrames } from './json-frames.ts'
import { defineTunnelProtocol, type TunnelSocket } from './tunnel.ts'

const open = z.strictObject({ target: z.enum(['echo', 'http', 'cut']) })
const tunnel = defineTunnelProtocol({ id: '/hearth/test/tunnel/1', open, maxOpenBytes: 256, openTimeoutMs: 5000, idleTimeoutMs: 60_000 })
const idle = defineTunnelProtocol({ id: '/hearth/test/idle-tunnel/1', open, maxOpenBytes: 256, openTimeoutMs: 5000, idleTimeoutMs: 300 })

/** Reads a whole stream; rejects on a reset. */
async function readAll(socket: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

describe('tunnels over real libp2p', () => {
  let opener: Host
  let responder: Host
  let stranger: Host
  let echo: ReturnType<typeof createTcpServer>
  let web: Server
  let cut: ReturnType<typeof createTcpServer>
  const served: Socket[] = []

  before(async () => {
    echo = createTcpServer({ allowHalfOpen: true }, (socket) => {
      served.push(socket)
      // A tunnel that fails resets the connection it joined: the echo sees ECONNRESET.
      socket.on('error', () => {})
      socket.pipe(socket)
    }).listen(0, '127.0.0.1')
    web = createServer((req, res) => {
      const hash = createHash('sha256')
      req.on('data', (chunk: Buffer) => hash.update(chunk))
      req.on('end', () => res.end(`${req.method} ${req.url} ${hash.digest('hex')}`))
    }).listen(0, '127.0.0.1')
    // Answers with half of what it promised, then resets the connection.
    cut = createTcpServer((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n' + 'x'.repeat(500))
        setTimeout(() => socket.resetAndDestroy(), 50)
      })
    }).listen(0, '127.0.0.1')
    await Promise.all([once(echo, 'listening'), once(web, 'listening'), once(cut, 'listening')])
    opener = await createHost({ identity: generateIdentity() })
    responder = await createHost({ identity: generateIdentity() })
    stranger = await createHost({ identity: generateIdentity() })
    await Promise.all([opener.start(), responder.start(), stranger.start()])
    const ports = { echo: (echo.address() as AddressInfo).port, http: (web.address() as AddressInfo).port, cut: (cut.address() as AddressInfo).port }
    const join = async ({ target }: z.output<typeof open>, { peerId }: { peerId: { equals(other: unknown): boolean } }): Promise<Socket> => {
      if (peerId.equals(stranger.peerId)) throw new HearthError('HEARTH_ERR_SERVICE_NOT_ALLOWED', 'this peer may not open tunnels here', { hint: 'ask the owner to trust it' })
      const socket = connect({ port: ports[target], host: '127.0.0.1', allowHalfOpen: true })
      await once(socket, 'connect')
      return socket
    }
    await responder.serveTunnel(tunnel, join)
    await responder.serveTunnel(idle, join)
  })

  after(async () => {
    await Promise.all([opener.stop(), responder.stop(), stranger.stop()])
    for (const server of [echo, web, cut]) server.close()
    web.closeAllConnections()
  })

  it('carries bytes both ways unchanged, with half-close, through back-pressure', async () => {
    const { socket } = await opener.openTunnel(responder.multiaddrs()[0]!, tunnel, { target: 'echo' })
    const data = randomBytes(8 << 20)
    const reading = readAll(socket)
    socket.end(data)
    const back = await reading
    assert.equal(back.length, data.length)
    assert.ok(back.equals(data), 'the echo came back byte for byte')
  })

  it('serves node:http through the tunnel as a socket, keep-alive requests on one tunnel', async () => {
    const { socket } = await opener.openTunnel(responder.multiaddrs()[0]!, tunnel, { target: 'http' })
    const body = randomBytes(300_000)
    const ask = (method: string, path: string, payload?: Buffer): Promise<string> =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ method, path, createConnection: () => socket as unknown as Socket, headers: { connection: 'keep-alive' } }, (res) => {
          readAll(res).then((text) => resolve(text.toString()), reject)
        })
        req.on('error', reject)
        req.end(payload)
      })
    const empty = createHash('sha256').digest('hex')
    assert.equal(await ask('GET', '/a'), `GET /a ${empty}`)
    assert.equal(await ask('POST', '/b', body), `POST /b ${createHash('sha256').update(body).digest('hex')}`)
    socket.destroy()
  })

  it('resets the opener when the joined connection is reset: a cut body is never taken for whole', async () => {
    const { socket } = await opener.openTunnel(responder.multiaddrs()[0]!, tunnel, { target: 'cut' })
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n')
    await assert.rejects(readAll(socket), 'the tunnel fails instead of ending cleanly')
  })

  it('answers a refusal from the handler with its code and hint', async () => {
    await assert.rejects(stranger.openTunnel(responder.multiaddrs()[0]!, tunnel, { target: 'echo' }), (error: unknown) => {
      assert.ok(isHearthError(error))
      assert.equal(error.details?.remoteCode, 'HEARTH_ERR_SERVICE_NOT_ALLOWED')
      assert.match(error.hint ?? '', /trust/)
      return true
    })
  })

  it('fails clearly on a peer that does not serve the protocol (selected optimistically, found out at the answer)', async () => {
    const unserved = defineTunnelProtocol({ id: '/hearth/test/unserved-tunnel/1', open, maxOpenBytes: 256, openTimeoutMs: 5000, idleTimeoutMs: 60_000 })
    await assert.rejects(opener.openTunnel(responder.multiaddrs()[0]!, unserved, { target: 'echo' }), (error: unknown) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_NET_DIAL'), String(error))
      assert.match(error.message, /does not serve \/hearth\/test\/unserved-tunnel\/1/)
      return true
    })
  })

  it('refuses an opening that breaks the schema, naming the field, and an oversize one unread', async () => {
    const stream = await opener.libp2p.dialProtocol(responder.libp2p.getMultiaddrs()[0]!, tunnel.id)
    const frames = jsonFrames(stream, 16 * 1024)
    await frames.write(encodeJsonFrame({ target: 'elsewhere' }))
    const answer = (await frames.read()).value as { ok: boolean; error: { code: string; message: string } }
    assert.equal(answer.ok, false)
    assert.equal(answer.error.code, 'HEARTH_ERR_NET_MESSAGE_INVALID')
    assert.match(answer.error.message, /target/)

    const big = await opener.libp2p.dialProtocol(responder.libp2p.getMultiaddrs()[0]!, tunnel.id)
    const bigFrames = jsonFrames(big, 16 * 1024)
    await bigFrames.write(encodeJsonFrame({ target: 'x'.repeat(1000) }))
    const refused = (await bigFrames.read()).value as { ok: boolean; error: { code: string } }
    assert.equal(refused.ok, false)
    assert.equal(refused.error.code, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE')
  })

  it('resets a tunnel idle both ways past the protocol\'s idle time, on both sides', async () => {
    const before = served.length
    const { socket } = await opener.openTunnel(responder.multiaddrs()[0]!, idle, { target: 'echo' })
    const ended = new Promise<Error | undefined>((resolve) => {
      socket.on('error', resolve)
      socket.on('close', () => resolve(undefined))
    })
    socket.resume()
    await ended
    assert.ok((socket as TunnelSocket).destroyed)
    const joined = served[before]
    assert.ok(joined !== undefined)
    // The responder resets the connection it joined (the server sees ECONNRESET, not a clean end).
    if (!joined.destroyed) await new Promise((resolve) => joined.once('close', resolve))
    assert.ok(joined.destroyed, 'the responder closed the connection the idle tunnel joined')
  })
})
