/**
 * market/constraints/ owns Golem's constraint language for Hearth's market: properties (properties.ts), the filter
 * grammar (parser.ts) into an AST (ast.ts) and back (format.ts), the meaning of one comparison (compare.ts), the
 * evaluator here, two-sided matching (match.ts) and a typed builder (builder.ts).
 *
 * This file compiles an AST once into a tree of closures (each leaf holds its value already parsed every way it may
 * be read, and a fast path for the common string and number cases) and evaluates it three-valued, with Kleene logic:
 * `&` is false if any child is false, else undefined if any is undefined, else true; `|` dually; `!` keeps undefined.
 * interpret.ts walks the AST instead, as a reference and a baseline for the benchmark.
 */
import { HearthError } from '../../errors.ts'
import { validateAst } from './ast.ts'
import type { ConstraintAst, ImpliedType, PropertyRef } from './ast.ts'
import { compareValue, isPropertyValue, prepareLiteral } from './compare.ts'
import type { ConstraintResult, Operator, PreparedLiteral } from './compare.ts'
import { parseConstraints } from './parser.ts'
import type { Properties, PropertyTypes } from './properties.ts'
import { compareStrings, matchesPattern } from './typed-values.ts'

export type { ConstraintResult } from './compare.ts'

export interface EvaluateOptions {
  /** Declared types of the properties being tested (see PropertyTypes). */
  types?: PropertyTypes
}

export interface CompiledConstraints {
  readonly ast: ConstraintAst
  /** Evaluates against one side's flattened properties; compile once, call per offer. */
  evaluate(properties: Properties, types?: PropertyTypes): ConstraintResult
}

export type ConstraintsInput = string | ConstraintAst | CompiledConstraints

type Evaluator = (properties: Properties, types: PropertyTypes | undefined) => ConstraintResult

class Compiled implements CompiledConstraints {
  readonly evaluate: (properties: Properties, types?: PropertyTypes) => ConstraintResult
  constructor(readonly ast: ConstraintAst) {
    validateAst(ast)
    const root = compileNode(ast)
    this.evaluate = (properties, types) => {
      if (typeof properties !== 'object' || properties === null) throw notProperties(properties)
      return root(properties, types)
    }
  }
}

// Recently used filter texts, so that evaluateConstraints(text, …) in a loop parses once.
const TEXT_CACHE_LIMIT = 256
const byText = new Map<string, Compiled>()
const byAst = new WeakMap<ConstraintAst, Compiled>()

/**
 * Compiles once; the same text (among the last 256) or the same AST object gives back the same compiled form. An AST
 * is cached by identity, so treat it as immutable (parsed and built ASTs are frozen).
 */
export function compileConstraints(input: ConstraintsInput): CompiledConstraints {
  if (input instanceof Compiled) return input
  if (typeof input === 'string') {
    const hit = byText.get(input)
    if (hit !== undefined) {
      byText.delete(input)
      byText.set(input, hit)
      return hit
    }
    const compiled = new Compiled(parseConstraints(input))
    if (byText.size >= TEXT_CACHE_LIMIT) byText.delete(byText.keys().next().value!)
    byText.set(input, compiled)
    return compiled
  }
  if (typeof input !== 'object' || input === null) {
    throw new HearthError('HEARTH_ERR_MARKET_CONSTRAINTS_INVALID', `constraints must be filter text, an AST or compiled constraints, not ${input === null ? 'null' : typeof input}`)
  }
  const ast = input as ConstraintAst
  let compiled = byAst.get(ast)
  if (compiled === undefined) {
    compiled = new Compiled(ast)
    byAst.set(ast, compiled)
  }
  return compiled
}

/** true, false, or undefined (some property the constraints need is absent, and nothing made them false). */
export function evaluateConstraints(constraints: ConstraintsInput, properties: Properties, options: EvaluateOptions = {}): ConstraintResult {
  return compileConstraints(constraints).evaluate(properties, options.types)
}

function notProperties(value: unknown): HearthError {
  return new HearthError('HEARTH_ERR_MARKET_PROPERTIES_INVALID', `properties must be an object, not ${value === null ? 'null' : typeof value}`, {
    hint: 'pass flattened properties; flattenProperties() turns nested JSON into them',
  })
}

// ---- compilation ----

function compileNode(node: ConstraintAst): Evaluator {
  switch (node.kind) {
    case 'and':
      return compileAnd(node.children.map(compileNode))
    case 'or':
      return compileOneOf(node.children) ?? compileOr(node.children.map(compileNode))
    case 'not': {
      const child = compileNode(node.child)
      return (p, t) => {
        const r = child(p, t)
        return r === undefined ? undefined : !r
      }
    }
    case 'present':
      return compilePresent(node.ref)
    case 'equals':
      return compileComparison(node.ref, '=', prepareLiteral(node.value).readAll())
    case 'order':
      return compileComparison(node.ref, node.operator, prepareLiteral(node.value).readAll())
  }
}

function compileAnd(children: Evaluator[]): Evaluator {
  if (children.length === 0) return () => true
  if (children.length === 1) return children[0]!
  if (children.length === 2) {
    const [a, b] = children as [Evaluator, Evaluator]
    return (p, t) => {
      const x = a(p, t)
      if (x === false) return false
      const y = b(p, t)
      if (y === false) return false
      return x === undefined || y === undefined ? undefined : true
    }
  }
  const n = children.length
  return (p, t) => {
    let result: ConstraintResult = true
    for (let i = 0; i < n; i++) {
      const r = children[i]!(p, t)
      if (r === false) return false
      if (r === undefined) result = undefined
    }
    return result
  }
}

