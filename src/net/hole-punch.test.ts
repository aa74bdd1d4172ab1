/**
 * Hole punching on one machine: the relay's observer, and the punches a node refuses. Loopback answers a SYN to a port
 * nobody holds with a reset at once, so two sockets there never meet in a simultaneous open; the punch itself is tested
 * through two real NAT routers, which drop such SYNs, in test/testbed-punch.test.ts.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { createHost, type Host, type HostInit } from './host.ts'
import { probeMapping, punchProtocol, startObserver } from './hole-punch.ts'

const waitFor = async (what: string, done: () => boolean): Promise<void> => {
  const deadline = Date.now() + 60_000
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe('hole punching', () => {
  const hosts: Host[] = []
  const started = async (init: Omit<HostInit, 'identity'> = {}): Promise<Host> => {
    const host = await createHost({ identity: generateIdentity(), ...init })
    hosts.push(host)
    await host.start()
    return host
  }
  after(async () => {
    await Promise.all(hosts.map((host) => host.stop()))
  })

  /** A relay, and a node holding a reservation on it; dialled at its relayed address, it is reached through the relay. */
  const relayAndPrivateNode = async (): Promise<{ relay: Host; hidden: Host; circuit: string }> => {
    const relay = await started({ relay: {} })
    const hidden = await started({ listen: ['/ip4/127.0.0.1/tcp/0', `${relay.multiaddrs()[0]!}/p2p-circuit`] })
    await waitFor('the hidden node announces a relayed address', () => hidden.multiaddrs().some((a) => a.includes('/p2p-circuit')))
    const circuit = hidden.multiaddrs().find((a) => a.includes('/p2p-circuit'))!
    return { relay, hidden, circuit }
  }

  it('the observer tells a node its address, and one local port keeps one mapping towards both observer ports', async () => {
    const observer = await startObserver('127.0.0.1')
    try {
      assert.notEqual(observer.ports[0], observer.ports[1])
      const mapping = await probeMapping('127.0.0.1', observer.ports, AbortSignal.timeout(10_000))
      assert.equal(mapping.ip, '127.0.0.1')
      // No NAT on loopback: the observer sees the local port itself, the same from both probes.
      assert.equal(mapping.port, mapping.localPort)
      assert.equal(mapping.endpointIndependent, true)
    } finally {
      await observer.close()
    }
  })

  it('refuses a punch asked over a direct connection, or aimed at this machine or a privileged port', async () => {
    const { hidden, circuit } = await relayAndPrivateNode()
    const asker = await started()
    await asker.dial(circuit)
    // Over the relay, but aimed at the hidden node's own machine, or at a service port elsewhere.
    for (const target of [{ ip: '127.0.0.1', port: 40_000 }, { ip: '0.0.0.0', port: 40_000 }, { ip: '11.0.0.9', port: 22 }]) {
      await assert.rejects(asker.request(hidden.peerId, punchProtocol, target), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_REMOTE') && /not a public mapping/.test(error.message), JSON.stringify(target))
    }
    // Over a direct connection: nothing to punch.
    const direct = await started()
    const plain = await started()
    await direct.dial(plain.multiaddrs()[0]!)
    await assert.rejects(direct.request(plain.peerId, punchProtocol, { ip: '11.0.0.9', port: 40_000 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_REMOTE') && /relayed connection/.test(error.message))
    assert.equal(hidden.metrics().holePunch.answered, 0)
  })
})
