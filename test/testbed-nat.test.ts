/**
 * Hearth across a NAT, on the testbed (src/testbed): every node its own OS process in its own network namespace, the
 * chain served by JSON-RPC from another host, a relay on the public network, a provider with a public address and one
 * behind a symmetric NAT that drops unsolicited connections, and a requestor behind a home router (hole punching and
 * port mapping: testbed-punch.test.ts). Needs root (CI runs as root), iproute2, iptables and a C compiler; it fails,
 * never skips, where they are missing.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileTestbed } from './support/testbed-nodes.ts'


const { testbed, nodes } = await fileTestbed('hn', 'nat', {
  regions: { eu: {} },
  rttMs: {},
  hosts: [
    { name: 'chain', region: 'eu' },
    { name: 'relay', region: 'eu' },
    { name: 'pub', region: 'eu' },
    { name: 'natp', region: 'eu', nat: 'symmetric' },
    { name: 'req', region: 'eu', nat: 'cone' },
    { name: 'reqpub', region: 'eu' },
  ],
})

test('a provider behind a symmetric NAT is reached through a Hearth relay: its tasks complete, exact and paid', async () => {
  const { deployment, funderKey } = await nodes.chain('chain')
  const relayNode = await nodes.relay('relay')
  const relay = relayNode.ready
  const relayAddress = relayNode.address
  await Promise.all([nodes.provider('pub', deployment, [relayAddress]), nodes.provider('natp', deployment, [relayAddress])])

  // The public provider learns it is dialable from the relay dialling it back; the one behind the NAT learns it is
  // not, reserves a slot on the relay, and announces only its relayed address.
  const pub = await nodes.waitForStatus('pub', (s) => s.network.reachability.kind === 'public', 'the public provider is found dialable')
  assert.match(pub.network.reachability.reason, /dialled back/)
  assert.ok(pub.multiaddrs.some((a) => a.startsWith(`/ip4/${testbed.hosts['pub']!.address}/tcp/7690/`)), pub.multiaddrs.join(', '))
  const natp = await nodes.waitForStatus('natp', (s) => s.network.reachability.kind === 'private', 'the NATed provider holds a relay slot')
  assert.deepEqual(natp.network.reachability.relays, [{ peerId: relay.peerId, reserved: true }])
  assert.ok(natp.multiaddrs.length > 0 && natp.multiaddrs.every((a) => a.includes(`/p2p/${relay.peerId}/p2p-circuit/`)), natp.multiaddrs.join(', '))
  // Its NAT picks a new port per destination, so no hole punch can reach it: its offer says relay only.
  await nodes.waitForStatus('natp', (s) => s.offer.relayed && s.offer.relayOnly, 'the provider behind a symmetric NAT offers as relay only')

  // A requestor behind its own home router runs the word count on both: exact, and paid on chain.
  const { report } = await nodes.wordcount('req', { name: 'nat', providers: 2, bootstrap: relayAddress, deployment, funderKey })
  assert.deepEqual(report.audit.problems, [])
  // The provider behind the NAT took part, and was paid what it earned.
  const relayed = report.providers.find((p) => p.address.toLowerCase() === natp.address.toLowerCase())
  assert.ok(relayed !== undefined && relayed.tasks > 0, JSON.stringify(report.providers))
  assert.ok(BigInt(relayed.paidWei) > 0n)
  assert.equal(relayed.balanceDeltaWei, relayed.paidWei)
  // The report says how the requestor reached each provider: the NATed one through the relay, the public one directly.
  assert.equal(relayed.connection, 'relayed')
  assert.equal(report.providers.find((p) => p.address.toLowerCase() === pub.address.toLowerCase())?.connection, 'direct')

  // A requestor with a public address reaches the NATed provider through the relay first; the provider dials it back
  // (connection reversal), and the work goes over that direct connection.
  const { report: publicReport } = await nodes.wordcount('reqpub', {
    name: 'public', providers: 2, bootstrap: relayAddress, deployment, funderKey, args: ['--listen', '/ip4/0.0.0.0/tcp/7700'],
  })
  const reversed = publicReport.providers.find((p) => p.address.toLowerCase() === natp.address.toLowerCase())
  assert.ok(reversed !== undefined && reversed.tasks > 0, JSON.stringify(publicReport.providers))
  assert.equal(reversed.connection, 'direct', JSON.stringify(publicReport.providers))

  // The relay stops cleanly on SIGTERM, and held the NATed provider's reservation.
  const exited = new Promise<number | null>((resolve) => relayNode.child.once('exit', resolve))
  relayNode.child.kill('SIGTERM')
  assert.equal(await exited, 0)
  const stopped = relayNode.lines.at(-1) as { event: string; reservations: number }
  assert.equal(stopped.event, 'stopped')
  assert.ok(stopped.reservations >= 1, JSON.stringify(stopped))
})
