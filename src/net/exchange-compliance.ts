/**
 * The exchange compliance suite: the rules every kind of exchange net/ offers must keep, run against each kind the
 * same way (as exec/'s runtime compliance suite does for runtimes). The kinds are request/response (`Host.handle` /
 * `Host.request`), event streams (`Host.serveStream` / `Host.openStream`) and binary bodies (`Host.serveBlob` /
 * `Host.requestBlob`); each test file registers one `ExchangeKind`, an adapter that maps the suite's one exchange
 * (a request `{ say, pad? }` answered with text) onto its kind.
 *
 * The rules: a request over its size limit is refused on its length prefix, and one that fails the schema is refused
 * naming the field, both with an error frame and without calling the handler; garbage on a raw stream gets an error
 * frame and the node keeps serving; a handler's HearthError reaches the caller with its code and hint, and any other
 * failure is hidden behind HEARTH_ERR_INTERNAL; the deadline ends a slow exchange on both sides; a caller that gives up
 * stops the handler through its signal; a peer that does not serve the protocol is a dial failure; a caller that does
 * not read its answer does not hold the responder past the deadline; and no exchange leaves a stream open.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { createHost } from './host.ts'
import type { Host } from './host.ts'
import { jsonFrames } from './json-frames.ts'

/** The suite's request: `say` is echoed back; `pad` makes it large. */
export const suiteRequest = z.strictObject({ say: z.string().max(100_000), pad: z.string().max(1_000_000).optional() })
export type SuiteRequest = z.output<typeof suiteRequest>

/** What a kind's responder does with a request: the text to answer, or a throw; `signal` is the exchange's. */
export type SuiteHandler = (request: SuiteRequest, signal: AbortSignal) => Promise<string>

/** The limits the suite defines each exchange with. */
export interface SuiteLimits {
  /** Largest request the responder accepts. */
  maxRequestBytes: number
  /** Largest answer (response frame, result, or body) the caller accepts. */
  maxAnswerBytes: number
  /** The whole exchange's deadline. */
  timeoutMs: number
}

export interface CallOptions {
  signal?: AbortSignal
  /** Send with a definition of the same id that accepts any JSON up to 1 MiB, as a peer of another version might. */
  loose?: boolean
}

/** One kind of exchange, seen through the suite's one exchange. */
export interface ExchangeKind {
  name: string
  /** Serves protocol `id` on `host`; returns what stops serving it. */
  serve(host: Host, id: string, limits: SuiteLimits, handler: SuiteHandler): Promise<() => Promise<void>>
  /** Calls protocol `id` on `target`; resolves to the answer's text. */
  call(host: Host, target: string, id: string, limits: SuiteLimits, request: unknown, options?: CallOptions): Promise<string>
  /** The bytes of a valid request for `id` as a raw stream carries them, sent by `identity` (signed where the kind signs). */
  requestFrame(identity: NodeIdentity, request: SuiteRequest): Promise<Uint8Array>
}

const limits: SuiteLimits = { maxRequestBytes: 1024, maxAnswerBytes: 4 << 20, timeoutMs: 30_000 }
const shortLimits: SuiteLimits = { ...limits, timeoutMs: 1_000 }

/** The remote refusal `error` carries: its code and message, or a failed assertion. */
function remoteRefusal(error: unknown): { code: unknown; message: string } {
  assert.ok(isHearthError(error, 'HEARTH_ERR_NET_REMOTE'), `expected HEARTH_ERR_NET_REMOTE, got ${String(error)}`)
  return { code: error.details?.remoteCode, message: error.message }
}

function until(condition: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (condition()) resolve()
      else if (Date.now() > deadline) reject(new Error(`gave up waiting: ${what}`))
      else setTimeout(check, 10)
    }
    check()
  })
}

/** The two hosts and the helpers every test of one kind shares. */
class Suite {
  caller!: Host
  responder!: Host
  callerIdentity!: NodeIdentity
  readonly stops: Array<() => Promise<void>> = []
  private serial = 0

  constructor(readonly kind: ExchangeKind) {}

  target(): string {
    return this.responder.multiaddrs()[0]!
  }

  call(id: string, request: unknown, options?: CallOptions, withLimits = limits): Promise<string> {
    return this.kind.call(this.caller, this.target(), id, withLimits, request, options)
  }

  /** Serves a fresh protocol id; every handler call is counted in `calls`. */
  async serve(handler: SuiteHandler, withLimits = limits): Promise<{ id: string; calls: SuiteRequest[] }> {
    const id = `/hearth/compliance/${this.kind.name.replace(/[^a-z0-9]+/g, '-')}-${++this.serial}/1`
    const calls: SuiteRequest[] = []
    this.stops.push(await this.kind.serve(this.responder, id, withLimits, (request, signal) => {
      calls.push(request)
      return handler(request, signal)
    }))
    return { id, calls }
  }

