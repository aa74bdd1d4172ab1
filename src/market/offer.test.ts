import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { signPayload } from '../identity/signed.ts'
import { createOfferBook } from './offer-book.ts'
import { createOffer, maxOfferLifetimeMs, offerId, verifyOffer } from './offer.ts'

const payment = { chainId: 31337, escrow: '0x' + '11'.repeat(20), token: '0x' + '22'.repeat(20) }
const provider = generateIdentity()

function offer(nowMs: number, ttlMs = 60_000, perTaskWei = 5n, identity = provider) {
  return createOffer({ identity, multiaddrs: [], properties: { 'golem.runtime.name': 'wasi', 'golem.inf.cpu.threads': 2 }, pricing: { model: 'per-task', perTaskWei: String(perTaskWei) }, payment, ttlMs, nowMs })
}

test('an offer verifies while live and names its provider', async () => {
  const now = Date.now()
  const signed = await offer(now)
  const verified = await verifyOffer(signed, now + 1000)
  assert.equal(verified.provider, provider.address)
  assert.deepEqual(verified.pricing, { model: 'per-task', perTaskWei: '5' })
  assert.match(offerId(verified), /^0x[0-9a-f]{64}$/)
})

test('an expired offer, a tampered price and an offer signed by someone else are all refused', async () => {
  const now = Date.now()
  const signed = await offer(now, 1000)
  await assert.rejects(verifyOffer(signed, now + 1000), (e) => isHearthError(e, 'HEARTH_ERR_MARKET_OFFER_INVALID') && /expired/.test(e.message))
  const cheaper = { ...signed, payload: { ...signed.payload, pricing: { model: 'per-task' as const, perTaskWei: '1' } } }
  await assert.rejects(verifyOffer(cheaper, now), (e) => isHearthError(e, 'HEARTH_ERR_SIGNATURE_INVALID'))
  const impostor = await offer(now, 60_000, 5n, generateIdentity())
  const claimed = { ...impostor, payload: { ...impostor.payload, provider: provider.address } }
  await assert.rejects(verifyOffer(claimed, now), (e) => isHearthError(e, 'HEARTH_ERR_SIGNATURE_INVALID'))
})

test('the offer book keeps the newest offer per provider, drops expired ones and stays bounded', async () => {
  const now = Date.now()
  const book = createOfferBook({ maxOffers: 2 })
  const first = await offer(now)
  const newer = await offer(now + 10, 60_000, 7n)
  assert.equal(book.add(first, now), 'added')
  assert.equal(book.add(newer, now), 'replaced')
  assert.equal(book.add(first, now), 'stale')
  assert.deepEqual(book.list(undefined, now)[0]!.payload.pricing, { model: 'per-task', perTaskWei: '7' })
  assert.equal(book.add(await offer(now, 50, 1n, generateIdentity()), now), 'added')
  // Full: an offer older than all held is refused; once the short-lived one expires there is room again.
  assert.equal(book.add(await offer(now - 1000, 60_000, 1n, generateIdentity()), now), 'full')
  assert.equal(book.add(await offer(now, 60_000, 1n, generateIdentity()), now + 100), 'added')
  assert.equal(book.size(), 2)
  assert.equal(book.add(await offer(now - 120_000, 1000), now), 'expired')
})

test('createOffer will not make an offer that outlives the cap, and verifyOffer refuses one made by hand', async () => {
  const now = Date.now()
  await assert.rejects(offer(now, maxOfferLifetimeMs + 1), (e) => isHearthError(e, 'HEARTH_ERR_CONFIG_INVALID'))
  await assert.rejects(offer(now, 0), (e) => isHearthError(e, 'HEARTH_ERR_CONFIG_INVALID'))
  const longest = await offer(now, maxOfferLifetimeMs)
  assert.equal((await verifyOffer(longest, now)).provider, provider.address)
  const isTooLong = (e: unknown): boolean => isHearthError(e, 'HEARTH_ERR_MARKET_OFFER_INVALID') && e.details?.reason === 'too-long'
  // Valid until 2126, signed by its own provider: the attack that filled books for a century.
  const century = await signPayload(provider, { ...longest.payload, expiresAtMs: Date.UTC(2126, 0, 1) })
  await assert.rejects(verifyOffer(century, now), isTooLong)
  // Issued 5 minutes ahead (beyond the clock skew allowed), with a short life: refused all the same.
  const ahead = await signPayload(provider, { ...longest.payload, issuedAtMs: now + 300_000, expiresAtMs: now + 360_000 })
  await assert.rejects(verifyOffer(ahead, now), isTooLong)
  // Issued long ago so that issue to expiry is over the cap, though it ends within the hour.
  const backdated = await signPayload(provider, { ...longest.payload, issuedAtMs: now - 2 * maxOfferLifetimeMs, expiresAtMs: now + 60_000 })
  await assert.rejects(verifyOffer(backdated, now), isTooLong)
})