function compileOr(children: Evaluator[]): Evaluator {
  if (children.length === 0) return () => false
  if (children.length === 1) return children[0]!
  const n = children.length
  return (p, t) => {
    let result: ConstraintResult = false
    for (let i = 0; i < n; i++) {
      const r = children[i]!(p, t)
      if (r === true) return true
      if (r === undefined) result = undefined
    }
    return result
  }
}

// Names that a plain object inherits: for these the lookup must ask for an own property.
const inheritedNames = new Set(Object.getOwnPropertyNames(Object.prototype))

/** The property's value, or undefined when absent; one shape so each leaf's lookup stays simple. */
function lookup(name: string): (p: Properties) => unknown {
  if (inheritedNames.has(name)) return (p) => (Object.hasOwn(p, name) ? p[name] : undefined)
  return (p) => p[name]
}

function declaredType(types: PropertyTypes, name: string): ImpliedType | undefined {
  const type = Object.hasOwn(types, name) ? types[name] : undefined
  return type === 'version' || type === 'decimal' || type === 'datetime' ? type : undefined
}

function compilePresent(ref: PropertyRef): Evaluator {
  if (ref.aspect !== undefined) return () => false
  const name = ref.name
  if (inheritedNames.has(name)) return (p) => Object.hasOwn(p, name) && isPropertyValue(p[name])
  return (p) => {
    const v = p[name]
    return v !== undefined && v !== null && isPropertyValue(v)
  }
}

/**
 * `(|(cc=DE)(cc=PL)(cc=US))`, the usual way to say "one of": one lookup and a Set when the property is a string;
 * otherwise (a list, a declared type, absent) the children answer one by one as usual.
 */
function compileOneOf(children: readonly ConstraintAst[]): Evaluator | undefined {
  if (children.length < 3) return undefined
  const first = children[0]!
  if (first.kind !== 'equals' || first.ref.aspect !== undefined || first.ref.type !== undefined || inheritedNames.has(first.ref.name)) return undefined
  const name = first.ref.name
  const texts = new Set<string>()
  for (const child of children) {
    if (child.kind !== 'equals' || child.ref.name !== name || child.ref.aspect !== undefined || child.ref.type !== undefined) return undefined
    if (child.value.kind !== 'text' || child.value.pattern.length !== 1) return undefined
    texts.add(child.value.pattern[0]!)
  }
  const general = compileOr(children.map(compileNode))
  return (p, t) => {
    const v = p[name]
    if (typeof v === 'string' && t === undefined) return texts.has(v)
    return general(p, t)
  }
}

const MEMO_LIMIT = 1024

function compileComparison(ref: PropertyRef, operator: Operator, literal: PreparedLiteral): Evaluator {
  if (ref.aspect !== undefined) return () => undefined
  const name = ref.name
  const impliedType = ref.type
  if (inheritedNames.has(name)) {
    const get = lookup(name)
    return (p, t) => {
      const v = get(p)
      if (v === undefined || v === null) return undefined
      return compareValue(operator, literal, v, impliedType ?? (t === undefined ? undefined : declaredType(t, name)))
    }
  }
  if (impliedType !== undefined) {
    // `$v`, `$t`, `$d` on a string: offers repeat a few versions and dates, so this leaf remembers its answers.
    const memo = new Map<string, ConstraintResult>()
    return (p) => {
      const v = p[name]
      if (typeof v === 'string') {
        let r = memo.get(v)
        if (r === undefined && !memo.has(v)) {
          if (memo.size >= MEMO_LIMIT) memo.clear()
          r = compareValue(operator, literal, v, impliedType)
          memo.set(v, r)
        }
        return r
      }
      return v === undefined || v === null ? undefined : compareValue(operator, literal, v, impliedType)
    }
  }
  // Fast paths for the clauses most demands are made of, taken when no declared types are in play; anything else
  // goes through compareValue, which defines the meaning.
  const general = (v: unknown, t: PropertyTypes | undefined): ConstraintResult =>
    v === undefined || v === null ? undefined : compareValue(operator, literal, v, t === undefined ? undefined : declaredType(t, name))
  if (operator === '=' && literal.list === undefined) {
    if (!literal.hasWildcard) {
      const exact = literal.text
      return (p, t) => {
        const v = p[name]
        if (t === undefined) {
          if (typeof v === 'string') return v === exact
          // Membership: most lists hold strings, so try identity before the per-element rules.
          if (Array.isArray(v) && v.includes(exact)) return true
        }
        return general(v, t)
      }
    }
    const pattern = literal.pattern
    return (p, t) => {
      const v = p[name]
      if (typeof v === 'string' && t === undefined) return matchesPattern(pattern, v)
      return general(v, t)
    }
  }
  if (operator !== '=') {
    const bound = literal.number
    const text = literal.text
    switch (operator) {
      case '<':
        return (p, t) => {
          const v = p[name]
          if (t === undefined && typeof v === 'number') return v < bound
          return typeof v === 'string' && t === undefined ? compareStrings(v, text) < 0 : general(v, t)
        }
      case '<=':
        return (p, t) => {
          const v = p[name]
          if (t === undefined && typeof v === 'number') return v <= bound
          return typeof v === 'string' && t === undefined ? compareStrings(v, text) <= 0 : general(v, t)
        }
      case '>':
        return (p, t) => {
          const v = p[name]
          if (t === undefined && typeof v === 'number') return v > bound
          return typeof v === 'string' && t === undefined ? compareStrings(v, text) > 0 : general(v, t)
        }
      case '>=':
        return (p, t) => {
          const v = p[name]
          if (t === undefined && typeof v === 'number') return v >= bound
          return typeof v === 'string' && t === undefined ? compareStrings(v, text) >= 0 : general(v, t)
        }
    }
  }
  return (p, t) => general(p[name], t)
}
