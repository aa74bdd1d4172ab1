/**
 * Parses Golem's constraint language (GAP-34, an RFC 4515 LDAP filter with typed attributes) into a ConstraintAst.
 *
 * Grammar, and where we follow yagna (golemfactory/yagna core/market/resolver) where GAP-34 is silent or stricter:
 *   filter  = "(" ( "&" *filter / "|" *filter / "!" filter / item ) ")"
 *   item    = attr ( "=" / "<" / "<=" / ">" / ">=" / "<>" ) value
 *   attr    = name [ "[" aspect "]" ] [ "$" ( "v" / "d" / "t" ) ]
 * - Whitespace is ignored between filters, after "(" and around "&", "|", "!" (GAP-34 "Whitespaces", yagna's parser);
 *   inside an item it is part of the value (`(cn=Babs Jensen)`), and in a name it is refused, so that
 *   `(golem.inf.mem.gib >= 4)` is an error rather than a reference to a property named `golem.inf.mem.gib `.
 * - Values escape `(`, `)`, `*`, `\` and NUL as `\` + two hex digits of each UTF-8 byte (`\28`, `\c4\8d`); the older
 *   `\(` `\)` `\*` `\\` are read too. An unescaped `(` in a value is refused (GAP-34), where yagna would take it.
 * - `=*` is presence (yagna also allows whitespace after the `*`); other unescaped `*` in an `=` value are wildcards; an
 *   unescaped `*` after `<`, `<=`, `>`, `>=` is refused (GAP-34 allows wildcards only with `=`).
 * - `[a,b]` after `=` is a list (yagna's `parse_prop_ref_as_list`): items split at unescaped `,`, each trimmed.
 * - `(&)` is true and `(|)` is false (yagna; golem-js sends `(&)` for a demand without constraints), `()` is true
 *   (yagna's empty filter); empty or all-whitespace text is no constraints at all: true.
 * - `(a<>b)` is yagna's not-equal, read as `(!(a=b))`, which resolves identically. `~=` is refused.
 * - Bounds: at most 64 KiB of UTF-8 and 64 levels of nesting, checked before descending, so hostile input gets a
 *   HearthError and never a stack overflow.
 */
import { HearthError } from '../../errors.ts'
import {
  andNode, equalsNode, MAX_CONSTRAINTS_BYTES, MAX_CONSTRAINTS_DEPTH, notNode, orderNode, orNode, presentNode,
  propertyRef, tooDeepError,
} from './ast.ts'
import type { ConstraintAst, EqualsValue, ImpliedType, OrderOperator, PropertyRef } from './ast.ts'
import { constraintSyntaxError } from './syntax-error.ts'

export function parseConstraints(text: string): ConstraintAst {
  if (typeof text !== 'string') {
    throw new HearthError('HEARTH_ERR_MARKET_CONSTRAINTS_INVALID', `constraints must be a string, not ${text === null ? 'null' : typeof text}`)
  }
  checkSize(text)
  const parser = new Parser(text)
  parser.skipWhitespace()
  if (parser.atEnd()) return andNode([])
  const ast = parser.filter(1)
  parser.skipWhitespace()
  if (!parser.atEnd()) {
    throw parser.error('expected the end of the constraints after the filter', 'combine several filters with (&…) or (|…)')
  }
  return ast
}

/** Parses a bare attribute (`golem.runtime.version$v`, `name[aspect]`) as the builder receives it. */
export function parsePropertyRef(text: string): PropertyRef {
  if (typeof text !== 'string') {
    throw new HearthError('HEARTH_ERR_MARKET_CONSTRAINTS_INVALID', `a property name must be a string, not ${typeof text}`)
  }
  checkSize(text)
  const parser = new Parser(text)
  const ref = parser.attribute()
  if (!parser.atEnd()) throw parser.error('expected the end of the property name', nameHint)
  return ref
}

const nameHint = 'property names may not contain whitespace or any of ( ) [ ] = < > ~ \\ $'

function checkSize(text: string): void {
  // Each UTF-16 unit is 1 to 3 UTF-8 bytes: count exactly only when the length alone cannot decide.
  if (text.length * 3 <= MAX_CONSTRAINTS_BYTES) return
  const bytes = utf8Length(text)
  if (bytes > MAX_CONSTRAINTS_BYTES) {
    throw new HearthError(
      'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID',
      `constraints are ${bytes} bytes long; the limit is ${MAX_CONSTRAINTS_BYTES}`,
      {
        hint: 'a demand or offer needs far fewer clauses; match many values at once with a list [a,b,c] or a wildcard',
        details: { bytes, limit: MAX_CONSTRAINTS_BYTES },
      },
    )
  }
}

/** UTF-8 length without Buffer, so that the market code also runs in the browser dashboard. */
function utf8Length(text: string): number {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4
      i++
    } else bytes += 3 // a lone surrogate is written as U+FFFD, three bytes
  }
  return bytes
}

