/**
 * The reference evaluator: walks the AST and reads each filter value afresh at every comparison. Slow on purpose,
 * simple on purpose: tests check the compiled evaluator against it, and the benchmark reports the speed-up over it.
 */
import { MAX_CONSTRAINTS_DEPTH, tooDeepError } from './ast.ts'
import type { ConstraintAst, ImpliedType } from './ast.ts'
import { compareValue, isPropertyValue, prepareLiteral } from './compare.ts'
import type { ConstraintResult } from './compare.ts'
import type { Properties, PropertyTypes } from './properties.ts'

export function interpretConstraints(ast: ConstraintAst, properties: Properties, types?: PropertyTypes): ConstraintResult {
  return walk(ast, properties, types, 1)
}

function walk(node: ConstraintAst, p: Properties, types: PropertyTypes | undefined, depth: number): ConstraintResult {
  if (depth > MAX_CONSTRAINTS_DEPTH) throw tooDeepError()
  switch (node.kind) {
    case 'and': {
      let result: ConstraintResult = true
      for (const child of node.children) {
        const r = walk(child, p, types, depth + 1)
        if (r === false) return false
        if (r === undefined) result = undefined
      }
      return result
    }
    case 'or': {
      let result: ConstraintResult = false
      for (const child of node.children) {
        const r = walk(child, p, types, depth + 1)
        if (r === true) return true
        if (r === undefined) result = undefined
      }
      return result
    }
    case 'not': {
      const r = walk(node.child, p, types, depth + 1)
      return r === undefined ? undefined : !r
    }
    case 'present':
      return node.ref.aspect === undefined && Object.hasOwn(p, node.ref.name) && isPropertyValue(p[node.ref.name])
    case 'equals':
    case 'order': {
      const { name, aspect, type } = node.ref
      if (aspect !== undefined || !Object.hasOwn(p, name)) return undefined
      const value = p[name]
      if (value === undefined || value === null) return undefined
      const declared: unknown = type ?? (types !== undefined && Object.hasOwn(types, name) ? types[name] : undefined)
      const effective = declared === 'version' || declared === 'decimal' || declared === 'datetime' ? (declared as ImpliedType) : undefined
      return node.kind === 'equals'
        ? compareValue('=', prepareLiteral(node.value), value, effective)
        : compareValue(node.operator, prepareLiteral(node.value), value, effective)
    }
  }
}
