import { z } from 'zod'
import { signPayload } from '../identity/signed.ts'
import { defineBlobProtocol } from './blob-protocol.ts'
import { registerExchangeCompliance, suiteRequest } from './exchange-compliance.ts'
import type { CallOptions, SuiteLimits } from './exchange-compliance.ts'
import { encodeJsonFrame } from './json-frames.ts'
import { defineProtocol } from './protocol.ts'
import { defineStreamProtocol } from './stream-protocol.ts'

const looseBytes = 1 << 20
const requestOf = (options: CallOptions | undefined): z.ZodType => (options?.loose === true ? z.any() : suiteRequest)
const requestBytes = (limits: SuiteLimits, options: CallOptions | undefined): number => (options?.loose === true ? looseBytes : limits.maxRequestBytes)

const answer = z.strictObject({ text: z.string() })
function requestResponse(id: string, limits: SuiteLimits, options?: CallOptions) {
  return defineProtocol({
    id, request: requestOf(options), response: answer, signed: true,
    maxRequestBytes: requestBytes(limits, options), maxResponseBytes: limits.maxAnswerBytes + 1024, timeoutMs: limits.timeoutMs,
  })
}

registerExchangeCompliance({
  name: 'request-response',
  async serve(host, id, limits, handler) {
    const protocol = requestResponse(id, limits)
    await host.handle(protocol, async (request, context) => ({ text: await handler(request as z.output<typeof suiteRequest>, context.signal) }))
    return () => host.unhandle(protocol)
  },
  async call(host, target, id, limits, request, options) {
    return (await host.request(target, requestResponse(id, limits, options), request, { signal: options?.signal })).text
  },
  async requestFrame(identity, request) {
    return encodeJsonFrame(await signPayload(identity, request))
  },
})

function eventStream(id: string, limits: SuiteLimits, options?: CallOptions) {
  return defineStreamProtocol({
    id, request: requestOf(options), event: z.strictObject({ n: z.number() }), result: answer,
    maxRequestBytes: requestBytes(limits, options), maxEventBytes: 256, maxResultBytes: limits.maxAnswerBytes + 1024,
    maxTotalBytes: limits.maxAnswerBytes + 4096, maxEvents: 10, timeoutMs: limits.timeoutMs, idleTimeoutMs: Math.min(limits.timeoutMs, 10_000),
  })
}

registerExchangeCompliance({
  name: 'event-stream',
  async serve(host, id, limits, handler) {
    const server = await host.serveStream(eventStream(id, limits), async (request, context) => {
      await context.emit({ n: 1 })
      return { text: await handler(request as z.output<typeof suiteRequest>, context.signal) }
    })
    return () => server.close()
  },
  async call(host, target, id, limits, request, options) {
    const call = host.openStream(target, eventStream(id, limits, options), request, { signal: options?.signal })
    for await (const _event of call.events) {
      // Each exchange of the suite sends one event before its answer.
    }
    return (await call.result).result.text
  },
  async requestFrame(identity, request) {
    return encodeJsonFrame(await signPayload(identity, request))
  },
})

const blobHeader = z.strictObject({ bytes: z.number().int().nonnegative() })
function blob(id: string, limits: SuiteLimits, options?: CallOptions) {
  return defineBlobProtocol({
    id, request: requestOf(options), header: blobHeader,
    maxRequestBytes: requestBytes(limits, options), maxHeaderBytes: 256, maxBodyBytes: limits.maxAnswerBytes, timeoutMs: limits.timeoutMs,
  })
}

registerExchangeCompliance({
  name: 'binary-body',
  async serve(host, id, limits, handler) {
    const protocol = blob(id, limits)
    await host.serveBlob(protocol, async (request, context) => {
      const body = new TextEncoder().encode(await handler(request as z.output<typeof suiteRequest>, context.signal))
      return { header: { bytes: body.byteLength }, body }
    })
    return () => host.unhandle(protocol)
  },
  async call(host, target, id, limits, request, options) {
    return new TextDecoder().decode((await host.requestBlob(target, blob(id, limits, options), request, { signal: options?.signal })).body)
  },
  async requestFrame(_identity, request) {
    return encodeJsonFrame(request)
  },
})
