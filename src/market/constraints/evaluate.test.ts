import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../../errors.ts'
import type { ConstraintAst } from './ast.ts'
import { compileConstraints, evaluateConstraints } from './evaluate.ts'
import type { ConstraintResult } from './evaluate.ts'
import { parseConstraints } from './parser.ts'
import { flattenProperties } from './properties.ts'
import type { Properties, PropertyTypes } from './properties.ts'

function check(filter: string, properties: Properties, expected: ConstraintResult, types?: PropertyTypes): void {
  const options = types === undefined ? {} : { types }
  assert.equal(evaluateConstraints(filter, properties, options), expected, `${filter} on ${JSON.stringify(properties)}${types ? ` typed ${JSON.stringify(types)}` : ''}`)
}

// Cases from yagna's core/market/resolver/tests/expression_resolve.rs, with their flat properties written as JSON.
test('empty filters are true (yagna resolve_empty; golem-js sends (&))', () => {
  for (const filter of ['', '()', '(&)', '  ']) check(filter, { objectClass: 'Babs Jensen' }, true)
  check('(|)', {}, false)
})

test('presence is true when the property is there and false, not undefined, when it is not', () => {
  check('(objectClass=*)', { objectClass: 'Babs Jensen' }, true)
  check('(objectClass=*)', { cn: 'Dblah' }, false)
  check('(!(objectClass=*))', { cn: 'Dblah' }, true)
  check('(n=*)', { n: 0 }, true)
  check('(n=*)', { n: false }, true)
  check('(n=*)', { n: [] }, true)
})

test('equality on a string: true, false, and undefined when the property is absent', () => {
  check('(cn=Babs Jensen)', { cn: 'Babs Jensen' }, true)
  check('(cn=Babs Jensen)', { cn: 'Dblah' }, false)
  check('(cn=Babs Jensen)', { cnas: 'Dblah' }, undefined)
  check('(cn=babs jensen)', { cn: 'Babs Jensen' }, false) // case matters
})

test('equality on a list is membership: (caps=vpn) is true when the list holds vpn', () => {
  check('(cn=Babs Jensen)', { cn: ['Babs Jensen', 'Dblah'] }, true)
  check('(cn=Babs Jensen)', { cn: ['Dblah', 'Argh'] }, false)
  check('(cn=Babs Jensen)', { cnas: ['Dblah', 'Argh'] }, undefined)
  check('(golem.runtime.capabilities=vpn)', { 'golem.runtime.capabilities': ['inet', 'vpn'] }, true)
  check('(golem.runtime.capabilities=v*)', { 'golem.runtime.capabilities': ['inet', 'vpn'] }, true)
  check('(golem.runtime.capabilities=gpu)', { 'golem.runtime.capabilities': [] }, false)
  // Elements compare by their own type: 1.0 is the number 1.
  check('(golem.com.pricing.model.linear.coeffs=1)', { 'golem.com.pricing.model.linear.coeffs': [0.1, 0.2, 1.0] }, true)
  check('(golem.com.pricing.model.linear.coeffs=0.3)', { 'golem.com.pricing.model.linear.coeffs': [0.1, 0.2, 1.0] }, false)
  check('(flags=true)', { flags: [false, true] }, true)
})

test('[a,b] is list equality: same items, any order, counted (yagna\'s properties_list.rs)', () => {
  const caps = { caps: ['abc', 'def'] }
  check('(caps=[abc,def])', caps, true)
  check('(caps=[def, abc])', caps, true)
  check('(caps=[abc,def,xyz])', caps, false)
  check('(caps=[abc,xyz])', caps, false)
  check('(caps=[abc,abc])', caps, false) // yagna's lazy comparison says true; a multiset says no
  check('(caps=[])', { caps: [] }, true)
  check('(caps=[])', caps, false)
  // Wildcard items need a real matching: v* could take vpn, leaving nothing for vpn.
  check('(caps=[v*,vpn])', { caps: ['vpn', 'vm'] }, true)
  check('(caps=[v*,vpn])', { caps: ['vpn', 'inet'] }, false)
  check('(nums=[1,2.0,3])', { nums: [3, 2, 1] }, true)
  check('(mixed=[4,4])', { mixed: ['4', 4] }, true)
  // A list asks about a list: against a scalar it is false.
  check('(cn=[a,b])', { cn: '[a,b]' }, false)
  check('(cn=\\5ba,b])', { cn: '[a,b]' }, true)
  check('(n=[4])', { n: 4 }, false)
})

