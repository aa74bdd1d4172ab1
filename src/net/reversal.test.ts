import assert from 'node:assert/strict'
import { test } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { generateIdentity } from '../identity/node-identity.ts'
import { createReversalLimiter, reversalTargets } from './reversal.ts'

test('a peer is dialled back only at its own plain TCP addresses, never at this machine or another peer', () => {
  const peer = generateIdentity().peerId
  const other = generateIdentity().peerId
  const announced = [
    '/ip4/11.0.0.6/tcp/7700',
    `/ip4/11.0.0.7/tcp/7700/p2p/${peer.toString()}`,
    // Someone else's node: the dial would connect this node to a third party on the peer's word.
    `/ip4/11.0.0.8/tcp/7700/p2p/${other.toString()}`,
    // This machine, not the peer's.
    '/ip4/127.0.0.1/tcp/39501',
    '/ip4/0.0.0.0/tcp/7700',
    '/ip6/::1/tcp/7700',
    // Relayed, or not TCP.
    `/ip4/11.0.0.2/tcp/7691/p2p/${other.toString()}/p2p-circuit`,
    '/ip4/11.0.0.6/udp/7700/quic-v1',
    '/dns4/example.org/tcp/7700',
  ].map((text) => multiaddr(text))
  assert.deepEqual(reversalTargets(peer, announced).map(String), [`/ip4/11.0.0.6/tcp/7700/p2p/${peer.toString()}`, `/ip4/11.0.0.7/tcp/7700/p2p/${peer.toString()}`])
})

test('reversals are limited per peer and in all, however many peer ids ask', () => {
  const allow = createReversalLimiter({ perPeerMs: 60_000, perMinute: 30 })
  assert.equal(allow('a', 0), true)
  assert.equal(allow('a', 59_999), false)
  assert.equal(allow('a', 60_000), true)
  // Throwaway peer ids: 30 in a minute, then none until the minute is over.
  const granted = Array.from({ length: 100 }, (_, i) => allow(`sybil-${i}`, 61_000)).filter(Boolean).length
  assert.equal(granted, 29)
  assert.equal(allow('late', 119_999), false)
  assert.equal(allow('late', 120_000), true)
})

test('a limiter may allow a few tries per peer (a punch is asked again once), then none until the window is over', () => {
  const allow = createReversalLimiter({ perPeerMs: 60_000, perMinute: 30, perPeer: 2 })
  assert.equal(allow('a', 0), true)
  assert.equal(allow('a', 1_000), true)
  assert.equal(allow('a', 2_000), false)
  // The first try leaves the window first.
  assert.equal(allow('a', 60_000), true)
  assert.equal(allow('a', 60_500), false)
  assert.equal(allow('b', 60_500), true)
})
