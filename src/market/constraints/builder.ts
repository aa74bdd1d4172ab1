/**
 * A typed builder, so that TypeScript code never concatenates filter strings (golem-js's habit, which STYLE.md asks
 * us to avoid): `c.and(c.gte('golem.inf.mem.gib', 4), c.eq('golem.runtime.name', 'wasi'))`.
 *
 * Each call returns an ordinary ConstraintAst (accepted wherever constraints are), whose `toString()` is the filter
 * text with every value escaped; parsing that text gives back an equal AST. Property names are checked as they are
 * given, and may carry an implied type: `c.gte('golem.runtime.version$v', '1.2.0')`.
 */
import { HearthError } from '../../errors.ts'
import {
  andNode, equalsNode, MAX_CONSTRAINTS_DEPTH, notNode, orderNode, orNode, presentNode, tooDeepError, validateAst,
} from './ast.ts'
import type { ConstraintAst, OrderOperator, PropertyRef } from './ast.ts'
import { formatConstraints, formatRef } from './format.ts'
import { parseConstraints, parsePropertyRef } from './parser.ts'
import type { PropertyScalar } from './properties.ts'

/**
 * Golem's standard names (golem-architecture/standards) and Hearth's, with their value types: the builder refuses
 * `c.gte('golem.inf.mem.gib', 'four')` at compile time. Other names take any value.
 */
export interface KnownProperties {
  'golem.inf.cpu.architecture': string
  'golem.inf.cpu.brand': string
  'golem.inf.cpu.capabilities': readonly string[]
  'golem.inf.cpu.cores': number
  'golem.inf.cpu.threads': number
  'golem.inf.cpu.vendor': string
  'golem.inf.mem.gib': number
  'golem.inf.storage.gib': number
  'golem.runtime.name': string
  'golem.runtime.version': string
  'golem.runtime.capabilities': readonly string[]
  'golem.node.id.name': string
  'golem.node.debug.subnet': string
  'golem.node.geo.country_code': string
  'golem.com.pricing.model': string
  'golem.com.pricing.model.linear.coeffs': readonly number[]
  'golem.com.scheme': string
  'golem.com.usage.vector': readonly string[]
  'golem.srv.comp.expiration': number
  'hearth.geo.lat': number
  'hearth.geo.lon': number
  'hearth.inf.cpu.score': number
  'hearth.inf.gpu.count': number
  'hearth.inf.gpu.model': readonly string[]
  'hearth.inf.gpu.mem.gib': number
}

type Known<K extends string> = K extends keyof KnownProperties ? KnownProperties[K] : undefined

/** `=` takes a scalar of the property's type (membership, for a list) or a whole list (list equality). */
export type EqualsOperand<K extends string> = Known<K> extends undefined
  ? PropertyScalar | readonly PropertyScalar[]
  : Known<K> extends readonly (infer E)[] ? E | readonly E[] : Known<K>

/** `<`, `<=`, `>`, `>=` take a number or a string (a Date is written as RFC 3339, for `$t` names); never a list. */
export type OrderOperand<K extends string> = Known<K> extends undefined
  ? string | number | Date
  : Known<K> extends readonly unknown[] ? never : Known<K>

function built(node: ConstraintAst, depth: number): ConstraintAst {
  if (depth > MAX_CONSTRAINTS_DEPTH) throw tooDeepError()
  // A copy that also answers toString() (not enumerable, so it stays out of deep equality and JSON).
  const copy = { ...node }
  Object.defineProperty(copy, 'toString', { value: () => formatConstraints(copy as ConstraintAst), enumerable: false })
  const frozen = Object.freeze(copy) as ConstraintAst
  depths.set(frozen, depth)
  return frozen
}

const depths = new WeakMap<ConstraintAst, number>()

function depthOf(node: ConstraintAst): number {
  const known = depths.get(node)
  if (known !== undefined) return known
  validateAst(node)
  let deepest = 0
  const stack: Array<[ConstraintAst, number]> = [[node, 1]]
  while (stack.length > 0) {
    const [n, d] = stack.pop()!
    deepest = Math.max(deepest, d)
    if (n.kind === 'and' || n.kind === 'or') for (const child of n.children) stack.push([child, d + 1])
    else if (n.kind === 'not') stack.push([n.child, d + 1])
  }
  return deepest
}