test('<, <=, >, >= on a list or a boolean are false ("operator meaningless")', () => {
  for (const operator of ['<', '<=', '>', '>=']) {
    check(`(caps${operator}abc)`, { caps: ['abc', 'def'] }, false)
    check(`(flag${operator}true)`, { flag: true }, false)
  }
})

test('* wildcards match any run of characters anywhere in a string value', () => {
  check('(cn=Babs *)', { cn: 'Babs Jensen' }, true)
  check('(cn=Babs *)', { cn: 'Dblah' }, false)
  check('(cn=Babs *)', { cnas: 'Dblah' }, undefined)
  check('(o=univ*of*mich*)', { o: 'university of michigan' }, true)
  check('(o=*mich)', { o: 'university of michigan' }, false)
  check('(o=*)', { o: '' }, true) // presence
  check('(o=**)', { o: '' }, true)
  check('(o=**)', { o: 4 }, false) // a wildcard pattern is not a number
  check('(cn=*\\2a*)', { cn: 'a*b' }, true)
  check('(cn=*\\2a*)', { cn: 'ab' }, false)
  check('(cn=a.c)', { cn: 'abc' }, false) // no regex semantics leak through
})

test('numbers compare numerically; text that is not a number makes the comparison false', () => {
  check('(cn=123)', { cn: 123 }, true)
  check('(cn=123)', { cn: 456 }, false)
  check('(cn=1ds23)', { cn: 123 }, false)
  check('(cn>123)', { cn: 124 }, true)
  check('(cn>123)', { cn: 12 }, false)
  check('(cn>1ds23)', { cn: 123 }, false)
  check('(cn<123.56)', { cn: 122.674 }, true)
  check('(cn<123.56)', { cn: 126 }, false)
  check('(cn<1ds23)', { cn: 123 }, false)
  check('(cn<=4)', { cn: 4 }, true)
  check('(cn>=4)', { cn: 4 }, true)
  check('(cn<4)', { cn: 4 }, false)
  check('(cn=4.0)', { cn: 4 }, true)
  check('(cn=1e3)', { cn: 1000 }, true)
  check('(cn>= 4)', { cn: 8 }, false) // whitespace is part of the value, and " 4" is not a number
  check('(golem.inf.mem.gib>0.5)', { 'golem.inf.mem.gib': 1.0 }, true)
})

test('strings order by code point; 1.10.0 < 1.5.0 as strings, which is why $v exists', () => {
  check('(name<b)', { name: 'a' }, true)
  check('(name>=b)', { name: 'a' }, false)
  check('(cn>=1.5.0)', { cn: '1.10.0' }, false)
  check('(cn$v>=1.5.0)', { cn: '1.10.0' }, true)
})

test('booleans equal exactly true or false; anything else is false', () => {
  check('(flag=true)', { flag: true }, true)
  check('(flag=false)', { flag: true }, false)
  check('(flag=True)', { flag: true }, false)
  check('(flag=yes)', { flag: true }, false)
  check('(flag=true)', { flag: 'true' }, true) // a string property compares as a string
})

test('$v reads the property as a SemVer version: undefined when it is not one, false when the filter\'s is not', () => {
  check('(cn$v>=1.5.0)', { cn: '1.10.0' }, true)
  check('(cn$v>=1.5.0)', { cn: 'dblah' }, undefined)
  check('(cn$v>=dblah)', { cn: '1.10.0' }, false)
  check('(cn$v>=1.5.0)', { cn: 1.5 }, undefined)
  check('(cn$v<1.0.0)', { cn: '1.0.0-rc.1' }, true)
  check('(cn$v=1.0.0)', { cn: '1.0.0+build.7' }, true)
  check('(cn$v=1.*)', { cn: '1.0.0' }, false) // wildcards do not read as versions
  check('(cn$v=[1.0.0])', { cn: '1.0.0' }, false)
  check('(cn$v>=1.0.0)', { cn: ['1.0.0'] }, undefined)
  check('(cn$v>=1.0.0)', {}, undefined)
})

