/**
 * Which offers of the book a node hands another in a sync answer: every offer whose provider it reached, then a bounded
 * share of offers only relayed to it, taken in turn from each peer that relayed them (offer-book.ts, OfferBook.passOn).
 */
import type { SignedOffer } from './offer.ts'

/** A live offer held, with its rank in the book (0: only relayed) and the peer that relayed it ('' when unknown). */
export interface PassOnCandidate {
  signed: SignedOffer
  rank: number
  from: string
}

/**
 * Every candidate of rank 1 and above, highest rank then newest first, then at most `maxRelayed` (default 64) of rank
 * 0, in turn from each relaying peer; `maxOffers` (default 1000) in all.
 */
export function selectPassOn(candidates: readonly PassOnCandidate[], options: { maxOffers?: number; maxRelayed?: number } = {}): SignedOffer[] {
  const maxTotal = options.maxOffers ?? 1000
  const maxRelayed = options.maxRelayed ?? 64
  const valued: { signed: SignedOffer; rank: number }[] = []
  const relayedBySource = new Map<string, SignedOffer[]>()
  for (const { signed, rank, from } of candidates) {
    if (rank > 0) {
      valued.push({ signed, rank })
      continue
    }
    const group = relayedBySource.get(from) ?? []
    group.push(signed)
    relayedBySource.set(from, group)
  }
  valued.sort((a, b) => b.rank - a.rank || b.signed.payload.issuedAtMs - a.signed.payload.issuedAtMs)
  const chosen = valued.map((v) => v.signed).slice(0, maxTotal)
  // Relayed offers in turn from each source, newest first within one; the same ones each time is fine (gossip and
  // each provider's own republication carry the rest), and a flooding source takes one turn like any other.
  const queues = [...relayedBySource.values()].map((group) => group.sort((a, b) => b.payload.issuedAtMs - a.payload.issuedAtMs))
  let relayed = 0
  for (let turn = 0; relayed < maxRelayed && chosen.length < maxTotal; turn++) {
    let any = false
    for (const queue of queues) {
      const next = queue[turn]
      if (next === undefined) continue
      any = true
      chosen.push(next)
      if (++relayed >= maxRelayed || chosen.length >= maxTotal) break
    }
    if (!any) break
  }
  return chosen
}
