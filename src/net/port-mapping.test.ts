import assert from 'node:assert/strict'
import { test } from 'node:test'
import { defaultGatewayFromRouteTable } from './port-mapping.ts'

// A routing table as Linux prints it in /proc/net/route: addresses in little-endian hex, flags 0x3 = up + gateway.
const table = [
  'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
  'eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
  'eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
  '',
].join('\n')

test('the default gateway is read from the routing table: the default route with the gateway flag', () => {
  assert.equal(defaultGatewayFromRouteTable(table), '192.168.1.1')
  // A default route without a gateway (a point-to-point link), or no default route: no gateway to ask.
  assert.equal(defaultGatewayFromRouteTable(table.replace('0101A8C0\t0003', '00000000\t0001')), undefined)
  assert.equal(defaultGatewayFromRouteTable(table.split('\n').slice(0, 2).join('\n')), undefined)
  assert.equal(defaultGatewayFromRouteTable(''), undefined)
})