  /** Streams of `id` open on `host`. */
  streams(host: Host, id: string): number {
    return host.libp2p.getConnections().flatMap((connection) => connection.streams).filter((stream) => stream.protocol === id).length
  }

  /** Streams of `id` open on [caller, responder], once both had their moment to close them. */
  async openStreams(id: string): Promise<[number, number]> {
    await until(() => this.streams(this.caller, id) === 0 && this.streams(this.responder, id) === 0, `streams of ${id} closed`).catch(() => undefined)
    return [this.streams(this.caller, id), this.streams(this.responder, id)]
  }

  /** Writes `bytes` on a raw stream of `id` and returns the first frame answered (or undefined if none). */
  async raw(id: string, bytes: Uint8Array): Promise<unknown> {
    const stream = await this.caller.libp2p.dialProtocol(multiaddr(this.target()), id)
    const frames = jsonFrames(stream, 64 * 1024)
    const reading = frames.read({ signal: AbortSignal.timeout(20_000) })
    reading.catch(() => {})
    if (stream.send(bytes) === false) await stream.onDrain()
    await stream.close().catch(() => undefined)
    try {
      return (await reading).value
    } catch {
      return undefined
    } finally {
      stream.abort(new Error('raw exchange done'))
    }
  }
}

const echo: SuiteHandler = async (request) => `echo ${request.say}`

/** A handler that waits for its signal, then records that it saw it. */
function waitForAbort(seen: { started: boolean; aborted: boolean }): SuiteHandler {
  return async (_request, signal) => {
    seen.started = true
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
    seen.aborted = true
    throw signal.reason
  }
}

export function registerExchangeCompliance(kind: ExchangeKind): void {
  describe(`exchange compliance: ${kind.name}`, () => {
    const suite = new Suite(kind)
    before(async () => {
      suite.callerIdentity = generateIdentity()
      suite.caller = await createHost({ identity: suite.callerIdentity })
      suite.responder = await createHost({ identity: generateIdentity() })
      await Promise.all([suite.caller.start(), suite.responder.start()])
      await suite.caller.dial(suite.target())
    })
    after(async () => {
      for (const stop of suite.stops) await stop().catch(() => undefined)
      await Promise.all([suite.caller.stop(), suite.responder.stop()])
    })
    registerValidation(suite)
    registerFailures(suite)
    registerResources(suite)
  })
}

