/**
 * A node's part in the market: it keeps an offer book fed by gossip, answers peers that ask for the offers it knows,
 * and asks each peer it connects to for theirs. So a node that joins through any one peer sees the whole market at
 * once instead of waiting for the next gossip round, and every node, provider or requestor, can serve that sync.
 */
import type { PeerId } from '@libp2p/interface'
import type { Host } from '../net/host.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import { offersSyncProtocol } from './market-protocols.ts'
import { createOfferBook, type OfferBook, type OfferBookOutcome } from './offer-book.ts'
import { offerSchema, OFFERS_TOPIC, verifyOffer, type SignedOffer } from './offer.ts'

export type OfferIntake = OfferBookOutcome | 'invalid'

export interface MarketNodeStats {
  /** Offers taken in or refused, by outcome; `invalid` counts forged, malformed, expired-on-arrival or misbound ones. */
  offers: Record<OfferIntake, number>
  /** Sync answers received from peers. */
  syncs: number
}

export interface MarketNode {
  readonly offerBook: OfferBook
  start(): Promise<void>
  stop(): Promise<void>
  /** Checks an offer and adds it to the book; returns what happened to it. */
  intake(signed: SignedOffer): Promise<OfferIntake>
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
}

export function createMarketNode(init: MarketNodeInit): MarketNode {
  const { host } = init
  const offerBook = createOfferBook({ maxOffers: init.maxOffers ?? 10_000 })
  const maxSyncOffers = Math.min(init.maxSyncOffers ?? 1000, 1000)
  const stats: MarketNodeStats = { offers: { added: 0, replaced: 0, stale: 0, expired: 0, full: 0, invalid: 0 }, syncs: 0 }
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

  async function intake(signed: SignedOffer): Promise<OfferIntake> {
    let outcome: OfferIntake = offerBook.peek(signed)
    // Offers already held (every sync repeats them) are not checked again: signature recovery is the costly part.
    if (outcome === 'added' || outcome === 'replaced') {
      try {
        await verifyOffer(signed)
        outcome = offerBook.add(signed)
      } catch {
        outcome = 'invalid'
      }
    }
    stats.offers[outcome]++
    return outcome
  }

  async function syncFrom(peer: PeerTarget, options: { signal?: AbortSignal } = {}): Promise<number> {
    const answer = await host.request(peer, offersSyncProtocol, { offers: ownOffers() }, options)
    stats.syncs++
    let taken = 0
    for (const signed of answer.offers.slice(0, maxSyncOffers)) {
      // The envelope's shape was checked by the protocol; the payload is checked here, as for gossip.
      if (!offerSchema.safeParse(signed.payload).success) {
        stats.offers.invalid++
        continue
      }
      const outcome = await intake(signed as SignedOffer)
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
      offerBook.add(signed)
      // Gossip reaches the mesh; a sync with each direct peer also carries it, so it arrives before the mesh forms.
      await host.publish(OFFERS_TOPIC, signed, { maxBytes: 64 * 1024 }).catch(() => undefined)
      await Promise.allSettled(host.peers().map((peer) => syncFrom(peer)))
    },
    stats: () => ({ offers: { ...stats.offers }, syncs: stats.syncs }),

    async start() {
      unsubscribe = host.subscribe(OFFERS_TOPIC, offerSchema, async (_offer, envelope) => {
        await intake(envelope as SignedOffer)
      })
      await host.handle(offersSyncProtocol, async ({ offers }) => {
        for (const signed of offers) if (offerSchema.safeParse(signed.payload).success) await intake(signed as SignedOffer)
        return { offers: offerBook.list().slice(0, maxSyncOffers) }
      })
      const resyncIntervalMs = init.resyncIntervalMs ?? 30_000
      if (resyncIntervalMs > 0) {
        resyncTimer = setInterval(() => void Promise.allSettled(host.peers().map((peer) => syncFrom(peer))), resyncIntervalMs)
        resyncTimer.unref()
      }
      stopWatching = host.onPeerConnected((peer: PeerId) => {
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