test('$d compares exact decimals, and also reads number properties', () => {
  check('(cn$d>=10)', { cn: '1' }, false)
  check('(cn$d>=10)', { cn: 'dblah' }, undefined)
  check('(cn$d=0.3)', { cn: '0.30' }, true)
  check('(cn$d>0.3)', { cn: '0.30000000000000000001' }, true)
  check('(golem.inf.mem.gib$d>=4)', { 'golem.inf.mem.gib': 8 }, true)
  check('(cn$d>=10)', { cn: true }, undefined)
})

test('$t compares RFC 3339 instants; a declared datetime type does the same without the suffix', () => {
  const types: PropertyTypes = { cn: 'datetime' }
  check('(cn<=1985-04-12T23:20:50.52Z)', { cn: '1985-04-12T23:20:30.52Z' }, true, types)
  check('(cn<=1985-04-12T23:20:50.52Z)', { cn: '1985-04-12T23:20:50.52Z' }, true, types)
  check('(cn<=1985-04-12T23:20:50.52Z)', { cn: '1985-04-12T23:21:50.52Z' }, false, types)
  check('(cn<=1985-04-13)', { cn: '1985-04-12T23:20:50.52Z' }, false, types) // RFC 3339 is strict
  check('(cn$t<1985-04-12T23:00:00Z)', { cn: '1985-04-13T00:30:00+02:00' }, true)
  check('(cn$t<1985-04-12T23:00:00Z)', { cn: 'yesterday' }, undefined)
  check('(cn$t<1985-04-12T23:00:00Z)', { cn: 482196050520 }, undefined)
})

test('declared types apply to unsuffixed references; a suffix in the filter wins', () => {
  const types: PropertyTypes = { ver: 'version' }
  check('(ver>=1.5.0)', { ver: '1.10.0' }, true, types)
  check('(ver>=1.5.0)', { ver: '1.10.0' }, false)
  check('(ver$d>=1)', { ver: '1.10.0' }, undefined, types)
  check('(ver=1.10.0)', { ver: 'not-a-version' }, undefined, types)
  // Only real types count; an inherited name or junk in the map is no declaration.
  check('(ver>=1.5.0)', { ver: '1.10.0' }, false, { ver: 'semver' } as unknown as PropertyTypes)
  check('(constructor>=1.5.0)', { constructor: '1.10.0' } as Properties, false, {})
})

test('&, | and ! combine three-valued results with Kleene logic', () => {
  const T = '(t=1)'
  const F = '(t=2)'
  const U = '(u=1)'
  const props = { t: 1 }
  const values: Array<[string, ConstraintResult]> = [[T, true], [F, false], [U, undefined]]
  const kleeneAnd = (a: ConstraintResult, b: ConstraintResult) => (a === false || b === false ? false : a === undefined || b === undefined ? undefined : true)
  const kleeneOr = (a: ConstraintResult, b: ConstraintResult) => (a === true || b === true ? true : a === undefined || b === undefined ? undefined : false)
  for (const [a, av] of values) {
    check(`(!${a})`, props, av === undefined ? undefined : !av)
    for (const [b, bv] of values) {
      check(`(&${a}${b})`, props, kleeneAnd(av, bv))
      check(`(|${a}${b})`, props, kleeneOr(av, bv))
      for (const [c, cv] of values) {
        check(`(&${a}${b}${c})`, props, kleeneAnd(kleeneAnd(av, bv), cv))
        check(`(|${a}${b}${c})`, props, kleeneOr(kleeneOr(av, bv), cv))
      }
    }
  }
})

test('yagna\'s resolve_and, resolve_or, resolve_not and resolve_complex', () => {
  check('(!(cn=Tim Howes))', { cn: 'Babs Jensen' }, true)
  check('(!(cn=Tim Howes))', { cn: 'Tim Howes' }, false)
  check('(!(cn=Tim Howes))', { cnas: 'Dblah' }, undefined)
  check('(&(a=b)(b=c)(c=d))', { a: 'b', b: 'c', c: 'd' }, true)
  check('(&(a=b)(b=c)(c=d))', { a: 'x', b: 'c', c: 'd' }, false)
  check('(&(a=b)(b=c)(c=d))', { b: 'c', c: 'd' }, undefined)
  check('(&(a=b)(b=c)(c=d))', { b: 'c', c: 'x' }, false) // false outweighs undefined
  check('(|(a=b)(b=c)(c=d))', { a: 'b', b: 'c', c: 'd' }, true)
  check('(|(a=b)(b=c)(c=d))', { a: 'x', b: 'y', c: 'z' }, false)
  check('(|(a=b)(b=c)(c=d))', { b: 'x', c: 'y' }, undefined)
  check('(|(a=b)(b=c)(c=d))', { b: 'c', c: 'y' }, true) // true outweighs undefined
  check('(&(|(a=b)(b=c)(c=d))(!(x=dblah)))', { a: 'b', b: 'x', c: 'y', x: 'notdblah' }, true)
  check('(&(golem.com.pricing.model=linear))', { 'golem.com.pricing.model': 'linear' }, true)
  check('(&(golem.com.pricing.est{30}<20))', { 'golem.com.pricing.est{30}': 15 }, true)
})

