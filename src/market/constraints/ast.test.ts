import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../../errors.ts'
import { andNode, equalsNode, MAX_CONSTRAINTS_DEPTH, notNode, presentNode, propertyRef, validateAst } from './ast.ts'
import type { ConstraintAst } from './ast.ts'

const invalid = (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID')

test('constructors normalise wildcard runs and freeze what they make', () => {
  const node = equalsNode(propertyRef('a'), { kind: 'text', pattern: ['x', '', '', 'y', '', 'z'] })
  assert.deepEqual(node, { kind: 'equals', ref: { name: 'a' }, value: { kind: 'text', pattern: ['x', 'y', 'z'] } })
  assert.deepEqual(equalsNode(propertyRef('a'), { kind: 'list', items: [['', '', '']] }), { kind: 'equals', ref: { name: 'a' }, value: { kind: 'list', items: [['', '']] } })
  assert.ok(Object.isFrozen(node) && Object.isFrozen(node.kind === 'equals' && node.value))
  assert.deepEqual(propertyRef('a'), { name: 'a' }) // absent fields are left out, not undefined
  assert.deepEqual(Object.keys(propertyRef('a', undefined, 'version')), ['name', 'type'])
})

test('validateAst accepts depth 64 and refuses 65, cycles, unknown kinds and malformed fields', () => {
  let node: ConstraintAst = presentNode(propertyRef('a'))
  for (let depth = 1; depth < MAX_CONSTRAINTS_DEPTH; depth++) node = notNode(node)
  validateAst(node)
  assert.throws(() => validateAst(andNode([node])), invalid)
  const cycle = { kind: 'and', children: [] as unknown[] }
  cycle.children.push(cycle)
  assert.throws(() => validateAst(cycle as ConstraintAst), invalid)
  const malformed: unknown[] = [
    null, 'x', { kind: 'and' }, { kind: 'not' }, { kind: 'present', ref: {} }, { kind: 'present', ref: { name: 'a', aspect: 1 } },
    { kind: 'equals', ref: { name: 'a' }, value: { kind: 'text', pattern: ['a', 2] } }, { kind: 'equals', ref: { name: 'a' }, value: { kind: 'set' } },
    { kind: 'order', ref: { name: 'a' }, operator: '<', value: 1 },
  ]
  for (const ast of malformed) assert.throws(() => validateAst(ast as ConstraintAst), invalid, JSON.stringify(ast))
})
