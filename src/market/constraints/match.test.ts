import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../../errors.ts'
import { c } from './builder.ts'
import { compileConstraints } from './evaluate.ts'
import { matchDemandOffer } from './match.ts'
import type { MarketSide } from './match.ts'
import { parseConstraints } from './parser.ts'
import { flattenProperties } from './properties.ts'

// yagna's core/market/resolver/tests/sample and match_demand_offer.rs.
const pocOffer: MarketSide = {
  properties: flattenProperties({
    golem: {
      com: { pricing: { model: 'linear', 'model.linear': { coeffs: [0.1, 0.2, 1.0] } }, scheme: 'payu' },
      inf: { mem: { gib: 1.0 }, storage: { gib: 10.0 } },
      node: { debug: { subnet: 'piotr' }, id: { name: '2rec-prov@dan' } },
      runtime: { name: 'wasmtime', version: '0.1.0' },
    },
  }),
  constraints: '(&(golem.node.debug.subnet=piotr)(golem.srv.comp.expiration>0))',
}
const pocDemand: MarketSide = {
  properties: flattenProperties({
    golem: {
      node: { 'debug.subnet': 'piotr', 'id.name': 'test1' },
      'srv.comp': { expiration: 1590765503361, 'wasm.task_package': 'hash://sha3:38D951E2BD2408D95D8D5E5068A69C60C8238FA45DB8BC841DC0BD50:http://34.244.4.185:8000/rust-wasi-tutorial.zip' },
    },
  }),
  constraints: '\n(&\n(golem.inf.mem.gib>0.5)\n(golem.inf.storage.gib>1)\n(golem.com.pricing.model=linear)\n(golem.node.debug.subnet=piotr)\n)',
}

test('yagna\'s proof-of-concept demand and offer match both ways', () => {
  assert.equal(matchDemandOffer(pocDemand, pocOffer), 'yes')
})

test('empty constraints on both sides match (yagna match_proper_empty_should_match)', () => {
  assert.equal(matchDemandOffer({ properties: {}, constraints: '()' }, { properties: {}, constraints: '()' }), 'yes')
  assert.equal(matchDemandOffer({ properties: {}, constraints: '' }, { properties: {}, constraints: '(&)' }), 'yes')
})

test('each side\'s constraints are tested against the other side\'s properties', () => {
  // match_single_prop_single_constr_should_match: the offer asks foo=bar of the demand.
  assert.equal(matchDemandOffer({ properties: { foo: 'bar' }, constraints: '()' }, { properties: {}, constraints: '(foo=bar)' }), 'yes')
  // match_cross_single_prop_single_constr_should_match
  assert.equal(matchDemandOffer({ properties: { foo: 'bar' }, constraints: '(qux=baz)' }, { properties: { qux: 'baz' }, constraints: '(foo=bar)' }), 'yes')
  // The demand's own properties do not satisfy its own constraints.
  assert.equal(matchDemandOffer({ properties: { qux: 'baz' }, constraints: '(qux=baz)' }, { properties: {}, constraints: '' }), 'undefined')
})

test('a wrong value is no; a missing property is undefined', () => {
  // match_wrong_property_value_should_not_match
  assert.equal(matchDemandOffer({ properties: { foo: 'bar1' }, constraints: '(qux=baz)' }, { properties: { qux: 'baz' }, constraints: '(foo=bar)' }), 'no')
  // match_wrong_property_key_should_undefined_match
  assert.equal(matchDemandOffer({ properties: { foo1: 'bar' }, constraints: '(qux=baz)' }, { properties: { qux: 'baz' }, constraints: '(foo=bar)' }), 'undefined')
})

test('no wins over undefined: a side that is false stays false, whatever the other learns', () => {
  // The demand asks qux=baz of an offer that lacks qux (undefined); the offer asks foo=bar of a demand with foo=x (false).
  // yagna's match_weak would answer Undefined here.
  assert.equal(matchDemandOffer({ properties: { foo: 'x' }, constraints: '(qux=baz)' }, { properties: {}, constraints: '(foo=bar)' }), 'no')
  // And the other way round: the demand is false of the offer while the offer cannot yet judge the demand.
  assert.equal(matchDemandOffer({ properties: {}, constraints: '(qux=baz)' }, { properties: { qux: 'x' }, constraints: '(foo=bar)' }), 'no')
})

test('every combination of the two sides\' answers', () => {
  const side = (answer: 'true' | 'false' | 'undefined') => ({ true: '(k=1)', false: '(k=2)', undefined: '(missing=1)' })[answer]
  const expected: Record<string, string> = {
    'true,true': 'yes', 'true,false': 'no', 'true,undefined': 'undefined',
    'false,true': 'no', 'false,false': 'no', 'false,undefined': 'no',
    'undefined,true': 'undefined', 'undefined,false': 'no', 'undefined,undefined': 'undefined',
  }
  for (const d of ['true', 'false', 'undefined'] as const) {
    for (const o of ['true', 'false', 'undefined'] as const) {
      const result = matchDemandOffer({ properties: { k: 1 }, constraints: side(d) }, { properties: { k: 1 }, constraints: side(o) })
      assert.equal(result, expected[`${d},${o}`], `demand ${d}, offer ${o}`)
    }
  }
})

test('declared types travel with the side whose properties they describe', () => {
  const offer: MarketSide = { properties: { 'golem.runtime.version': '0.10.0' }, constraints: '', types: { 'golem.runtime.version': 'version' } }
  assert.equal(matchDemandOffer({ properties: {}, constraints: '(golem.runtime.version>=0.9.0)' }, offer), 'yes')
  assert.equal(matchDemandOffer({ properties: {}, constraints: '(golem.runtime.version>=0.9.0)' }, { ...offer, types: {} }), 'no')
})

test('accepts text, ASTs, built and compiled constraints on either side', () => {
  const offer = { properties: { 'golem.inf.mem.gib': 8, 'golem.runtime.name': 'wasi' }, constraints: c.present('golem.node.id.name') }
  const demandProperties = { 'golem.node.id.name': 'me' }
  const text = '(&(golem.inf.mem.gib>=4)(golem.runtime.name=wasi))'
  for (const constraints of [text, parseConstraints(text), compileConstraints(text), c.and(c.gte('golem.inf.mem.gib', 4), c.eq('golem.runtime.name', 'wasi'))]) {
    assert.equal(matchDemandOffer({ properties: demandProperties, constraints }, offer), 'yes')
  }
})

test('a malformed filter on either side is reported, even when the other side already says no', () => {
  const bad = { properties: {}, constraints: '(a=' }
  const no = { properties: {}, constraints: '(|)' }
  assert.throws(() => matchDemandOffer(no, bad), (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID'))
  assert.throws(() => matchDemandOffer(bad, no), (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID'))
})