test('a property that is null or of an unsupported kind counts as absent', () => {
  for (const value of [null, { nested: 1 }, () => 1]) {
    const properties = { p: value } as unknown as Properties
    check('(p=1)', properties, undefined)
    check('(p>=1)', properties, undefined)
    check('(p=*)', properties, false)
  }
})

test('names that Object.prototype has are looked up as own properties only', () => {
  check('(constructor=*)', {}, false)
  check('(toString=x)', {}, undefined)
  check('(__proto__=*)', {}, false)
  check('(hasOwnProperty<1)', {}, undefined)
  const flat = flattenProperties(JSON.parse('{"constructor": "c", "__proto__": "p", "toString": 2}'))
  check('(constructor=c)', flat, true)
  check('(__proto__=p)', flat, true)
  check('(toString>=2)', flat, true)
  check('(&(constructor=*)(__proto__=*))', flat, true)
})

test('aspects parse but Hearth properties have none: comparisons undefined, presence false', () => {
  check('(cn[x]=1)', { cn: '1' }, undefined)
  check('(cn[x]=*)', { cn: '1' }, false)
})

test('takes filter text, an AST or compiled constraints, and compiles each text and AST once', () => {
  const properties = { 'golem.inf.mem.gib': 8 }
  const text = '(golem.inf.mem.gib>=4)'
  const ast = parseConstraints(text)
  const compiled = compileConstraints(text)
  assert.equal(compileConstraints(text), compiled)
  assert.equal(compileConstraints(compiled), compiled)
  assert.equal(compileConstraints(ast), compileConstraints(ast))
  assert.deepEqual(compiled.ast, ast)
  for (const input of [text, ast, compiled]) assert.equal(evaluateConstraints(input, properties), true)
})

test('refuses malformed input with HearthErrors: bad text, bad ASTs, cyclic or deep ASTs, non-object properties', () => {
  const invalid = (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID')
  assert.throws(() => evaluateConstraints('(a=b', {}), invalid)
  assert.throws(() => evaluateConstraints({ kind: 'xor', children: [] } as unknown as ConstraintAst, {}), invalid)
  assert.throws(() => evaluateConstraints({ kind: 'equals', ref: { name: 'a' }, value: { kind: 'text', pattern: [] } } as unknown as ConstraintAst, {}), invalid)
  assert.throws(() => evaluateConstraints({ kind: 'order', ref: { name: '' }, operator: '<', value: '1' }, {}), invalid)
  assert.throws(() => evaluateConstraints({ kind: 'order', ref: { name: 'a' }, operator: '!=', value: '1' } as unknown as ConstraintAst, {}), invalid)
  assert.throws(() => evaluateConstraints({ kind: 'present', ref: { name: 'a', type: 'toString' } } as unknown as ConstraintAst, {}), invalid)
  assert.throws(() => evaluateConstraints(null as unknown as string, {}), invalid)
  const cyclic: { kind: 'not'; child: unknown } = { kind: 'not', child: undefined }
  cyclic.child = cyclic
  assert.throws(() => evaluateConstraints(cyclic as ConstraintAst, {}), (e: unknown) => invalid(e) && /nested deeper than 64/.test((e as Error).message))
  let deep: ConstraintAst = { kind: 'present', ref: { name: 'a' } }
  for (let i = 0; i < 64; i++) deep = { kind: 'and', children: [deep] }
  assert.throws(() => evaluateConstraints(deep, {}), invalid)
  for (const properties of [null, undefined, 'a=b', 4]) {
    assert.throws(() => evaluateConstraints('(a=b)', properties as unknown as Properties), (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_PROPERTIES_INVALID'))
  }
})
