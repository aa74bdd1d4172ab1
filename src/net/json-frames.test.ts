import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import './polyfill.ts'
import { streamPair } from '@libp2p/utils'
import { HearthError } from '../errors.ts'
import { encodeJsonFrame, FrameError, jsonFrames } from './json-frames.ts'

// An in-memory libp2p stream pair: the codec alone, without sockets (host and protocol tests cover real TCP).
describe('length-prefixed JSON frames', () => {
  it('round-trips a value and reports its size', async () => {
    const [a, b] = await streamPair()
    const value = { n: 1, s: 'é', list: [true, null] }
    await jsonFrames(a, 1024).write(encodeJsonFrame(value))
    const { value: read, bytes } = await jsonFrames(b, 1024).read()
    assert.deepEqual({ value: read, bytes }, { value, bytes: encodeJsonFrame(value).byteLength })
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

  it('asks the gate with the declared length before reading the body, and reads nothing when it refuses', async () => {
    const [a, b] = await streamPair()
    a.send(Uint8Array.from([0x80, 0x08, 1, 2, 3])) // announces 1024 bytes, sends 3 of them
    const asked: number[] = []
    const refusal = new HearthError('HEARTH_ERR_NET_BUSY', 'no room')
    const frames = jsonFrames(b, 4096, { gate: async (bytes) => { asked.push(bytes); throw refusal } })
    await assert.rejects(frames.read(), (error: unknown) => error === refusal)
    assert.deepEqual(asked, [1024])
  })

  it('holds the gate\'s reservation until the frame is released, and gives it back when the frame is abandoned', async () => {
    const [a, b] = await streamPair()
    let held = 0
    const gate = async (bytes: number): Promise<() => void> => {
      held += bytes
      return () => { held -= bytes }
    }
    const frames = jsonFrames(b, 4096, { gate })
    const value = { hello: 'x'.repeat(100) }
    await jsonFrames(a, 4096).write(encodeJsonFrame(value))
    const frame = await frames.read()
    assert.deepEqual(frame.value, value)
    assert.equal(held, frame.bytes)
    frame.release()
    frame.release()
    assert.equal(held, 0)
    // Not JSON: refused, and nothing stays held.
    a.send(Uint8Array.from([2, 0xc3, 0x28]))
    await assert.rejects(frames.read(), (error: unknown) => error instanceof FrameError && error.failure === 'malformed')
    assert.equal(held, 0)
  })

  it('abandons a frame whose body does not arrive within its deadline, and one that is due but never starts', async () => {
    const [a, b] = await streamPair()
    let held = 0
    const gate = async (bytes: number): Promise<() => void> => {
      held += bytes
      return () => { held -= bytes }
    }
    const deadline = { allowanceMs: 50, minBytesPerSecond: 1_000_000 }
    a.send(Uint8Array.from([0x80, 0x08, ...new Uint8Array(10)])) // 1024 announced, 10 sent, and no more
    await assert.rejects(jsonFrames(b, 4096, { gate, deadline }).read({ signal: AbortSignal.timeout(60_000) }), (error: unknown) =>
      error instanceof FrameError && error.failure === 'too-slow' && error.declaredBytes === 1024 && /1024 bytes did not arrive/.test(error.message))
    assert.equal(held, 0)
    const [, d] = await streamPair()
    await assert.rejects(jsonFrames(d, 4096, { gate, deadline }).read({ due: true, signal: AbortSignal.timeout(60_000) }), (error: unknown) =>
      error instanceof FrameError && error.failure === 'too-slow')
  })

  it('pauses a stream that sends more than the frame being read needs, and takes the rest in once asked', async () => {
    const [a, b] = await streamPair()
    const frames = jsonFrames(b, 1024 * 1024)
    const big = encodeJsonFrame({ blob: 'y'.repeat(300_000) })
    await jsonFrames(a, 1024 * 1024).writeFrames([encodeJsonFrame({ first: true }), big])
    assert.deepEqual((await frames.read()).value, { first: true })
    // Nobody reads: the reader stops taking bytes in rather than holding the second frame's 300 KB.
    const deadline = Date.now() + 30_000
    while (b.readStatus !== 'paused' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    assert.equal(b.readStatus, 'paused')
    assert.equal((await frames.read()).bytes, big.byteLength)
  })

  it('rethrows the abort reason when the signal fires first', async () => {
    const [, b] = await streamPair()
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('gave up')), 20)
    await assert.rejects(jsonFrames(b, 100).read({ signal: controller.signal }), /gave up/)
  })
})
