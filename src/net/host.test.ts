import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { createHost } from './host.ts'
import type { Host } from './host.ts'

describe('libp2p host', () => {
  const hosts: Host[] = []
  const started = async (init: Omit<Parameters<typeof createHost>[0], 'identity'> = {}): Promise<Host> => {
    const host = await createHost({ identity: generateIdentity(), ...init })
    hosts.push(host)
    await host.start()
    return host
  }
  after(async () => {
    await Promise.all(hosts.map((host) => host.stop()))
  })

  it('takes its PeerId and address from the node identity and listens on loopback only by default', async () => {
    const identity = generateIdentity()
    const host = await createHost({ identity })
    hosts.push(host)
    await host.start()
    assert.equal(host.peerId.toString(), identity.peerId.toString())
    assert.equal(host.address, identity.address)
    const addresses = host.multiaddrs()
    assert.equal(addresses.length, 1)
    assert.match(addresses[0]!, new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${identity.peerId.toString()}$`))
  })

  it('dials by multiaddr, then pings by PeerId', async () => {
    const a = await started()
    const b = await started()
    const remote = await a.dial(b.multiaddrs()[0]!)
    assert.equal(remote.toString(), b.peerId.toString())
    const rtt = await a.ping(b.peerId)
    assert.ok(Number.isFinite(rtt) && rtt >= 0, `rtt ${rtt}`)
    assert.deepEqual(a.peers().map(String), [b.peerId.toString()])
  })

  it('connects to bootstrap peers by itself', async () => {
    const seed = await started()
    const joiner = await started({ bootstrap: seed.multiaddrs() })
    const deadline = Date.now() + 120_000
    while (joiner.peers().length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
    assert.deepEqual(joiner.peers().map(String), [seed.peerId.toString()])
  })

  it('reports unreachable peers and bad targets as HEARTH_ERR_NET_DIAL', async () => {
    const a = await started()
    const stopped = await started()
    const address = stopped.multiaddrs()[0]!
    await stopped.stop()
    await assert.rejects(a.dial(address), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_DIAL'))
    await assert.rejects(a.dial('not a peer'), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_DIAL') && error.hint !== undefined)
  })

  it('answers what code outside net/ asks of libp2p: started, peer addresses, remote IPs, relay reservations', async () => {
    const a = await createHost({ identity: generateIdentity() })
    hosts.push(a)
    assert.equal(a.isStarted(), false)
    await a.start()
    assert.equal(a.isStarted(), true)
    const b = await started()
    const stranger = generateIdentity().peerId
    assert.deepEqual(a.remoteIps(b.peerId), [])
    await a.dial(b.multiaddrs()[0]!)
    assert.deepEqual(a.remoteIps(b.peerId), ['127.0.0.1'])

    assert.deepEqual(await a.peerAddresses(stranger), [])
    await a.addPeerAddresses(stranger, ['/ip4/10.1.2.3/tcp/4001'])
    assert.deepEqual(await a.peerAddresses(stranger), ['/ip4/10.1.2.3/tcp/4001'])
    await assert.rejects(a.addPeerAddresses(stranger, ['/ip4/10.1.2.4/tcp/4001', 'not a multiaddr']))
    assert.deepEqual(await a.peerAddresses(stranger), ['/ip4/10.1.2.3/tcp/4001'])

    assert.equal(a.relayReservations(), 0)
    const relay = await started({ relay: {} })
    assert.equal(relay.relayReservations(), 0)
    await a.stop()
    assert.equal(a.isStarted(), false)
  })

  it('says when its first reachability check has ended, and announces the address the dial-back confirmed from then on', async () => {
    const relay = await started({ relay: {} })
    const loopbackOnly = await started()
    assert.equal((await loopbackOnly.reachabilitySettled()).kind, 'local')
    // On every interface: not loopback only, so the relay is asked to dial back (to 127.0.0.1, where this node came from).
    const node = await started({ listen: ['/ip4/0.0.0.0/tcp/0'], bootstrap: [relay.multiaddrs()[0]!] })
    const status = await node.reachabilitySettled()
    assert.equal(status.kind, 'public', status.reason)
    // Its TCP listener is bound to every interface, as asked (libp2p lists it once per interface, loopback first).
    assert.deepEqual(node.tcpListenHosts(), ['0.0.0.0'])
    assert.deepEqual(loopbackOnly.tcpListenHosts(), ['127.0.0.1'])
    assert.ok(node.multiaddrs().some((a) => a.startsWith('/ip4/127.0.0.1/tcp/')), node.multiaddrs().join(' '))
    // A host that never starts never settles: the caller's signal ends the wait.
    const idle = await createHost({ identity: generateIdentity() })
    await assert.rejects(idle.reachabilitySettled({ signal: AbortSignal.timeout(50) }), /timeout|abort/i)
  })

  it('tells a listener when its own addresses change, until it stops listening', async () => {
    const host = await started()
    let calls = 0
    const stop = host.onAddressesChanged(() => calls++)
    await host.addPeerAddresses(host.peerId, ['/ip4/10.9.8.7/tcp/4001'])
    assert.ok(calls >= 1, `calls ${calls}`)
    stop()
    const before = calls
    await host.addPeerAddresses(host.peerId, ['/ip4/10.9.8.6/tcp/4001'])
    assert.equal(calls, before)
  })
})
