/**
 * The requestor's view of the market: the newest live offer of each provider, bounded in size.
 * Offers arrive by gossip and sync; everything that arrives here has already been schema-checked and signature-checked.
 *
 * The book remembers where each offer came from, because offers cost nothing to forge under throwaway keys: when it is
 * full, a new offer displaces the least valuable one instead of being refused, and an offer only relayed by others can
 * never displace one whose provider this node reached itself. Value, most valued first:
 *   3. this node's own offers;
 *   2. providers that answered: signed or countered a negotiation, or earned reputation (markReached 'answered');
 *   1. providers reached directly: the offer came from the provider's own peer, or this node connected to that peer or
 *      had a ping answer from it (markReached 'connected');
 *   0. offers only relayed by others.
 * Among equals the oldest goes first (issued earliest, an issue time ahead of the offer's arrival counted as its
 * arrival, so a clock set forward buys nothing), then the soonest to expire. Answers outrank connections because a
 * connection costs an attacker one handshake per throwaway key, an answer a running provider.
 */
import type { Offer, SignedOffer } from './offer.ts'
import { selectPassOn } from './offer-pass-on.ts'

export type OfferBookOutcome = 'added' | 'replaced' | 'stale' | 'expired' | 'full'

/** Where an offer came from. */
export interface OfferSource {
  /** The remote peer (PeerId as a string) that handed the offer over; absent for offers added locally. */
  peer?: string
  /** It came from its provider's own peer (the sender is the PeerId the offer names). */
  direct: boolean
  /** This node's own offer (never displaced). */
  own?: boolean
}

/** How this node has reached a provider: a connection (or ping answer), or an answer to a negotiation / reputation. */
export type ProviderReach = 'connected' | 'answered'

export interface OfferBookEntry {
  signed: SignedOffer
  source: OfferSource
  /** 0 relayed only, 1 reached directly, 2 answered, 3 own (see the order above). */
  rank: number
  receivedAtMs: number
}

export interface PassOnOptions {
  /** Most offers in all (default 1000). */
  maxOffers?: number
  /** Most offers of rank 0 (only relayed to this node) among them (default 64). */
  maxRelayed?: number
  nowMs?: number
}

export interface OfferBook {
  /** `source` defaults to a relayed offer of unknown origin. */
  add(signed: SignedOffer, nowMs?: number, source?: OfferSource): OfferBookOutcome
  /** What `add` would do, without doing it: lets callers skip checking signatures of offers already held. */
  peek(signed: SignedOffer, nowMs?: number, source?: OfferSource): OfferBookOutcome
  /** Whether the book holds exactly this signed offer. */
  holds(signed: SignedOffer): boolean
  /** Live offers, oldest provider first; `filter` narrows them. */
  list(filter?: (offer: Offer) => boolean, nowMs?: number): SignedOffer[]
  /** The book's record of one provider's offer: where it came from and how it ranks. */
  entry(provider: string): OfferBookEntry | undefined
  /**
   * The offers worth handing to another node (a sync answer): every offer of rank 1 and above, newest first, then at
   * most `maxRelayed` only-relayed ones, taken in turn from each peer that relayed them, so that one flooding source
   * gets no more than its share.
   */
  passOn(options?: PassOnOptions): SignedOffer[]
  /** Records that this node reached `provider` (an address), which ranks its offers, held or to come, above relayed ones. */
  markReached(provider: string, how?: ProviderReach): void
  size(): number
  /** Offers displaced to make room since the book was made. */
  evicted(): number
  /** Resolves once at least `count` live offers pass `filter`, or rejects on abort. */
  waitFor(count: number, filter?: (offer: Offer) => boolean, options?: { signal?: AbortSignal }): Promise<SignedOffer[]>
}

export interface OfferBookInit {
  /** Most offers held (default 10 000). */
  maxOffers?: number
}

const relayedSource: OfferSource = { direct: false }

/** An offer as the book holds it: where it came from and when it arrived. */
interface HeldOffer {
  signed: SignedOffer
  source: OfferSource
  receivedAtMs: number
}

/** An offer's value for eviction (see the order above). */
interface OfferValue {
  rank: number
  ageMs: number
  expiresAtMs: number
}

function rankOf(reached: ReadonlyMap<string, ProviderReach>, provider: string, source: OfferSource): number {
  if (source.own === true) return 3
  const reach = reached.get(provider)
  if (reach === 'answered') return 2
  return reach === 'connected' || source.direct ? 1 : 0
}

/** Orders offers for eviction: negative when `a` goes before `b`. */
function compareValue(a: OfferValue, b: OfferValue): number {
  return a.rank - b.rank || a.ageMs - b.ageMs || a.expiresAtMs - b.expiresAtMs
}

function valueOf(rank: number, signed: SignedOffer, receivedAtMs: number): OfferValue {
  return { rank, ageMs: Math.min(signed.payload.issuedAtMs, receivedAtMs), expiresAtMs: signed.payload.expiresAtMs }
}

/** The least valuable offer held, which a newcomer worth more displaces when the book is full. */
function leastValuable(byProvider: ReadonlyMap<string, HeldOffer>, reached: ReadonlyMap<string, ProviderReach>): { provider: string; value: OfferValue } | undefined {
  let least: { provider: string; value: OfferValue } | undefined
  for (const [provider, held] of byProvider) {
    const value = valueOf(rankOf(reached, provider, held.source), held.signed, held.receivedAtMs)
    if (least === undefined || compareValue(value, least.value) < 0) least = { provider, value }
  }
  return least
}

