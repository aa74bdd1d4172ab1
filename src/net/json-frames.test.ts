import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import './polyfill.ts'
import { streamPair } from '@libp2p/utils'
import { encodeJsonFrame, FrameError, jsonFrames } from './json-frames.ts'

// An in-memory libp2p stream pair: the codec alone, without sockets (host and protocol tests cover real TCP).
describe('length-prefixed JSON frames', () => {
  it('round-trips a value and reports its size', async () => {
    const [a, b] = await streamPair()
    const value = { n: 1, s: 'é', list: [true, null] }
    await jsonFrames(a, 1024).write(encodeJsonFrame(value))
    assert.deepEqual(await jsonFrames(b, 1024).read(), { value, bytes: encodeJsonFrame(value).byteLength })
  })

  it('refuses on the length prefix alone, naming the announced size', async () => {
    const [a, b] = await streamPair()
    a.send(Uint8Array.from([0x80, 0x08])) // announces 1024 bytes, sends none of them
    await assert.rejects(jsonFrames(b, 100).read(), (error: unknown) =>
      error instanceof FrameError && error.failure === 'too-large' && error.declaredBytes === 1024 && /1024 bytes, over the limit of 100/.test(error.message))
  })

  it('calls a frame that is not UTF-8 JSON, or cut short, malformed', async () => {
    for (const bytes of [[3, 0x7b, 0x7b, 0x7b], [2, 0xc3, 0x28], [9, 0x7b]]) {
      const [a, b] = await streamPair()
      a.send(Uint8Array.from(bytes))
      await a.close()
      await assert.rejects(jsonFrames(b, 100).read(), (error: unknown) => error instanceof FrameError && error.failure === 'malformed')
    }
  })

  it('gives up on a length prefix that never ends', async () => {
    const [a, b] = await streamPair()
    a.send(new Uint8Array(8).fill(0xff))
    await assert.rejects(jsonFrames(b, 100).read(), (error: unknown) => error instanceof FrameError && error.failure === 'too-large')
  })

  it('carries a binary frame behind a JSON one, each read under its own limit', async () => {
    const [a, b] = await streamPair()
    const body = Uint8Array.from({ length: 5000 }, (_, i) => i % 251)
    await jsonFrames(a, 1024).writeFrames([encodeJsonFrame({ bodyBytes: body.length }), body])
    await a.close()
    const frames = jsonFrames(b, 1024, { maxBinaryBytes: 8192 })
    assert.deepEqual((await frames.read()).value, { bodyBytes: 5000 })
    assert.deepEqual(await frames.readBytes({ maxBytes: 5000 }), body)
    await frames.readEnd()
  })

  it('refuses a binary frame longer than the size the caller allows, on its prefix', async () => {
    const [a, b] = await streamPair()
    await jsonFrames(a, 1024).write(new Uint8Array(2000))
    await assert.rejects(jsonFrames(b, 100, { maxBinaryBytes: 8192 }).readBytes({ maxBytes: 1999 }), (error: unknown) =>
      error instanceof FrameError && error.failure === 'too-large' && error.declaredBytes === 2000 && /2000 bytes, over the limit of 1999/.test(error.message))
    // A JSON frame on the same kind of stream keeps the JSON limit, whatever binary frames may hold.
    const [c, d] = await streamPair()
    await jsonFrames(c, 1024).write(encodeJsonFrame('x'.repeat(200)))
    await assert.rejects(jsonFrames(d, 100, { maxBinaryBytes: 8192 }).read(), (error: unknown) => error instanceof FrameError && error.failure === 'too-large')
    await assert.rejects(jsonFrames(d, 100).readBytes({ maxBytes: 10 }), RangeError)
  })

  it('calls a binary frame cut short malformed, and anything after the last frame an error', async () => {
    const [a, b] = await streamPair()
    a.send(Uint8Array.from([100, 1, 2, 3]))
    await a.close()
    await assert.rejects(jsonFrames(b, 100, { maxBinaryBytes: 1000 }).readBytes({ maxBytes: 100 }), (error: unknown) =>
      error instanceof FrameError && error.failure === 'malformed' && error.declaredBytes === 100)
    for (const extra of [[0], [3, 1, 2, 3], [0x80, 0x08, 1]]) {
      const [c, d] = await streamPair()
      c.send(Uint8Array.from(extra))
      await c.close()
      await assert.rejects(jsonFrames(d, 100).readEnd(), (error: unknown) => error instanceof FrameError && /followed the end/.test(error.message), `after ${extra.join(',')}`)
    }
  })

  it('rethrows the abort reason when the signal fires first', async () => {
    const [, b] = await streamPair()
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('gave up')), 20)
    await assert.rejects(jsonFrames(b, 100).read({ signal: controller.signal }), /gave up/)
  })
})
