/**
 * A node's part in the market: it keeps an offer book fed by gossip, answers peers that ask for the offers it knows,
 * and asks each peer it connects to for theirs. So a node that joins through any one peer sees the whole market at
 * once instead of waiting for the next gossip round, and every node, provider or requestor, can serve that sync.
 *
 * Offers cost nothing to forge under throwaway keys, so every offer that arrives, by gossip or sync, passes one
 * intake: its lifetime is capped (offer.ts), each source's rate is limited (below), a full book evicts its least
 * valuable offer rather than refusing a better one (offer-book.ts), and what this node passes on favours providers it
 * reached itself.
 */
import type { PeerId } from '@libp2p/interface'
import { isHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import type { Host } from '../net/host.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { GossipVerdict } from '../net/gossip.ts'
import { offersSyncProtocol } from './market-protocols.ts'
import { createOfferBook, type OfferBook, type OfferBookOutcome, type OfferSource } from './offer-book.ts'
import { maxOfferLifetimeMs, offerLifetimeRefusal, offerSchema, OFFERS_TOPIC, verifyOffer, type SignedOffer } from './offer.ts'
import { peerIdFromString } from '@libp2p/peer-id'

/**
 * What became of an offer: the book's outcome, or `invalid` (forged, malformed, misbound), `too-long` (lives past the
 * lifetime cap, or is issued beyond the allowed clock skew in the future) or `rate-limited` (its source is over its
 * allowance).
 */
export type OfferIntake = OfferBookOutcome | 'invalid' | 'too-long' | 'rate-limited'

/**
 * Offers a minute that one source may hand this node; each allowance is a token bucket holding one minute's worth,
 * so a source may spend it at once (a node joining takes the whole market in one sync answer) and then at this rate.
 * Only offers that would enter the book are charged: one already held (every sync repeats them) costs nothing.
 *
 * An offer is direct when the peer handing it over is its provider (the PeerId it names, whose key signed it), and
 * relayed otherwise. The two are counted apart because they cost an attacker different things. A peer can hand over
 * directly only its own one offer, and each peer id it mints needs its own connection; relayed offers can be signed by
 * any number of throwaway keys and sent by one peer. The per-IP allowances stop one machine from multiplying its
 * per-peer allowance with peer ids, which cost nothing: twenty peer ids on one IP share that IP's allowance.
 *
 * Loopback is not exempt. A devnet of 50 providers on 127.0.0.1 fits: a node there takes at most 49 new direct
 * offers and 49 relayed ones when it joins (one sync answer from the hub), and about 20 of each a minute afterwards
 * (each provider republishes every 2.5 minutes).
 *
 * What an attacker on the same IP as honest nodes can do: spend that IP's relayed allowance, so that while it floods,
 * offers that honest peers on that IP relay to us are dropped (they still arrive directly from their own providers,
 * from peers elsewhere, and with the next re-sync once tokens refill); and, by minting more than `directPerIp` new
 * peer ids a minute, each with its own connection, delay a new honest provider on that IP. What it cannot do: spend an
 * honest peer's own allowance (its republications always get in), take more than `relayedPerIp` offers a minute into
 * the book however many peer ids it uses, make its relayed offers displace any offer whose provider this node reached
 * (offer-book.ts), or have honest nodes pass on more than `maxRelayedSyncOffers` of them per sync answer.
 */
export interface OfferRateLimits {
  /** A peer's own offers (it is their provider): republications, price changes. Default 10. */
  directPerPeer: number
  /** New providers appearing from their own peers at one IP; replacing an offer held costs no IP token. Default 200. */
  directPerIp: number
  /** Offers a peer hands over that other providers signed. Default 200. */
  relayedPerPeer: number
  /** The same, all peers at one IP together. Default 400. */
  relayedPerIp: number
}

export const defaultOfferRateLimits: Readonly<OfferRateLimits> = Object.freeze({ directPerPeer: 10, directPerIp: 200, relayedPerPeer: 200, relayedPerIp: 400 })

export interface OfferCharge {
  /** The offer came from its provider's own peer. */
  direct: boolean
  /** It would take a new place in the book (not replace its provider's older offer). */
  newProvider: boolean
  /** The sending peer (PeerId as a string). */
  peer: string
  /** The sending peer's remote IP keys (see remoteIpKey), one per address it is connected from. */
  ips: string[]
}

export interface OfferRateLimiter {
  /** Takes a token from every bucket the offer is charged to, or from none when any is empty; true when taken. */
  take(charge: OfferCharge, nowMs?: number): boolean
}

export function createOfferRateLimiter(limits: OfferRateLimits = defaultOfferRateLimits, init: { maxSources?: number } = {}): OfferRateLimiter {
  const maxSources = init.maxSources ?? 20_000
  const windowMs = 60_000
  const buckets = new Map<string, { tokens: number; atMs: number }>()

  const tokensOf = (key: string, perMinute: number, nowMs: number): { tokens: number; atMs: number } => {
    const bucket = buckets.get(key)
    if (bucket === undefined) return { tokens: perMinute, atMs: nowMs }
    return { tokens: Math.min(perMinute, bucket.tokens + (Math.max(0, nowMs - bucket.atMs) * perMinute) / windowMs), atMs: nowMs }
  }
  const keep = (key: string, bucket: { tokens: number; atMs: number }): void => {
    // Map order is last use: past the bound, the sources idle longest are forgotten first (a forgotten source starts
    // again with a full bucket, as it would after an idle minute; flushing one takes maxSources busier sources).
    buckets.delete(key)
    buckets.set(key, bucket)
    for (const oldKey of buckets.keys()) {
      if (buckets.size <= maxSources) break
      buckets.delete(oldKey)
    }
  }

  return {
    take(charge, nowMs = Date.now()) {
      const kind = charge.direct ? 'direct' : 'relayed'
      const wanted: [key: string, perMinute: number][] = [[`${kind}:peer:${charge.peer}`, charge.direct ? limits.directPerPeer : limits.relayedPerPeer]]
      if (!charge.direct || charge.newProvider) {
        for (const ip of new Set(charge.ips)) wanted.push([`${kind}:ip:${ip}`, charge.direct ? limits.directPerIp : limits.relayedPerIp])
      }
      const refilled = wanted.map(([key, perMinute]) => ({ key, perMinute, bucket: tokensOf(key, perMinute, nowMs) }))
      if (refilled.some(({ perMinute, bucket }) => perMinute !== Infinity && bucket.tokens < 1)) return false
      for (const { key, perMinute, bucket } of refilled) {
        if (perMinute !== Infinity) keep(key, { tokens: bucket.tokens - 1, atMs: nowMs })
      }
      return true
    },
  }
}

export interface MarketNodeStats {
  /** Offers taken in or refused, by outcome; `invalid` counts forged, malformed, expired-on-arrival or misbound ones. */
  offers: Record<OfferIntake, number>
  /** Offers displaced from the full book by more valuable ones. */
  evicted: number
  /** Sync answers received from peers. */
  syncs: number
}

export interface MarketNode {
  readonly offerBook: OfferBook
  start(): Promise<void>
  stop(): Promise<void>
  /**
   * Checks an offer and adds it to the book; returns what happened to it. `from` is the peer that handed it over: its
   * rate limits apply, and it tells a direct offer from a relayed one. Without it (an offer read locally) neither does.
   */
  intake(signed: SignedOffer, from?: PeerId): Promise<OfferIntake>
  /** Asks one peer for the offers it knows. */
  syncFrom(peer: PeerTarget, options?: { signal?: AbortSignal }): Promise<number>
  /** Asks every connected peer at once. */
  syncAll(options?: { signal?: AbortSignal }): Promise<number>
  /** Gossips this node's own offer and keeps it in the book (so sync answers include it). */
  publish(signed: SignedOffer): Promise<void>
  stats(): MarketNodeStats
}

export interface MarketNodeInit {
  host: Host
  maxOffers?: number
  /** How often to re-sync with every connected peer, repairing what gossip lost (default 30 s; 0 turns it off). */
  resyncIntervalMs?: number
  /** Most offers one sync answer carries; the protocol's own bound applies too. */
  maxSyncOffers?: number
  /**
   * Most offers only relayed to this node (their provider never reached it) that one sync answer passes on, taken in
   * turn from each peer that relayed them (default 64). Offers whose provider this node reached are passed on in full.
   */
  maxRelayedSyncOffers?: number
  /** Longest an offer may live from its issue and from now (default maxOfferLifetimeMs, 1 hour). */
  maxOfferLifetimeMs?: number
  /** Offers a minute per source (see OfferRateLimits for the defaults and why). */
  rateLimits?: Partial<OfferRateLimits>
}

export function createMarketNode(init: MarketNodeInit): MarketNode {
  const { host } = init
  const offerBook = createOfferBook({ maxOffers: init.maxOffers ?? 10_000 })
  const maxSyncOffers = Math.min(init.maxSyncOffers ?? 1000, 1000)
  const maxRelayedSyncOffers = init.maxRelayedSyncOffers ?? 64
  const maxLifetimeMs = init.maxOfferLifetimeMs ?? maxOfferLifetimeMs
  const limiter = createOfferRateLimiter({ ...defaultOfferRateLimits, ...init.rateLimits })
  const stats: MarketNodeStats = {
    offers: { added: 0, replaced: 0, stale: 0, expired: 0, full: 0, invalid: 0, 'too-long': 0, 'rate-limited': 0 },
    evicted: 0,
    syncs: 0,
  }
  let unsubscribe: (() => void) | undefined
  let stopWatching: (() => void) | undefined
  let resyncTimer: NodeJS.Timeout | undefined
  /** This node's own live offers, handed to every peer it syncs with. */
  const own = new Map<string, SignedOffer>()
  const ownOffers = (): SignedOffer[] => {
    const nowMs = Date.now()
    for (const [key, signed] of own) if (signed.payload.expiresAtMs <= nowMs) own.delete(key)
    return [...own.values()]
  }
  const providerOf = (peer: PeerId): string | undefined => {
    try {
      return addressFromPeerId(peer).toLowerCase()
    } catch {
      return undefined // not a secp256k1 key: no provider can be behind it
    }
  }
  const ipsOf = (peer: PeerId): string[] => {
    const ips = host.remoteIps(peer)
    return ips.length > 0 ? ips : ['unknown']
  }

  async function intake(signed: SignedOffer, from?: PeerId): Promise<OfferIntake> {
    const outcome = await take(signed, from)
    stats.offers[outcome]++
    return outcome
  }

  async function take(signed: SignedOffer, from: PeerId | undefined): Promise<OfferIntake> {
    const nowMs = Date.now()
    // Cheap checks first: a flood costs this node no signature recovery beyond what its source's allowance admits.
    if (offerLifetimeRefusal(signed.payload, nowMs, maxLifetimeMs) !== undefined) return 'too-long'
    const peer = from?.toString()
    // Direct only when the sender is the very provider (PeerId and key); a misbound offer is judged as relayed.
    const direct = from !== undefined && signed.payload.peerId === peer && providerOf(from) === signed.payload.provider.toLowerCase()
    const source: OfferSource = peer === undefined ? { direct: false } : { peer, direct }
    const outcome = offerBook.peek(signed, nowMs, source)
    // Offers already held (every sync repeats them) are not checked again: signature recovery is the costly part.
    if (outcome !== 'added' && outcome !== 'replaced') return outcome
    if (from !== undefined && !limiter.take({ direct, newProvider: outcome === 'added', peer: from.toString(), ips: ipsOf(from) }, nowMs)) return 'rate-limited'
    try {
      await verifyOffer(signed, Date.now(), { maxLifetimeMs })
    } catch (error) {
      return isHearthError(error) && error.details?.reason === 'too-long' ? 'too-long' : 'invalid'
    }
    const added = offerBook.add(signed, Date.now(), source)
    // Where to dial the provider: its own signed addresses (nobody else can state them) go to the peer store, so a dial
    // by its PeerId tries each of them rather than one that may not lead there from this node.
    if (added === 'added' || added === 'replaced') rememberAddresses(signed.payload.peerId, signed.payload.multiaddrs)
    return added
  }

  function rememberAddresses(peerId: string, addresses: string[]): void {
    try {
      const peer = peerIdFromString(peerId)
      if (peer.equals(host.peerId)) return
      host.addPeerAddresses(peer, addresses.map((address) => address.replace(new RegExp(`/p2p/${peerId}$`), ''))).catch(() => undefined)
    } catch {
      // a malformed PeerId in a validly signed offer (a malformed address rejects above, adding none): dialling by its
      // multiaddrs fails with a clear error later
    }
  }

  /**
   * Whether gossipsub may deliver and forward an offer, from what intake made of it: what this node would not keep is
   * not passed on. Forged or too long-lived offers are rejected (they are the sender's fault); offers over a source's
   * allowance, losing on eviction, expired or superseded are ignored (an honest relay may send those). An offer already
   * held is forwarded only when its provider reached this node, so re-sent copies of relayed offers stop here.
   */
  function gossipVerdict(outcome: OfferIntake, signed: SignedOffer): GossipVerdict {
    if (outcome === 'added' || outcome === 'replaced') return 'accept'
    if (outcome === 'invalid' || outcome === 'too-long') return 'reject'
    if (outcome === 'stale' && offerBook.holds(signed) && (offerBook.entry(signed.payload.provider)?.rank ?? 0) > 0) return 'accept'
    return 'ignore'
  }

  async function syncFrom(peer: PeerTarget, options: { signal?: AbortSignal } = {}): Promise<number> {
    const answer = await host.exchange(peer, offersSyncProtocol, { offers: ownOffers() }, options)
    stats.syncs++
    let taken = 0
    for (const signed of answer.response.offers.slice(0, maxSyncOffers)) {
      // The envelope's shape was checked by the protocol; the payload is checked here, as for gossip.
      if (!offerSchema.safeParse(signed.payload).success) {
        stats.offers.invalid++
        continue
      }
      const outcome = await intake(signed as SignedOffer, answer.peerId)
      if (outcome === 'added' || outcome === 'replaced') taken++
    }
    return taken
  }

  return {
    offerBook,
    intake,
    syncFrom,
    async syncAll(options = {}) {
      const answers = await Promise.allSettled(host.peers().map((peer) => syncFrom(peer, options)))
      return answers.reduce((n, a) => n + (a.status === 'fulfilled' ? a.value : 0), 0)
    },
    async publish(signed) {
      own.set(signed.payload.provider.toLowerCase(), signed)
      offerBook.add(signed, Date.now(), { peer: host.peerId.toString(), direct: true, own: true })
      // Gossip reaches the mesh; a sync with each direct peer also carries it, so it arrives before the mesh forms.
      await host.publish(OFFERS_TOPIC, signed, { maxBytes: 64 * 1024 }).catch(() => undefined)
      await Promise.allSettled(host.peers().map((peer) => syncFrom(peer)))
    },
    stats: () => ({ offers: { ...stats.offers }, evicted: offerBook.evicted(), syncs: stats.syncs }),

    async start() {
      // Intake runs inside gossipsub's validation, so its outcome decides whether the offer is forwarded.
      unsubscribe = host.subscribe(OFFERS_TOPIC, offerSchema, () => undefined, {
        judge: async (_offer, envelope, _origin, via) => gossipVerdict(await intake(envelope as SignedOffer, via), envelope as SignedOffer),
      })
      await host.handle(offersSyncProtocol, async ({ offers }, { peerId }) => {
        for (const signed of offers) if (offerSchema.safeParse(signed.payload).success) await intake(signed as SignedOffer, peerId)
        return { offers: offerBook.passOn({ maxOffers: maxSyncOffers, maxRelayed: maxRelayedSyncOffers }) }
      })
      const resyncIntervalMs = init.resyncIntervalMs ?? 30_000
      if (resyncIntervalMs > 0) {
        resyncTimer = setInterval(() => void Promise.allSettled(host.peers().map((peer) => syncFrom(peer))), resyncIntervalMs)
        resyncTimer.unref()
      }
      stopWatching = host.onPeerConnected((peer: PeerId) => {
        // This node reached the peer itself: its provider's offers, held or to come, rank above relayed ones.
        const provider = providerOf(peer)
        if (provider !== undefined) offerBook.markReached(provider)
        // A new connection, either way: learn what the peer knows. Failure only means fewer offers, never an error.
        void syncFrom(peer).catch(() => undefined)
      })
    },
    async stop() {
      if (resyncTimer !== undefined) clearInterval(resyncTimer)
      stopWatching?.()
      // The host may already be stopped (its owner's choice of order); there is then nothing left to undo.
      try {
        unsubscribe?.()
      } catch {
        // pubsub already stopped
      }
      await host.unhandle(offersSyncProtocol).catch(() => undefined)
    },
  }
}
