import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { createHost } from './host.ts'
import type { Host } from './host.ts'
import { encodeJsonFrame, jsonFrames } from './json-frames.ts'
import { defineProtocol } from './protocol.ts'

const job = z.object({ name: z.string(), cpus: z.number().int().positive() })
const ack = z.object({ accepted: z.boolean(), echo: z.string() })

const echo = defineProtocol({ id: '/hearth/test/session-echo/1', request: job, response: ack, maxRequestBytes: 1024, maxResponseBytes: 1024, timeoutMs: 30_000, session: true })
const signedEcho = defineProtocol({ ...echo, id: '/hearth/test/session-signed/1', signed: true, maxRequestBytes: 4096, maxResponseBytes: 4096 })
// The same protocol id as a node without sessions defines it: its responder answers once and ends the stream.
const plainEcho = defineProtocol({ ...echo, id: '/hearth/test/session-plain/1', session: false })
const plainAsSession = defineProtocol({ ...plainEcho, session: true })
// Looser on the requester's side, so that it can send what the responder's schema refuses.
const echoLoose = defineProtocol({ ...echo, request: z.any(), maxRequestBytes: 64 * 1024 })
const slow = defineProtocol({ ...echo, id: '/hearth/test/session-slow/1', timeoutMs: 300 })
// Served by a hostile responder (below) that sends a second, unasked answer after each real one.
const chatty = defineProtocol({ ...echo, id: '/hearth/test/session-chatty/1' })

