import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compareValue, isPropertyValue, prepareLiteral } from './compare.ts'
import type { ConstraintResult, Operator } from './compare.ts'
import type { ImpliedType } from './ast.ts'

const text = (value: string) => prepareLiteral({ kind: 'text', pattern: [value] })
const answer = (operator: Operator, literal: string, value: unknown, type?: ImpliedType): ConstraintResult =>
  compareValue(operator, operator === '=' ? text(literal) : prepareLiteral(literal), value, type)

test('a filter value that does not read as the property\'s type is false, never undefined', () => {
  // Golem: "ignore parsing error, assume false" (yagna properties.rs).
  for (const operator of ['=', '<', '<=', '>', '>='] as const) {
    assert.equal(answer(operator, 'lots', 8), false, `${operator} on a number`)
    assert.equal(answer(operator, 'nope', true), false, `${operator} on a boolean`)
    assert.equal(answer(operator, 'x', [1]), false, `${operator} on a list`)
    assert.equal(answer(operator, 'not-a-version', '1.0.0', 'version'), false)
    assert.equal(answer(operator, 'not-a-date', '2024-01-01T00:00:00Z', 'datetime'), false)
    assert.equal(answer(operator, 'not-a-decimal', '1', 'decimal'), false)
  }
})

test('a property that does not read as its implied type is undefined, never false', () => {
  // yagna's to_prop_ref_type: a failed conversion leaves the expression unresolved.
  for (const operator of ['=', '<', '>='] as const) {
    assert.equal(answer(operator, '1.0.0', 'dblah', 'version'), undefined)
    assert.equal(answer(operator, '1.0.0', 1, 'version'), undefined)
    assert.equal(answer(operator, '1.0.0', ['1.0.0'], 'version'), undefined)
    assert.equal(answer(operator, '2024-01-01T00:00:00Z', 'soon', 'datetime'), undefined)
    assert.equal(answer(operator, '2024-01-01T00:00:00Z', true, 'datetime'), undefined)
    assert.equal(answer(operator, '1', 'one', 'decimal'), undefined)
    assert.equal(answer(operator, '1', [1], 'decimal'), undefined)
  }
})

test('values of kinds properties cannot have answer undefined', () => {
  for (const value of [{}, () => 1, Symbol('s'), 1n]) assert.equal(answer('=', '1', value), undefined)
  assert.deepEqual([1, 'a', true, [], [1]].map(isPropertyValue), [true, true, true, true, true])
  assert.deepEqual([null, undefined, {}, 1n].map(isPropertyValue), [false, false, false, false])
})

test('a prepared value reads the same whether read lazily or all at once', () => {
  for (const value of ['4', '1.2.3', '2024-01-01T00:00:00Z', 'true', 'x', '0.10']) {
    const lazy = text(value)
    const eager = text(value).readAll()
    assert.deepEqual([lazy.number, lazy.boolean, lazy.version, lazy.decimal, lazy.datetime, lazy.list], [eager.number, eager.boolean, eager.version, eager.decimal, eager.datetime, eager.list])
  }
  const list = prepareLiteral({ kind: 'list', items: [['a'], ['4']] })
  assert.equal(list.list?.length, 2)
  assert.ok(Number.isNaN(list.number))
  assert.equal(list.version, undefined)
})
