import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../../errors.ts'
import { compileConstraints } from './evaluate.ts'
import { interpretConstraints } from './interpret.ts'
import { parseConstraints } from './parser.ts'
import { randomAst, randomProperties, randomTypes, seededRandom } from './random-constraints.ts'

test('the compiled evaluator and the interpreter agree on random filters and random properties', () => {
  const rand = seededRandom(7)
  const seen = { true: 0, false: 0, undefined: 0 }
  for (let i = 0; i < 3000; i++) {
    const ast = randomAst(rand)
    const compiled = compileConstraints(ast)
    for (let j = 0; j < 8; j++) {
      const properties = randomProperties(rand)
      const types = randomTypes(rand)
      const expected = interpretConstraints(ast, properties, types)
      assert.equal(compiled.evaluate(properties, types), expected, JSON.stringify({ ast, properties, types }))
      // Plain objects (with Object.prototype) must answer the same as null-prototype ones.
      assert.equal(compiled.evaluate({ ...properties }, types), expected)
      seen[String(expected) as keyof typeof seen]++
    }
  }
  // The generator reaches every answer often enough for the agreement to mean something.
  for (const [answer, count] of Object.entries(seen)) assert.ok(count > 1000, `${answer}: ${count}`)
})

test('the fast paths agree with the interpreter on the clauses they shortcut', () => {
  const filters = [
    '(|(cc=DE)(cc=PL)(cc=US))', '(caps=vpn)', '(name=ba*)', '(mem>=4)', '(mem<4)', '(name<m)', '(name>=m)', '(v$v>=1.2.0)',
  ]
  const values = ['DE', 'US', 'FR', 'vpn', 'banana', 'apple', 'zebra', 4, 3, 8, '4', ['vpn'], ['DE', 'x'], [4], true, '1.10.0', '1.2.0-rc.1', 'dblah']
  for (const text of filters) {
    const ast = parseConstraints(text)
    const compiled = compileConstraints(ast)
    for (const value of values) {
      for (const name of ['cc', 'caps', 'name', 'mem', 'v']) {
        const properties = { [name]: value }
        assert.equal(compiled.evaluate(properties), interpretConstraints(ast, properties), `${text} on ${JSON.stringify(properties)}`)
        const typed = { [name]: 'version' as const }
        assert.equal(compiled.evaluate(properties, typed), interpretConstraints(ast, properties, typed), `${text} on ${JSON.stringify(properties)} typed`)
      }
    }
  }
})

test('the interpreter refuses a hand-made AST nested too deep rather than overflowing', () => {
  let ast = parseConstraints('(a=b)')
  for (let i = 0; i < 10_000; i++) ast = { kind: 'not', child: ast }
  assert.throws(() => interpretConstraints(ast, {}), (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID'))
})
