import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../../errors.ts'
import { flattenProperties } from './properties.ts'

// yagna's core/market/resolver/tests/sample: the same offer written flat, and deep with partly dotted keys.
const pocOfferFlat = {
  'golem.com.pricing.model': 'linear',
  'golem.com.pricing.model.linear.coeffs': [0.1, 0.2, 1.0],
  'golem.com.scheme': 'payu',
  'golem.com.scheme.payu.interval_sec': 6.0,
  'golem.com.usage.vector': ['golem.usage.duration_sec', 'golem.usage.cpu_sec'],
  'golem.inf.mem.gib': 1.0,
  'golem.inf.storage.gib': 10.0,
  'golem.node.debug.subnet': 'piotr',
  'golem.node.id.name': '2rec-prov@dan',
  'golem.runtime.name': 'wasmtime',
  'golem.runtime.version': '0.1.0',
  'golem.runtime.wasm.wasi.version@v': '0.9.0',
}
const pocOfferDeep = {
  golem: {
    com: {
      pricing: { model: 'linear', 'model.linear': { coeffs: [0.1, 0.2, 1.0] } },
      scheme: 'payu',
      'scheme.payu': { interval_sec: 6.0 },
      usage: { vector: ['golem.usage.duration_sec', 'golem.usage.cpu_sec'] },
    },
    inf: { mem: { gib: 1.0 }, storage: { gib: 10.0 } },
    node: { debug: { subnet: 'piotr' }, id: { name: '2rec-prov@dan' } },
    runtime: { name: 'wasmtime', version: '0.1.0', 'wasm.wasi.version@v': '0.9.0' },
  },
}

const rejects = (input: unknown, pattern: RegExp) =>
  assert.throws(() => flattenProperties(input as Record<string, unknown>), (error: unknown) =>
    isHearthError(error, 'HEARTH_ERR_MARKET_PROPERTIES_INVALID') && pattern.test(error.shortMessage))

test('nested and flat spellings of yagna\'s sample offer flatten to the same properties', () => {
  assert.deepEqual({ ...flattenProperties(pocOfferDeep) }, pocOfferFlat)
  assert.deepEqual({ ...flattenProperties(pocOfferFlat) }, pocOfferFlat)
})

test('keys come out in the order the object lists them, and a name may be both a leaf and a prefix', () => {
  const flat = flattenProperties({ a: { x: 1 }, b: 2, c: { y: { z: true } }, 'c.y': { w: 'w' } })
  assert.deepEqual(Object.keys(flat), ['a.x', 'b', 'c.y.z', 'c.y.w'])
  assert.deepEqual({ ...flattenProperties({ model: 'linear', 'model.linear': { coeffs: [1] } }) }, { model: 'linear', 'model.linear.coeffs': [1] })
})

test('null is absent, as yagna cannot read a null property; empty objects add nothing', () => {
  assert.deepEqual({ ...flattenProperties({ a: null, b: {}, c: { d: null }, e: 1 }) }, { e: 1 })
})

test('lists keep strings, numbers and booleans, mixed or not, and are copied', () => {
  const list = ['vpn', 2, false]
  const flat = flattenProperties({ caps: list })
  assert.deepEqual(flat.caps, ['vpn', 2, false])
  assert.notEqual(flat.caps, list)
})

test('a property named like an Object.prototype member is an ordinary property', () => {
  const flat = flattenProperties(JSON.parse('{"__proto__": {"x": 1}, "constructor": "c", "toString": 2}'))
  assert.deepEqual(Object.keys(flat), ['__proto__.x', 'constructor', 'toString'])
  assert.equal(flat.constructor, 'c')
  const shadow = flattenProperties(JSON.parse('{"__proto__": 5}'))
  assert.equal(Object.hasOwn(shadow, '__proto__'), true)
  assert.equal(shadow['__proto__'], 5)
})

test('refuses what has no typed value: objects in lists, non-finite numbers, bigints, functions', () => {
  rejects({ a: [{ b: 1 }] }, /a is a list holding/)
  rejects({ a: [[1]] }, /a is a list holding/)
  rejects({ a: { b: Number.NaN } }, /a\.b is not a finite number/)
  rejects({ a: [Number.POSITIVE_INFINITY] }, /a is a list/)
  rejects({ a: 1n }, /a is a bigint/)
  rejects({ a: () => 1 }, /a is a function/)
  rejects({ a: new Date(0) }, /a is an instance of Date/)
  rejects([1, 2], /must be a JSON object/)
  rejects(null, /must be a JSON object/)
})

test('refuses one name given twice and names with empty dotted segments', () => {
  rejects({ 'a.b': 1, a: { b: 2 } }, /a\.b is given twice/)
  rejects({ '': 1 }, /empty dotted segment/)
  rejects({ a: { '.b': 1 } }, /empty dotted segment/)
  rejects({ 'a..b': 1 }, /empty dotted segment/)
  rejects({ 'a.': 1 }, /empty dotted segment/)
})

test('refuses hostile nesting with a HearthError instead of overflowing the stack', () => {
  let deep: Record<string, unknown> = { leaf: 1 }
  for (let i = 0; i < 100_000; i++) deep = { n: deep }
  rejects(deep, /nested deeper than 64/)
  let ok: Record<string, unknown> = { leaf: 1 }
  for (let i = 0; i < 63; i++) ok = { n: ok }
  assert.equal(Object.keys(flattenProperties(ok))[0], `${'n.'.repeat(63)}leaf`)
})
