/**
 * The one intake every offer passes, by gossip or sync: its lifetime capped, its source's allowance charged
 * (offer-rate-limit.ts), its signature checked only when it would enter the book, and what gossipsub may forward of
 * it. market-node.ts counts the outcomes and re-exports `OfferIntake`.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { isHearthError } from '../errors.ts'
import { addressFromPeerId } from '../identity/node-identity.ts'
import type { Host } from '../net/host.ts'
import type { GossipVerdict } from '../net/gossip.ts'
import type { OfferBook, OfferBookOutcome, OfferSource } from './offer-book.ts'
import { offerLifetimeRefusal, verifyOffer, type SignedOffer } from './offer.ts'
import type { OfferRateLimiter } from './offer-rate-limit.ts'

/**
 * What became of an offer: the book's outcome, or `invalid` (forged, malformed, misbound), `too-long` (lives past the
 * lifetime cap, or is issued beyond the allowed clock skew in the future) or `rate-limited` (its source is over its
 * allowance).
 */
export type OfferIntake = OfferBookOutcome | 'invalid' | 'too-long' | 'rate-limited'

/** What the intake reads and feeds: the node's host (remote IPs, the peer store), its book and its rate limiter. */
export interface OfferIntakeContext {
  host: Host
  offerBook: OfferBook
  limiter: OfferRateLimiter
  /** Longest an offer may live from its issue and from now. */
  maxLifetimeMs: number
}

/** The provider (address, lower case) whose key a peer holds; undefined when no provider can be behind it. */
export function providerOfPeer(peer: PeerId): string | undefined {
  try {
    return addressFromPeerId(peer).toLowerCase()
  } catch {
    return undefined // not a secp256k1 key: no provider can be behind it
  }
}

function ipsOf(host: Host, peer: PeerId): string[] {
  const ips = host.remoteIps(peer)
  return ips.length > 0 ? ips : ['unknown']
}

/** Checks an offer handed over by `from` (none: read locally) and adds it to the book; returns what happened to it. */
export async function takeOffer(context: OfferIntakeContext, signed: SignedOffer, from: PeerId | undefined): Promise<OfferIntake> {
  const { host, offerBook, limiter, maxLifetimeMs } = context
  const nowMs = Date.now()
  // Cheap checks first: a flood costs this node no signature recovery beyond what its source's allowance admits.
  if (offerLifetimeRefusal(signed.payload, nowMs, maxLifetimeMs) !== undefined) return 'too-long'
  const peer = from?.toString()
  // Direct only when the sender is the very provider (PeerId and key); a misbound offer is judged as relayed.
  const direct = from !== undefined && signed.payload.peerId === peer && providerOfPeer(from) === signed.payload.provider.toLowerCase()
  const source: OfferSource = peer === undefined ? { direct: false } : { peer, direct }
  const outcome = offerBook.peek(signed, nowMs, source)
  // Offers already held (every sync repeats them) are not checked again: signature recovery is the costly part.
  if (outcome !== 'added' && outcome !== 'replaced') return outcome
  if (from !== undefined && !limiter.take({ direct, newProvider: outcome === 'added', peer: from.toString(), ips: ipsOf(host, from) }, nowMs)) return 'rate-limited'
  try {
    await verifyOffer(signed, Date.now(), { maxLifetimeMs })
  } catch (error) {
    return isHearthError(error) && error.details?.reason === 'too-long' ? 'too-long' : 'invalid'
  }
  const added = offerBook.add(signed, Date.now(), source)
  // Where to dial the provider: its own signed addresses (nobody else can state them) go to the peer store, so a dial
  // by its PeerId tries each of them rather than one that may not lead there from this node.
  if (added === 'added' || added === 'replaced') rememberAddresses(host, signed.payload.peerId, signed.payload.multiaddrs)
  return added
}

function rememberAddresses(host: Host, peerId: string, addresses: string[]): void {
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
export function gossipVerdict(offerBook: OfferBook, outcome: OfferIntake, signed: SignedOffer): GossipVerdict {
  if (outcome === 'added' || outcome === 'replaced') return 'accept'
  if (outcome === 'invalid' || outcome === 'too-long') return 'reject'
  if (outcome === 'stale' && offerBook.holds(signed) && (offerBook.entry(signed.payload.provider)?.rank ?? 0) > 0) return 'accept'
  return 'ignore'
}
