/**
 * Turns a zod error into one line a person can act on ("field payload.cpus: expected number, received string"),
 * plus the same facts as data for error details.
 */
import type { z } from 'zod'

export interface IssueSummary {
  text: string
  issues: Array<{ field: string; message: string }>
}

const shownIssues = 5

export function describeIssues(error: z.ZodError, prefix: ReadonlyArray<string | number> = []): IssueSummary {
  const issues = error.issues.map((issue) => {
    const path = [...prefix, ...issue.path.map((part) => (typeof part === 'symbol' ? part.toString() : part))]
    return { field: path.length === 0 ? '(root)' : path.join('.'), message: issue.message }
  })
  const shown = issues.slice(0, shownIssues).map((issue) => `field ${issue.field}: ${issue.message}`)
  if (issues.length > shownIssues) shown.push(`and ${issues.length - shownIssues} more`)
  return { text: shown.join('; '), issues: issues.slice(0, 20) }
}
