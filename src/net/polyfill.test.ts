import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import './polyfill.ts'

describe('Promise.withResolvers polyfill', () => {
  it('provides a working Promise.withResolvers', async () => {
    const { promise, resolve } = Promise.withResolvers<number>()
    resolve(7)
    assert.equal(await promise, 7)
    const rejected = Promise.withResolvers<never>()
    rejected.reject(new Error('no'))
    await assert.rejects(rejected.promise, /no/)
  })
})
