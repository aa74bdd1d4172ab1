import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { z } from 'zod'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { createHost } from './host.ts'
import type { Host } from './host.ts'
import { defineProtocol } from './protocol.ts'
import { protocolMajor } from './versions.ts'

const echo = (major: number) =>
  defineProtocol({
    id: `/hearth/test/echo/${major}`,
    request: z.strictObject({ text: z.string() }),
    response: z.strictObject({ text: z.string(), major: z.number() }),
    maxRequestBytes: 1024,
    maxResponseBytes: 1024,
    timeoutMs: 5_000,
  })

/** Resolves once `host` has learnt from identify which protocols `peer` serves. */
async function identified(host: Host, peer: Host): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const known = await host.libp2p.peerStore.get(peer.peerId).catch(() => undefined)
    if (known !== undefined && known.protocols.some((protocol) => protocol.startsWith('/ipfs/id/'))) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.fail(`identify with ${peer.peerId.toString()} did not complete`)
}

describe('protocol versions between releases', () => {
  const hosts: Host[] = []
  const started = async (): Promise<Host> => {
    const host = await createHost({ identity: generateIdentity() })
    hosts.push(host)
    await host.start()
    return host
  }
  after(async () => {
    await Promise.all(hosts.map((host) => host.stop()))
  })

  it('reads the name and major of a protocol id', () => {
    assert.deepEqual(protocolMajor('/hearth/exec/run-task/12'), { name: '/hearth/exec/run-task', major: 12 })
    assert.equal(protocolMajor('/ipfs/ping/1.0.0'), undefined)
  })

  it('a node that meets another major says which versions each side speaks, and both keep serving', async () => {
    const newer = await started()
    const older = await started()
    await newer.handle(echo(2), ({ text }) => ({ text, major: 2 }))
    await older.handle(echo(1), ({ text }) => ({ text, major: 1 }))
    // Identify tells each side what the other serves once they connect.
    await older.dial(newer.multiaddrs()[0]!)
    await identified(older, newer)
    await identified(newer, older)

    await assert.rejects(older.request(newer.peerId, echo(1), { text: 'hi' }), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_NET_VERSION'), String(error))
      assert.match(error.message, /speaks \/hearth\/test\/echo version 2; this node speaks version 1/)
      assert.match(error.hint ?? '', /newer Hearth: upgrade this node/)
      return true
    })
    await assert.rejects(newer.request(older.peerId, echo(2), { text: 'hi' }), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_NET_VERSION'), String(error))
      assert.match(error.hint ?? '', /older Hearth that must be upgraded/)
      return true
    })
    // Nothing broke: each still answers the version it speaks.
    const both = await started()
    await both.dial(newer.multiaddrs()[0]!)
    assert.deepEqual(await both.request(newer.peerId, echo(2), { text: 'still' }), { text: 'still', major: 2 })
    await both.dial(older.multiaddrs()[0]!)
    assert.deepEqual(await both.request(older.peerId, echo(1), { text: 'still' }), { text: 'still', major: 1 })
  })

  it('a peer that serves no version of the protocol is another role, not another release', async () => {
    const a = await started()
    const b = await started()
    await a.dial(b.multiaddrs()[0]!)
    await identified(a, b)
    await assert.rejects(a.request(b.peerId, echo(1), { text: 'hi' }), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_NET_DIAL'), String(error))
      assert.match(error.message, /does not serve \/hearth\/test\/echo\/1/)
      return true
    })
  })
})