/** What reaches a handler: only requests within the limits and the schema. */
function registerValidation(suite: Suite): void {
  it('answers requests, many at once over one connection, and leaves no stream open', async () => {
    const { id, calls } = await suite.serve(echo)
    const answers = await Promise.all(Array.from({ length: 20 }, (_, n) => suite.call(id, { say: `n${n}` })))
    assert.deepEqual(answers, Array.from({ length: 20 }, (_, n) => `echo n${n}`))
    assert.equal(calls.length, 20)
    assert.deepEqual(await suite.openStreams(id), [0, 0])
  })

  it('refuses a request over its size limit with HEARTH_ERR_NET_MESSAGE_TOO_LARGE, unread by the handler', async () => {
    const { id, calls } = await suite.serve(echo)
    const big = { say: 'big', pad: 'x'.repeat(8 * 1024) }
    const error = await suite.call(id, big, { loose: true }).then(() => undefined, (e: unknown) => e)
    assert.equal(remoteRefusal(error).code, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE')
    assert.equal(calls.length, 0)
    // The caller's own definition refuses to send it at all.
    await assert.rejects(suite.call(id, big), (e: unknown) => isHearthError(e, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE'))
    assert.equal(await suite.call(id, { say: 'after' }), 'echo after')
    assert.deepEqual(await suite.openStreams(id), [0, 0])
  })

  it('refuses a request that fails the schema, naming the field, unread by the handler', async () => {
    const { id, calls } = await suite.serve(echo)
    const refusal = remoteRefusal(await suite.call(id, { say: 5 }, { loose: true }).then(() => undefined, (e: unknown) => e))
    assert.equal(refusal.code, 'HEARTH_ERR_NET_MESSAGE_INVALID')
    assert.match(refusal.message, /say/)
    assert.equal(calls.length, 0)
    assert.deepEqual(await suite.openStreams(id), [0, 0])
  })

  it('answers garbage on a raw stream with an error frame and keeps serving', async () => {
    const { id, calls } = await suite.serve(echo)
    const garbage = [Uint8Array.from([5, 0xff, 0xfe, 0x00, 0x7b, 0x22]), new TextEncoder().encode('\u0003{{{'), Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f])]
    for (const bytes of garbage) {
      const answer = (await suite.raw(id, bytes)) as { ok?: unknown; error?: { code?: unknown } } | undefined
      assert.equal(answer?.ok, false, `expected an error frame, got ${JSON.stringify(answer)}`)
      assert.match(String(answer?.error?.code), /^HEARTH_ERR_NET_MESSAGE_(INVALID|TOO_LARGE)$/)
    }
    assert.equal(calls.length, 0)
    assert.equal(await suite.call(id, { say: 'still here' }), 'echo still here')
    assert.deepEqual(await suite.openStreams(id), [0, 0])
  })
}

/** How a failure on either side reaches the other. */
function registerFailures(suite: Suite): void {
  it('passes on a handler\'s HearthError with its code and hint, and hides any other failure', async () => {
    const { id } = await suite.serve(async (request) => {
      if (request.say === 'refuse') throw new HearthError('HEARTH_ERR_PROVIDER_BUSY', 'no room for this now', { hint: 'ask again in a minute' })
      throw new Error('secret internal detail')
    })
    const refused = remoteRefusal(await suite.call(id, { say: 'refuse' }).then(() => undefined, (e: unknown) => e))
    assert.equal(refused.code, 'HEARTH_ERR_PROVIDER_BUSY')
    assert.match(refused.message, /no room for this now/)
    assert.match(refused.message, /ask again in a minute/)
    const crashed = remoteRefusal(await suite.call(id, { say: 'crash' }).then(() => undefined, (e: unknown) => e))
    assert.equal(crashed.code, 'HEARTH_ERR_INTERNAL')
    assert.doesNotMatch(crashed.message, /secret internal detail/)
    assert.deepEqual(await suite.openStreams(id), [0, 0])
  })

  it('ends an exchange at its deadline on both sides: the caller hears a timeout, the handler\'s signal aborts', async () => {
    const seen = { started: false, aborted: false }
    const { id } = await suite.serve(waitForAbort(seen), shortLimits)
    await assert.rejects(suite.call(id, { say: 'slow' }, undefined, shortLimits), (e: unknown) =>
      isHearthError(e, 'HEARTH_ERR_NET_TIMEOUT') || (isHearthError(e, 'HEARTH_ERR_NET_REMOTE') && e.details?.remoteCode === 'HEARTH_ERR_NET_TIMEOUT'))
    await until(() => seen.aborted, 'the handler saw its deadline')
    assert.deepEqual(await suite.openStreams(id), [0, 0])
  })

  it('stops the handler through its signal when the caller gives up', async () => {
    const seen = { started: false, aborted: false }
    const { id } = await suite.serve(waitForAbort(seen))
    const giveUp = new AbortController()
    const call = suite.call(id, { say: 'wait' }, { signal: giveUp.signal })
    call.catch(() => undefined)
    await until(() => seen.started, 'the handler started')
    giveUp.abort(new Error('the caller changed its mind'))
    await assert.rejects(call)
    await until(() => seen.aborted, 'the handler saw the caller go')
    assert.deepEqual(await suite.openStreams(id), [0, 0])
  })

  it('reports a peer that does not serve the protocol as HEARTH_ERR_NET_DIAL', async () => {
    await assert.rejects(suite.call('/hearth/compliance/nobody-serves/1', { say: 'anyone?' }), (e: unknown) => isHearthError(e, 'HEARTH_ERR_NET_DIAL'))
  })
}

/** What a caller can hold on the responder. */
function registerResources(suite: Suite): void {
  it('is not held past its deadline by a caller that never reads its answer', async () => {
    const { id } = await suite.serve(async (request) => request.say === 'flood' ? 'y'.repeat(3 << 20) : `echo ${request.say}`, shortLimits)
    // A request sent on a raw stream whose answer is never read (and, on an event stream, that never grants room
    // for an event): 3 MiB cannot fit the stream's receive window.
    const stream = await suite.caller.libp2p.dialProtocol(multiaddr(suite.target()), id)
    await jsonFrames(stream, 1024).write(await suite.kind.requestFrame(suite.callerIdentity, { say: 'flood' }))
    await until(() => suite.streams(suite.responder, id) === 1, 'the responder took the request')
    await until(() => suite.streams(suite.responder, id) === 0, 'the responder let the unread stream go')
    stream.abort(new Error('done'))
    assert.equal(await suite.call(id, { say: 'next' }, undefined, shortLimits), 'echo next')
  })
}
