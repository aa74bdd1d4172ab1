/**
 * The constraint AST: what `parseConstraints` produces, what the builder builds, what the evaluator compiles.
 *
 * One shape per meaning, so that text -> AST -> text -> AST is the identity: patterns are normalised here (runs of
 * `*` collapse to one), and the parser and the builder both make nodes only through these constructors.
 */
import { HearthError } from '../../errors.ts'

/** The refusal thresholds: GAP-34 sets none, yagna's parser refuses 64 KiB of input; we refuse deep nesting too. */
export const MAX_CONSTRAINTS_BYTES = 64 * 1024
export const MAX_CONSTRAINTS_DEPTH = 64

/** `name$v`, `name$d`, `name$t`: the property's string value is read as a version, a decimal or a date-time. */
export type ImpliedType = 'version' | 'decimal' | 'datetime'

export type OrderOperator = '<' | '<=' | '>' | '>='

/** `name`, `name[aspect]`, `name$v`, `name[aspect]$v` (GAP-34 `attr`). */
export interface PropertyRef {
  readonly name: string
  readonly aspect?: string
  readonly type?: ImpliedType
}

/**
 * The right-hand side of `=`. A pattern is the value split at unescaped `*`: `['Babs J', '']` is `Babs J*`, and a
 * one-element pattern is an exact value. A list (`[a,b]`) holds one pattern per item.
 */
export type EqualsValue =
  | { readonly kind: 'text'; readonly pattern: readonly string[] }
  | { readonly kind: 'list'; readonly items: readonly (readonly string[])[] }

/** Immutable: the constructors freeze what they make, and compiled forms are cached by node identity. */
export type ConstraintAst =
  | { readonly kind: 'and'; readonly children: readonly ConstraintAst[] }
  | { readonly kind: 'or'; readonly children: readonly ConstraintAst[] }
  | { readonly kind: 'not'; readonly child: ConstraintAst }
  | { readonly kind: 'present'; readonly ref: PropertyRef }
  | { readonly kind: 'equals'; readonly ref: PropertyRef; readonly value: EqualsValue }
  | { readonly kind: 'order'; readonly ref: PropertyRef; readonly operator: OrderOperator; readonly value: string }

export function andNode(children: readonly ConstraintAst[]): ConstraintAst {
  return Object.freeze({ kind: 'and', children: Object.freeze([...children]) })
}

export function orNode(children: readonly ConstraintAst[]): ConstraintAst {
  return Object.freeze({ kind: 'or', children: Object.freeze([...children]) })
}

export function notNode(child: ConstraintAst): ConstraintAst {
  return Object.freeze({ kind: 'not', child })
}

export function presentNode(ref: PropertyRef): ConstraintAst {
  return Object.freeze({ kind: 'present', ref: Object.freeze(ref) })
}

export function equalsNode(ref: PropertyRef, value: EqualsValue): ConstraintAst {
  const normalised: EqualsValue = value.kind === 'text'
    ? Object.freeze({ kind: 'text', pattern: normalisePattern(value.pattern) })
    : Object.freeze({ kind: 'list', items: Object.freeze(value.items.map(normalisePattern)) })
  return Object.freeze({ kind: 'equals', ref: Object.freeze(ref), value: normalised })
}

export function orderNode(ref: PropertyRef, operator: OrderOperator, value: string): ConstraintAst {
  return Object.freeze({ kind: 'order', ref: Object.freeze(ref), operator, value })
}

/** Omits absent fields (rather than setting them to undefined) so that deep equality compares meaning only. */
export function propertyRef(name: string, aspect?: string, type?: ImpliedType): PropertyRef {
  const ref: { name: string; aspect?: string; type?: ImpliedType } = { name }
  if (aspect !== undefined) ref.aspect = aspect
  if (type !== undefined) ref.type = type
  return Object.freeze(ref)
}

/** `a**b` matches what `a*b` matches: keep the first and last segments, drop empty ones between. */
function normalisePattern(pattern: readonly string[]): readonly string[] {
  if (pattern.length <= 2) return Object.freeze([...pattern])
  const middle = pattern.slice(1, -1).filter((segment) => segment !== '')
  return Object.freeze([pattern[0]!, ...middle, pattern[pattern.length - 1]!])
}

export const impliedTypeSuffix: Record<ImpliedType, string> = { version: 'v', decimal: 'd', datetime: 't' }

export function tooDeepError(offset?: number): HearthError {
  return new HearthError(
    'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID',
    `constraints are nested deeper than ${MAX_CONSTRAINTS_DEPTH} levels${offset === undefined ? '' : ` (at offset ${offset})`}`,
    {
      hint: 'flatten the filter: (&(a=1)(&(b=2)(c=3))) is (&(a=1)(b=2)(c=3))',
      details: { limit: MAX_CONSTRAINTS_DEPTH, ...(offset === undefined ? {} : { offset }) },
    },
  )
}

/**
 * Checks a hand-made or built AST: known kinds, well-typed fields, depth at most MAX_CONSTRAINTS_DEPTH (which also
 * stops a cyclic object). Parsed ASTs pass by construction; this guards everything else before it is compiled.
 */
export function validateAst(ast: ConstraintAst): void {
  const stack: Array<{ node: unknown; depth: number }> = [{ node: ast, depth: 1 }]
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!
    if (depth > MAX_CONSTRAINTS_DEPTH) throw tooDeepError()
    if (typeof node !== 'object' || node === null) throw invalidAst('a node is not an object')
    const n = node as Record<string, unknown>
    switch (n.kind) {
      case 'and':
      case 'or':
        if (!Array.isArray(n.children)) throw invalidAst(`an ${String(n.kind)} node has no children array`)
        for (const child of n.children as unknown[]) stack.push({ node: child, depth: depth + 1 })
        break
      case 'not':
        stack.push({ node: n.child, depth: depth + 1 })
        break
      case 'present':
        checkRef(n.ref)
        break
      case 'equals': {
        checkRef(n.ref)
        const value = n.value as EqualsValue | undefined
        const patterns = value?.kind === 'text' ? [value.pattern] : value?.kind === 'list' ? value.items : undefined
        if (!Array.isArray(patterns) || !patterns.every(isPattern)) throw invalidAst('an equals node has a malformed value')
        break
      }
      case 'order':
        checkRef(n.ref)
        if (n.operator !== '<' && n.operator !== '<=' && n.operator !== '>' && n.operator !== '>=') {
          throw invalidAst(`unknown operator ${JSON.stringify(n.operator)}`)
        }
        if (typeof n.value !== 'string') throw invalidAst('an order node has a non-string value')
        break
      default:
        throw invalidAst(`unknown node kind ${JSON.stringify(n.kind)}`)
    }
  }
}

function isPattern(pattern: unknown): boolean {
  return Array.isArray(pattern) && pattern.length >= 1 && pattern.every((segment) => typeof segment === 'string')
}

function checkRef(ref: unknown): void {
  const r = ref as PropertyRef | undefined
  if (typeof r?.name !== 'string' || r.name === '') throw invalidAst('a property reference has no name')
  if (r.aspect !== undefined && typeof r.aspect !== 'string') throw invalidAst('a property aspect is not a string')
  if (r.type !== undefined && !Object.hasOwn(impliedTypeSuffix, r.type)) throw invalidAst(`unknown implied type ${JSON.stringify(r.type)}`)
}

function invalidAst(what: string): HearthError {
  return new HearthError('HEARTH_ERR_MARKET_CONSTRAINTS_INVALID', `malformed constraint AST: ${what}`, {
    hint: 'build constraints with parseConstraints() or the `c` builder',
  })
}
