import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { signPayload, verifySigned } from '../identity/signed.ts'
import { createHost } from './host.ts'
import type { Host } from './host.ts'
import { encodeJsonFrame, FrameError, jsonFrames } from './json-frames.ts'
import { defineProtocol } from './protocol.ts'

const job = z.object({ name: z.string(), cpus: z.number().int().positive() })
const ack = z.object({ accepted: z.boolean(), echo: z.string() })

const submit = defineProtocol({ id: '/hearth/test/submit/1', request: job, response: ack, maxRequestBytes: 1024, maxResponseBytes: 1024, timeoutMs: 30_000 })
// The same protocol id as another node version might define it: looser schema, larger limits. Lets us send what
// our own requester would refuse to send.
const submitLoose = defineProtocol({ ...submit, request: z.any(), maxRequestBytes: 64 * 1024 })
const signedSubmit = defineProtocol({ ...submit, id: '/hearth/test/signed-submit/1', signed: true, maxRequestBytes: 2048, maxResponseBytes: 2048 })
const slow = defineProtocol({ ...submit, id: '/hearth/test/slow/1', timeoutMs: 300 })
const failing = defineProtocol({ ...submit, id: '/hearth/test/failing/1' })

function remoteError(code: string, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(isHearthError(error, 'HEARTH_ERR_NET_REMOTE'), `expected HEARTH_ERR_NET_REMOTE, got ${String(error)}`)
    assert.equal(error.details?.remoteCode, code)
    if (pattern !== undefined) assert.match(error.message, pattern)
    return true
  }
}

