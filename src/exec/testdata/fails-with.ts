/** The check every runtime test (and the compliance suite) makes of a failure, kept apart so that both can import it. */
import assert from 'node:assert/strict'
import { isHearthError } from '../../errors.ts'
import type { ErrorCode } from '../../errors.ts'

/** For assert.rejects / assert.throws: a HearthError with this code (and a message matching `pattern`, if given). */
export function failsWith(code: ErrorCode, pattern?: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(isHearthError(error), `expected a HearthError ${code}, got ${String(error)}`)
    assert.equal(error.code, code, error.message)
    if (pattern !== undefined) assert.match(error.message, pattern)
    return true
  }
}
