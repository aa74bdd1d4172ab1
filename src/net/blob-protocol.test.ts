import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { defineBlobProtocol, requestBlob, requestBlobStream, serveBlobProtocol } from './blob-protocol.ts'
import { createHost } from './host.ts'
import type { Host } from './host.ts'
import { encodeJsonFrame, jsonFrames } from './json-frames.ts'

const spec = {
  request: z.strictObject({ offset: z.number().int().nonnegative(), maxBytes: z.number().int().positive() }),
  header: z.strictObject({ offset: z.number().int().nonnegative() }),
  maxRequestBytes: 256,
  maxHeaderBytes: 256,
  maxBodyBytes: 1 << 20,
  timeoutMs: 3000,
}
const chunks = defineBlobProtocol({ ...spec, id: '/hearth/test/chunks/1' })
const hostile = defineBlobProtocol({ ...spec, id: '/hearth/test/hostile/1' })
const silent = defineBlobProtocol({ ...spec, id: '/hearth/test/silent/1', timeoutMs: 300 })
/** Bodies in frames: 64 KiB from the honest responder, 1000 bytes from the hostile one. */
const framed = defineBlobProtocol({ ...spec, id: '/hearth/test/framed/1', maxBodyBytes: 4 << 20, bodyFrameBytes: 64 << 10 })
const hostileFramed = defineBlobProtocol({ ...spec, id: '/hearth/test/hostile-framed/1', bodyFrameBytes: 1000 })
const blob = randomBytes(3 << 20)

