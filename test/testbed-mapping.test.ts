/**
 * Port mapping on the testbed (src/testbed): two providers behind home routers that forward ports on request, one by
 * NAT-PMP and one by UPnP IGD only (miniupnpd), found dialable without a relay. Every node is its own OS process in
 * its own network namespace. Needs root (CI runs as root), iproute2, iptables, miniupnpd and a C compiler; it fails,
 * never skips, where they are missing.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileTestbed } from './support/testbed-nodes.ts'


const { testbed, nodes } = await fileTestbed('hm', 'mapping', {
  regions: { eu: {} },
  rttMs: {},
  hosts: [
    { name: 'chain', region: 'eu' },
    { name: 'relay', region: 'eu' },
    // Home routers that forward ports on request: one by NAT-PMP, one by UPnP IGD only (as most home routers).
    { name: 'natm', region: 'eu', nat: 'cone', portMapping: 'nat-pmp' },
    { name: 'natu', region: 'eu', nat: 'cone', portMapping: 'upnp' },
  ],
})

test('a provider behind a router that forwards ports on request (NAT-PMP, or UPnP IGD only) maps its port and is dialable without a relay', async () => {
  const { deployment } = await nodes.chain('chain')
  const relayNode = await nodes.relay('relay')
  // Both at once: the NAT-PMP router's provider, and the UPnP-only router's, which finds no NAT-PMP and asks by UPnP.
  const cases = [{ host: 'natm', protocol: 'nat-pmp', name: /dialled back .*by NAT-PMP/ }, { host: 'natu', protocol: 'upnp', name: /dialled back .*by UPnP IGD/ }] as const
  await Promise.all(cases.map(({ host }) => nodes.provider(host, deployment, [relayNode.address])))
  await Promise.all(cases.map(async ({ host, protocol, name }) => {
    const status = await nodes.waitForStatus(host, (s) => s.network.reachability.kind === 'public', `the provider on ${host} is found dialable through its mapped port`)
    const router = testbed.hosts[host]!.publicAddress
    assert.match(status.network.reachability.reason, name)
    assert.deepEqual(status.network.reachability.portMappings.map((m) => [m.protocol, m.externalIp, m.internalIp, m.internalPort]), [[protocol, router, testbed.hosts[host]!.address, 7690]])
    // It announces the router's public address and the mapped port (its relay slot stays, for when the mapping
    // lapses), and its offer is not relayed.
    const mapped = status.network.reachability.portMappings[0]!.externalPort
    const offered = await nodes.waitForStatus(host, (s) => !s.offer.relayed && s.multiaddrs.some((a) => a.startsWith(`/ip4/${router}/tcp/${mapped}/`)), `the offer of ${host} carries the mapped address`)
    assert.equal(offered.offer.relayOnly, false)
  }))
})
