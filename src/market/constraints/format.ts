/**
 * Writes a ConstraintAst back as filter text, escaping values the GAP-34 way (`\` + two hex digits), so that
 * `parseConstraints(formatConstraints(ast))` deep-equals `ast` for every AST it accepts.
 */
import { HearthError } from '../../errors.ts'
import { impliedTypeSuffix, validateAst } from './ast.ts'
import type { ConstraintAst, EqualsValue, PropertyRef } from './ast.ts'
import { parsePropertyRef } from './parser.ts'

export function formatConstraints(ast: ConstraintAst): string {
  validateAst(ast)
  return format(ast)
}

function format(node: ConstraintAst): string {
  switch (node.kind) {
    case 'and':
      return `(&${node.children.map(format).join('')})`
    case 'or':
      return `(|${node.children.map(format).join('')})`
    case 'not':
      return `(!${format(node.child)})`
    case 'present':
      return `(${formatRef(node.ref)}=*)`
    case 'equals':
      return `(${formatRef(node.ref)}=${formatEqualsValue(node.value)})`
    case 'order':
      return `(${formatRef(node.ref)}${node.operator}${escapeValue(node.value, '')})`
  }
}

/** Checked by parsing it back: a name the parser would split or refuse cannot be written. */
export function formatRef(ref: PropertyRef): string {
  const text = ref.name + (ref.aspect === undefined ? '' : `[${ref.aspect}]`) + (ref.type === undefined ? '' : `$${impliedTypeSuffix[ref.type]}`)
  let parsed: PropertyRef | undefined
  try {
    parsed = parsePropertyRef(text)
  } catch {
    parsed = undefined
  }
  if (parsed === undefined || parsed.name !== ref.name || parsed.aspect !== ref.aspect || parsed.type !== ref.type || /^[&|!]/.test(ref.name)) {
    throw new HearthError('HEARTH_ERR_MARKET_CONSTRAINTS_INVALID', `${JSON.stringify(ref.name)} cannot be written as a property name in a filter`, {
      hint: 'property names may not be empty, start with & | !, or contain whitespace or any of ( ) [ ] = < > ~ \\ $',
    })
  }
  return text
}

const isWhitespaceChar = (ch: string): boolean => /^[\t\n\v\f\r ]$/.test(ch)

function formatEqualsValue(value: EqualsValue): string {
  if (value.kind === 'list') {
    if (value.items.length === 1 && value.items[0]!.length === 1 && value.items[0]![0] === '') {
      throw new HearthError('HEARTH_ERR_MARKET_CONSTRAINTS_INVALID', 'a list holding one empty string cannot be written: [] is the empty list')
    }
    return `[${value.items.map((item) => formatPattern(item, ',[]', true)).join(',')}]`
  }
  const pattern = value.pattern
  // `=*` (with only whitespace after it) reads as presence, so write a lone wildcard as `**`, and escape the
  // whitespace of `* ` (ends with a space).
  if (pattern.length === 2 && pattern[0] === '' && /^[\t\n\v\f\r ]*$/.test(pattern[1]!)) {
    return pattern[1] === '' ? '**' : `*${[...pattern[1]!].map(hexEscape).join('')}`
  }
  const text = formatPattern(pattern, '', false)
  // A value that starts with `[` and ends with `]` reads as a list: escape the `[`.
  return text.startsWith('[') ? `\\5b${text.slice(1)}` : text
}

function formatPattern(pattern: readonly string[], extra: string, escapeEdgeWhitespace: boolean): string {
  let text = pattern.map((segment) => escapeValue(segment, extra)).join('*')
  if (escapeEdgeWhitespace) {
    // List items are trimmed when parsed, so their own leading and trailing whitespace must be escaped.
    const chars = [...text]
    let start = 0
    while (start < chars.length && isWhitespaceChar(chars[start]!)) chars[start] = hexEscape(chars[start++]!)
    let end = chars.length - 1
    while (end >= start && isWhitespaceChar(chars[end]!)) chars[end] = hexEscape(chars[end--]!)
    text = chars.join('')
  }
  return text
}

/** Escapes what GAP-34 says must be (`(` `)` `*` `\` NUL) plus the characters in `extra`. */
export function escapeValue(value: string, extra: string): string {
  let out = ''
  for (const ch of value) {
    out += ch === '(' || ch === ')' || ch === '*' || ch === '\\' || ch === '\u0000' || extra.includes(ch) ? hexEscape(ch) : ch
  }
  return out
}

const utf8 = new TextEncoder()

function hexEscape(ch: string): string {
  let out = ''
  for (const byte of utf8.encode(ch)) out += `\\${byte.toString(16).padStart(2, '0')}`
  return out
}
