import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { z } from 'zod'
import { describeIssues } from './describe-issues.ts'

describe('describeIssues', () => {
  it('names each failing field with its path, under an optional prefix', () => {
    const result = z.object({ a: z.number(), b: z.object({ c: z.string() }) }).safeParse({ a: 'x', b: { c: 1 } })
    assert.equal(result.success, false)
    const summary = describeIssues(result.error!, ['payload'])
    assert.match(summary.text, /^field payload\.a: .*expected number.*; field payload\.b\.c: .*expected string/)
    assert.deepEqual(summary.issues.map((issue) => issue.field), ['payload.a', 'payload.b.c'])
  })

  it('shows a root failure and caps long lists', () => {
    assert.match(describeIssues(z.string().safeParse(1).error!).text, /^field \(root\): /)
    const many = z.array(z.string()).safeParse(Array.from({ length: 9 }, (_, i) => i))
    assert.match(describeIssues(many.error!).text, /and 4 more$/)
  })
})
