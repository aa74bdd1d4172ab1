import assert from 'node:assert/strict'
import { test } from 'node:test'
import { openStore } from './store.ts'

test('activities keep state, batches, usage and errors per role, and unfinished ones can be ended after a restart', () => {
  const store = openStore({ path: ':memory:' })
  try {
    const repo = store.activities
    repo.create({ role: 'provider', id: 'a1', agreementId: '0xaa', peer: '0xrequestor', state: 'New', createdAtMs: 1 })
    repo.create({ role: 'provider', id: 'a2', agreementId: '0xaa', peer: '0xrequestor', state: 'New', createdAtMs: 2 })
    repo.create({ role: 'requestor', id: 'a1', agreementId: '0xaa', peer: '0xprovider', state: 'New', createdAtMs: 3 })
    repo.setState('provider', 'a1', 'Ready')
    repo.addBatch('provider', 'a1', 'b1')
    repo.addBatch('provider', 'a1', 'b2')
    repo.setUsage('provider', 'a1', { durationSec: 1.5, cpuSec: 0.25 })
    repo.setState('provider', 'a2', 'Terminated', 'the requestor asked')
    const a1 = repo.get('provider', 'a1')!
    assert.equal(a1.state, 'Ready')
    assert.deepEqual(a1.batchIds, ['b1', 'b2'])
    assert.deepEqual(a1.usage, { durationSec: 1.5, cpuSec: 0.25 })
    assert.equal(repo.get('provider', 'a2')!.lastError, 'the requestor asked')
    assert.deepEqual(repo.unfinished('provider').map((r) => r.id), ['a1'])
    assert.deepEqual(repo.list('provider', { agreementId: '0xaa' }).map((r) => r.id), ['a1', 'a2'])
    // A restart: what was running is marked, not lost; the requestor's own record is untouched.
    assert.equal(repo.endUnfinished('provider', 'Unresponsive', 'the provider restarted'), 1)
    assert.equal(repo.get('provider', 'a1')!.state, 'Unresponsive')
    assert.equal(repo.get('provider', 'a1')!.lastError, 'the provider restarted')
    assert.equal(repo.get('requestor', 'a1')!.state, 'New')
    assert.throws(() => repo.create({ role: 'provider', id: 'a1', agreementId: '0xbb', peer: 'x', state: 'New', createdAtMs: 4 }), /UNIQUE/)
  } finally {
    store.close()
  }
})
