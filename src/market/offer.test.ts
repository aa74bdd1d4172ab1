import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { createOfferBook } from './offer-book.ts'
import { createOffer, offerId, verifyOffer } from './offer.ts'

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
  assert.equal(book.add(await offer(now, 60_000, 1n, generateIdentity()), now), 'full')
  // Once the short-lived one expires there is room again.
  assert.equal(book.add(await offer(now, 60_000, 1n, generateIdentity()), now + 100), 'added')
  assert.equal(book.add(await offer(now - 120_000, 1000), now), 'expired')
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