function deepestOf(parts: readonly ConstraintAst[]): number {
  let deepest = 0
  for (const part of parts) deepest = Math.max(deepest, depthOf(part))
  return deepest
}

function ref(name: string): PropertyRef {
  const parsed = parsePropertyRef(name)
  formatRef(parsed) // refuses names the filter text cannot carry (e.g. starting with & | !)
  return parsed
}

function scalarText(value: unknown, name: string): string {
  switch (typeof value) {
    case 'string':
      return value
    case 'boolean':
      return String(value)
    case 'number':
      if (!Number.isFinite(value)) throw badValue(name, `${value} is not a finite number`)
      // String(-0) is "0"; String(1e21) is "1e+21", which the filter reads back as the same number.
      return String(value)
    default:
      if (value instanceof Date) {
        if (Number.isNaN(value.getTime())) throw badValue(name, 'the Date is invalid')
        return value.toISOString()
      }
      throw badValue(name, `a ${value === null ? 'null' : typeof value} cannot be compared`)
  }
}

function badValue(name: string, why: string): HearthError {
  return new HearthError('HEARTH_ERR_MARKET_CONSTRAINTS_INVALID', `cannot build a constraint on ${name}: ${why}`, {
    hint: 'compare with strings, finite numbers, booleans, Dates, or (for =) lists of them',
  })
}

function order<K extends string>(operator: OrderOperator, name: K, value: OrderOperand<K>): ConstraintAst {
  if (Array.isArray(value)) throw badValue(name, `${operator} cannot compare a list`)
  return built(orderNode(ref(name), operator, scalarText(value, name)), 1)
}

function eq<K extends string>(name: K, value: EqualsOperand<K>): ConstraintAst {
  const r = ref(name)
  if (Array.isArray(value)) {
    const items = (value as readonly unknown[]).map((item) => [scalarText(item, name)])
    if (items.length === 1 && items[0]![0] === '') throw badValue(name, 'a list holding one empty string cannot be written ([] is the empty list)')
    return built(equalsNode(r, { kind: 'list', items }), 1)
  }
  return built(equalsNode(r, { kind: 'text', pattern: [scalarText(value, name)] }), 1)
}

export const c = {
  /** True when every part is true; `c.and()` is true. */
  and(...parts: ConstraintAst[]): ConstraintAst {
    return built(andNode(parts), 1 + deepestOf(parts))
  },
  /** True when any part is true; `c.or()` is false. */
  or(...parts: ConstraintAst[]): ConstraintAst {
    return built(orNode(parts), 1 + deepestOf(parts))
  },
  not(part: ConstraintAst): ConstraintAst {
    return built(notNode(part), 1 + depthOf(part))
  },
  /** The property is there, whatever its value: `(name=*)`. */
  present(name: string): ConstraintAst {
    return built(presentNode(ref(name)), 1)
  },
  /** Exact equality (a `*` in the value is a literal star); a list value asks for list equality. */
  eq,
  /** Not equal: `(!(name=value))`, undefined when the property is absent. */
  ne<K extends string>(name: K, value: EqualsOperand<K>): ConstraintAst {
    return c.not(eq(name, value))
  },
  /** Wildcard equality: each `*` in `pattern` matches any run of characters; everything else is literal. */
  like(name: string, pattern: string): ConstraintAst {
    if (typeof pattern !== 'string') throw badValue(name, 'a wildcard pattern must be a string')
    return built(equalsNode(ref(name), { kind: 'text', pattern: pattern.split('*') }), 1)
  },
  lt<K extends string>(name: K, value: OrderOperand<K>): ConstraintAst {
    return order('<', name, value)
  },
  lte<K extends string>(name: K, value: OrderOperand<K>): ConstraintAst {
    return order('<=', name, value)
  },
  gt<K extends string>(name: K, value: OrderOperand<K>): ConstraintAst {
    return order('>', name, value)
  },
  gte<K extends string>(name: K, value: OrderOperand<K>): ConstraintAst {
    return order('>=', name, value)
  },
  /** Adopts filter text (parsed now) or an AST, to combine with built parts. */
  from(constraints: string | ConstraintAst): ConstraintAst {
    const ast = typeof constraints === 'string' ? parseConstraints(constraints) : constraints
    return built(ast, depthOf(ast))
  },
}
