import assert from 'node:assert/strict'
import { test } from 'node:test'
import { caretExcerpt, constraintSyntaxError } from './syntax-error.ts'

test('the caret sits under the offset, with long text cut to a window around it', () => {
  const text = `(&${'(a=b)'.repeat(20)}(c=\\zz)${'(d=e)'.repeat(20)})`
  const offset = text.indexOf('\\zz')
  const { line, caret } = caretExcerpt(text, offset)
  assert.equal(line[caret.length - 1], '\\')
  assert.ok(line.startsWith('…') && line.endsWith('…'))
  assert.ok(line.length <= 62)
})

test('control characters show as spaces so that the caret stays aligned, and the end of text is pointable', () => {
  const { line, caret } = caretExcerpt('(&\n\t(a=b)', 4)
  assert.equal(line, '(&  (a=b)')
  assert.equal(caret, '    ^')
  assert.equal(caretExcerpt('(a=b', 4).caret, '    ^')
})

test('the error carries the offset, the reason and the excerpt for programs, and a hint for people', () => {
  const error = constraintSyntaxError('(a=b', 4, 'expected ")"', { hint: 'close it', cause: 'why' })
  assert.equal(error.code, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID')
  assert.deepEqual(error.details, { offset: 4, reason: 'expected ")"', excerpt: '(a=b' })
  assert.equal(error.hint, 'close it')
  assert.equal(error.cause, 'why')
  assert.equal(error.shortMessage, 'invalid constraints at offset 4: expected ")"\n  (a=b\n      ^')
})
