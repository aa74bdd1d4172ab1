import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { openStore, type Store } from './store.ts'

function storeWithJob(path = ':memory:'): Store {
  const store = openStore({ path })
  store.agreements.save({ id: '0xa', role: 'requestor', requestor: '0xr', provider: '0xp', state: 'approved', document: {}, createdAtMs: 1, updatedAtMs: 1 })
  store.jobs.create({ id: 'job', name: 'job', specDigest: '0x1', taskCount: 10, state: 'running', createdAtMs: 1, updatedAtMs: 1 })
  return store
}

const result = (taskIndex: number, document: unknown) => ({ jobId: 'job', taskIndex, agreementId: '0xa', provider: '0xp', document, acceptedAtMs: 1 })

test('writes made soon are seen by every read, before and after they reach the database', async () => {
  const store = storeWithJob()
  store.taskResults.saveSoon(result(0, { n: 0 }))
  store.paymentDocuments.saveSoon({ agreementId: '0xa', kind: 'usage', seq: 0, document: { tasks: 1 }, createdAtMs: 1 })
  // Read in the same turn: the read writes what is pending first.
  assert.deepEqual(store.taskResults.listByJob('job').map((r) => r.document), [{ n: 0 }])
  assert.deepEqual(store.paymentDocuments.list({ agreementId: '0xa', kind: 'usage' })[0]?.document, { tasks: 1 })
  // Left alone, they are written once the turn is over.
  store.taskResults.saveSoon(result(1, { n: 1 }), JSON.stringify({ n: 1 }))
  await new Promise((resolve) => setImmediate(resolve))
  const rows = store.db.prepare('SELECT task_index FROM task_results ORDER BY task_index').all() as { task_index: number }[]
  assert.deepEqual(rows.map((row) => row.task_index), [0, 1])
  store.close()
})

test('of pending writes of one document only the latest is made, and a write made now is not overtaken by one pending', () => {
  const store = storeWithJob()
  for (let tasks = 1; tasks <= 5; tasks++) store.paymentDocuments.saveSoon({ agreementId: '0xa', kind: 'usage', seq: 0, document: { tasks }, createdAtMs: tasks })
  assert.deepEqual(store.paymentDocuments.list({ agreementId: '0xa', kind: 'usage' })[0]?.document, { tasks: 5 })
  store.paymentDocuments.saveSoon({ agreementId: '0xa', kind: 'usage', seq: 0, document: { tasks: 6 }, createdAtMs: 6 })
  store.paymentDocuments.save({ agreementId: '0xa', kind: 'usage', seq: 0, document: { tasks: 7 }, createdAtMs: 7 })
  assert.deepEqual(store.paymentDocuments.list({ agreementId: '0xa', kind: 'usage' })[0]?.document, { tasks: 7 })
  store.close()
})

test('closing the store writes what is pending', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-write-behind-'))
  try {
    const path = join(dir, 'node.db')
    const store = storeWithJob(path)
    store.taskResults.saveSoon(result(3, { n: 3 }))
    store.providerReputation.saveSoon({ provider: '0xP', valid: 1, invalid: 0, failed: 0, timeouts: 0, unchecked: 0, consecutiveValid: 1, recent: 'v', excludedAtMs: null, excludedReason: null, lastSeenMs: 1 })
    store.close()
    const db = new Database(path, { readonly: true })
    assert.equal((db.prepare('SELECT COUNT(*) AS n FROM task_results').get() as { n: number }).n, 1)
    assert.equal((db.prepare('SELECT valid FROM provider_reputation WHERE provider = ?').get('0xp') as { valid: number }).valid, 1)
    db.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a pending write that fails does not take the others with it', () => {
  const store = storeWithJob()
  store.taskResults.save(result(1, { first: true }))
  store.taskResults.saveSoon(result(0, { n: 0 }))
  // Task 1 has its result already: the table refuses a second one.
  store.taskResults.saveSoon(result(1, { first: false }))
  store.taskResults.saveSoon(result(2, { n: 2 }))
  assert.throws(() => store.flush(), /UNIQUE/)
  assert.deepEqual(store.taskResults.listByJob('job').map((r) => [r.taskIndex, r.document]), [[0, { n: 0 }], [1, { first: true }], [2, { n: 2 }]])
  store.close()
})
