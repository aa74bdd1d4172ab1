/**
 * Offer book poisoning, on real libp2p hosts on 127.0.0.1. Offers signed by throwaway keys cost nothing, so an
 * attacker once filled a book with 48 offers valid until 2126, a real provider's offer was then refused, and the forged
 * ones were passed on to other nodes. Here: such offers are refused as too long-lived on every path; a full book
 * evicts a forged offer for a real one; a flood from 20 peer ids on one IP is mostly dropped at that IP's allowance;
 * and an honest node passes on only a capped share of the forged offers it holds, by sync or gossip.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { generateIdentity, type NodeIdentity } from '../src/identity/node-identity.ts'
import { signPayload } from '../src/identity/signed.ts'
import { createMarketNode, defaultOfferRateLimits, type MarketNode, type MarketNodeInit, type MarketNodeStats } from '../src/market/market-node.ts'
import { offersSyncProtocol } from '../src/market/market-protocols.ts'
import { createOffer, maxOfferLifetimeMs, OFFERS_TOPIC, type Offer, type SignedOffer } from '../src/market/offer.ts'
import { createHost, type Host } from '../src/net/host.ts'

const payment = { chainId: 31337, escrow: '0x' + '11'.repeat(20), token: '0x' + '22'.repeat(20) }
const year2126Ms = Date.UTC(2126, 0, 1)

interface TestNode {
  identity: NodeIdentity
  host: Host
  market: MarketNode
}

async function bareHost(): Promise<{ identity: NodeIdentity; host: Host }> {
  const identity = generateIdentity()
  const host = await createHost({ identity })
  await host.start()
  after(() => host.stop())
  return { identity, host }
}

async function marketNode(init: Partial<MarketNodeInit> = {}): Promise<TestNode> {
  const { identity, host } = await bareHost()
  const market = createMarketNode({ host, resyncIntervalMs: 0, ...init })
  await market.start()
  after(() => market.stop())
  return { identity, host, market }
}

function payloadOf(identity: NodeIdentity, issuedAtMs: number, expiresAtMs: number): Offer {
  return {
    provider: identity.address,
    peerId: identity.peerId.toString(),
    multiaddrs: [],
    properties: { 'golem.runtime.name': 'wasi' },
    constraints: '',
    pricing: { model: 'per-task', perTaskWei: '1' },
    payment,
    issuedAtMs,
    expiresAtMs,
  }
}

/** Offers validly signed by throwaway keys (fresh ones, or `keys` again), each key its own "provider". */
async function forge(count: number, times: { issuedAtMs?: number; expiresAtMs?: number; keys?: NodeIdentity[] } = {}): Promise<SignedOffer[]> {
  const issuedAtMs = times.issuedAtMs ?? Date.now()
  const expiresAtMs = times.expiresAtMs ?? issuedAtMs + maxOfferLifetimeMs
  return Promise.all(Array.from({ length: count }, (_, i) => {
    const identity = times.keys?.[i] ?? generateIdentity()
    return signPayload(identity, payloadOf(identity, issuedAtMs, expiresAtMs))
  }))
}

function honestOffer(node: { identity: NodeIdentity; host: Host }, nowMs = Date.now()): Promise<SignedOffer> {
  return createOffer({ identity: node.identity, multiaddrs: node.host.multiaddrs(), properties: { 'golem.runtime.name': 'wasi' }, pricing: { model: 'per-task', perTaskWei: '5' }, payment, ttlMs: 5 * 60_000, nowMs })
}