describe('request/response protocols over real libp2p', () => {
  let requester: Host
  let responder: Host
  const handled: string[] = []

  /** Opens a raw stream and writes arbitrary bytes, as a broken or hostile peer would; returns the answer frame. */
  async function raw(protocolId: string, bytes: Uint8Array, options: { close?: boolean } = {}): Promise<unknown> {
    const stream = await requester.libp2p.dialProtocol(multiaddr(responder.multiaddrs()[0]!), protocolId)
    const frames = jsonFrames(stream, 16 * 1024)
    const reading = frames.read({ signal: AbortSignal.timeout(3000) })
    reading.catch(() => {})
    if (stream.send(bytes) === false) await stream.onDrain()
    if (options.close !== false) await stream.close()
    try {
      return (await reading).value
    } finally {
      stream.abort(new Error('test done'))
    }
  }

  /** Streams of `protocolId` still open at [requester, responder], once both had a moment to close them. */
  async function openStreams(protocolId: string): Promise<[number, number]> {
    const count = (host: Host): number => host.libp2p.getConnections().flatMap((connection) => connection.streams).filter((stream) => stream.protocol === protocolId).length
    const deadline = Date.now() + 30_000
    while ((count(requester) > 0 || count(responder) > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    return [count(requester), count(responder)]
  }

  before(async () => {
    requester = await createHost({ identity: generateIdentity() })
    responder = await createHost({ identity: generateIdentity() })
    await Promise.all([requester.start(), responder.start()])
    // Each test may then address the responder by PeerId alone.
    await requester.dial(responder.multiaddrs()[0]!)
    await responder.handle(submit, (request, context) => {
      handled.push(request.name)
      assert.equal(context.remoteAddress, requester.address)
      assert.equal(context.envelope, undefined)
      return { accepted: request.cpus <= 8, echo: request.name }
    })
    await responder.handle(signedSubmit, async (request, context) => {
      handled.push(request.name)
      assert.equal(context.envelope?.signer, context.remoteAddress)
      await verifySigned(context.envelope!, { expectedSigner: requester.address })
      return { accepted: true, echo: request.name }
    })
    await responder.handle(slow, async (request, context) => {
      handled.push(request.name)
      // Answers only once the deadline has passed (or after a minute): the caller must have given up by then.
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 60_000)
        context.signal.addEventListener('abort', () => resolve(clearTimeout(timer)), { once: true })
      })
      return { accepted: context.signal.aborted, echo: 'too late' }
    })
    await responder.handle(failing, (request) => {
      if (request.name === 'hearth') throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'No capacity left', { hint: 'try again in a minute' })
      throw new Error('database password is hunter2')
    })
  })

  after(async () => {
    await Promise.all([requester.stop(), responder.stop()])
  })

  it('round-trips a request by multiaddr and by PeerId, many times over one reused connection', async () => {
    const address = responder.multiaddrs()[0]!
    assert.match(address, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/16U/)
    assert.deepEqual(await requester.request(address, submit, { name: 'a', cpus: 4 }), { accepted: true, echo: 'a' })
    const exchange = await requester.exchange(responder.peerId, submit, { name: 'b', cpus: 16 })
    assert.deepEqual(exchange.response, { accepted: false, echo: 'b' })
    assert.equal(exchange.peerId.toString(), responder.peerId.toString())
    for (let i = 0; i < 50; i++) await requester.request(responder.peerId, submit, { name: 'warm', cpus: 1 })
    assert.equal(requester.peers().length, 1)
    // Every exchange closes its stream at both ends: none linger to eat the per-connection stream limit.
    assert.deepEqual(await openStreams(submit.id), [0, 0])
  })

  it('sends every request to a connected peer over its one connection, and dials again once it is closed', async () => {
    const address = responder.multiaddrs()[0]!
    for (let i = 0; i < 5; i++) assert.deepEqual(await requester.request(address, submit, { name: `r${i}`, cpus: 1 }), { accepted: true, echo: `r${i}` })
    assert.equal(requester.libp2p.getConnections(responder.peerId).length, 1)
    await requester.libp2p.hangUp(responder.peerId)
    assert.equal(requester.libp2p.getConnections(responder.peerId).length, 0)
    assert.deepEqual(await requester.request(address, submit, { name: 'again', cpus: 1 }), { accepted: true, echo: 'again' })
    assert.equal(requester.libp2p.getConnections(responder.peerId).length, 1)
  })

  it('refuses a request that fails the schema, naming the field, without calling the handler', async () => {
    const before = handled.length
    const rejectedBefore = responder.metrics().protocols[submit.id]?.rejected.schema ?? 0
    await assert.rejects(requester.request(responder.peerId, submitLoose, { name: 'x', cpus: 'four' }),
      remoteError('HEARTH_ERR_NET_MESSAGE_INVALID', /field cpus: .*expected number/))
    assert.equal(handled.length, before)
    assert.equal(responder.metrics().protocols[submit.id]?.rejected.schema, rejectedBefore + 1)
    // Our own requester refuses to send it in the first place.
    await assert.rejects(requester.request(responder.peerId, submit, { name: 'x', cpus: 'four' } as never),
      (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_INVALID') && /field cpus/.test(error.message))
  })

  it('refuses an oversized request on its length prefix, before the body arrives', async () => {
    const before = handled.length
    // Announce 10 MB, send 10 bytes, keep the stream open: an answer can only come from the prefix check.
    const prefix = Uint8Array.from([0x80, 0xad, 0xe2, 0x04]) // varint 10_000_000
    const answer = await raw(submit.id, Uint8Array.from([...prefix, ...randomBytes(10)]), { close: false }) as { ok: boolean; error: { code: string; message: string } }
    assert.equal(answer.ok, false)
    assert.equal(answer.error.code, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE')
    assert.match(answer.error.message, /10000000 bytes, over the limit of 1024/)
    // The real requester path: the body is actually sent while the responder refuses it.
    await assert.rejects(requester.request(responder.peerId, submitLoose, { name: 'x'.repeat(20_000), cpus: 1 }), remoteError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE'))
    // And our requester checks its own limit before sending.
    await assert.rejects(requester.request(responder.peerId, submit, { name: 'x'.repeat(2000), cpus: 1 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE'))
    assert.equal(handled.length, before)
    assert.ok((responder.metrics().protocols[submit.id]?.rejected['too-large'] ?? 0) >= 2)
  })

  it('survives garbage on the raw stream and still serves a good request afterwards', async () => {
    const before = handled.length
    const garbage = [
      randomBytes(700), // random, most likely an absurd length
      Uint8Array.from([5, ...new TextEncoder().encode('nojso')]), // a complete frame that is not JSON
      Uint8Array.from([2, 0xc3, 0x28]), // invalid UTF-8
      Uint8Array.from([50, 1, 2, 3]), // a frame cut short
      new Uint8Array(12).fill(0xff), // a varint that never ends
      new Uint8Array(0), // nothing at all
    ]
    for (const bytes of garbage) {
      const answer = await raw(submit.id, bytes).catch((error: unknown) => error)
      // Either an error frame or a stream closed without an answer; never a crash, never the handler.
      if (answer instanceof FrameError) assert.equal(answer.failure, 'malformed')
      else assert.equal((answer as { ok: boolean }).ok, false, String(answer))
    }
    assert.equal(handled.length, before)
    const rejected = responder.metrics().protocols[submit.id]?.rejected ?? {}
    assert.ok((rejected.malformed ?? 0) >= 3, JSON.stringify(rejected))
    assert.deepEqual(await requester.request(responder.peerId, submit, { name: 'after', cpus: 2 }), { accepted: true, echo: 'after' })
    assert.deepEqual(await openStreams(submit.id), [0, 0])
  })

  it('signs both directions of a signed protocol and verifies the responder', async () => {
    const exchange = await requester.exchange(responder.peerId, signedSubmit, { name: 'signed', cpus: 2 })
    assert.deepEqual(exchange.response, { accepted: true, echo: 'signed' })
    assert.equal(exchange.envelope?.signer, responder.address)
    await verifySigned(exchange.envelope!, { expectedSigner: responder.address })
  })

  it('refuses a signed request whose signer is not the connecting peer, and unsigned or tampered ones', async () => {
    const before = handled.length
    const mallory = generateIdentity()
    const forged = await signPayload(mallory, { name: 'forged', cpus: 1 })
    const answer = await raw(signedSubmit.id, withPrefix(encodeJsonFrame(forged))) as { ok: boolean; error: { code: string; message: string } }
    assert.equal(answer.ok, false)
    assert.equal(answer.error.code, 'HEARTH_ERR_SIGNATURE_INVALID')
    assert.match(answer.error.message, new RegExp(`signed by ${mallory.address}, but sent by peer`))
    // Claiming to be the requester while signed by someone else is a bad signature.
    const impersonating = { ...forged, signer: requester.address }
    const answer2 = await raw(signedSubmit.id, withPrefix(encodeJsonFrame(impersonating))) as { ok: boolean; error: { code: string } }
    assert.equal(answer2.error.code, 'HEARTH_ERR_SIGNATURE_INVALID')
    const unsigned = await raw(signedSubmit.id, withPrefix(encodeJsonFrame({ name: 'plain', cpus: 1 }))) as { ok: boolean; error: { code: string; message: string } }
    assert.equal(unsigned.error.code, 'HEARTH_ERR_SIGNATURE_INVALID')
    assert.match(unsigned.error.message, /needs a signed envelope/)
    assert.equal(handled.length, before)
    const rejected = responder.metrics().protocols[signedSubmit.id]?.rejected
    assert.deepEqual(rejected, { 'signer-mismatch': 1, 'bad-signature': 1, unsigned: 1 })
  })

  it('times out a slow handler with HEARTH_ERR_NET_TIMEOUT', async () => {
    await assert.rejects(requester.request(responder.peerId, slow, { name: 'slow', cpus: 1 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_TIMEOUT'))
    // A caller's own, shorter deadline applies too.
    await assert.rejects(requester.request(responder.peerId, submitLoose, { name: 'x', cpus: 1 }, { timeoutMs: 1 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_TIMEOUT'))
    // And the caller's AbortSignal aborts with its own reason.
    const controller = new AbortController()
    const pending = requester.request(responder.peerId, slow, { name: 'aborted', cpus: 1 }, { signal: controller.signal })
    controller.abort(new Error('user gave up'))
    await assert.rejects(pending, /user gave up/)
  })

  it('relays a HearthError from the handler, and hides any other failure behind HEARTH_ERR_INTERNAL', async () => {
    await assert.rejects(requester.request(responder.peerId, failing, { name: 'hearth', cpus: 1 }), (error: unknown) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_NET_REMOTE'))
      assert.equal(error.details?.remoteCode, 'HEARTH_ERR_MARKET_AGREEMENT_REJECTED')
      assert.match(error.message, /No capacity left/)
      assert.equal(error.hint, 'try again in a minute')
      return true
    })
    await assert.rejects(requester.request(responder.peerId, failing, { name: 'other', cpus: 1 }), (error: unknown) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_NET_REMOTE'))
      assert.equal(error.details?.remoteCode, 'HEARTH_ERR_INTERNAL')
      assert.doesNotMatch(error.message, /hunter2/)
      return true
    })
    assert.equal(responder.metrics().protocols[failing.id]?.handlerFailures, 1)
  })

  it('reports a peer that does not serve the protocol as HEARTH_ERR_NET_DIAL', async () => {
    const unknown = defineProtocol({ ...submit, id: '/hearth/test/unknown/1' })
    await assert.rejects(requester.request(responder.peerId, unknown, { name: 'x', cpus: 1 }), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_NET_DIAL') && /does not serve/.test(error.message))
  })

  it('answers 100 concurrent requests to one peer (and 20 signed ones)', async () => {
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => requester.request(responder.peerId, submit, { name: `c${i}`, cpus: 1 })))
    assert.deepEqual(answers.map((answer) => answer.echo), Array.from({ length: 100 }, (_, i) => `c${i}`))
    const signed = await Promise.all(Array.from({ length: 20 }, (_, i) => requester.request(responder.peerId, signedSubmit, { name: `s${i}`, cpus: 1 })))
    assert.deepEqual(signed.map((answer) => answer.echo), Array.from({ length: 20 }, (_, i) => `s${i}`))
  })

  it('carries frames larger than libp2p\'s 4 MiB read buffer', async () => {
    const bulk = defineProtocol({
      id: '/hearth/test/bulk/1',
      request: z.object({ data: z.string() }),
      response: z.object({ length: z.number(), data: z.string() }),
      maxRequestBytes: 16 * 1024 * 1024,
      maxResponseBytes: 16 * 1024 * 1024,
      timeoutMs: 120_000,
    })
    await responder.handle(bulk, ({ data }) => ({ length: data.length, data }))
    const data = randomBytes(4 * 1024 * 1024).toString('base64') // ~5.6 MB of JSON each way
    const answer = await requester.request(responder.peerId, bulk, { data })
    assert.equal(answer.length, data.length)
    assert.equal(answer.data, data)
  })

  it('refuses a second handler for the same protocol', async () => {
    await assert.rejects(responder.handle(submit, () => ({ accepted: true, echo: '' })), (error: unknown) => isHearthError(error, 'HEARTH_ERR_API_MISUSE'))
  })

  it('rejects malformed protocol definitions', () => {
    assert.throws(() => defineProtocol({ ...submit, id: '/other/x/1' }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_API_MISUSE'))
    assert.throws(() => defineProtocol({ ...submit, timeoutMs: 0 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_API_MISUSE'))
  })
})

function withPrefix(json: Uint8Array): Uint8Array {
  const prefix: number[] = []
  let length = json.byteLength
  while (length >= 0x80) {
    prefix.push((length & 0x7f) | 0x80)
    length >>>= 7
  }
  prefix.push(length)
  return Uint8Array.from([...prefix, ...json])
}