describe('session streams: requests to one peer one after another on one stream', () => {
  let requester: Host
  let responder: Host
  /** Streams each request of a protocol arrived on, by protocol id. */
  const streamsSeen = new Map<string, Set<string>>()
  const note = (id: string, stream: string): void => void streamsSeen.set(id, (streamsSeen.get(id) ?? new Set()).add(stream))

  /** Streams of `protocolId` open now at [requester, responder]. */
  const open = (protocolId: string): [number, number] => {
    const count = (host: Host): number => host.libp2p.getConnections().flatMap((connection) => connection.streams).filter((stream) => stream.protocol === protocolId && stream.status === 'open').length
    return [count(requester), count(responder)]
  }

  before(async () => {
    requester = await createHost({ identity: generateIdentity() })
    responder = await createHost({ identity: generateIdentity() })
    await Promise.all([requester.start(), responder.start()])
    await requester.dial(responder.multiaddrs()[0]!)
    // The handler context does not name the stream: the connection's streams at the time show which one it came on.
    const streamOf = (id: string): string => responder.libp2p.getConnections().flatMap((connection) => connection.streams).filter((stream) => stream.protocol === id && stream.direction === 'inbound').map((stream) => stream.id).join(',')
    for (const protocol of [echo, signedEcho, plainEcho]) {
      await responder.handle(protocol, (request, context) => {
        note(protocol.id, streamOf(protocol.id))
        if (protocol.signed) assert.equal(context.envelope?.signer, requester.address)
        if (request.name === 'fail') throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'no', { hint: 'try another' })
        return { accepted: true, echo: request.name }
      })
    }
    await responder.handle(slow, async (request, context) => {
      if (request.name === 'stall') await new Promise((resolve) => context.signal.addEventListener('abort', resolve, { once: true }))
      return { accepted: true, echo: request.name }
    })
    await responder.libp2p.handle(chatty.id, async (stream) => {
      const frames = jsonFrames(stream, 1024)
      for (;;) {
        const frame = await frames.read().catch(() => undefined)
        if (frame === undefined) return
        const name = (frame.value as { name: string }).name
        await frames.writeFrames([encodeJsonFrame({ ok: true, body: { accepted: true, echo: name }, session: true }), encodeJsonFrame({ ok: true, body: { accepted: false, echo: 'unasked' }, session: true })])
      }
    }, { runOnLimitedConnection: true })
  })

  after(async () => {
    await Promise.all([requester.stop(), responder.stop()])
  })

  it('carries many requests on one stream, each answered and checked as if alone', async () => {
    for (let i = 0; i < 20; i++) assert.deepEqual(await requester.request(responder.peerId, echo, { name: `n${i}`, cpus: 1 }), { accepted: true, echo: `n${i}` })
    assert.equal(streamsSeen.get(echo.id)?.size, 1, 'every request came on the same stream')
    assert.deepEqual(open(echo.id), [1, 1], 'the stream stays open between requests')
    // Requests at once each take a stream of their own; all are answered.
    const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => requester.request(responder.peerId, echo, { name: `c${i}`, cpus: 1 })))
    assert.deepEqual(answers.map((answer) => answer.echo), ['c0', 'c1', 'c2', 'c3'])
  })

  it('signs and verifies every request and answer of a signed session', async () => {
    for (let i = 0; i < 5; i++) {
      const exchange = await requester.exchange(responder.peerId, signedEcho, { name: `s${i}`, cpus: 2 })
      assert.equal(exchange.envelope?.signer, responder.address)
      assert.equal(exchange.response.echo, `s${i}`)
    }
    assert.equal(streamsSeen.get(signedEcho.id)?.size, 1)
  })

  it('ends the session on an error answer: the next request goes on a fresh stream', async () => {
    await requester.request(responder.peerId, echo, { name: 'before', cpus: 1 })
    const before = streamsSeen.get(echo.id)!.size
    await assert.rejects(requester.request(responder.peerId, echo, { name: 'fail', cpus: 1 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_REMOTE') && error.details?.remoteCode === 'HEARTH_ERR_MARKET_AGREEMENT_REJECTED')
    assert.equal((await requester.request(responder.peerId, echo, { name: 'after', cpus: 1 })).echo, 'after')
    assert.ok(streamsSeen.get(echo.id)!.size > before, 'a new stream after the error')
  })

  it('refuses a request its schema or size limit refuses, ending the stream, and serves the next one', async () => {
    await requester.request(responder.peerId, echoLoose, { name: 'fine', cpus: 1 })
    await assert.rejects(requester.request(responder.peerId, echoLoose, { name: 'bad', cpus: -1 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_REMOTE') && error.details?.remoteCode === 'HEARTH_ERR_NET_MESSAGE_INVALID')
    await assert.rejects(requester.request(responder.peerId, echoLoose, { name: 'x'.repeat(4000), cpus: 1 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_REMOTE') && error.details?.remoteCode === 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE')
    assert.equal((await requester.request(responder.peerId, echo, { name: 'next', cpus: 1 })).echo, 'next')
  })

  it('times out a request on a kept stream like any other, and does not keep that stream', async () => {
    assert.equal((await requester.request(responder.peerId, slow, { name: 'quick', cpus: 1 })).echo, 'quick')
    await assert.rejects(requester.request(responder.peerId, slow, { name: 'stall', cpus: 1 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_TIMEOUT'))
    assert.equal((await requester.request(responder.peerId, slow, { name: 'again', cpus: 1 })).echo, 'again')
  })

  it('works with a responder without sessions (another release): one request per stream, none left open', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await requester.request(responder.peerId, plainAsSession, { name: `p${i}`, cpus: 1 })).echo, `p${i}`)
    assert.equal(streamsSeen.get(plainEcho.id)?.size, 3, 'a stream per request')
    const deadline = Date.now() + 10_000
    while (open(plainEcho.id).some((count) => count > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    assert.deepEqual(open(plainEcho.id), [0, 0])
  })

  it('answers a requester without sessions (one request, its side closed) once, and ends the stream', async () => {
    const stream = await requester.libp2p.dialProtocol(responder.peerId, echo.id)
    const frames = jsonFrames(stream, 4096)
    const reading = frames.read({ signal: AbortSignal.timeout(5000) })
    await frames.write(encodeJsonFrame({ name: 'once', cpus: 1 }))
    await stream.close()
    assert.deepEqual((await reading).value, { ok: true, body: { accepted: true, echo: 'once' }, session: true })
    await frames.readEnd({ signal: AbortSignal.timeout(5000) })
  })

  it('never takes a frame the responder sent unasked for the answer to a later request', async () => {
    const first = await requester.request(responder.peerId, chatty, { name: 'one', cpus: 1 })
    assert.deepEqual(first, { accepted: true, echo: 'one' })
    // Give the unasked frame time to arrive: the stream holding it must not carry the next request.
    await new Promise((resolve) => setTimeout(resolve, 200))
    const second = await requester.request(responder.peerId, chatty, { name: 'two', cpus: 1 })
    assert.deepEqual(second, { accepted: true, echo: 'two' })
  })
})
