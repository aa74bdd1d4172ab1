/**
 * What one comparison `(name op value)` answers for one property value: true, false or undefined. Shared by the
 * compiled evaluator and the reference interpreter, so the two cannot disagree on meaning.
 *
 * The rules are yagna's (core/market/resolver/src/resolver/properties.rs, expression.rs), where GAP-34 is silent:
 * - The property's type decides how the filter's text is read: a number property reads it as a number, a boolean
 *   as `true`/`false`, a string compares as a string (`=` with `*` wildcards, `<` etc. in code-point order).
 * - Text that does not read as the property's type makes the comparison FALSE, not undefined: `(mem>=lots)` against
 *   `mem = 8`, `(flag=yes)` against a boolean, `(mem=[4,8])` against a number. Golem does this deliberately
 *   ("ignore parsing error, assume false" in properties.rs, tests/expression_resolve.rs `(cn>1ds23)` is False): the
 *   property exists and has a definite value, so the answer is known and it is no; undefined is kept for "this side
 *   has not said", which negotiation can still resolve. (A list value against a string property is false too, where
 *   yagna would compare the raw text `[a,b]` as a string.)
 * - `<`, `<=`, `>`, `>=` on a boolean or a list are false ("operator meaningless for List/bool" in properties.rs).
 * - `=` on a list: `[a,b]` is list equality, anything else is membership (`(caps=vpn)` is true when the list holds
 *   `vpn`; each element compares by its own type, strings with wildcards). yagna's list equality is "lazy" (its own
 *   TODO: `[a,a]` equals `[a,b]`); ours is multiset equality: same length and a one-to-one pairing of items.
 * - An implied type (`name$v`, `$d`, `$t`, or one declared in PropertyTypes) converts the PROPERTY first: when the
 *   property cannot be read as that type (`"dblah"` as a version, a list as a date) the comparison is UNDEFINED, as in
 *   yagna's `to_prop_ref_type` (tests/expression_resolve.rs: `(cn$v>=1.5.0)` on `cn="dblah"` is Undefined); when
 *   the filter's text cannot, it is false, as above. One deviation: `$d` also reads number properties (yagna
 *   refuses to convert its f64 and answers undefined, which no one wants from `(golem.inf.mem.gib$d>=4)`).
 * - A property that is absent (or null, or of an unsupported kind) makes every comparison undefined, and presence
 *   false: `(name=*)` asks exactly whether it is there (yagna's `resolve_present`), so `(!(name=*))` can be true.
 * - Aspects (`name[aspect]`) parse but Hearth properties carry none: comparisons are undefined, presence false.
 */
import type { EqualsValue, ImpliedType, OrderOperator } from './ast.ts'
import {
  compareDateTimes, compareDecimals, compareStrings, compareVersions, matchesPattern, parseBoolean, parseDateTime,
  parseDecimal, parseNumber, parseVersion,
} from './typed-values.ts'
import type { DateTime, Decimal, Version } from './typed-values.ts'

export type ConstraintResult = boolean | undefined
export type Operator = '=' | OrderOperator

export interface PreparedItem {
  readonly pattern: readonly string[]
  readonly number: number
  readonly boolean: boolean | undefined
}

function prepareItem(pattern: readonly string[]): PreparedItem {
  const exact = pattern.length === 1 ? pattern[0]! : undefined
  return {
    pattern,
    number: exact === undefined ? Number.NaN : parseNumber(exact),
    boolean: exact === undefined ? undefined : parseBoolean(exact),
  }
}

const unread = Symbol('unread')

/**
 * A filter value, read each way it may be needed (number, boolean, version, decimal, date-time, list items) on first
 * need and then kept: the compiled evaluator holds one per leaf for its lifetime; the interpreter makes a new one
 * at every comparison, so it pays only for the readings that comparison uses.
 */
