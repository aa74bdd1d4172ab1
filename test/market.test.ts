/**
 * The market on a real local network: a requestor that joins through one peer sees every offer at once, and signs
 * the agreements it needs in parallel without waiting for providers that never answer.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { startDevnet } from '../src/devnet/devnet.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { createMarketNode } from '../src/market/market-node.ts'
import { offerId, type Offer } from '../src/market/offer.ts'
import { proposeTerms, verifyAgreement } from '../src/market/agreement.ts'
import { createHost } from '../src/net/host.ts'
import { negotiateMany } from '../src/requestor/negotiator.ts'
import { maxCostWei, maxTaskCostWei } from '../src/market/pricing.ts'
import { openStore } from '../src/store/store.ts'

test('a requestor that just joined sees all 12 offers and signs 10 agreements without waiting for the 2 providers that never answer', async () => {
  const devnet = await startDevnet({ providers: 12, silentProviders: 2 })
  after(() => devnet.stop())
  const silent = new Set<string>(devnet.providers.slice(10).map((p) => p.identity.address))

  const identity = generateIdentity()
  const host = await createHost({ identity })
  await host.start()
  after(() => host.stop())
  const store = openStore({ path: ':memory:' })
  after(() => store.close())
  // No periodic re-sync, and providers republish only every few minutes: the offers can come only from the sync
  // that the new connection starts. How fast that is, npm run bench measures.
  const market = createMarketNode({ host, resyncIntervalMs: 0 })
  await market.start()
  after(() => market.stop())

  await host.dial(devnet.providers[3]!.host.multiaddrs()[0]!)
  const offers = await market.offerBook.waitFor(12, undefined, { signal: AbortSignal.timeout(60_000) })
  assert.equal(offers.length, 12)

  // The silent providers are asked first: the worst case for a requestor that waits in turn.
  const candidates = [...offers].sort((a, b) => Number(silent.has(b.payload.provider)) - Number(silent.has(a.payload.provider)))
  const termsFor = (offer: Offer) => proposeTerms({ offer, requestor: identity.address, runtime: 'wasi', maxTasks: 4, taskTimeoutMs: 60_000, jobName: 'market test' })
  // A step timeout longer than the test's own: a negotiation that waited for a silent provider would never end here.
  const result = await negotiateMany({ host, identity, store }, candidates, {
    need: 10,
    termsFor,
    limits: { maxPerTaskWei: 10n ** 18n, minDurationSec: 600, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 },
    stepTimeoutMs: 3_600_000,
  })
  assert.equal(result.agreements.length, 10)
  assert.equal(result.failures.length, 2)
  for (const { agreement } of result.agreements) {
    assert.ok(!silent.has(agreement.terms.provider))
    await verifyAgreement(agreement)
    // Both sides hold the agreement, approved, in their databases.
    assert.equal(store.agreements.get(agreement.id)?.state, 'approved')
    const provider = devnet.providers.find((p) => p.identity.address === agreement.terms.provider)!
    assert.equal(provider.store.agreements.get(agreement.id)?.state, 'approved')
  }
})

test('a provider counters a low bid; the requestor signs the counter within its cap and both record the agreement', async () => {
  const devnet = await startDevnet({ providers: 1 })
  after(() => devnet.stop())
  const provider = devnet.providers[0]!
  const offer = provider.agent.currentOffer()!.payload
  const { host, identity, store } = devnet.requestor
  const events: string[] = []
  const result = await negotiateMany({ host, identity, store, onEvent: (e) => events.push(e.type) }, [provider.agent.currentOffer()!], {
    need: 1,
    termsFor: (o) => ({
      offerId: offerId(o),
      requestor: identity.address,
      provider: o.provider,
      runtime: 'wasi',
      pricing: { model: 'per-task', perTaskWei: '1' },
      maxTasks: 2,
      taskTimeoutMs: 60_000,
      depositWei: '2',
      payment: o.payment,
      expiresAtSec: Math.floor(Date.now() / 1000) + 3600,
      debitNoteIntervalSec: 1,
      paymentTimeoutSec: 300,
      jobName: 'counter test',
      nonce: '0x01',
      createdAtMs: Date.now(),
    }),
    limits: { maxPerTaskWei: maxTaskCostWei(offer.pricing, 60_000), minDurationSec: 600, maxDebitNoteIntervalSec: 60, minPaymentTimeoutSec: 60 },
  })
  assert.equal(result.agreements.length, 1)
  const { agreement } = result.agreements[0]!
  assert.deepEqual(agreement.terms.pricing, offer.pricing)
  assert.equal(agreement.terms.debitNoteIntervalSec, 1)
  assert.deepEqual(events, ['agreement'])
  // The first proposal is on record as countered, the agreement as approved, on both sides.
  const states = store.agreements.list().map((a) => a.state).sort()
  assert.deepEqual(states, ['approved', 'rejected'])
  assert.equal(provider.store.agreements.get(agreement.id)?.state, 'approved')

  // Above the requestor's cap the counter is refused, and the refusal is recorded.
  const capped = await negotiateMany({ host, identity, store }, [provider.agent.currentOffer()!], {
    need: 1,
    termsFor: (o) => ({ ...agreement.terms, pricing: { model: 'per-task', perTaskWei: '1' }, depositWei: '2', nonce: '0x02', offerId: offerId(o) }),
    limits: { maxPerTaskWei: 1n, minDurationSec: 600, maxDebitNoteIntervalSec: 60, minPaymentTimeoutSec: 60 },
  })
  assert.equal(capped.agreements.length, 0)
  assert.match(capped.failures[0]!.message, /above the cap/)
})

test('agreement states survive a restart of the node', async () => {
  const devnet = await startDevnet({ providers: 1 })
  after(() => devnet.stop())
  const provider = devnet.providers[0]!
  const { host, identity, store } = devnet.requestor
  const offer = provider.agent.currentOffer()!.payload
  const result = await negotiateMany({ host, identity, store }, [provider.agent.currentOffer()!], {
    need: 1,
    termsFor: (o) => ({
      offerId: offerId(o), requestor: identity.address, provider: o.provider, runtime: 'wasi',
      pricing: o.pricing, maxTasks: 1, taskTimeoutMs: 60_000, depositWei: maxCostWei(o.pricing, 1, 60_000).toString(),
      payment: o.payment, expiresAtSec: Math.floor(Date.now() / 1000) + 3600, debitNoteIntervalSec: 60, paymentTimeoutSec: 300,
      jobName: 'restart', nonce: '0x03', createdAtMs: Date.now(),
    }),
    limits: { maxPerTaskWei: maxTaskCostWei(offer.pricing, 60_000), minDurationSec: 600, maxDebitNoteIntervalSec: 60, minPaymentTimeoutSec: 60 },
  })
  const id = result.agreements[0]!.agreement.id
  const path = (provider.store.db as unknown as { name: string }).name
  const reopened = openStore({ path })
  after(() => reopened.close())
  const record = reopened.agreements.get(id)!
  assert.equal(record.state, 'approved')
  await verifyAgreement(record.document as never)
})
