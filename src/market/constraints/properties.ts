/**
 * Market properties: a JSON object flattened into dotted names with typed values, as yagna's `flatten_properties`
 * does, so that `{ golem: { inf: { mem: { gib: 4 } } } }` and `{ 'golem.inf.mem.gib': 4 }` are the same offer.
 */
import { HearthError } from '../../errors.ts'
import type { ImpliedType } from './ast.ts'

export type PropertyScalar = string | number | boolean
/** golem-js sends `string | number | boolean | string[] | number[]`; a list may mix scalars. */
export type PropertyValue = PropertyScalar | readonly PropertyScalar[]
export type Properties = Readonly<Record<string, PropertyValue>>

/**
 * Declared types: a property named here is read as if every reference to it carried the suffix (`$v`, `$d`, `$t`),
 * unless the reference has its own. JSON has no version or date type, so this is how a side says "this string is one".
 */
export type PropertyTypes = Readonly<Record<string, ImpliedType>>

export type NestedProperties = Readonly<Record<string, unknown>>

const MAX_NESTING = 64

/**
 * Flattens nested objects into dotted names; keeps strings, finite numbers, booleans and lists of them; drops `null`
 * (yagna cannot read a null property either, so it is absent). Anything else, or two spellings of one name, is refused.
 * The result has no prototype, so a property named `constructor` or `__proto__` is just a property.
 */
export function flattenProperties(nested: NestedProperties): Record<string, PropertyValue> {
  if (!isPlainObject(nested)) throw invalid('properties must be a JSON object', '')
  const flat: Record<string, PropertyValue> = Object.create(null)
  // An explicit stack, not recursion: a hostile, deeply nested object must not overflow ours. Entries are pushed in
  // reverse so that names come out in the order the object lists them.
  const stack: Array<{ name: string; value: unknown; depth: number }> = []
  const pushEntries = (prefix: string, object: Readonly<Record<string, unknown>>, depth: number): void => {
    if (depth > MAX_NESTING) throw invalid(`properties are nested deeper than ${MAX_NESTING} levels`, prefix)
    const entries = Object.entries(object)
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, value] = entries[i]!
      if (key === '' || key.startsWith('.') || key.endsWith('.') || key.includes('..')) {
        throw invalid(`property name ${JSON.stringify(key)} has an empty dotted segment`, prefix)
      }
      stack.push({ name: prefix === '' ? key : `${prefix}.${key}`, value, depth })
    }
  }
  pushEntries('', nested, 1)
  while (stack.length > 0) {
    const { name, value, depth } = stack.pop()!
    if (isPlainObject(value)) {
      pushEntries(name, value, depth + 1)
      continue
    }
    if (value === null || value === undefined) continue
    if (Object.hasOwn(flat, name)) throw invalid(`property ${name} is given twice`, name)
    flat[name] = toPropertyValue(value, name)
  }
  return flat
}

function toPropertyValue(value: unknown, name: string): PropertyValue {
  if (isScalar(value)) {
    if (typeof value === 'number' && !Number.isFinite(value)) throw invalid(`property ${name} is not a finite number`, name)
    return value
  }
  if (Array.isArray(value)) {
    for (const item of value) {
      if (!isScalar(item) || (typeof item === 'number' && !Number.isFinite(item))) {
        throw invalid(`property ${name} is a list holding something other than strings, finite numbers and booleans`, name)
      }
    }
    return [...value] as PropertyScalar[]
  }
  throw invalid(`property ${name} is ${describe(value)}, not a string, number, boolean or list of them`, name)
}

function describe(value: unknown): string {
  if (typeof value === 'object' && value !== null) return `an instance of ${value.constructor?.name ?? 'an unknown class'}`
  return `a ${typeof value}`
}

function isScalar(value: unknown): value is PropertyScalar {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
}

function isPlainObject(value: unknown): value is Readonly<Record<string, unknown>> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function invalid(message: string, name: string): HearthError {
  return new HearthError('HEARTH_ERR_MARKET_PROPERTIES_INVALID', message, {
    hint: 'properties are JSON objects whose leaves are strings, finite numbers, booleans or lists of them',
    ...(name === '' ? {} : { details: { property: name } }),
  })
}
