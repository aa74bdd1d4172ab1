import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Offer } from './offer.ts'
import { greatCircleKm, rankOffers } from './strategy.ts'

function offer(provider: string, perTaskWei: number, properties: Offer['properties'] = {}): Offer {
  return {
    provider,
    peerId: 'x',
    multiaddrs: [],
    properties: { 'golem.runtime.name': 'wasi', ...properties },
    constraints: '',
    pricing: { model: 'per-task', perTaskWei: String(perTaskWei) },
    payment: { chainId: 1, escrow: '0x' + '11'.repeat(20), token: '0x' + '22'.repeat(20) },
    issuedAtMs: 0,
    expiresAtMs: 1,
  }
}
const rank = (offers: Offer[], context: Parameters<typeof rankOffers<Offer>>[2]) => rankOffers(offers, (o) => o, context).map((s) => s.item.provider)

test('great-circle distance matches known city pairs', () => {
  // Warsaw to Berlin is about 517 km; London to New York about 5570 km.
  assert.ok(Math.abs(greatCircleKm({ lat: 52.2297, lon: 21.0122 }, { lat: 52.52, lon: 13.405 }) - 517) < 5)
  assert.ok(Math.abs(greatCircleKm({ lat: 51.5074, lon: -0.1278 }, { lat: 40.7128, lon: -74.006 }) - 5570) < 20)
})

test('by default the cheapest offer for the job ranks first', () => {
  assert.deepEqual(rank([offer('b', 20), offer('a', 10), offer('c', 30)], { tasks: 4 }), ['a', 'b', 'c'])
})

test('each weight moves the ranking its way: CPU score, latency, distance, reputation', () => {
  const fast = offer('fast', 12, { 'hearth.inf.cpu.score': 900, 'hearth.geo.lat': 40.7, 'hearth.geo.lon': -74 })
  const cheap = offer('cheap', 10, { 'hearth.inf.cpu.score': 100, 'hearth.geo.lat': 52.2, 'hearth.geo.lon': 21 })
  assert.deepEqual(rank([cheap, fast], { tasks: 1, weights: { cost: 0, cpuScore: 1, latency: 0, reputation: 0 } }), ['fast', 'cheap'])
  const latencyMs = new Map([['fast', 80], ['cheap', 2]])
  assert.deepEqual(rank([fast, cheap], { tasks: 1, latencyMs, weights: { cost: 0, cpuScore: 0, latency: 1, reputation: 0 } }), ['cheap', 'fast'])
  // Near Berlin, the offer in Warsaw beats the one in New York.
  assert.deepEqual(rank([fast, cheap], { tasks: 1, near: { lat: 52.52, lon: 13.4 }, weights: { cost: 0, cpuScore: 0, distance: 1, reputation: 0 } }), ['cheap', 'fast'])
  const reputation = (p: string) => (p === 'fast' ? 1 : 0)
  assert.deepEqual(rank([cheap, fast], { tasks: 1, reputation, weights: { cost: 0, cpuScore: 0, latency: 0, reputation: 1 } }), ['fast', 'cheap'])
})

test('offers that do not state a feature rank last on it, and equal scores keep their order', () => {
  const unstated = offer('unstated', 10)
  const stated = offer('stated', 10, { 'hearth.inf.cpu.score': 5 })
  assert.deepEqual(rank([unstated, stated], { tasks: 1, weights: { cost: 0, cpuScore: 1, latency: 0, reputation: 0 } }), ['stated', 'unstated'])
  assert.deepEqual(rank([offer('x', 10), offer('y', 10)], { tasks: 1 }), ['x', 'y'])
})
