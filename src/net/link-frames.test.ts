import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { FramedLink, LinkCutError } from './link-frames.ts'

/** Everything `stream` reads until its end; rejects on an error. */
function readAll(stream: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.once('end', () => resolve(Buffer.concat(chunks)))
    stream.once('error', reject)
  })
}

/** What `stream` read before it failed, and the failure; rejects when it ended cleanly instead. */
function readUntilFailure(stream: Duplex): Promise<{ read: string; error: Error }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.once('end', () => reject(new Error(`ended cleanly after "${Buffer.concat(chunks).toString()}"`)))
    stream.once('error', (error: Error) => resolve({ read: Buffer.concat(chunks).toString(), error }))
  })
}

function frame(text: string): Buffer {
  const body = Buffer.from(text)
  const header = Buffer.alloc(4)
  header.writeUInt32BE(body.length, 0)
  return Buffer.concat([header, body])
}

const endFrame = Buffer.alloc(4)

describe('link frames', () => {
  let server: Server
  const accepted: Socket[] = []
  const links: FramedLink[] = []
  /** A link over `socket`, ended with the suite (a link left half open fails when its connection goes). */
  const link = (socket: Socket): FramedLink => {
    const made = new FramedLink(socket)
    links.push(made)
    return made
  }

  before(async () => {
    server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      socket.on('error', () => {})
      accepted.push(socket)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  })
  after(() => {
    for (const made of links) made.on('error', () => {}).destroy()
    for (const socket of accepted) socket.destroy()
    server.close()
  })

  /** A TCP connection on loopback: the raw socket of each side. */
  async function pair(): Promise<{ near: Socket; far: Socket }> {
    const count = accepted.length
    const near = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, allowHalfOpen: true, noDelay: true })
    near.on('error', () => {})
    await once(near, 'connect')
    while (accepted.length === count) await new Promise((resolve) => setImmediate(resolve))
    return { near, far: accepted[count]! }
  }

  it('carries bytes both ways and a half-close each way, then closes without an error', async () => {
    const { near, far } = await pair()
    const a = link(near)
    const b = link(far)
    const atB = readAll(b)
    a.write('one, ')
    a.write(Buffer.alloc(0))
    a.end('two')
    assert.equal((await atB).toString(), 'one, two')
    // b's side is still open after a's end: a half-close.
    const atA = readAll(a)
    b.end('back')
    assert.equal((await atA).toString(), 'back')
    await Promise.all([a, b].map((link) => (link.closed ? undefined : once(link, 'close'))))
    assert.equal(a.errored, null)
    assert.equal(b.errored, null)
  })

  it('reads frames however the connection splits them, one byte at a time included', async () => {
    const { near, far } = await pair()
    const b = link(far)
    const atB = readAll(b)
    const wire = Buffer.concat([frame('split '), frame('across '), frame('every byte'), endFrame])
    for (const byte of wire) {
      await new Promise<void>((resolve) => near.write(Buffer.of(byte), () => resolve()))
      await new Promise((resolve) => setImmediate(resolve))
    }
    near.end()
    assert.equal((await atB).toString(), 'split across every byte')
  })

  it('passes 24 MiB through unchanged, with a reader slower than the writer', async () => {
    const { near, far } = await pair()
    const a = link(near)
    const b = link(far)
    const data = randomBytes(24 * 1024 * 1024)
    const digest = createHash('sha256')
    let bytes = 0
    b.on('data', (chunk: Buffer) => {
      digest.update(chunk)
      bytes += chunk.length
      b.pause()
      setImmediate(() => b.resume())
    })
    const ended = once(b, 'end')
    let pausedWriter = false
    for (let at = 0; at < data.length; at += 1024 * 1024) {
      if (!a.write(data.subarray(at, at + 1024 * 1024))) {
        pausedWriter = true
        await once(a, 'drain')
      }
    }
    a.end()
    await ended
    assert.equal(bytes, data.length)
    assert.equal(digest.digest('hex'), createHash('sha256').update(data).digest('hex'))
    assert.equal(pausedWriter, true, 'the writer was held back by the slow reader')
  })

  it('fails the reader, never ends it, when the connection ends before the end frame', async () => {
    const { near, far } = await pair()
    const b = link(far)
    const seen = readUntilFailure(b)
    near.end(Buffer.concat([frame('HTTP/1.0 200 OK\r\n\r\nhalf a bo'), frame('dy')]))
    const { read, error } = await seen
    assert.equal(read, 'HTTP/1.0 200 OK\r\n\r\nhalf a body')
    assert.ok(error instanceof LinkCutError, error.message)
  })

  it('fails the reader when the connection ends inside a frame, or inside a header', async () => {
    for (const wire of [frame('cut inside').subarray(0, 8), Buffer.concat([frame('whole'), endFrame.subarray(0, 2)])]) {
      const { near, far } = await pair()
      const seen = readUntilFailure(link(far))
      near.end(wire)
      assert.ok((await seen).error instanceof LinkCutError)
    }
  })

  it('tells the far side of a destroyed link that it was cut', async () => {
    const { near, far } = await pair()
    const a = link(near)
    const b = link(far)
    const seen = readUntilFailure(b)
    a.write('in flight')
    await new Promise((resolve) => setImmediate(resolve))
    a.destroy()
    const { error } = await seen
    assert.ok(error instanceof LinkCutError, error.message)
  })

  it('refuses bytes after the far side\'s end frame', async () => {
    const { near, far } = await pair()
    const b = link(far)
    const seen = new Promise<Error>((resolve) => b.once('error', resolve))
    b.resume()
    near.write(Buffer.concat([frame('done'), endFrame, frame('and more')]))
    const error = await seen
    assert.ok(error instanceof LinkCutError)
    assert.match(error.message, /after its end/)
  })
})
