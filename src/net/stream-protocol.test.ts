import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { signPayload } from '../identity/signed.ts'
import { createHost } from './host.ts'
import type { Host } from './host.ts'
import { encodeJsonFrame, jsonFrames } from './json-frames.ts'
import { defineStreamProtocol, openStream, serveStreamProtocol } from './stream-protocol.ts'
import type { StreamDeps, StreamServer } from './stream-protocol.ts'

const base = {
  request: z.strictObject({ count: z.number().int().nonnegative(), mode: z.enum(['count', 'wait', 'fail']).default('count') }),
  event: z.strictObject({ n: z.number().int() }),
  result: z.strictObject({ total: z.number().int() }),
  maxRequestBytes: 1024,
  maxEventBytes: 256,
  maxResultBytes: 4096,
  maxTotalBytes: 1 << 20,
  maxEvents: 10_000,
  timeoutMs: 10_000,
  idleTimeoutMs: 2_000,
}
const counting = defineStreamProtocol({ ...base, id: '/hearth/test/count-stream/1', window: 8 })
/** The same id, as a hostile peer would speak it: raw frames of its choosing. */
const hostileId = '/hearth/test/hostile-stream/1'
const hostile = defineStreamProtocol({ ...base, id: hostileId, timeoutMs: 1_500, idleTimeoutMs: 500, maxTotalBytes: 64 * 1024 })

function expectCode(code: string, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(isHearthError(error), String(error))
    assert.equal(error.code, code, error.message)
    if (pattern !== undefined) assert.match(error.message, pattern)
    return true
  }
}

