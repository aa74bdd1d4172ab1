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

  it('rethrows the abort reason when the signal fires first', async () => {
    const [, b] = await streamPair()
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('gave up')), 20)
    await assert.rejects(jsonFrames(b, 100).read({ signal: controller.signal }), /gave up/)
  })
})
