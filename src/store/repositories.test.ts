import assert from 'node:assert/strict'
import { test } from 'node:test'
import { openStore } from './store.ts'

function agreement(id: string, state = 'approved') {
  return { id, role: 'provider' as const, requestor: '0xr', provider: '0xp', state, document: { id, terms: { priceWei: '5' } }, createdAtMs: 1, updatedAtMs: 1 }
}

test('agreements keep their signed document and move between states', () => {
  const store = openStore({ path: ':memory:' })
  store.agreements.save(agreement('0xa'))
  store.agreements.save(agreement('0xb'))
  store.agreements.setState('0xa', 'terminated', 5)
  assert.deepEqual(store.agreements.get('0xa')?.document, { id: '0xa', terms: { priceWei: '5' } })
  assert.equal(store.agreements.get('0xa')?.state, 'terminated')
  assert.deepEqual(store.agreements.list({ state: 'approved' }).map((a) => a.id), ['0xb'])
  assert.equal(store.agreements.get('0xmissing'), undefined)
  store.close()
})

test('the latest voucher is chosen by amount, not by text order, and claimed ones drop out of unclaimed', () => {
  const store = openStore({ path: ':memory:' })
  store.agreements.save(agreement('0xa'))
  for (const amount of [9n, 10n, 100n]) {
    store.vouchers.save({ agreementId: '0xa', cumulativeWei: amount, document: { amount: String(amount) }, receivedAtMs: 1 })
  }
  assert.equal(store.vouchers.latest('0xa')?.cumulativeWei, 100n)
  assert.deepEqual(store.vouchers.unclaimed().map((v) => v.cumulativeWei), [100n])
  store.vouchers.markClaimed('0xa', 100n, '0xtx')
  assert.deepEqual(store.vouchers.unclaimed(), [])
  assert.equal(store.vouchers.claimedWei('0xa'), 100n)
  // The requestor's side: acknowledged vouchers.
  assert.equal(store.vouchers.latestDelivered('0xa'), undefined)
  store.vouchers.markDelivered('0xa', 10n, 7)
  assert.equal(store.vouchers.latestDelivered('0xa')?.cumulativeWei, 10n)
  assert.equal(store.vouchers.latestDelivered('0xa')?.deliveredAtMs, 7)
  store.close()
})

test('the newest voucher is an index lookup, not a scan of every voucher of the agreement', () => {
  const store = openStore({ path: ':memory:' })
  store.agreements.save(agreement('0xa'))
  const insert = store.db.transaction(() => {
    for (let i = 1; i <= 2000; i++) store.vouchers.save({ agreementId: '0xa', cumulativeWei: BigInt(i) * 10n ** 15n, document: {}, receivedAtMs: i })
  })
  insert()
  assert.equal(store.vouchers.latest('0xa')?.cumulativeWei, 2000n * 10n ** 15n)
  const plan = store.db.prepare("EXPLAIN QUERY PLAN SELECT * FROM vouchers WHERE agreement_id = ? ORDER BY amount_key DESC LIMIT 1").all('0xa') as { detail: string }[]
  assert.ok(plan.some((step) => /USING INDEX vouchers_amount/.test(step.detail)), JSON.stringify(plan))
  assert.ok(!plan.some((step) => /TEMP B-TREE/.test(step.detail)), `sorted in memory: ${JSON.stringify(plan)}`)
  store.close()
})

test('claims keep their state, attempts and last error across reopening', () => {
  const store = openStore({ path: ':memory:' })
  store.agreements.save(agreement('0xa'))
  store.claims.save({ agreementId: '0xa', cumulativeWei: 2n ** 70n, release: true, state: 'failed', txHash: null, blockNumber: null, attempts: 3, lastError: 'nonce too low', nextAttemptAtMs: 99, updatedAtMs: 5 })
  assert.deepEqual(store.claims.get('0xa'), { agreementId: '0xa', cumulativeWei: 2n ** 70n, release: true, state: 'failed', txHash: null, blockNumber: null, attempts: 3, lastError: 'nonce too low', nextAttemptAtMs: 99, updatedAtMs: 5 })
  assert.deepEqual(store.claims.list({ state: 'pending' }), [])
  store.peers.remember({ address: '0xABC', peerId: '16Uiu2', multiaddrs: ['/ip4/127.0.0.1/tcp/1'], updatedAtMs: 1 })
  assert.deepEqual(store.peers.get('0xabc'), { address: '0xabc', peerId: '16Uiu2', multiaddrs: ['/ip4/127.0.0.1/tcp/1'], updatedAtMs: 1 })
  store.close()
})

test('escrow amounts beyond 2^63 survive the round trip', () => {
  const store = openStore({ path: ':memory:' })
  store.agreements.save(agreement('0xa'))
  const huge = 2n ** 200n + 1n
  store.escrows.save({ agreementId: '0xa', depositedWei: huge, openTx: '0xt', claimedWei: 3n, refundedWei: huge - 3n, closed: true })
  assert.deepEqual(store.escrows.get('0xa'), { agreementId: '0xa', depositedWei: huge, openTx: '0xt', claimedWei: 3n, refundedWei: huge - 3n, closed: true })
  store.close()
})

test('a voucher for an agreement the node never stored is refused by the schema', () => {
  const store = openStore({ path: ':memory:' })
  assert.throws(() => store.vouchers.save({ agreementId: '0xnope', cumulativeWei: 1n, document: {}, receivedAtMs: 1 }), /FOREIGN KEY/)
  store.close()
})
