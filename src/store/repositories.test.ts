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
