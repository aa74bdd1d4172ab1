import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createNetMetrics } from './net-metrics.ts'

describe('net metrics', () => {
  it('counts per protocol and per topic, by reason, and snapshots a copy', () => {
    const metrics = createNetMetrics()
    metrics.served('/hearth/a/b/1')
    metrics.rejected('/hearth/a/b/1', 'schema')
    metrics.rejected('/hearth/a/b/1', 'schema')
    metrics.handlerFailed('/hearth/a/b/1')
    metrics.delivered('/t')
    metrics.dropped('/t', 'bad-signature')
    const snapshot = metrics.snapshot()
    assert.deepEqual(snapshot, {
      protocols: { '/hearth/a/b/1': { served: 1, handlerFailures: 1, rejected: { schema: 2 } } },
      topics: { '/t': { delivered: 1, handlerFailures: 0, dropped: { 'bad-signature': 1 } } },
    })
    metrics.served('/hearth/a/b/1')
    assert.equal(snapshot.protocols['/hearth/a/b/1']?.served, 1)
  })
})
