import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../../errors.ts'
import { equalsNode, orderNode, presentNode, propertyRef } from './ast.ts'
import type { ConstraintAst } from './ast.ts'
import { escapeValue, formatConstraints } from './format.ts'
import { parseConstraints } from './parser.ts'
import { randomAst, seededRandom } from './random-constraints.ts'

const text = (name: string, ...pattern: string[]) => equalsNode(propertyRef(name), { kind: 'text', pattern })
const list = (name: string, ...items: string[][]) => equalsNode(propertyRef(name), { kind: 'list', items })

test('writes filters in GAP-34 form', () => {
  assert.equal(formatConstraints(parseConstraints('( & (a=b) (|(c>=1)(!(d=*))) )')), '(&(a=b)(|(c>=1)(!(d=*))))')
  assert.equal(formatConstraints(parseConstraints('(cn[x]$v=1)')), '(cn[x]$v=1)')
  assert.equal(formatConstraints(parseConstraints('')), '(&)')
  assert.equal(formatConstraints(parseConstraints('(a<>b)')), '(!(a=b))')
})

test('escapes ( ) * \\ and NUL as \\ and two hex digits, and nothing else', () => {
  assert.equal(escapeValue('Parens R Us (for all your parenthetical needs)', ''), 'Parens R Us \\28for all your parenthetical needs\\29')
  assert.equal(escapeValue('C:\\MyFile', ''), 'C:\\5cMyFile')
  assert.equal(escapeValue('a*b\u0000', ''), 'a\\2ab\\00')
  assert.equal(escapeValue('Lučić [ok], fine', ''), 'Lučić [ok], fine')
  assert.equal(escapeValue('a,b', ','), 'a\\2cb')
  assert.equal(escapeValue('č', 'č'), '\\c4\\8d')
})

test('writes awkward values so that they read back the same', () => {
  const cases: Array<[ConstraintAst, string]> = [
    [text('a', '*'), '(a=\\2a)'],
    [text('a', '', ''), '(a=**)'], // a lone * would read as presence
    [text('a', '', ' '), '(a=*\\20)'], // so would a * followed by whitespace
    [text('a', '', '\t\n'), '(a=*\\09\\0a)'],
    [text('a', '', ' x'), '(a=* x)'],
    [text('a', '[a,b]'), '(a=\\5ba,b])'], // would read as a list
    [text('a', '[a', ''), '(a=\\5ba*)'],
    [text('a', ''), '(a=)'],
    [text('a', ' padded '), '(a= padded )'],
    [list('a'), '(a=[])'],
    [list('a', [' x '], ['a,b'], ['[c]'], ['v', '']), '(a=[\\20x\\20,a\\2cb,\\5bc\\5d,v*])'],
    [list('a', [''], ['']), '(a=[,])'],
    [orderNode(propertyRef('a'), '>=', '4*(x)'), '(a>=4\\2a\\28x\\29)'],
    [presentNode(propertyRef('a', 'asp', 'version')), '(a[asp]$v=*)'],
  ]
  for (const [ast, expected] of cases) {
    assert.equal(formatConstraints(ast), expected)
    assert.deepEqual(parseConstraints(expected), ast, expected)
  }
})

test('refuses what the language cannot spell, with HearthErrors', () => {
  const invalid = (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID')
  assert.throws(() => formatConstraints(list('a', [''])), invalid) // [] is the empty list
  for (const name of ['a b', 'a=b', 'a(', 'a)', 'a[b]', 'a$v', 'a\\b', '&a', '|a', '!a', 'a~', '', ' a']) {
    assert.throws(() => formatConstraints(presentNode({ name })), invalid, JSON.stringify(name))
  }
  assert.throws(() => formatConstraints({ kind: 'nope' } as unknown as ConstraintAst), invalid)
})

test('format then parse is the identity on random ASTs', () => {
  const rand = seededRandom(2024)
  for (let i = 0; i < 5000; i++) {
    const ast = randomAst(rand, 5)
    const written = formatConstraints(ast)
    assert.deepEqual(parseConstraints(written), ast, written)
    assert.equal(formatConstraints(parseConstraints(written)), written)
  }
})
