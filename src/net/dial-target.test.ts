import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isMultiaddr } from '@multiformats/multiaddr'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { peerOfTarget, toDialTarget } from './dial-target.ts'

describe('toDialTarget', () => {
  const peerId = generateIdentity().peerId

  it('accepts PeerIds and multiaddrs, as objects or strings', () => {
    assert.equal(toDialTarget(peerId), peerId)
    assert.equal(toDialTarget(peerId.toString()).toString(), peerId.toString())
    const address = toDialTarget(`/ip4/127.0.0.1/tcp/4001/p2p/${peerId.toString()}`)
    assert.ok(isMultiaddr(address))
  })

  it('refuses anything else with HEARTH_ERR_NET_DIAL and a hint', () => {
    for (const bad of ['', 'hello', '/ip4/999.0.0.1/tcp/1']) {
      assert.throws(() => toDialTarget(bad), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_DIAL') && error.hint !== undefined)
    }
  })

  it('names the peer of a PeerId or of a multiaddr ending in /p2p/, the same object each time for a string', () => {
    const text = `/ip4/127.0.0.1/tcp/4001/p2p/${peerId.toString()}`
    assert.ok(peerOfTarget(text)?.equals(peerId))
    assert.equal(peerOfTarget(text), peerOfTarget(text))
    assert.equal(toDialTarget(text), toDialTarget(text))
    assert.ok(peerOfTarget(toDialTarget(text))?.equals(peerId))
    assert.ok(peerOfTarget(peerId.toString())?.equals(peerId))
    assert.equal(peerOfTarget(peerId), peerId)
    assert.equal(peerOfTarget('/ip4/127.0.0.1/tcp/4001'), undefined)
  })
})