const isWhitespace = (c: number): boolean => c === 0x20 || (c >= 0x09 && c <= 0x0d)
// Characters that end a name: GAP-34's forbidden set, plus `~` (to report `~=`) and whitespace.
const endsName = (c: number): boolean =>
  c === 0x28 || c === 0x29 || c === 0x5b || c === 0x5d || c === 0x3d || c === 0x3c || c === 0x3e || c === 0x5c ||
  c === 0x24 || c === 0x7e || isWhitespace(c)

const impliedTypes: Record<string, ImpliedType> = { v: 'version', d: 'decimal', t: 'datetime' }
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** A scanned value: each unit is a character (or a decoded escape) and whether it was written unescaped. */
interface ScannedValue {
  chars: string[]
  raw: boolean[]
}

class Parser {
  pos = 0
  constructor(readonly text: string) {}

  atEnd(): boolean {
    return this.pos >= this.text.length
  }

  skipWhitespace(): void {
    while (this.pos < this.text.length && isWhitespace(this.text.charCodeAt(this.pos))) this.pos++
  }

  error(message: string, hint?: string, offset = this.pos): HearthError {
    return constraintSyntaxError(this.text, offset, message, hint === undefined ? {} : { hint })
  }

  private found(): string {
    return this.atEnd() ? 'the end of the text' : JSON.stringify(this.text[this.pos])
  }

  filter(depth: number): ConstraintAst {
    if (depth > MAX_CONSTRAINTS_DEPTH) throw tooDeepError(this.pos)
    if (this.text[this.pos] !== '(') throw this.error(`expected "(" but found ${this.found()}`)
    const open = this.pos
    this.pos++
    this.skipWhitespace()
    if (this.atEnd()) throw this.unclosed(open)
    const c = this.text[this.pos]
    if (c === ')') {
      this.pos++
      return andNode([])
    }
    if (c === '&' || c === '|') {
      this.pos++
      const children: ConstraintAst[] = []
      for (;;) {
        this.skipWhitespace()
        if (this.atEnd()) throw this.unclosed(open)
        if (this.text[this.pos] === ')') break
        if (this.text[this.pos] !== '(') throw this.error(`expected "(" to start a filter or ")" to close "${c}" but found ${this.found()}`)
        children.push(this.filter(depth + 1))
      }
      this.pos++
      return c === '&' ? andNode(children) : orNode(children)
    }
    if (c === '!') {
      this.pos++
      this.skipWhitespace()
      if (this.atEnd()) throw this.unclosed(open)
      const child = this.filter(depth + 1)
      this.skipWhitespace()
      if (this.atEnd()) throw this.unclosed(open)
      if (this.text[this.pos] !== ')') throw this.error(`expected ")" to close "!", which takes exactly one filter, but found ${this.found()}`)
      this.pos++
      return notNode(child)
    }
    return this.item(open, depth)
  }

  private unclosed(open: number): HearthError {
    return this.error(`unexpected end of the text: expected ")" to close the filter opened at offset ${open}`)
  }

  attribute(): PropertyRef {
    const name = this.name('a property name')
    let aspect: string | undefined
    let type: ImpliedType | undefined
    if (this.text[this.pos] === '[') {
      this.pos++
      aspect = this.name('an aspect name')
      if (this.text[this.pos] !== ']') throw this.error(`expected "]" to close the aspect but found ${this.found()}`, nameHint)
      this.pos++
    }
    if (this.text[this.pos] === '$') {
      this.pos++
      const code = this.text[this.pos] ?? ''
      type = Object.hasOwn(impliedTypes, code) ? impliedTypes[code] : undefined
      if (type === undefined) {
        throw this.error(`expected v (version), d (decimal) or t (date-time) after "$" but found ${this.found()}`)
      }
      this.pos++
    }
    return propertyRef(name, aspect, type)
  }

  private name(what: string): string {
    const start = this.pos
    while (this.pos < this.text.length && !endsName(this.text.charCodeAt(this.pos))) this.pos++
    if (this.pos === start) throw this.error(`expected ${what} but found ${this.found()}`, nameHint)
    return this.text.slice(start, this.pos)
  }

  private item(open: number, depth: number): ConstraintAst {
    const ref = this.attribute()
    const operatorAt = this.pos
    const operator = this.operator()
    const scanned = this.value(open, operator === '=' || operator === '<>')
    if (operator === '=' || operator === '<>') {
      const { chars, raw } = scanned
      // yagna: `=*` is presence, whitespace after the `*` tolerated; `<>*` stays a comparison.
      if (operator === '=' && chars[0] === '*' && raw[0] && chars.every((ch, i) => i === 0 || (raw[i] && isWhitespace(ch.charCodeAt(0))))) {
        return presentNode(ref)
      }
      const node = equalsNode(ref, equalsValue(scanned))
      if (operator === '=') return node
      if (depth + 1 > MAX_CONSTRAINTS_DEPTH) throw tooDeepError(operatorAt)
      return notNode(node)
    }
    return orderNode(ref, operator, scanned.chars.join(''))
  }

