/**
 * The requestor's view of the market: the newest live offer of each provider, bounded in size.
 * Offers arrive by gossip; everything that arrives here has already been schema-checked and signature-checked.
 */
import type { Offer, SignedOffer } from './offer.ts'

export type OfferBookOutcome = 'added' | 'replaced' | 'stale' | 'expired' | 'full'

export interface OfferBook {
  add(signed: SignedOffer, nowMs?: number): OfferBookOutcome
  /** What `add` would do, without doing it: lets callers skip checking signatures of offers already held. */
  peek(signed: SignedOffer, nowMs?: number): OfferBookOutcome
  /** Live offers, oldest provider first; `filter` narrows them. */
  list(filter?: (offer: Offer) => boolean, nowMs?: number): SignedOffer[]
  size(): number
  /** Resolves once at least `count` live offers pass `filter`, or rejects on abort. */
  waitFor(count: number, filter?: (offer: Offer) => boolean, options?: { signal?: AbortSignal }): Promise<SignedOffer[]>
}

export function createOfferBook(init: { maxOffers?: number } = {}): OfferBook {
  const maxOffers = init.maxOffers ?? 10_000
  const byProvider = new Map<string, SignedOffer>()
  const waiters = new Set<() => void>()

  const prune = (nowMs: number): void => {
    for (const [provider, signed] of byProvider) if (signed.payload.expiresAtMs <= nowMs) byProvider.delete(provider)
  }
  const list = (filter: (offer: Offer) => boolean = () => true, nowMs = Date.now()): SignedOffer[] => {
    prune(nowMs)
    return [...byProvider.values()].filter((signed) => filter(signed.payload))
  }

  const peek = (signed: SignedOffer, nowMs = Date.now()): OfferBookOutcome => {
    const offer = signed.payload
    if (offer.expiresAtMs <= nowMs) return 'expired'
    const current = byProvider.get(offer.provider.toLowerCase())
    if (current !== undefined) return current.payload.issuedAtMs >= offer.issuedAtMs ? 'stale' : 'replaced'
    if (byProvider.size >= maxOffers) {
      prune(nowMs)
      if (byProvider.size >= maxOffers) return 'full'
    }
    return 'added'
  }

  return {
    peek,
    add(signed, nowMs = Date.now()) {
      const outcome = peek(signed, nowMs)
      if (outcome !== 'added' && outcome !== 'replaced') return outcome
      const offer = signed.payload
      const key = offer.provider.toLowerCase()
      const current = byProvider.get(key)
      byProvider.set(key, signed)
      for (const wake of waiters) wake()
      return current === undefined ? 'added' : 'replaced'
    },
    list,
    size: () => byProvider.size,
    waitFor(count, filter, options = {}) {
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
    },
  }
}
