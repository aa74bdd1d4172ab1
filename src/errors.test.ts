import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { renderErrorsDoc } from '../scripts/errors-doc.ts'
import { codesWhere, errorCodes, errorFaults, errorInfo, errorRegistry, errorRetries, HearthError, isErrorCode, isHearthError, toHearthError, type ErrorCode } from './errors.ts'

test('docs/errors.md is what the registry generates (npm run docs:errors writes it)', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
  assert.equal(doc, renderErrorsDoc(), 'docs/errors.md is stale: run npm run docs:errors')
  const headings = [...doc.matchAll(/^### (HEARTH_ERR_[A-Z_]+)$/gm)].map((match) => match[1])
  assert.deepEqual(headings, Object.keys(errorRegistry))
})

test('every code states its meaning, whose fault it is, whether a retry helps, and what to do', () => {
  for (const code of Object.keys(errorRegistry) as ErrorCode[]) {
    const info = errorInfo(code)
    assert.match(code, /^HEARTH_ERR_[A-Z_]+$/)
    assert.ok(info.meaning.length > 10, code)
    assert.ok(info.fault in errorFaults, `${code}: fault ${info.fault}`)
    assert.ok(info.retry in errorRetries, `${code}: retry ${info.retry}`)
    assert.match(info.action, /^[A-Z`].*[.)]$/s, `${code}: the action is a sentence`)
    assert.equal(errorCodes[code], info.meaning)
  }
  assert.ok(isErrorCode('HEARTH_ERR_NET_BUSY'))
  assert.equal(isErrorCode('HEARTH_ERR_NO_SUCH_THING'), false)
  assert.equal(isErrorCode('toString'), false)
  const notNow = codesWhere((info) => info.fault === 'nobody' && info.retry === 'later')
  assert.ok(notNow.has('HEARTH_ERR_NET_BUSY') && !notNow.has('HEARTH_ERR_EXEC_TIMEOUT'))
})

test('a HearthError tells what went wrong, what to do, and keeps its cause', () => {
  const cause = new Error('disk full')
  const error = new HearthError('HEARTH_ERR_STORE_MIGRATION', 'cannot migrate', { hint: 'free some space', cause })
  assert.equal(error.message, 'cannot migrate\nHint: free some space\nCode: HEARTH_ERR_STORE_MIGRATION (see docs/errors.md#hearth_err_store_migration)')
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