test('a full book displaces its least valuable offer: relayed before reached, the oldest first, never a reached one for a relayed one', async () => {
  const now = Date.now()
  const book = createOfferBook({ maxOffers: 3 })
  const relayedBy = { peer: 'relay', direct: false }
  const forged = await Promise.all([0, 1, 2].map((i) => offer(now - 3000 + i, maxOfferLifetimeMs, 1n, generateIdentity())))
  for (const signed of forged) assert.equal(book.add(signed, now, relayedBy), 'added')
  // A provider's own offer, sent by its own peer, takes the place of the oldest relayed one.
  const honest = generateIdentity()
  assert.equal(book.add(await offer(now - 10_000, 60_000, 5n, honest), now, { peer: honest.peerId.toString(), direct: true }), 'added')
  assert.equal(book.evicted(), 1)
  assert.equal(book.entry(forged[0]!.payload.provider), undefined)
  assert.equal(book.entry(honest.address)?.rank, 1)
  // Among relayed offers the newer one wins, the older one is refused.
  const newer = await offer(now, 60_000, 1n, generateIdentity())
  assert.equal(book.add(newer, now, relayedBy), 'added')
  assert.equal(book.entry(forged[1]!.payload.provider), undefined)
  assert.equal(book.add(await offer(now - 30_000, 60_000, 1n, generateIdentity()), now, relayedBy), 'full')
  // Held relayed offers whose providers this node then reaches (a connection, a ping) rank as reached.
  book.markReached(forged[2]!.payload.provider)
  book.markReached(newer.payload.provider)
  assert.deepEqual(book.entry(newer.payload.provider)?.source, relayedBy)
  assert.equal(book.entry(newer.payload.provider)?.rank, 1)
  // Now every offer held is reached: however new, a relayed offer displaces none of them.
  const fresh = await offer(now + 5000, 60_000, 1n, generateIdentity())
  assert.equal(book.peek(fresh, now, relayedBy), 'full')
  assert.equal(book.add(fresh, now, relayedBy), 'full')
  assert.equal(book.size(), 3)
  // A provider that answered a negotiation outranks one only connected to, however old its offer.
  const answered = generateIdentity()
  book.markReached(answered.address, 'answered')
  assert.equal(book.add(await offer(now - 50_000, 60_000, 1n, answered), now, relayedBy), 'added')
  assert.equal(book.entry(answered.address)?.rank, 2)
  // It displaced the oldest of the reached ones.
  assert.equal(book.entry(honest.address), undefined)
  assert.equal(book.evicted(), 3)
})

test('passOn hands over every reached offer and at most maxRelayed relayed ones, a share from each relaying peer', async () => {
  const now = Date.now()
  const book = createOfferBook()
  const reached = generateIdentity()
  book.add(await offer(now, 60_000, 5n, reached), now, { peer: reached.peerId.toString(), direct: true })
  for (let i = 0; i < 40; i++) book.add(await offer(now + i, maxOfferLifetimeMs, 1n, generateIdentity()), now, { peer: 'flooder', direct: false })
  const honestRelayed = await Promise.all([0, 1].map(() => offer(now - 1000, 60_000, 3n, generateIdentity())))
  for (const signed of honestRelayed) book.add(signed, now, { peer: 'hub', direct: false })
  const passed = book.passOn({ maxRelayed: 8, nowMs: now })
  assert.equal(passed.length, 9)
  assert.equal(passed[0]!.payload.provider, reached.address)
  const providers = new Set(passed.map((signed) => signed.payload.provider))
  // The hub's two relayed offers get their turns although the flooder's 40 are newer.
  for (const signed of honestRelayed) assert.ok(providers.has(signed.payload.provider))
})

test('waitFor resolves when enough matching offers arrive and rejects on abort', async () => {
  const book = createOfferBook()
  const waiting = book.waitFor(2, (o) => o.pricing.model === 'per-task' && o.pricing.perTaskWei === '5')
  book.add(await offer(Date.now()))
  book.add(await offer(Date.now(), 60_000, 9n, generateIdentity()))
  book.add(await offer(Date.now(), 60_000, 5n, generateIdentity()))
  assert.equal((await waiting).length, 2)
  const controller = new AbortController()
  const tooMany = book.waitFor(10, undefined, { signal: controller.signal })
  setTimeout(() => controller.abort(new Error('gave up')), 20)
  await assert.rejects(tooMany, /gave up/)
})