export class PreparedLiteral implements PreparedItem {
  readonly text: string
  readonly pattern: readonly string[]
  readonly hasWildcard: boolean
  private readonly items: readonly (readonly string[])[] | undefined
  private numberValue: number | typeof unread = unread
  private booleanValue: boolean | undefined | typeof unread = unread
  private listValue: readonly PreparedItem[] | undefined | typeof unread = unread
  private versionValue: Version | undefined | typeof unread = unread
  private decimalValue: Decimal | undefined | typeof unread = unread
  private datetimeValue: DateTime | undefined | typeof unread = unread

  constructor(value: EqualsValue | string) {
    if (typeof value !== 'string' && value.kind === 'list') {
      this.items = value.items
      this.pattern = []
      this.text = ''
    } else {
      this.items = undefined
      this.pattern = typeof value === 'string' ? [value] : value.pattern
      this.text = this.pattern.join('*')
    }
    this.hasWildcard = this.pattern.length > 1
  }

  /** The exact text, or undefined for a wildcard pattern or a list (which read as no number, version…). */
  private get exact(): string | undefined {
    return this.pattern.length === 1 ? this.pattern[0] : undefined
  }

  get number(): number {
    if (this.numberValue === unread) this.numberValue = this.exact === undefined ? Number.NaN : parseNumber(this.exact)
    return this.numberValue
  }

  get boolean(): boolean | undefined {
    if (this.booleanValue === unread) this.booleanValue = this.exact === undefined ? undefined : parseBoolean(this.exact)
    return this.booleanValue
  }

  get list(): readonly PreparedItem[] | undefined {
    if (this.listValue === unread) this.listValue = this.items?.map(prepareItem)
    return this.listValue
  }

  get version(): Version | undefined {
    if (this.versionValue === unread) this.versionValue = this.exact === undefined ? undefined : parseVersion(this.exact)
    return this.versionValue
  }

  get decimal(): Decimal | undefined {
    if (this.decimalValue === unread) this.decimalValue = this.exact === undefined ? undefined : parseDecimal(this.exact)
    return this.decimalValue
  }

  get datetime(): DateTime | undefined {
    if (this.datetimeValue === unread) this.datetimeValue = this.exact === undefined ? undefined : parseDateTime(this.exact)
    return this.datetimeValue
  }

  /** Reads every way now, so that a compiled leaf never parses while evaluating. */
  readAll(): this {
    void [this.number, this.boolean, this.list, this.version, this.decimal, this.datetime]
    return this
  }
}

export function prepareLiteral(value: EqualsValue | string): PreparedLiteral {
  return new PreparedLiteral(value)
}

export function isPropertyValue(value: unknown): boolean {
  const type = typeof value
  return type === 'string' || type === 'number' || type === 'boolean' || Array.isArray(value)
}

export function orderHolds(operator: OrderOperator, c: number): boolean {
  switch (operator) {
    case '<': return c < 0
    case '<=': return c <= 0
    case '>': return c > 0
    case '>=': return c >= 0
  }
}

/** The answer for a present property value `value` (anything; unsupported kinds answer undefined). */
export function compareValue(operator: Operator, literal: PreparedLiteral, value: unknown, type: ImpliedType | undefined): ConstraintResult {
  if (type !== undefined) return compareTyped(operator, literal, value, type)
  switch (typeof value) {
    case 'string':
      if (operator === '=') return literal.list === undefined && matchesPattern(literal.pattern, value)
      return orderHolds(operator, compareStrings(value, literal.text))
    case 'number':
      if (operator === '=') return value === literal.number
      // Every comparison with NaN (text that is not a number) is false, which is the rule.
      return operator === '<' ? value < literal.number : operator === '<=' ? value <= literal.number
        : operator === '>' ? value > literal.number : value >= literal.number
    case 'boolean':
      return operator === '=' && literal.boolean === value
    case 'object':
      if (!Array.isArray(value)) return undefined
      if (operator !== '=') return false
      if (literal.list !== undefined) return listEquals(value, literal.list)
      for (const element of value) if (elementEquals(element, literal)) return true
      return false
    default:
      return undefined
  }
}