  private operator(): OrderOperator | '=' | '<>' {
    const t = this.text
    const at = this.pos
    const c = t[at]
    const next = t[at + 1]
    if (c === '=') {
      this.pos += 1
      return '='
    }
    if (c === '<' || c === '>') {
      if (next === '=') {
        this.pos += 2
        return c === '<' ? '<=' : '>='
      }
      if (c === '<' && next === '>') {
        this.pos += 2
        return '<>'
      }
      this.pos += 1
      return c
    }
    if (c === '~' && next === '=') throw this.error('approximate match "~=" is not supported', 'use = with * wildcards')
    if (c !== undefined && isWhitespace(c.charCodeAt(0))) {
      throw this.error('expected a comparison operator (=, <, <=, >, >=) right after the property name, but found whitespace', 'whitespace is allowed between filters, not inside (name=value)')
    }
    throw this.error(`expected a comparison operator (=, <, <=, >, >=) but found ${this.found()}`, nameHint)
  }

  /** Reads up to the closing `)`, decoding escapes; leaves `pos` after the `)`. */
  private value(open: number, allowWildcard: boolean): ScannedValue {
    const t = this.text
    const chars: string[] = []
    const raw: boolean[] = []
    for (;;) {
      if (this.pos >= t.length) throw this.unclosed(open)
      const c = t[this.pos]!
      if (c === ')') {
        this.pos++
        return { chars, raw }
      }
      if (c === '\\') {
        chars.push(this.escapes())
        raw.push(false)
        continue
      }
      if (c === '(') {
        throw this.error('unexpected "(" in a value: a value ends at ")"', 'if the value holds a parenthesis, escape it: ( is \\28 and ) is \\29')
      }
      if (c === '\u0000') throw this.error('unexpected NUL in a value', 'escape it as \\00')
      if (c === '*' && !allowWildcard) {
        throw this.error('unexpected "*": wildcards are allowed only with =', 'to compare with a literal *, escape it as \\2a')
      }
      chars.push(c)
      raw.push(true)
      this.pos++
    }
  }

  /** One run of escapes: `\HH` bytes are gathered and decoded as UTF-8 together (`\c4\8d` is one character). */
  private escapes(): string {
    const t = this.text
    const start = this.pos
    const bytes: number[] = []
    while (t[this.pos] === '\\') {
      const next = t[this.pos + 1]
      const hex = t.slice(this.pos + 1, this.pos + 3)
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16))
        this.pos += 3
        continue
      }
      // RFC 2254's older form, still common in hand-written filters; never ambiguous with hex.
      if (bytes.length === 0 && (next === '(' || next === ')' || next === '*' || next === '\\')) {
        this.pos += 2
        return next
      }
      if (bytes.length > 0) break
      throw this.error('expected two hex digits after "\\"', 'escape ( ) * \\ as \\28 \\29 \\2a \\5c')
    }
    try {
      return utf8.decode(new Uint8Array(bytes))
    } catch (cause) {
      throw constraintSyntaxError(this.text, start, 'escaped bytes are not valid UTF-8', {
        hint: 'escape every byte of a UTF-8 character, e.g. č is \\c4\\8d',
        cause,
      })
    }
  }
}

function equalsValue({ chars, raw }: ScannedValue): EqualsValue {
  const n = chars.length
  if (n >= 2 && raw[0] && chars[0] === '[' && raw[n - 1] && chars[n - 1] === ']') {
    const items: string[][] = []
    let start = 1
    for (let i = 1; i <= n - 1; i++) {
      if (i === n - 1 || (raw[i] && chars[i] === ',')) {
        items.push(trimmedPattern(chars, raw, start, i))
        start = i + 1
      }
    }
    // `[]` and `[ ]` are the empty list, not a list of one empty string.
    if (items.length === 1 && items[0]!.length === 1 && items[0]![0] === '') return { kind: 'list', items: [] }
    return { kind: 'list', items }
  }
  return { kind: 'text', pattern: patternOf(chars, raw, 0, n) }
}

function trimmedPattern(chars: string[], raw: boolean[], start: number, end: number): string[] {
  while (start < end && raw[start] && isWhitespace(chars[start]!.charCodeAt(0))) start++
  while (end > start && raw[end - 1] && isWhitespace(chars[end - 1]!.charCodeAt(0))) end--
  return patternOf(chars, raw, start, end)
}

function patternOf(chars: string[], raw: boolean[], start: number, end: number): string[] {
  const pattern: string[] = []
  let segment = ''
  for (let i = start; i < end; i++) {
    if (raw[i] && chars[i] === '*') {
      pattern.push(segment)
      segment = ''
    } else {
      segment += chars[i]
    }
  }
  pattern.push(segment)
  return pattern
}
