import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isMultiaddr } from '@multiformats/multiaddr'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { toDialTarget } from './dial-target.ts'

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
})