async function until(what: string, condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const intakes = (stats: MarketNodeStats): number => Object.values(stats.offers).reduce((sum, n) => sum + n, 0)
const holds = (node: TestNode, provider: string): boolean => node.market.offerBook.entry(provider) !== undefined
const hearsOn = (host: Host, peer: Host): boolean => host.topicPeers(OFFERS_TOPIC).some((p) => p.equals(peer.peerId))

test('48 offers valid until 2126 are refused as too long-lived on every path, and a real offer still gets in', async () => {
  const victim = await marketNode({ maxOffers: 48 })
  const attacker = await bareHost()
  const century = await forge(48, { expiresAtMs: year2126Ms })
  await attacker.host.handle(offersSyncProtocol, () => ({ offers: century }))

  // Sync, asked by the victim: connecting makes it ask the attacker, whose answer is the 48.
  await attacker.host.dial(victim.host.multiaddrs()[0]!)
  await until('the sync answer to be judged', () => victim.market.stats().offers['too-long'] >= 48)
  // Sync, offered by the attacker: three requests of 16.
  for (let i = 0; i < 3; i++) await attacker.host.request(victim.host.multiaddrs()[0]!, offersSyncProtocol, { offers: century.slice(i * 16, i * 16 + 16) })
  assert.equal(victim.market.stats().offers['too-long'], 96)
  // Gossip: the attacker's own offer (gossip must be signed by its origin), valid until 2126.
  await until('the attacker to see the victim on the offers topic', () => hearsOn(attacker.host, victim.host))
  await attacker.host.publish(OFFERS_TOPIC, await signPayload(attacker.identity, payloadOf(attacker.identity, Date.now(), year2126Ms)))
  await until('the gossiped offer to be judged', () => victim.market.stats().offers['too-long'] === 97)

  assert.equal(victim.market.offerBook.size(), 0)
  assert.equal(victim.market.stats().offers.added, 0)
  const provider = await marketNode()
  await provider.market.publish(await honestOffer(provider))
  await provider.host.dial(victim.host.multiaddrs()[0]!)
  await victim.market.offerBook.waitFor(1, (offer) => offer.provider === provider.identity.address, { signal: AbortSignal.timeout(20_000) })
})

test('a book full of relayed forged offers still takes a real provider\'s offer, by evicting a forged one', async () => {
  const victim = await marketNode({ maxOffers: 48 })
  const attacker = await bareHost()
  const forged = await forge(48)
  await attacker.host.handle(offersSyncProtocol, () => ({ offers: forged }))
  await attacker.host.dial(victim.host.multiaddrs()[0]!)
  await victim.market.offerBook.waitFor(48, undefined, { signal: AbortSignal.timeout(20_000) })

  const provider = await marketNode()
  await provider.market.publish(await honestOffer(provider))
  await provider.host.dial(victim.host.multiaddrs()[0]!)
  await victim.market.offerBook.waitFor(1, (offer) => offer.provider === provider.identity.address, { signal: AbortSignal.timeout(20_000) })
  assert.equal(victim.market.offerBook.size(), 48)
  assert.equal(victim.market.stats().evicted, 1)
  assert.equal(victim.market.offerBook.entry(provider.identity.address)?.rank, 1)

  // More forged offers, newer than all held: they displace forged ones only, never the provider this node reached.
  const fresher = await forge(16, { issuedAtMs: Date.now() })
  await attacker.host.request(victim.host.multiaddrs()[0]!, offersSyncProtocol, { offers: fresher })
  assert.equal(victim.market.stats().evicted, 17)
  assert.ok(holds(victim, provider.identity.address))
  assert.ok(fresher.every((signed) => holds(victim, signed.payload.provider)))
})

test('20 attacker peer ids on one IP flooding sync and gossip are mostly dropped at the IP\'s allowance; the honest provider gets in', async (t) => {
  const victim = await marketNode()
  const attackers = await Promise.all(Array.from({ length: 20 }, () => bareHost()))
  const perAnswer = 80
  const perRequest = 16
  const requests = 3
  const gossiped = 20
  // Each attacker answers the victim's sync with 80 forged offers of its own throwaway keys.
  const keys = attackers.map(() => Array.from({ length: perAnswer }, () => generateIdentity()))
  const answers = await Promise.all(keys.map((own) => forge(perAnswer, { keys: own })))
  await Promise.all(attackers.map((attacker, i) => attacker.host.handle(offersSyncProtocol, () => ({ offers: answers[i]! }))))
  for (const attacker of attackers) await attacker.host.dial(victim.host.multiaddrs()[0]!)
  const sent = { answers: attackers.length * perAnswer, requests: attackers.length * requests * perRequest, gossip: attackers.length * gossiped }
  await until('the victim to judge every sync answer', () => intakes(victim.market.stats()) >= sent.answers)

  // Each then pushes 3 sync requests of 16 newer versions of its forged offers, and gossips 20 versions of its own.
  // One attacker after another: the IP's allowance counts them all the same, and a busy machine is not made to refuse
  // some unread (which would leave offers unjudged for the count below).
  for (const [i, attacker] of attackers.entries()) {
    for (let r = 0; r < requests; r++) {
      const offers = await forge(perRequest, { issuedAtMs: Date.now() + 1, keys: keys[i]!.slice(r * perRequest) })
      // The attacker needs no answer: the victim may answer after its own deadline on a busy machine (it judges every
      // offer all the same, which the intake counts below check).
      await attacker.host.request(victim.host.multiaddrs()[0]!, offersSyncProtocol, { offers }, { timeoutMs: 120_000 }).catch(() => undefined)
    }
  }
  await until('the attackers to see the victim on the offers topic', () => attackers.every((attacker) => hearsOn(attacker.host, victim.host)))
  const base = Date.now()
  await Promise.all(attackers.map(async (attacker) => {
    for (let v = 0; v < gossiped; v++) {
      await attacker.host.publish(OFFERS_TOPIC, await signPayload(attacker.identity, payloadOf(attacker.identity, base + v, base + v + 60_000)))
    }
  }))
  const total = sent.answers + sent.requests + sent.gossip
  await until('the victim to judge every offer sent', () => intakes(victim.market.stats()) >= total, 150_000)

  const stats = victim.market.stats()
  t.diagnostic(`${total} offers sent; the victim's intake: ${JSON.stringify(stats.offers)}`)
  // Relayed: one IP's allowance (400 a minute) of the 2560; gossip: 10 a minute of each attacker's own 20.
  assert.ok(stats.offers['rate-limited'] > total / 2, `rate-limited ${stats.offers['rate-limited']} of ${total}`)
  const taken = stats.offers.added + stats.offers.replaced
  assert.ok(taken < total / 2, `taken ${taken} of ${total}`)
  assert.ok(victim.market.offerBook.size() < defaultOfferRateLimits.relayedPerIp * 2 + attackers.length, `${victim.market.offerBook.size()} offers held`)

  // The honest provider, on the same IP, joins after the flood: its own offer is counted apart, and gets in.
  const provider = await marketNode()
  await provider.market.publish(await honestOffer(provider))
  await provider.host.dial(victim.host.multiaddrs()[0]!)
  await victim.market.offerBook.waitFor(1, (offer) => offer.provider === provider.identity.address, { signal: AbortSignal.timeout(20_000) })
})

test('an honest node\'s sync answer passes on the providers it reached and only a capped share of forged relayed offers', async () => {
  const victim = await marketNode()
  const attacker = await bareHost()
  const forged = await forge(300)
  await attacker.host.handle(offersSyncProtocol, () => ({ offers: forged }))
  await attacker.host.dial(victim.host.multiaddrs()[0]!)
  const provider = await marketNode()
  await provider.market.publish(await honestOffer(provider))
  await provider.host.dial(victim.host.multiaddrs()[0]!)
  await victim.market.offerBook.waitFor(1, (offer) => offer.provider === provider.identity.address, { signal: AbortSignal.timeout(20_000) })
  await until('the attacker\'s answer to be judged', () => intakes(victim.market.stats()) >= forged.length)
  const forgedHeld = forged.filter((signed) => holds(victim, signed.payload.provider)).length
  assert.ok(forgedHeld > 64, `${forgedHeld} forged offers held`)

  const asker = await bareHost()
  const answer = await asker.host.request(victim.host.multiaddrs()[0]!, offersSyncProtocol, { offers: [] })
  const forgedProviders = new Set(forged.map((signed) => signed.payload.provider))
  const forgedPassed = answer.offers.filter((signed) => forgedProviders.has(signed.payload.provider as `0x${string}`)).length
  assert.ok(answer.offers.some((signed) => signed.payload.provider === provider.identity.address))
  assert.ok(forgedPassed <= 64, `${forgedPassed} of ${forgedHeld} forged offers passed on`)
})

test('a relay forwards by gossip neither offers it refused as too long-lived nor those over their sender\'s allowance', async (t) => {
  const relay = await marketNode()
  const victim = await marketNode()
  const attacker = await bareHost()
  // A line: attacker - relay - victim, so what reaches the victim by gossip is what the relay forwarded.
  await victim.host.dial(relay.host.multiaddrs()[0]!)
  await attacker.host.dial(relay.host.multiaddrs()[0]!)
  // The relay forwards only to its mesh peers; the class has getMeshPeers, the exported interface does not.
  const pubsub = relay.host.libp2p.services.pubsub as unknown as { getMeshPeers(topic: string): string[] }
  await until('the relay to mesh with the victim', () => pubsub.getMeshPeers(OFFERS_TOPIC).includes(victim.host.peerId.toString()))
  await until('the attacker to see the relay on the offers topic', () => hearsOn(attacker.host, relay.host))

  await attacker.host.publish(OFFERS_TOPIC, await signPayload(attacker.identity, payloadOf(attacker.identity, Date.now(), year2126Ms)))
  await until('the relay to refuse the century-long offer', () => relay.market.stats().offers['too-long'] === 1)
  const versions = 30
  const base = Date.now()
  for (let v = 0; v < versions; v++) {
    await attacker.host.publish(OFFERS_TOPIC, await signPayload(attacker.identity, payloadOf(attacker.identity, base + v, base + v + 60_000)))
  }
  await until('the relay to judge every version', () => intakes(relay.market.stats()) >= versions + 1)
  const relayStats = relay.market.stats()
  const forwarded = relayStats.offers.added + relayStats.offers.replaced
  assert.ok(relayStats.offers['rate-limited'] >= versions - 2 * defaultOfferRateLimits.directPerPeer, `relay rate-limited ${relayStats.offers['rate-limited']}`)
  // The forwarded versions left after the refused offer, on the same stream: once they are in, it would have been.
  await until('the victim to receive what the relay forwarded', () => intakes(victim.market.stats()) >= forwarded)
  const victimStats = victim.market.stats()
  t.diagnostic(`relay: ${JSON.stringify(relayStats.offers)}; victim: ${JSON.stringify(victimStats.offers)}`)
  assert.equal(victimStats.offers['too-long'], 0)
  assert.ok(intakes(victimStats) <= forwarded && forwarded < versions, `victim judged ${intakes(victimStats)}, relay forwarded ${forwarded} of ${versions}`)
})