describe('binary blob protocol over real libp2p', () => {
  let requester: Host
  let responder: Host
  /** What the hostile responder sends after reading a request; set by each test. */
  let misbehave: (stream: Stream) => Promise<void> = async () => {}

  before(async () => {
    requester = await createHost({ identity: generateIdentity() })
    responder = await createHost({ identity: generateIdentity() })
    await requester.start()
    await responder.start()
    await serveBlobProtocol({ libp2p: responder.libp2p }, chunks, ({ offset, maxBytes }, ctx) => {
      if (offset >= blob.length) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `nothing at ${offset} for ${ctx.remoteAddress}`)
      return { header: { offset }, body: blob.subarray(offset, offset + maxBytes) }
    })
    await serveBlobProtocol({ libp2p: responder.libp2p }, framed, ({ offset, maxBytes }) => ({ header: { offset }, body: blob.subarray(offset, offset + maxBytes) }))
    await responder.libp2p.handle(hostileFramed.id, async (stream) => {
      try {
        await jsonFrames(stream, 256).read()
        await misbehave(stream)
      } catch (error) {
        stream.abort(error as Error)
      }
    })
    await responder.libp2p.handle(hostile.id, async (stream) => {
      try {
        await jsonFrames(stream, 256).read()
        await misbehave(stream)
      } catch (error) {
        stream.abort(error as Error)
      }
    })
    await responder.libp2p.handle(silent.id, async () => {
      // Reads nothing and never answers.
    })
  })
  after(async () => {
    await requester.stop()
    await responder.stop()
  })
  const target = (): string => responder.multiaddrs()[0]!

  it('moves a body of raw bytes behind its header, and many in parallel', async () => {
    const one = await requestBlob({ libp2p: requester.libp2p }, target(), chunks, { offset: 5, maxBytes: 1 << 20 })
    assert.deepEqual(one.header, { offset: 5 })
    assert.ok(Buffer.from(one.body).equals(blob.subarray(5, 5 + (1 << 20))))
    const all = await Promise.all([0, 1, 2].map((i) => requestBlob({ libp2p: requester.libp2p }, target(), chunks, { offset: i << 20, maxBytes: 1 << 20 })))
    assert.ok(Buffer.concat(all.map((answer) => answer.body)).equals(blob))
  })

  it('sends a large body in frames, read as they come or whole; a small or empty one in one frame', async () => {
    const deps = { libp2p: requester.libp2p }
    const streamed = await requestBlobStream(deps, target(), framed, { offset: 5, maxBytes: 4 << 20 })
    assert.deepEqual(streamed.header, { offset: 5 })
    assert.equal(streamed.bodyBytes, blob.length - 5)
    const pieces: Uint8Array[] = []
    for await (const piece of streamed.body) pieces.push(piece)
    assert.ok(pieces.length >= Math.ceil((blob.length - 5) / (64 << 10)), `${pieces.length} frames`)
    assert.ok(pieces.every((piece) => piece.byteLength > 0 && piece.byteLength <= 64 << 10))
    assert.ok(Buffer.concat(pieces).equals(blob.subarray(5)))
    const whole = await requestBlob(deps, target(), framed, { offset: 5, maxBytes: 4 << 20 })
    assert.ok(Buffer.from(whole.body).equals(blob.subarray(5)))
    for (const [offset, maxBytes] of [[100, 1000], [blob.length, 10]] as const) {
      const small = await requestBlobStream(deps, target(), framed, { offset, maxBytes })
      const got: Uint8Array[] = []
      for await (const piece of small.body) got.push(piece)
      assert.ok(Buffer.concat(got).equals(blob.subarray(offset, offset + maxBytes)), `${offset}+${maxBytes}`)
    }
  })

  it('refuses a body frame over the frame size or what remains, a body cut short, and bytes after it', async () => {
    const head = (bodyBytes: number): Uint8Array => encodeJsonFrame({ ok: true, header: { offset: 0 }, bodyBytes })
    const read = async (): Promise<number> => {
      const answer = await requestBlobStream({ libp2p: requester.libp2p }, target(), hostileFramed, { offset: 0, maxBytes: 3000 })
      let bytes = 0
      for await (const piece of answer.body) bytes += piece.byteLength
      return bytes
    }
    misbehave = async (stream) => {
      await jsonFrames(stream, 256).writeFrames([head(3000), new Uint8Array(1000), new Uint8Array(1500)])
      await stream.close()
    }
    await assert.rejects(read(), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE') && /announces 1500 bytes, over the limit of 1000/.test(error.message))
    misbehave = async (stream) => {
      await jsonFrames(stream, 256).writeFrames([head(1500), new Uint8Array(1000), new Uint8Array(1000)])
      await stream.close()
    }
    await assert.rejects(read(), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE') && /announces 1000 bytes, over the limit of 500/.test(error.message))
    misbehave = async (stream) => {
      await jsonFrames(stream, 256).writeFrames([head(3000), new Uint8Array(1000)])
      await stream.close()
    }
    await assert.rejects(read(), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_INVALID') && /1000 came\).*stream ended before a complete frame/.test(error.message))
    misbehave = async (stream) => {
      await jsonFrames(stream, 256).writeFrames([head(2000), new Uint8Array(1000), new Uint8Array(1000), new Uint8Array(10)])
      await stream.close()
    }
    await assert.rejects(read(), (error: unknown) => isHearthError(error) && /followed the end of the exchange/.test(error.message))
    misbehave = async (stream) => {
      await jsonFrames(stream, 256).writeFrames([head(2000), new Uint8Array(1000), new Uint8Array(1000)])
      await stream.close()
    }
    assert.equal(await read(), 2000)
  })

  it('passes on a refusal by the handler with its code', async () => {
    await assert.rejects(requestBlob({ libp2p: requester.libp2p }, target(), chunks, { offset: 3 << 20, maxBytes: 10 }), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_NET_REMOTE') && error.details?.remoteCode === 'HEARTH_ERR_EXEC_PACKAGE_INVALID' && /nothing at 3145728/.test(error.message))
  })

  it('refuses a body larger than the requester allows, from the header alone', async () => {
    await assert.rejects(requestBlob({ libp2p: requester.libp2p }, target(), chunks, { offset: 0, maxBytes: 1000 }, { maxBodyBytes: 999 }), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_INVALID') && /declares a body of 1000 bytes, over the limit of 999/.test(error.message))
  })

  it('refuses a server that sends more bytes than its header declared, before reading them', async () => {
    misbehave = async (stream) => {
      await jsonFrames(stream, 256).writeFrames([encodeJsonFrame({ ok: true, header: { offset: 0 }, bodyBytes: 10 }), new Uint8Array(500_000)])
      await stream.close()
    }
    await assert.rejects(requestBlob({ libp2p: requester.libp2p }, target(), hostile, { offset: 0, maxBytes: 100 }), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE') && /announces 500000 bytes, over the limit of 10/.test(error.message))
  })

  it('refuses a body shorter than declared, a truncated stream, and bytes after the body', async () => {
    misbehave = async (stream) => {
      await jsonFrames(stream, 256).writeFrames([encodeJsonFrame({ ok: true, header: { offset: 0 }, bodyBytes: 100 }), new Uint8Array(60)])
      await stream.close()
    }
    await assert.rejects(requestBlob({ libp2p: requester.libp2p }, target(), hostile, { offset: 0, maxBytes: 100 }), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_INVALID') && /declared 100 bytes, but the body holds 60/.test(error.message))

    misbehave = async (stream) => {
      const frames = jsonFrames(stream, 256)
      await frames.write(encodeJsonFrame({ ok: true, header: { offset: 0 }, bodyBytes: 100_000 }))
      // The body's prefix announces 100000 bytes; only half of them come before the stream ends.
      stream.send(Uint8Array.from([0xa0, 0x8d, 0x06]))
      stream.send(new Uint8Array(50_000))
      await stream.close()
    }
    await assert.rejects(requestBlob({ libp2p: requester.libp2p }, target(), hostile, { offset: 0, maxBytes: 100_000 }), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_INVALID') && /stream ended before a complete frame arrived/.test(error.message))

    misbehave = async (stream) => {
      await jsonFrames(stream, 256).writeFrames([encodeJsonFrame({ ok: true, header: { offset: 0 }, bodyBytes: 3 }), Uint8Array.from([1, 2, 3]), new Uint8Array(40)])
      await stream.close()
    }
    await assert.rejects(requestBlob({ libp2p: requester.libp2p }, target(), hostile, { offset: 0, maxBytes: 100 }), (error: unknown) =>
      isHearthError(error) && /followed the end of the exchange/.test(error.message))
  })

  it('refuses a header that is not one, and one that breaks the schema', async () => {
    const cases = [
      [{ hello: 1 }, /not a header frame/],
      [{ ok: true, header: { offset: -1 }, bodyBytes: 0 }, /does not match the schema/],
      [{ ok: true, header: { offset: 0 }, bodyBytes: 0, pad: 'x'.repeat(300) }, /header is \d+ bytes, over the limit of 256/],
    ] as const
    for (const [header, pattern] of cases) {
      misbehave = async (stream) => {
        await jsonFrames(stream, 256).write(encodeJsonFrame(header))
        await stream.close()
      }
      await assert.rejects(requestBlob({ libp2p: requester.libp2p }, target(), hostile, { offset: 0, maxBytes: 100 }), (error: unknown) =>
        isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_INVALID') && pattern.test(error.message))
    }
  })

  it('times out on a server that never answers, and names a protocol the peer does not serve', async () => {
    await assert.rejects(requestBlob({ libp2p: requester.libp2p }, target(), silent, { offset: 0, maxBytes: 100 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_TIMEOUT'))
    const unknown = defineBlobProtocol({ ...spec, id: '/hearth/test/unknown/1' })
    await assert.rejects(requestBlob({ libp2p: requester.libp2p }, target(), unknown, { offset: 0, maxBytes: 100 }), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_NET_DIAL') && error.details?.reason === 'unsupported-protocol')
  })

  it('answers a malformed or oversized request with an error frame and keeps serving', async () => {
    for (const bytes of [encodeJsonFrame({ offset: 'x' }), encodeJsonFrame({ pad: 'x'.repeat(1000) })]) {
      const stream = await requester.libp2p.dialProtocol(multiaddr(target()), chunks.id)
      const frames = jsonFrames(stream, 16 * 1024)
      await frames.write(bytes)
      await stream.close()
      const answer = (await frames.read({ signal: AbortSignal.timeout(3000) })).value as { ok: boolean; error: { code: string } }
      assert.equal(answer.ok, false)
      assert.match(answer.error.code, /HEARTH_ERR_NET_MESSAGE_(INVALID|TOO_LARGE)/)
      stream.abort(new Error('test done'))
    }
    const again = await requestBlob({ libp2p: requester.libp2p }, target(), chunks, { offset: 0, maxBytes: 10 })
    assert.ok(Buffer.from(again.body).equals(blob.subarray(0, 10)))
  })
})
