/**
 * The error a malformed filter raises: where (0-based offset into the text, in UTF-16 code units as JavaScript
 * indexes strings), what was expected, and a one-line excerpt with a caret under the spot.
 */
import { HearthError } from '../../errors.ts'

const CONTEXT = 30

export function constraintSyntaxError(
  text: string,
  offset: number,
  message: string,
  options: { hint?: string; cause?: unknown } = {},
): HearthError {
  const excerpt = caretExcerpt(text, offset)
  return new HearthError(
    'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID',
    `invalid constraints at offset ${offset}: ${message}\n  ${excerpt.line}\n  ${excerpt.caret}`,
    {
      hint: options.hint ?? 'constraints are LDAP-style filters such as (&(golem.inf.mem.gib>=4)(golem.runtime.name=wasi))',
      details: { offset, reason: message, excerpt: excerpt.line },
      cause: options.cause,
    },
  )
}

/** A window of the text around `offset`, on one line (control characters shown as spaces so the caret lines up). */
export function caretExcerpt(text: string, offset: number): { line: string; caret: string } {
  const start = Math.max(0, offset - CONTEXT)
  const end = Math.min(text.length, offset + CONTEXT)
  const before = start > 0 ? '…' : ''
  const after = end < text.length ? '…' : ''
  // eslint-disable-next-line no-control-regex
  const visible = text.slice(start, end).replace(/[\u0000-\u001f\u007f]/g, ' ')
  return { line: before + visible + after, caret: ' '.repeat(before.length + offset - start) + '^' }
}
