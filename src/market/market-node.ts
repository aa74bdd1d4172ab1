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
import type { Host } from '../net/host.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import { offersSyncProtocol } from './market-protocols.ts'
import { createOfferBook, type OfferBook } from './offer-book.ts'
import { gossipVerdict, providerOfPeer, takeOffer, type OfferIntake, type OfferIntakeContext } from './offer-intake.ts'
import { createOfferRateLimiter, defaultOfferRateLimits, type OfferRateLimits } from './offer-rate-limit.ts'
import { maxOfferLifetimeMs, offerSchema, OFFERS_TOPIC, type SignedOffer } from './offer.ts'

export type { OfferIntake } from './offer-intake.ts'
export { createOfferRateLimiter, defaultOfferRateLimits, type OfferCharge, type OfferRateLimiter, type OfferRateLimits } from './offer-rate-limit.ts'

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
  const intakeContext: OfferIntakeContext = { host, offerBook, limiter, maxLifetimeMs }

  async function intake(signed: SignedOffer, from?: PeerId): Promise<OfferIntake> {
    const outcome = await takeOffer(intakeContext, signed, from)
    stats.offers[outcome]++
    return outcome
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
        judge: async (_offer, envelope, _origin, via) => gossipVerdict(offerBook, await intake(envelope as SignedOffer, via), envelope as SignedOffer),
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
        const provider = providerOfPeer(peer)
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
