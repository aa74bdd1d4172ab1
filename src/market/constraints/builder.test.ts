import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../../errors.ts'
import type { ConstraintAst } from './ast.ts'
import { c } from './builder.ts'
import { evaluateConstraints } from './evaluate.ts'
import { parseConstraints } from './parser.ts'
import type { Properties } from './properties.ts'

const invalid = (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID')

function roundTrips(node: ConstraintAst): void {
  assert.deepEqual(parseConstraints(String(node)), node, String(node))
}

test('builds the filter a TypeScript user would otherwise write by hand', () => {
  const demand = c.and(
    c.gte('golem.inf.mem.gib', 4),
    c.eq('golem.runtime.name', 'wasi'),
    c.or(c.eq('golem.node.geo.country_code', 'DE'), c.eq('golem.node.geo.country_code', 'PL')),
    c.not(c.like('golem.node.id.name', 'bad-*')),
    c.present('golem.com.pricing.model'),
    c.eq('golem.runtime.capabilities', 'vpn'),
    c.gte('golem.runtime.version$v', '0.2.0'),
  )
  assert.equal(
    demand.toString(),
    '(&(golem.inf.mem.gib>=4)(golem.runtime.name=wasi)(|(golem.node.geo.country_code=DE)(golem.node.geo.country_code=PL))' +
      '(!(golem.node.id.name=bad-*))(golem.com.pricing.model=*)(golem.runtime.capabilities=vpn)(golem.runtime.version$v>=0.2.0))',
  )
  roundTrips(demand)
  const offer = {
    'golem.inf.mem.gib': 8, 'golem.runtime.name': 'wasi', 'golem.node.geo.country_code': 'PL', 'golem.node.id.name': 'home-1',
    'golem.com.pricing.model': 'linear', 'golem.runtime.capabilities': ['inet', 'vpn'], 'golem.runtime.version': '0.10.0',
  }
  assert.equal(evaluateConstraints(demand, offer), true)
  assert.equal(evaluateConstraints(String(demand), offer), true)
  assert.equal(evaluateConstraints(demand, { ...offer, 'golem.node.id.name': 'bad-9' }), false)
})

test('escapes every value, so no value can change the filter\'s structure', () => {
  const hostile = 'x)(|(golem.inf.mem.gib>=0)'
  const node = c.eq('golem.node.id.name', hostile)
  assert.equal(String(node), '(golem.node.id.name=x\\29\\28|\\28golem.inf.mem.gib>=0\\29)')
  roundTrips(node)
  assert.equal(evaluateConstraints(node, { 'golem.node.id.name': hostile }), true)
  assert.equal(evaluateConstraints(node, { 'golem.node.id.name': 'x' }), false)
  // eq's * is literal; like's * is a wildcard and everything else in it is literal.
  assert.equal(String(c.eq('a', 'v*')), '(a=v\\2a)')
  assert.equal(evaluateConstraints(c.eq('a', 'v*'), { a: 'vpn' }), false)
  assert.equal(String(c.like('a', 'v*(1)\\')), '(a=v*\\281\\29\\5c)')
  assert.equal(evaluateConstraints(c.like('a', 'v*(1)\\'), { a: 'vm (1)\\' }), true)
  assert.equal(String(c.like('a', '*')), '(a=**)') // any string, which is not presence
  assert.equal(String(c.gte('a', 'b)')), '(a>=b\\29)')
  for (const value of ['*', '', ' ', '[a,b]', '(', '\\', '\u0000', 'č', '\u{1f600}']) roundTrips(c.eq('a', value))
})

test('numbers, booleans and Dates are written so that they read back as the same value', () => {
  assert.equal(String(c.gte('golem.inf.mem.gib', 0.5)), '(golem.inf.mem.gib>=0.5)')
  assert.equal(String(c.eq('n', 1e21)), '(n=1e+21)')
  assert.equal(evaluateConstraints(c.eq('n', 1e21), { n: 1e21 }), true)
  assert.equal(evaluateConstraints(c.eq('n', -0), { n: 0 }), true)
  assert.equal(String(c.eq('flag', true)), '(flag=true)')
  const when = new Date(Date.UTC(2024, 5, 1, 12))
  assert.equal(String(c.lt('golem.srv.comp.expiration$t', when)), '(golem.srv.comp.expiration$t<2024-06-01T12:00:00.000Z)')
  assert.equal(evaluateConstraints(c.lt('deadline$t', when), { deadline: '2024-06-01T13:00:00+02:00' }), true)
})

test('a list value asks for list equality; ne is not-equal', () => {
  const node = c.eq('golem.runtime.capabilities', ['vpn', 'a,b', ' x'])
  assert.equal(String(node), '(golem.runtime.capabilities=[vpn,a\\2cb,\\20x])')
  roundTrips(node)
  assert.equal(evaluateConstraints(node, { 'golem.runtime.capabilities': [' x', 'vpn', 'a,b'] }), true)
  assert.equal(String(c.eq('coeffs', [0.1, 2])), '(coeffs=[0.1,2])')
  assert.equal(String(c.eq('empty', [])), '(empty=[])')
  assert.equal(String(c.ne('golem.runtime.name', 'vm')), '(!(golem.runtime.name=vm))')
  assert.equal(evaluateConstraints(c.ne('golem.runtime.name', 'vm'), {}), undefined)
})

test('c.and() is true, c.or() is false, and c.from adopts text or ASTs', () => {
  assert.equal(String(c.and()), '(&)')
  assert.equal(evaluateConstraints(c.and(), {}), true)
  assert.equal(evaluateConstraints(c.or(), {}), false)
  const combined = c.and(c.from('(|(a=1)(b=2))'), c.from(parseConstraints('(c=*)')), c.gt('d', 1))
  assert.equal(String(combined), '(&(|(a=1)(b=2))(c=*)(d>1))')
  roundTrips(combined)
})

test('built constraints are plain, frozen ASTs: toString is hidden from deep equality and JSON', () => {
  const node = c.and(c.eq('a', 'b'))
  assert.ok(Object.isFrozen(node))
  assert.deepEqual(Object.keys(node), ['kind', 'children'])
  assert.equal(JSON.stringify(node), '{"kind":"and","children":[{"kind":"equals","ref":{"name":"a"},"value":{"kind":"text","pattern":["b"]}}]}')
})

test('refuses names and values the filter cannot carry', () => {
  for (const name of ['', 'a b', 'a=b', 'a)', '&a', 'a$x', 'a[', 'x\\y']) {
    assert.throws(() => c.present(name), invalid, JSON.stringify(name))
    assert.throws(() => c.eq(name, 'v'), invalid, JSON.stringify(name))
  }
  assert.throws(() => c.eq('a', Number.NaN), invalid)
  assert.throws(() => c.gte('a', Number.POSITIVE_INFINITY), invalid)
  assert.throws(() => c.lt('a', new Date(Number.NaN)), invalid)
  assert.throws(() => c.eq('a', null as unknown as string), invalid)
  assert.throws(() => c.eq('a', ['']), invalid) // [] is the empty list: a list of one empty string has no spelling
  assert.throws(() => c.gte('a', ['x'] as unknown as string), invalid)
  assert.throws(() => c.like('a', 4 as unknown as string), invalid)
})

test('refuses nesting deeper than 64 as it is built', () => {
  let node = c.eq('a', 'b')
  for (let i = 1; i < 64; i++) node = c.not(node)
  assert.equal(String(node).length, 5 + 63 * 3)
  assert.throws(() => c.not(node), invalid)
  assert.throws(() => c.and(c.eq('x', 'y'), node), invalid)
  let raw: ConstraintAst = { kind: 'present', ref: { name: 'a' } }
  for (let i = 0; i < 100; i++) raw = { kind: 'not', child: raw }
  assert.throws(() => c.from(raw), invalid)
})

test('round-trips whatever is built: builder, text, parse give the same AST and the same answers', () => {
  const parts = [
    c.eq('golem.inf.cpu.threads', 8), c.lte('golem.inf.mem.gib', 16), c.like('golem.node.id.name', '*rig*'),
    c.eq('golem.com.usage.vector', ['golem.usage.duration_sec', 'golem.usage.cpu_sec']), c.present('hearth.inf.gpu.model'),
    c.gt('hearth.inf.cpu.score', 1000), c.eq('golem.runtime.capabilities', 'vpn'), c.lt('golem.runtime.version$v', '2.0.0'),
  ]
  const offers: Properties[] = [
    { 'golem.inf.cpu.threads': 8, 'golem.inf.mem.gib': 8, 'golem.node.id.name': 'my-rig-1', 'hearth.inf.cpu.score': 1500, 'golem.runtime.version': '1.2.3' },
    { 'golem.inf.cpu.threads': 4, 'golem.com.usage.vector': ['golem.usage.cpu_sec', 'golem.usage.duration_sec'], 'golem.runtime.capabilities': ['vpn'] },
    {},
  ]
  for (const a of parts) {
    for (const b of parts) {
      for (const node of [c.and(a, b), c.or(a, c.not(b)), c.not(c.and(a, c.or(b)))]) {
        const reparsed = parseConstraints(String(node))
        assert.deepEqual(reparsed, node)
        for (const offer of offers) assert.equal(evaluateConstraints(reparsed, offer), evaluateConstraints(node, offer))
      }
    }
  }
})

// Compile-time checks: `npx tsc --noEmit` fails if the builder stops refusing these. Never called.
export function typeChecks(): void {
  // @ts-expect-error memory is a number
  c.gte('golem.inf.mem.gib', 'four')
  // @ts-expect-error the runtime name is a string
  c.eq('golem.runtime.name', 4)
  // @ts-expect-error a list cannot be ordered
  c.lt('golem.runtime.capabilities', 'vpn')
  // @ts-expect-error list members are strings
  c.eq('golem.runtime.capabilities', 5)
  c.eq('golem.runtime.capabilities', ['vpn', 'inet'])
  c.eq('golem.runtime.capabilities', 'vpn')
  c.gte('golem.runtime.version$v', '1.0.0')
  c.eq('my.own.property', ['any', 1, true])
}
