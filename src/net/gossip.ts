/**
 * Signed gossip over gossipsub. Every message is a Signed<T> envelope in JSON; a topic validator checks size, JSON,
 * signature and schema before gossipsub delivers or forwards it, so a bad message stops at the first honest node
 * and is counted there (per topic, per reason) instead of being thrown into libp2p.
 */
import './polyfill.ts'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { ComponentLogger, Logger, PeerId } from '@libp2p/interface'
import { isAddressEqual } from 'viem'
import type { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import { signedEnvelopeSchema, verifySigned } from '../identity/signed.ts'
import type { Signed } from '../identity/signed.ts'
import { describeIssues } from './describe-issues.ts'
import type { GossipDropReason, NetMetricsRecorder } from './net-metrics.ts'

/** Default and ceiling for one gossip message (an offer is a few KiB). */
export const defaultGossipMaxBytes = 64 * 1024
export const gossipMaxBytesCeiling = 1024 * 1024

export interface SubscribeOptions {
  /** Messages larger than this are dropped unread (default 64 KiB, at most 1 MiB). */
  maxBytes?: number
  /**
   * The envelope must be signed by the node that published the message (default true). This stops a node from
   * re-publishing other nodes' signed messages as its own gossip; turn it off for topics that relay such messages.
   */
  requireOriginSigner?: boolean
  /**
   * The subscriber's own verdict, asked once the checks above pass and before gossipsub delivers or forwards the
   * message (so what a node refuses stops there). `from` is the origin, `via` the peer that handed the message over
   * (the origin itself, or a peer forwarding it). 'accept' delivers and forwards it; 'ignore' drops it without blame
   * (not forwarded, the sender's score untouched: over a rate limit, superseded); 'reject' drops it as invalid (not
   * forwarded, and gossipsub lowers `via`'s score). A judge that throws counts as 'ignore'.
   */
  judge?: GossipJudge
}

export type GossipVerdict = 'accept' | 'ignore' | 'reject'

export type GossipJudge = (payload: unknown, envelope: Signed<unknown>, from: PeerId, via: PeerId) => GossipVerdict | Promise<GossipVerdict>

export interface PublishOptions {
  /** Refuse to publish above this size (default 64 KiB), mirroring subscribers' limit. */
  maxBytes?: number
}

export type GossipHandler<P extends z.ZodType> =
  (payload: z.output<P>, envelope: Signed<z.input<P>>, from: PeerId) => void | Promise<void>

export interface Gossip {
  publish(topic: string, signed: Signed<unknown>, options?: PublishOptions): Promise<{ recipients: number }>
  /** Returns a function that unsubscribes. One subscription per topic per node. */
  subscribe<P extends z.ZodType>(topic: string, payloadSchema: P, handler: GossipHandler<P>, options?: SubscribeOptions): () => void
  /** Peers we know to be subscribed to `topic` (what gossipsub can publish to). */
  topicPeers(topic: string): PeerId[]
}

export interface GossipDeps {
  pubsub: GossipSub
  metrics: NetMetricsRecorder
  logger: ComponentLogger
}

interface Accepted {
  payload: unknown
  envelope: Signed<unknown>
  from: PeerId
}

interface Subscription {
  handler: (accepted: Accepted) => void | Promise<void>
  judge: GossipJudge | undefined
  validate: (message: Message) => Promise<Accepted | { drop: GossipDropReason; why: string }>
}

export function createGossip(deps: GossipDeps): Gossip {
  const log = deps.logger.forComponent('hearth:net:gossip')
  const subscriptions = new Map<string, Subscription>()
  // The validator and the 'message' event see the same Message object; this saves verifying twice.
  const accepted = new WeakMap<Message, Accepted>()
  const decoder = new TextDecoder('utf-8', { fatal: true })

  deps.pubsub.addEventListener('message', (event) => {
    const message = event.detail
    const subscription = subscriptions.get(message.topic)
    if (subscription === undefined) return
    void deliver(deps, log, accepted, message, subscription)
  })

  return {
    publish: (topic, signed, options = {}) => publish(deps, topic, signed, options),

    subscribe(topic, payloadSchema, handler, options = {}) {
      if (subscriptions.has(topic)) {
        throw new HearthError('HEARTH_ERR_API_MISUSE', `Already subscribed to ${topic}`, {
          hint: 'subscribe once per topic and fan out to several consumers in your handler',
          details: { topic },
        })
      }
      const maxBytes = Math.min(options.maxBytes ?? defaultGossipMaxBytes, gossipMaxBytesCeiling)
      const validate = (message: Message): ReturnType<Subscription['validate']> => validateMessage(decoder, message, payloadSchema, maxBytes, options.requireOriginSigner ?? true)
      const judge = options.judge
      subscriptions.set(topic, {
        validate,
        judge,
        handler: ({ payload, envelope, from }) => handler(payload as z.output<typeof payloadSchema>, envelope as Signed<z.input<typeof payloadSchema>>, from),
      })
      deps.pubsub.topicValidators.set(topic, topicValidator(deps, log, accepted, topic, validate, judge))
      deps.pubsub.subscribe(topic)
      return () => {
        if (!subscriptions.has(topic)) return
        subscriptions.delete(topic)
        deps.pubsub.topicValidators.delete(topic)
        deps.pubsub.unsubscribe(topic)
      }
    },

    topicPeers(topic) {
      return deps.pubsub.getSubscribers(topic)
    },
  }
}

async function deliver(deps: GossipDeps, log: Logger, accepted: WeakMap<Message, Accepted>, message: Message, subscription: Subscription): Promise<void> {
  let result: Accepted | undefined = accepted.get(message)
  if (result === undefined) {
    // Only reached if the topic validator did not run; a judge needs the forwarding peer, which is not known here.
    if (subscription.judge !== undefined) return
    const checked = await subscription.validate(message)
    if (!('envelope' in checked)) return
    result = checked
  }
  deps.metrics.delivered(message.topic)
  try {
    await subscription.handler(result)
  } catch (error) {
    deps.metrics.gossipHandlerFailed(message.topic)
    log.error('handler for topic %s failed - %e', message.topic, error)
  }
}

/** The message's payload, envelope and origin once every check passes, else why it is dropped. */
async function validateMessage(
  decoder: TextDecoder,
  message: Message,
  schema: z.ZodType,
  maxBytes: number,
  requireOriginSigner: boolean,
): Promise<Accepted | { drop: GossipDropReason; why: string }> {
  if (message.type !== 'signed') return { drop: 'unsigned', why: 'the gossipsub message carries no origin' }
  if (message.data.byteLength > maxBytes) return { drop: 'too-large', why: `${message.data.byteLength} bytes, over the limit of ${maxBytes}` }
  let raw: unknown
  try {
    raw = JSON.parse(decoder.decode(message.data))
  } catch {
    return { drop: 'malformed', why: 'not UTF-8 JSON' }
  }
  const shape = signedEnvelopeSchema.safeParse(raw)
  if (!shape.success) return { drop: 'unsigned', why: `not a signed envelope: ${describeIssues(shape.error).text}` }
  const envelope = raw as Signed<unknown>
  try {
    await verifySigned(envelope)
  } catch (error) {
    return { drop: 'bad-signature', why: isHearthError(error) ? error.shortMessage : String(error) }
  }
  if (requireOriginSigner) {
    let origin: string
    try {
      origin = addressFromPeerId(message.from)
    } catch {
      return { drop: 'signer-not-origin', why: `published by ${message.from.toString()}, which has no Ethereum address` }
    }
    if (!isAddressEqual(origin as `0x${string}`, shape.data.signer as `0x${string}`)) {
      return { drop: 'signer-not-origin', why: `signed by ${shape.data.signer} but published by ${origin}` }
    }
  }
  const parsed = schema.safeParse(envelope.payload)
  if (!parsed.success) return { drop: 'schema', why: describeIssues(parsed.error, ['payload']).text }
  return { payload: parsed.data, envelope, from: message.from }
}

/** Gossipsub's validator for `topic`: the checks, then the subscriber's judge; what fails is counted and dropped. */
function topicValidator(
  deps: GossipDeps,
  log: Logger,
  accepted: WeakMap<Message, Accepted>,
  topic: string,
  validate: Subscription['validate'],
  judge: GossipJudge | undefined,
): (via: PeerId, message: Message) => Promise<TopicValidatorResult> {
  return async (via, message) => {
    try {
      const result = await validate(message)
      if ('envelope' in result) {
        const verdict = judge === undefined ? 'accept' : await judge(result.payload, result.envelope, result.from, via)
        if (verdict !== 'accept') {
          log('the subscriber refused (%s) a message on %s from %p via %p', verdict, topic, result.from, via)
          return verdict === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
        }
        accepted.set(message, result)
        return TopicValidatorResult.Accept
      }
      deps.metrics.dropped(topic, result.drop)
      log('dropped a message on %s from %p (%s): %s', topic, message.type === 'signed' ? message.from : via, result.drop, result.why)
      return TopicValidatorResult.Reject
    } catch (error) {
      // A validator bug must not reach gossipsub; Ignore neither forwards nor penalises the sender.
      log.error('validator for %s failed - %e', topic, error)
      return TopicValidatorResult.Ignore
    }
  }
}

async function publish(deps: GossipDeps, topic: string, signed: Signed<unknown>, options: PublishOptions): Promise<{ recipients: number }> {
  const maxBytes = options.maxBytes ?? defaultGossipMaxBytes
  // Check locally what every subscriber will check, so a bad publish fails here, loudly, not silently out there.
  await verifySigned(signed)
  const bytes = new TextEncoder().encode(JSON.stringify(signed))
  if (bytes.byteLength > maxBytes) {
    throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `Gossip for ${topic} is ${bytes.byteLength} bytes, over the limit of ${maxBytes}`, {
      details: { topic, bytes: bytes.byteLength, limitBytes: maxBytes },
    })
  }
  try {
    const result = await deps.pubsub.publish(topic, bytes)
    return { recipients: result.recipients.length }
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_NET_DIAL', `Cannot publish to ${topic}: ${(cause as Error).message}`, { cause, details: { topic } })
  }
}
