import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { errorCodes, HearthError, isHearthError, toHearthError } from './errors.ts'

test('docs/errors.md lists exactly the codes in src/errors.ts, with the same meanings', () => {
  const table = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const documented = new Map<string, string>()
  for (const match of table.matchAll(/^\| `(HEARTH_ERR_[A-Z_]+)` \| (.+) \|$/gm)) documented.set(match[1]!, match[2]!)
  assert.deepEqual([...documented.keys()].sort(), Object.keys(errorCodes).sort())
  for (const [code, meaning] of Object.entries(errorCodes)) assert.equal(documented.get(code), meaning, code)
})

test('a HearthError tells what went wrong, what to do, and keeps its cause', () => {
  const cause = new Error('disk full')
  const error = new HearthError('HEARTH_ERR_STORE_MIGRATION', 'cannot migrate', { hint: 'free some space', cause })
  assert.match(error.message, /cannot migrate\nHint: free some space\nCode: HEARTH_ERR_STORE_MIGRATION/)
  assert.equal(error.cause, cause)
  assert.ok(isHearthError(error, 'HEARTH_ERR_STORE_MIGRATION'))
  assert.equal(isHearthError(new Error('x')), false)
  assert.deepEqual(error.toJSON(), { code: 'HEARTH_ERR_STORE_MIGRATION', message: 'cannot migrate', hint: 'free some space' })
})

test('toHearthError wraps foreign errors and passes HearthErrors through', () => {
  const wrapped = toHearthError(new TypeError('boom'), 'HEARTH_ERR_PAYMENT_CHAIN')
  assert.equal(wrapped.code, 'HEARTH_ERR_PAYMENT_CHAIN')
  assert.ok(wrapped.cause instanceof TypeError)
  const original = new HearthError('HEARTH_ERR_NET_TIMEOUT', 'slow')
  assert.equal(toHearthError(original), original)
})
