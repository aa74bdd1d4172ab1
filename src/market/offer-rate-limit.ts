/**
 * How many offers each source may hand a node: token buckets per peer and per IP, direct and relayed offers apart.
 * The market node's intake (offer-intake.ts) charges every offer that would enter its book; market-node.ts re-exports
 * these names.
 */

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
