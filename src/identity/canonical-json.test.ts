import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createHash } from 'node:crypto'
import { isHearthError } from '../errors.ts'
import { canonicalize, hashCanonical } from './canonical-json.ts'

describe('canonicalize', () => {
  it('sorts keys and drops whitespace', () => {
    assert.equal(canonicalize({ b: 1, a: 2, c: [3, { z: true, y: null }] }), '{"a":2,"b":1,"c":[3,{"y":null,"z":true}]}')
  })

  it('sorts nested keys by UTF-16 code units, not by code points or locale', () => {
    // U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB33 in UTF-16 order.
    const value = { '\u{1F600}': 1, '\uFB33': 2, a: { B: 1, a: 2, _: 3 }, é: 4, e: 5 }
    assert.equal(canonicalize(value), '{"a":{"B":1,"_":3,"a":2},"e":5,"é":4,"\u{1F600}":1,"\uFB33":2}')
  })

  it('writes numbers in ECMAScript shortest form', () => {
    assert.equal(canonicalize(1.0), '1')
    assert.equal(canonicalize(-0), '0')
    assert.equal(canonicalize(1e21), '1e+21')
    assert.equal(canonicalize(1e-7), '1e-7')
    assert.equal(canonicalize(0.1 + 0.2), '0.30000000000000004')
    assert.equal(canonicalize(1 / 3), '0.3333333333333333')
    assert.equal(canonicalize(2 ** 53 + 2), '9007199254740994')
    assert.equal(canonicalize([1.5, -2, 100]), '[1.5,-2,100]')
  })

  it('escapes strings as JSON does and keeps non-ASCII as is', () => {
    assert.equal(canonicalize('a"b\\c\n\u0001€\u{1F600}'), '"a\\"b\\\\c\\n\\u0001€\u{1F600}"')
  })

  it('omits undefined members, as they vanish on the wire anyway', () => {
    assert.equal(canonicalize({ a: 1, b: undefined }), '{"a":1}')
  })

  it('refuses what JSON cannot carry', () => {
    const refused: unknown[] = [10n, Number.NaN, Infinity, undefined, [undefined], () => 1, new Date(0), new Map(), '\ud800']
    for (const value of refused) {
      assert.throws(() => canonicalize(value), (error: unknown) => isHearthError(error), String(value))
    }
    assert.throws(() => canonicalize({ priceWei: 10n }), (error: unknown) => isHearthError(error) && /decimal strings/.test(error.message))
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    assert.throws(() => canonicalize(cyclic), /cycle/)
  })

  it('hashes equal objects with different key order equally', () => {
    const a = { job: { tasks: [1, 2], name: 'x' }, budget: '100' }
    const b = { budget: '100', job: { name: 'x', tasks: [1, 2] } }
    assert.equal(hashCanonical(a), hashCanonical(b))
    assert.notEqual(hashCanonical(a), hashCanonical({ ...b, budget: '101' }))
    assert.equal(hashCanonical(a), '0x' + createHash('sha256').update('{"budget":"100","job":{"name":"x","tasks":[1,2]}}').digest('hex'))
  })
})
