import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { generateIdentity, type NodeIdentity } from '../identity/node-identity.ts'
import { signPayload } from '../identity/signed.ts'
import { createHost, type Host } from '../net/host.ts'
import { offersSyncProtocol } from './market-protocols.ts'
import { createMarketNode, createOfferRateLimiter, type MarketNode } from './market-node.ts'
import { createOffer, type SignedOffer } from './offer.ts'

const payment = { chainId: 31337, escrow: '0x' + '11'.repeat(20), token: '0x' + '22'.repeat(20) }

async function node(): Promise<{ identity: NodeIdentity; host: Host; market: MarketNode }> {
  const identity = generateIdentity()
  const host = await createHost({ identity })
  await host.start()
  const market = createMarketNode({ host, resyncIntervalMs: 0 })
  await market.start()
  after(async () => {
    await market.stop()
    await host.stop()
  })
  return { identity, host, market }
}

function offerOf(n: { identity: NodeIdentity; host: Host }, options: { ttlMs?: number; nowMs?: number; perTaskWei?: bigint } = {}): Promise<SignedOffer> {
  return createOffer({
    identity: n.identity,
    multiaddrs: n.host.multiaddrs(),
    properties: { 'golem.runtime.name': 'wasi' },
    pricing: { model: 'per-task', perTaskWei: String(options.perTaskWei ?? 5n) },
    payment,
    ttlMs: options.ttlMs ?? 60_000,
    ...(options.nowMs === undefined ? {} : { nowMs: options.nowMs }),
  })
}

test('a node that connects learns its peer\'s offers at once, and hands over its own in the same exchange', async () => {
  const a = await node()
  const b = await node()
  await a.market.publish(await offerOf(a))
  await b.market.publish(await offerOf(b))
  await b.host.dial(a.host.multiaddrs()[0]!)
  const signal = AbortSignal.timeout(5000)
  await Promise.all([a.market.offerBook.waitFor(2, undefined, { signal }), b.market.offerBook.waitFor(2, undefined, { signal })])
})

test('forged, misbound, replayed and expired offers are refused and counted, and the node keeps serving', async () => {
  const honest = await node()
  const victim = await node()
  const attacker = await node()
  const original = await offerOf(honest, { nowMs: Date.now() - 1000 })
  const newer = await offerOf(honest, { perTaskWei: 9n })
  assert.equal(await victim.market.intake(newer), 'added')
  // Replaying the older, genuine offer does not roll the price back.
  assert.equal(await victim.market.intake(original), 'stale')
  // A cheaper price pasted into the honest provider's signed offer breaks the signature.
  const forged = { ...newer, payload: { ...newer.payload, issuedAtMs: newer.payload.issuedAtMs + 1, pricing: { model: 'per-task' as const, perTaskWei: '1' } } }
  assert.equal(await victim.market.intake(forged), 'invalid')
  // An attacker's own validly signed offer that names the honest provider's PeerId (to draw its requestors there).
  const misbound = await signPayload(attacker.identity, { ...(await offerOf(attacker)).payload, peerId: honest.identity.peerId.toString(), multiaddrs: [] })
  assert.equal(await victim.market.intake(misbound), 'invalid')
  assert.equal(await victim.market.intake(await offerOf(attacker, { nowMs: Date.now() - 120_000, ttlMs: 1000 })), 'expired')
  assert.deepEqual(victim.market.stats().offers, { added: 1, replaced: 0, stale: 1, expired: 1, full: 0, invalid: 2, 'too-long': 0, 'rate-limited': 0 })
  assert.deepEqual(victim.market.offerBook.list()[0]!.payload.pricing, { model: 'per-task', perTaskWei: '9' })

  // The same garbage over the wire, in a sync request: refused, counted, and the node answers the next peer.
  const answer = await attacker.host.request(victim.host.multiaddrs()[0]!, offersSyncProtocol, { offers: [forged, misbound] })
  assert.equal(answer.offers.length, 1)
  assert.equal(victim.market.stats().offers.invalid, 4)
  const again = await honest.host.request(victim.host.multiaddrs()[0]!, offersSyncProtocol, { offers: [] })
  assert.deepEqual(again.offers[0]!.payload.pricing, { model: 'per-task', perTaskWei: '9' })
})

test('twenty peer ids on one IP share its allowance, and a peer\'s own offers are counted apart from those it relays', () => {
  const limiter = createOfferRateLimiter({ directPerPeer: 2, directPerIp: 5, relayedPerPeer: 10, relayedPerIp: 30 })
  const now = 1_000_000
  const ip = ['127.0.0.1']
  let relayed = 0
  for (let peer = 0; peer < 20; peer++) {
    for (let i = 0; i < 10; i++) if (limiter.take({ direct: false, newProvider: true, peer: `attacker-${peer}`, ips: ip }, now)) relayed++
  }
  assert.equal(relayed, 30)
  // The honest provider on the same IP still gets its own offer in, and its republications (no new place) after that.
  assert.equal(limiter.take({ direct: true, newProvider: true, peer: 'honest', ips: ip }, now), true)
  assert.equal(limiter.take({ direct: true, newProvider: false, peer: 'honest', ips: ip }, now), true)
  assert.equal(limiter.take({ direct: true, newProvider: false, peer: 'honest', ips: ip }, now), false)
  // Another IP has its own allowance; the spent one refills with time (30 a minute: one every 2 s).
  assert.equal(limiter.take({ direct: false, newProvider: true, peer: 'elsewhere', ips: ['10.0.0.7'] }, now), true)
  assert.equal(limiter.take({ direct: false, newProvider: true, peer: 'attacker-0', ips: ip }, now + 1000), false)
  assert.equal(limiter.take({ direct: false, newProvider: true, peer: 'late', ips: ip }, now + 2000), true)
  // New providers straight from their peers are bounded per IP too: peer ids are free, connections are not.
  let newcomers = 0
  for (let peer = 0; peer < 20; peer++) if (limiter.take({ direct: true, newProvider: true, peer: `minted-${peer}`, ips: ip }, now)) newcomers++
  assert.equal(newcomers, 4)
})

test('a provider this node connected to ranks as reached even when its offer arrives relayed by another peer', async () => {
  const victim = await node()
  const provider = await node()
  const relay = await node()
  await provider.host.dial(victim.host.multiaddrs()[0]!)
  while (!victim.host.peers().some((peer) => peer.equals(provider.host.peerId))) await new Promise((resolve) => setTimeout(resolve, 10))
  const offer = await offerOf(provider)
  await relay.host.request(victim.host.multiaddrs()[0]!, offersSyncProtocol, { offers: [offer] })
  const entry = victim.market.offerBook.entry(provider.identity.address)
  assert.equal(entry?.source.direct, false)
  assert.equal(entry?.source.peer, relay.host.peerId.toString())
  assert.equal(entry?.rank, 1)
})
