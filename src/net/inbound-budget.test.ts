import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { isHearthError } from '../errors.ts'
import { createInboundBudget, defaultInboundLimits, remoteIpKey, resolveInboundLimits } from './inbound-budget.ts'

const MiB = 1024 * 1024
const small = { maxBytes: 100, openMaxBytes: 40, openPerIpMaxBytes: 30, openPerPeerMaxBytes: 20, admittedPerIpMaxBytes: 60, admittedPerPeerMaxBytes: 50, smallFrameBytes: 10 }

describe('inbound budget', () => {
  it('bounds unadmitted frames per peer, per IP and in all, and says which bound refused', () => {
    const budget = createInboundBudget(small)
    budget.reserve({ peer: 'a', ip: '10.0.0.1', bytes: 20, share: 'open' })
    assert.throws(() => budget.reserve({ peer: 'a', ip: '10.0.0.1', bytes: 1, share: 'open' }), (e) => isHearthError(e, 'HEARTH_ERR_NET_BUSY') && e.details?.scope === 'peer')
    // Another peer id from the same IP gets only what is left of the IP's part.
    budget.reserve({ peer: 'b', ip: '10.0.0.1', bytes: 10, share: 'open' })
    assert.throws(() => budget.reserve({ peer: 'c', ip: '10.0.0.1', bytes: 1, share: 'open' }), (e) => isHearthError(e, 'HEARTH_ERR_NET_BUSY') && e.details?.scope === 'ip')
    // Another IP fills the rest of the open share, and no more.
    budget.reserve({ peer: 'd', ip: '10.0.0.2', bytes: 10, share: 'open' })
    assert.throws(() => budget.reserve({ peer: 'e', ip: '10.0.0.3', bytes: 1, share: 'open' }), (e) => isHearthError(e, 'HEARTH_ERR_NET_BUSY') && e.details?.scope === 'open')
    const stats = budget.snapshot()
    assert.equal(stats.bufferedBytes, 40)
    assert.equal(stats.openBytes, 40)
    assert.equal(stats.frames, 3)
    assert.deepEqual(stats.refused, { node: 0, open: 1, ip: 1, peer: 1 })
  })

  it('keeps room for admitted frames that a full open share cannot take, from the same IP and peer', () => {
    const budget = createInboundBudget(small)
    for (const peer of ['a', 'b']) budget.reserve({ peer, ip: '127.0.0.1', bytes: 15, share: 'open' })
    assert.throws(() => budget.reserve({ peer: 'a', ip: '127.0.0.1', bytes: 1, share: 'open' }))
    const admitted = budget.reserve({ peer: 'a', ip: '127.0.0.1', bytes: 50, share: 'admitted' })
    assert.equal(budget.snapshot().admittedBytes, 50)
    // The node's total bounds both shares together.
    assert.throws(() => budget.reserve({ peer: 'z', ip: '10.9.9.9', bytes: 25, share: 'admitted' }), (e) => isHearthError(e, 'HEARTH_ERR_NET_BUSY') && e.details?.scope === 'node')
    admitted.release()
    admitted.release()
    assert.equal(budget.snapshot().bufferedBytes, 30)
    assert.equal(budget.snapshot().peakBufferedBytes, 80)
  })

  it('calls a frame larger than a bound itself too large, not busy', () => {
    const budget = createInboundBudget(small)
    assert.throws(() => budget.reserve({ peer: 'a', ip: '10.0.0.1', bytes: 21, share: 'open' }), (e) => isHearthError(e, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE') && e.details?.scope === 'peer' && e.hint !== undefined)
    assert.equal(budget.snapshot().bufferedBytes, 0)
  })

  it('fits a 96 MiB frame from an admitted peer within the defaults, and refuses it from an unadmitted one', () => {
    const budget = createInboundBudget()
    for (const peer of ['crowd-1', 'crowd-2']) budget.reserve({ peer, ip: '127.0.0.1', bytes: defaultInboundLimits.openPerPeerMaxBytes, share: 'open' })
    assert.equal(budget.snapshot().openBytes, defaultInboundLimits.openPerIpMaxBytes)
    budget.reserve({ peer: 'paying', ip: '127.0.0.1', bytes: 96 * MiB, share: 'admitted' })
    assert.throws(() => budget.reserve({ peer: 'other', ip: '10.0.0.1', bytes: 96 * MiB, share: 'open' }), (e) => isHearthError(e, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE'))
  })

  it('refuses limits that contradict each other', () => {
    assert.throws(() => resolveInboundLimits({ openMaxBytes: 2 * defaultInboundLimits.maxBytes }), (e) => isHearthError(e, 'HEARTH_ERR_CONFIG_INVALID') && /openMaxBytes/.test(e.message))
    assert.throws(() => resolveInboundLimits({ minBytesPerSecond: 0 }), (e) => isHearthError(e, 'HEARTH_ERR_CONFIG_INVALID'))
  })

  it('budgets a connection under its IPv4 address or its IPv6 /64', () => {
    assert.equal(remoteIpKey(multiaddr('/ip4/127.0.0.1/tcp/4001')), '127.0.0.1')
    assert.equal(remoteIpKey(multiaddr('/ip6/2001:db8:0:1:aaaa::1/tcp/4001')), '2001:db8:0:1::/64')
    assert.equal(remoteIpKey(multiaddr('/ip6/2001:db8::1/tcp/4001')), '2001:db8:0:0::/64')
    assert.equal(remoteIpKey(multiaddr('/ip6/2001:db8:0:0:ffff::9/tcp/4001')), remoteIpKey(multiaddr('/ip6/2001:db8::1/tcp/1')))
    assert.equal(remoteIpKey(multiaddr('/ip6/::ffff:10.1.2.3/tcp/4001')), '10.1.2.3')
    assert.equal(remoteIpKey(multiaddr('/dns4/example.org/tcp/4001')), 'unknown')
    assert.equal(remoteIpKey(undefined), 'unknown')
  })
})