/** Keeps `reached` within `maxReached`, forgetting first the providers that have no offer held. */
function forgetReachedBeyondBound(reached: Map<string, ProviderReach>, byProvider: ReadonlyMap<string, HeldOffer>, maxReached: number): void {
  if (reached.size <= maxReached) return
  // Forget first the providers that have no offer here: nothing of theirs is ranked by it now.
  for (const provider of reached.keys()) {
    if (reached.size <= maxReached) return
    if (!byProvider.has(provider)) reached.delete(provider)
  }
  for (const provider of reached.keys()) {
    if (reached.size <= maxReached) return
    reached.delete(provider)
  }
}

/** Resolves once `list(filter)` holds at least `count` offers, checked now and at each wake-up; rejects on abort. */
function waitForOffers(
  waiters: Set<() => void>,
  list: (filter?: (offer: Offer) => boolean) => SignedOffer[],
  count: number,
  filter: ((offer: Offer) => boolean) | undefined,
  options: { signal?: AbortSignal },
): Promise<SignedOffer[]> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const found = list(filter)
      if (found.length >= count) {
        waiters.delete(check)
        options.signal?.removeEventListener('abort', onAbort)
        resolve(found)
      }
    }
    const onAbort = (): void => {
      waiters.delete(check)
      reject(options.signal?.reason)
    }
    if (options.signal?.aborted === true) return reject(options.signal.reason)
    options.signal?.addEventListener('abort', onAbort, { once: true })
    waiters.add(check)
    check()
  })
}

export function createOfferBook(init: OfferBookInit = {}): OfferBook {
  const maxOffers = init.maxOffers ?? 10_000
  // Providers reached, bounded: a peer can connect under any number of throwaway keys.
  const maxReached = Math.max(1024, 2 * maxOffers)
  const byProvider = new Map<string, HeldOffer>()
  const reached = new Map<string, ProviderReach>()
  const waiters = new Set<() => void>()
  let evictions = 0

  const prune = (nowMs: number): void => {
    for (const [provider, held] of byProvider) if (held.signed.payload.expiresAtMs <= nowMs) byProvider.delete(provider)
  }
  const list = (filter: (offer: Offer) => boolean = () => true, nowMs = Date.now()): SignedOffer[] => {
    prune(nowMs)
    return [...byProvider.values()].map((held) => held.signed).filter((signed) => filter(signed.payload))
  }

  /** What adding would do, and which provider's offer it would displace. */
  const decide = (signed: SignedOffer, nowMs: number, source: OfferSource): { outcome: OfferBookOutcome; displaces?: string } => {
    const offer = signed.payload
    if (offer.expiresAtMs <= nowMs) return { outcome: 'expired' }
    const key = offer.provider.toLowerCase()
    const current = byProvider.get(key)
    if (current !== undefined) return { outcome: current.signed.payload.issuedAtMs >= offer.issuedAtMs ? 'stale' : 'replaced' }
    if (byProvider.size < maxOffers) return { outcome: 'added' }
    prune(nowMs)
    if (byProvider.size < maxOffers) return { outcome: 'added' }
    const least = leastValuable(byProvider, reached)
    if (least === undefined || compareValue(valueOf(rankOf(reached, key, source), signed, nowMs), least.value) <= 0) return { outcome: 'full' }
    return { outcome: 'added', displaces: least.provider }
  }

  return {
    peek: (signed, nowMs = Date.now(), source = relayedSource) => decide(signed, nowMs, source).outcome,
    add(signed, nowMs = Date.now(), source = relayedSource) {
      const { outcome, displaces } = decide(signed, nowMs, source)
      if (outcome !== 'added' && outcome !== 'replaced') return outcome
      const key = signed.payload.provider.toLowerCase()
      if (displaces !== undefined) {
        byProvider.delete(displaces)
        evictions++
      }
      // A replacement keeps its place (Map order): list() stays "oldest provider first".
      byProvider.set(key, { signed, source, receivedAtMs: nowMs })
      if (source.direct && !reached.has(key)) {
        reached.set(key, 'connected')
        forgetReachedBeyondBound(reached, byProvider, maxReached)
      }
      for (const wake of waiters) wake()
      return outcome
    },
    holds(signed) {
      return byProvider.get(signed.payload.provider.toLowerCase())?.signed.signature === signed.signature
    },
    list,
    entry(provider) {
      const key = provider.toLowerCase()
      const held = byProvider.get(key)
      if (held === undefined) return undefined
      return { signed: held.signed, source: held.source, rank: rankOf(reached, key, held.source), receivedAtMs: held.receivedAtMs }
    },
    passOn(options = {}) {
      prune(options.nowMs ?? Date.now())
      return selectPassOn([...byProvider].map(([provider, held]) => ({ signed: held.signed, rank: rankOf(reached, provider, held.source), from: held.source.peer ?? '' })), options)
    },
    markReached(provider, how = 'connected') {
      const key = provider.toLowerCase()
      const before = reached.get(key)
      if (before === 'answered' || before === how) return
      reached.set(key, how)
      forgetReachedBeyondBound(reached, byProvider, maxReached)
    },
    size: () => byProvider.size,
    evicted: () => evictions,
    waitFor: (count, filter, options = {}) => waitForOffers(waiters, list, count, filter, options),
  }
}