describe('streaming protocols over real libp2p', () => {
  let requester: Host
  let responder: Host
  let requesterIdentity: NodeIdentity
  let responderIdentity: NodeIdentity
  let server: StreamServer
  let emittedSoFar = 0
  const handlerEndings: string[] = []
  let hostileMode = ''

  const deps = (): StreamDeps => ({ libp2p: requester.libp2p, identity: requesterIdentity })

  before(async () => {
    requesterIdentity = generateIdentity()
    responderIdentity = generateIdentity()
    requester = await createHost({ identity: requesterIdentity })
    responder = await createHost({ identity: responderIdentity })
    await Promise.all([requester.start(), responder.start()])
    server = await serveStreamProtocol({ libp2p: responder.libp2p, identity: responderIdentity }, counting, async (request, ctx) => {
      if (request.mode === 'fail') throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'the work failed on purpose', { hint: 'do not ask for mode fail' })
      if (request.mode === 'wait') {
        await ctx.emit({ n: 0 })
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))
        handlerEndings.push(String((ctx.signal.reason as Error).message))
        throw ctx.signal.reason
      }
      emittedSoFar = 0
      for (let n = 1; n <= request.count; n++) {
        await ctx.emit({ n })
        emittedSoFar = n
      }
      return { total: request.count }
    })
    // A responder that breaks every rule, one way per request.
    await responder.libp2p.handle(hostileId, async (stream) => {
      const frames = jsonFrames(stream, 64 * 1024)
      await frames.read()
      const send = (value: unknown): Promise<void> => frames.write(encodeJsonFrame(value))
      try {
        if (hostileMode === 'oversized') await send({ e: { n: 1, pad: 'x'.repeat(2000) } })
        else if (hostileMode === 'malformed') {
          stream.send(Uint8Array.from([3, 0x7b, 0x7b, 0x7b]))
        } else if (hostileMode === 'schema') await send({ e: { n: 'one' } })
        else if (hostileMode === 'flood') for (let n = 0; n < 100; n++) await send({ e: { n } })
        else if (hostileMode === 'endless') for (;;) { await send({ k: 1 }); await new Promise((resolve) => setTimeout(resolve, 50)) }
        else if (hostileMode === 'silent') await new Promise((resolve) => setTimeout(resolve, 3_000))
        else if (hostileMode === 'unsigned') await send({ ok: true, events: 0, body: { total: 1 } })
      } catch {
        // The requester gave up on us, as it should.
      }
    })
  })

  after(async () => {
    await server.close()
    await Promise.all([requester.stop(), responder.stop()])
  })

  const target = (): string => responder.multiaddrs()[0]!

  it('delivers every event in order, then a result signed by the responder', async () => {
    const call = openStream(deps(), target(), counting, { count: 50, mode: 'count' })
    const seen: number[] = []
    for await (const event of call.events) seen.push(event.n)
    const { result, envelope, events } = await call.result
    assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i + 1))
    assert.equal(result.total, 50)
    assert.equal(events, 50)
    assert.equal(envelope.signer.toLowerCase(), responderIdentity.address.toLowerCase())
  })

  it('applies back-pressure: the responder never runs more than the window ahead of the reader', async () => {
    const call = openStream(deps(), target(), counting, { count: 200, mode: 'count' })
    let read = 0
    let maxAhead = 0
    for await (const event of call.events) {
      read++
      assert.equal(event.n, read)
      maxAhead = Math.max(maxAhead, emittedSoFar - read)
      // A slow reader: the responder must wait for it.
      if (read % 20 === 0) await new Promise((resolve) => setTimeout(resolve, 30))
    }
    assert.equal((await call.result).result.total, 200)
    assert.ok(maxAhead <= counting.window, `the responder ran ${maxAhead} events ahead of a window of ${counting.window}`)
  })

  it('a caller that only awaits the result is not held up by events it does not read', async () => {
    const call = openStream(deps(), target(), counting, { count: 100, mode: 'count' })
    assert.equal((await call.result).result.total, 100)
  })

  it('carries the handler error code, message and hint to the requester', async () => {
    const call = openStream(deps(), target(), counting, { count: 0, mode: 'fail' })
    await assert.rejects(call.result, (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_NET_REMOTE'))
      assert.equal(error.details?.remoteCode, 'HEARTH_ERR_EXEC_FAILED')
      assert.equal(error.hint, 'do not ask for mode fail')
      return true
    })
  })

  it('cancel() and the caller aborting both stop the handler through its signal', async () => {
    const before = handlerEndings.length
    const call = openStream(deps(), target(), counting, { count: 0, mode: 'wait' })
    const iterator = call.events[Symbol.asyncIterator]()
    assert.equal((await iterator.next()).value?.n, 0)
    call.cancel('the user pressed ctrl-c')
    await assert.rejects(call.result, expectCode('HEARTH_ERR_NET_REMOTE', /cancelled/))

    const controller = new AbortController()
    const aborted = openStream(deps(), target(), counting, { count: 0, mode: 'wait' }, { signal: controller.signal })
    const second = aborted.events[Symbol.asyncIterator]()
    await second.next()
    controller.abort(new HearthError('HEARTH_ERR_NET_REMOTE', 'gave up'))
    await assert.rejects(aborted.result, expectCode('HEARTH_ERR_NET_REMOTE', /gave up/))

    const deadline = Date.now() + 120_000
    while (handlerEndings.length < before + 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(handlerEndings.length, before + 2, 'both handlers saw their signal abort')
    assert.match(handlerEndings[before]!, /ctrl-c/)
  })

  for (const [mode, code, pattern] of [
    ['oversized', 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE', /over the limit/],
    ['malformed', 'HEARTH_ERR_NET_MESSAGE_INVALID', /malformed|not UTF-8 JSON/],
    ['schema', 'HEARTH_ERR_NET_MESSAGE_INVALID', /does not match its schema/],
    ['flood', 'HEARTH_ERR_NET_MESSAGE_INVALID', /beyond the credit/],
    ['endless', 'HEARTH_ERR_NET_TIMEOUT', /did not finish within/],
    ['silent', 'HEARTH_ERR_NET_TIMEOUT', /sent nothing/],
    ['unsigned', 'HEARTH_ERR_SIGNATURE_INVALID', /not a signed envelope/],
  ] as const) {
    it(`a hostile responder (${mode}) gets a clear ${code}`, async () => {
      hostileMode = mode
      const call = openStream(deps(), target(), hostile, { count: 1, mode: 'count' })
      // A reader that takes one event and then is slow: whatever comes beyond its credit is a protocol breach.
      const iterator = call.events[Symbol.asyncIterator]()
      await iterator.next().catch(() => undefined)
      await assert.rejects(call.result, expectCode(code, pattern))
    })
  }

  it('hostile requesters are refused with an error frame and the responder keeps serving', async () => {
    const ask = async (bytes: Uint8Array): Promise<unknown> => {
      const stream = await requester.libp2p.dialProtocol(multiaddr(target()), counting.id)
      const frames = jsonFrames(stream, 64 * 1024)
      stream.send(bytes)
      try {
        return (await frames.read({ signal: AbortSignal.timeout(3_000) })).value
      } finally {
        stream.abort(new Error('test done'))
      }
    }
    const plain = encodeJsonFrame({ count: 1 })
    const unsigned = (await ask(Uint8Array.from([...lengthPrefix(plain.byteLength), ...plain]))) as { ok: boolean; error: { code: string } }
    assert.equal(unsigned.ok, false)
    assert.equal(unsigned.error.code, 'HEARTH_ERR_SIGNATURE_INVALID')
    const oversized = (await ask(Uint8Array.from([...lengthPrefix(50_000)]))) as { ok: boolean; error: { code: string } }
    assert.equal(oversized.error.code, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE')
    // Signed by someone other than the connection's peer.
    const forged = encodeJsonFrame(await signPayload(generateIdentity(), { count: 1 }))
    const wrongSigner = (await ask(Uint8Array.from([...lengthPrefix(forged.byteLength), ...forged]))) as { ok: boolean; error: { code: string } }
    assert.equal(wrongSigner.error.code, 'HEARTH_ERR_SIGNATURE_INVALID')
    const badSchema = encodeJsonFrame(await signPayload(requesterIdentity, { count: -1 }))
    const invalid = (await ask(Uint8Array.from([...lengthPrefix(badSchema.byteLength), ...badSchema]))) as { ok: boolean; error: { code: string } }
    assert.equal(invalid.error.code, 'HEARTH_ERR_NET_MESSAGE_INVALID')
    const call = openStream(deps(), target(), counting, { count: 3, mode: 'count' })
    assert.equal((await call.result).result.total, 3)
  })

  it('a requester that never grants room for events gets a timeout error instead of holding the responder', async () => {
    const stalling = defineStreamProtocol({ ...base, id: '/hearth/test/stall-stream/1', idleTimeoutMs: 300, window: 4 })
    let handlerError: unknown
    const stallServer = await serveStreamProtocol({ libp2p: responder.libp2p, identity: responderIdentity }, stalling, async (request, ctx) => {
      try {
        for (let n = 1; n <= request.count; n++) await ctx.emit({ n })
      } catch (error) {
        handlerError = error
        throw error
      }
      return { total: request.count }
    })
    try {
      const stream = await requester.libp2p.dialProtocol(multiaddr(target()), stalling.id)
      const frames = jsonFrames(stream, 64 * 1024)
      // A signed request and then silence: no credit frame ever.
      await frames.write(encodeJsonFrame(await signPayload(requesterIdentity, { count: 10 })))
      const last = await (async () => {
        let value: unknown
        for (;;) {
          try {
            value = (await frames.read({ signal: AbortSignal.timeout(5_000) })).value
          } catch {
            return value
          }
          if (typeof value === 'object' && value !== null && 'ok' in value) return value
        }
      })()
      stream.abort(new Error('test done'))
      assert.deepEqual((last as { ok: boolean; error: { code: string } }).error.code, 'HEARTH_ERR_NET_TIMEOUT')
      assert.ok(isHearthError(handlerError, 'HEARTH_ERR_NET_TIMEOUT'), String(handlerError))
      assert.match((handlerError as Error).message, /read no events/)
    } finally {
      await stallServer.close()
    }
  })

  it('closing the server cancels exchanges in progress with a clear error', async () => {
    const other = await createHost({ identity: generateIdentity() })
    await other.start()
    try {
      const otherServer = await serveStreamProtocol({ libp2p: other.libp2p, identity: generateIdentity() }, counting, async (_request, ctx) => {
        await ctx.emit({ n: 0 })
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))
        throw ctx.signal.reason
      })
      const call = openStream(deps(), other.multiaddrs()[0]!, counting, { count: 0, mode: 'wait' })
      const iterator = call.events[Symbol.asyncIterator]()
      await iterator.next()
      await otherServer.close()
      await assert.rejects(call.result, expectCode('HEARTH_ERR_NET_REMOTE', /stopped serving/))
      assert.equal(otherServer.active(), 0)
    } finally {
      await other.stop()
    }
  })
})

function lengthPrefix(length: number): number[] {
  const bytes: number[] = []
  let value = length
  while (value >= 0x80) {
    bytes.push((value & 0x7f) | 0x80)
    value >>>= 7
  }
  bytes.push(value)
  return bytes
}