function elementEquals(element: unknown, item: PreparedItem): boolean {
  switch (typeof element) {
    case 'string': return matchesPattern(item.pattern, element)
    case 'number': return element === item.number
    case 'boolean': return element === item.boolean
    default: return false
  }
}

/**
 * Multiset equality: a one-to-one pairing of items with equal elements. Exact string lists (the usual case) are
 * counted; otherwise, since one item may equal several elements (`4` equals both "4" and 4; `v*` equals "vpn" and
 * "vm"), Kuhn's augmenting paths find a perfect matching. Its recursion is as deep as the list is long, which the
 * honest side of a comparison bounds (offers carry at most 64 items).
 */
function listEquals(elements: readonly unknown[], items: readonly PreparedItem[]): boolean {
  const n = items.length
  if (elements.length !== n) return false
  if (n === 0) return true
  if (items.every((item) => item.pattern.length === 1) && elements.every((element) => typeof element === 'string')) {
    const counts = new Map<string, number>()
    for (const element of elements as readonly string[]) counts.set(element, (counts.get(element) ?? 0) + 1)
    for (const item of items) {
      const left = counts.get(item.pattern[0]!) ?? 0
      if (left === 0) return false
      counts.set(item.pattern[0]!, left - 1)
    }
    return true
  }
  const owner = new Int32Array(n).fill(-1) // owner[element] = item matched to it
  const tryItem = (item: number, seen: Uint8Array): boolean => {
    for (let e = 0; e < n; e++) {
      if (seen[e] === 1 || !elementEquals(elements[e], items[item]!)) continue
      seen[e] = 1
      if (owner[e] === -1 || tryItem(owner[e]!, seen)) {
        owner[e] = item
        return true
      }
    }
    return false
  }
  for (let item = 0; item < n; item++) {
    if (!tryItem(item, new Uint8Array(n))) return false
  }
  return true
}

function compareTyped(operator: Operator, literal: PreparedLiteral, value: unknown, type: ImpliedType): ConstraintResult {
  let c: number
  switch (type) {
    case 'version': {
      const v = typeof value === 'string' ? cachedVersion(value) : undefined
      if (v === undefined) return undefined
      if (literal.version === undefined) return false
      c = compareVersions(v, literal.version)
      break
    }
    case 'decimal': {
      const v = typeof value === 'string' ? cachedDecimal(value) : typeof value === 'number' && Number.isFinite(value) ? cachedDecimal(String(value)) : undefined
      if (v === undefined) return undefined
      if (literal.decimal === undefined) return false
      c = compareDecimals(v, literal.decimal)
      break
    }
    case 'datetime': {
      const v = typeof value === 'string' ? cachedDateTime(value) : undefined
      if (v === undefined) return undefined
      if (literal.datetime === undefined) return false
      c = compareDateTimes(v, literal.datetime)
      break
    }
  }
  return operator === '=' ? c === 0 : orderHolds(operator, c)
}

// Offers repeat the same few version and date strings; reading each once keeps `$v` and `$t` cheap in a hot loop.
const CACHE_LIMIT = 4096
const versions = new Map<string, Version | null>()
const decimals = new Map<string, Decimal | null>()
const datetimes = new Map<string, DateTime | null>()

function cached<T>(cache: Map<string, T | null>, text: string, parse: (text: string) => T | undefined): T | undefined {
  let hit = cache.get(text)
  if (hit === undefined) {
    if (cache.size >= CACHE_LIMIT) cache.clear()
    hit = parse(text) ?? null
    cache.set(text, hit)
  }
  return hit ?? undefined
}

const cachedVersion = (text: string): Version | undefined => cached(versions, text, parseVersion)
const cachedDecimal = (text: string): Decimal | undefined => cached(decimals, text, parseDecimal)
const cachedDateTime = (text: string): DateTime | undefined => cached(datetimes, text, parseDateTime)
