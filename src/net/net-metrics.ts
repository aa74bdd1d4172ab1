/**
 * Counters of what the network layer accepted and refused, per protocol and per topic. Refusals are never thrown
 * into libp2p (they would kill a stream or a pubsub loop), so these counters are how an operator sees them.
 */

/** Why an inbound request was refused before (or instead of) reaching its handler. */
export type RequestRejectReason =
  | 'too-large' // the length prefix announced more than maxRequestBytes
  | 'malformed' // not a complete frame, or not JSON
  | 'schema' // JSON, but not what the protocol's schema accepts
  | 'unsigned' // a signed protocol received something that is not a signed envelope
  | 'bad-signature' // the signature does not match the payload and signer
  | 'signer-mismatch' // validly signed, but not by the connection's remote peer
  | 'peer-key' // the remote peer's key is not secp256k1, so it has no Ethereum address
  | 'timeout' // no complete request, or no answer from the handler, within timeoutMs
  | 'too-slow' // a frame did not arrive within its own deadline (an allowance plus its size at a minimum rate)
  | 'busy' // the node's inbound budget (node-wide, per IP or per peer) had no room for the frame: refused unread
  | 'not-admitted' // the protocol's admission check refused the sender of a large frame: refused unread

/** Why an inbound gossip message was dropped. */
export type GossipDropReason =
  | 'too-large'
  | 'malformed'
  | 'schema'
  | 'unsigned'
  | 'bad-signature'
  | 'signer-not-origin' // validly signed, but not by the node that published it

export interface ProtocolCounters {
  /** Requests answered by the handler (successfully or with the handler's own error). */
  served: number
  /** Handlers that threw something other than a HearthError (answered as HEARTH_ERR_INTERNAL). */
  handlerFailures: number
  rejected: Partial<Record<RequestRejectReason, number>>
}

export interface TopicCounters {
  delivered: number
  /** Subscription handlers that threw or rejected. */
  handlerFailures: number
  dropped: Partial<Record<GossipDropReason, number>>
}

export interface NetMetrics {
  protocols: Record<string, ProtocolCounters>
  topics: Record<string, TopicCounters>
}

export interface NetMetricsRecorder {
  served(protocolId: string): void
  handlerFailed(protocolId: string): void
  rejected(protocolId: string, reason: RequestRejectReason): void
  delivered(topic: string): void
  gossipHandlerFailed(topic: string): void
  dropped(topic: string, reason: GossipDropReason): void
  /** A deep copy, safe to keep or serialise. */
  snapshot(): NetMetrics
}

export function createNetMetrics(): NetMetricsRecorder {
  const protocols = new Map<string, ProtocolCounters>()
  const topics = new Map<string, TopicCounters>()
  const protocol = (id: string): ProtocolCounters => {
    let counters = protocols.get(id)
    if (counters === undefined) {
      counters = { served: 0, handlerFailures: 0, rejected: {} }
      protocols.set(id, counters)
    }
    return counters
  }
  const topic = (name: string): TopicCounters => {
    let counters = topics.get(name)
    if (counters === undefined) {
      counters = { delivered: 0, handlerFailures: 0, dropped: {} }
      topics.set(name, counters)
    }
    return counters
  }
  return {
    served: (id) => { protocol(id).served++ },
    handlerFailed: (id) => { protocol(id).handlerFailures++ },
    rejected: (id, reason) => {
      const counters = protocol(id)
      counters.rejected[reason] = (counters.rejected[reason] ?? 0) + 1
    },
    delivered: (name) => { topic(name).delivered++ },
    gossipHandlerFailed: (name) => { topic(name).handlerFailures++ },
    dropped: (name, reason) => {
      const counters = topic(name)
      counters.dropped[reason] = (counters.dropped[reason] ?? 0) + 1
    },
    snapshot: () => structuredClone({ protocols: Object.fromEntries(protocols), topics: Object.fromEntries(topics) }),
  }
}
