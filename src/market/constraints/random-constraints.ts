/**
 * Deterministic random ASTs and property sets over a small vocabulary, for the property tests that compare the
 * compiled evaluator with the interpreter and check that formatting round-trips. Small vocabularies make the
 * random filters actually hit the random properties, and the awkward values (escapes, wildcards, brackets,
 * whitespace, names that shadow Object.prototype) are over-represented on purpose.
 */
import { andNode, equalsNode, notNode, orderNode, orNode, presentNode, propertyRef } from './ast.ts'
import type { ConstraintAst, ImpliedType, OrderOperator, PropertyRef } from './ast.ts'
import type { PropertyScalar, PropertyTypes, PropertyValue } from './properties.ts'

export type Random = (n: number) => number

/** A linear congruential generator: `rand(n)` is an integer in [0, n). */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0
  return (n) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return Math.floor((state / 4294967296) * n)
  }
}

const names = ['a', 'b', 'golem.inf.mem.gib', 'golem.runtime.capabilities', 'ver', 'when', 'constructor', 'x y']
const texts = ['', 'a', 'b', 'vpn', 'inet', '4', '4.0', '8', '-1', 'true', 'false', '1.2.0', '1.10.0', '2.0.0-rc.1',
  '2024-01-01T00:00:00Z', '2024-06-01T12:00:00+02:00', '(x)', 'a*b', '\\', '[a,b]', ' sp ', 'a,b', 'č', '\u{1f600}', '*']
const operators: readonly OrderOperator[] = ['<', '<=', '>', '>=']
const types: readonly (ImpliedType | undefined)[] = [undefined, undefined, undefined, 'version', 'decimal', 'datetime']

const pick = <T>(rand: Random, items: readonly T[]): T => items[rand(items.length)]!

function randomRef(rand: Random): PropertyRef {
  // `x y` cannot be written in a filter (whitespace), so it appears only in properties.
  const name = pick(rand, names.filter((n) => n !== 'x y'))
  return propertyRef(name, rand(20) === 0 ? 'asp' : undefined, pick(rand, types))
}

function randomPattern(rand: Random): string[] {
  const pattern = [pick(rand, texts)]
  for (let i = rand(4) === 0 ? rand(3) + 1 : 0; i > 0; i--) pattern.push(pick(rand, texts))
  return pattern
}

export function randomAst(rand: Random, depth = 4): ConstraintAst {
  const leaf = depth <= 1 || rand(3) === 0
  if (!leaf) {
    const kind = rand(3)
    if (kind === 2) return notNode(randomAst(rand, depth - 1))
    const children = Array.from({ length: rand(4) }, () => randomAst(rand, depth - 1))
    return kind === 0 ? andNode(children) : orNode(children)
  }
  switch (rand(4)) {
    case 0:
      return presentNode(randomRef(rand))
    case 1: {
      const items = Array.from({ length: rand(4) }, () => randomPattern(rand))
      // A list of one empty string has no spelling in the language (see format.ts).
      if (items.length === 1 && items[0]!.length === 1 && items[0]![0] === '') items.push(['a'])
      return equalsNode(randomRef(rand), { kind: 'list', items })
    }
    case 2:
      return equalsNode(randomRef(rand), { kind: 'text', pattern: randomPattern(rand) })
    default:
      return orderNode(randomRef(rand), pick(rand, operators), pick(rand, texts))
  }
}

function randomScalar(rand: Random): PropertyScalar {
  switch (rand(4)) {
    case 0: return pick(rand, [0, 4, 8, -1, 0.5, 1.2, 1e21])
    case 1: return rand(2) === 0
    default: return pick(rand, texts)
  }
}

export function randomProperties(rand: Random): Record<string, PropertyValue> {
  const properties: Record<string, PropertyValue> = Object.create(null)
  for (const name of names) {
    if (rand(4) === 0) continue
    properties[name] = rand(3) === 0 ? Array.from({ length: rand(4) }, () => randomScalar(rand)) : randomScalar(rand)
  }
  return properties
}

export function randomTypes(rand: Random): PropertyTypes | undefined {
  if (rand(2) === 0) return undefined
  const declared: Record<string, ImpliedType> = {}
  for (const name of names) {
    const type = pick(rand, types)
    if (type !== undefined && rand(2) === 0) declared[name] = type
  }
  return declared
}
