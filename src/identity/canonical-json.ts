/**
 * Canonical JSON (RFC 8785, JCS): one byte string per JSON value, so that two nodes hashing "the same" object
 * agree on the hash whatever key order or number spelling their objects had.
 */
import { createHash } from 'node:crypto'
import type { Hex } from 'viem'
import { HearthError } from '../errors.ts'

/**
 * Serialises a JSON value canonically: object keys sorted by UTF-16 code units, no whitespace, numbers in
 * ECMAScript shortest form (so 1.0 -> 1, -0 -> 0, 1e21 -> 1e+21), strings escaped as JSON.stringify does.
 *
 * Object members whose value is `undefined` are omitted, as JSON.stringify omits them, so that a value hashes the
 * same before and after a trip over the wire. Anything else that JSON cannot carry (bigint, NaN, Infinity,
 * functions, symbols, `undefined` as a value, Dates, Maps, class instances, lone surrogates) throws.
 */
export function canonicalize(value: unknown): string {
  return serialize(value, [], new Set())
}

/**
 * SHA-256 of the UTF-8 bytes of `canonicalize(value)`, as 0x-hex (32 bytes, so it fits a bytes32 on chain).
 * SHA-256 rather than keccak256: node:crypto's native SHA-256 is ~50x faster than a JavaScript keccak, and signed
 * task results carry whole output files. Signatures still use Ethereum's secp256k1/EIP-191 over this digest.
 */
export function hashCanonical(value: unknown): Hex {
  return `0x${createHash('sha256').update(canonicalize(value), 'utf8').digest('hex')}`
}

/**
 * Where a value sits, as keys and indices from the root: written out (`$.tasks[0].args`) only in an error, since
 * building it for every value cost more than the serialising.
 */
type Path = (string | number)[]

function pathText(path: Path, suffix = ''): string {
  let text = '$'
  for (const step of path) text += typeof step === 'number' ? `[${step}]` : `.${step}`
  return text + suffix
}

function serialize(value: unknown, path: Path, ancestors: Set<object>): string {
  switch (typeof value) {
    case 'string':
      return serializeString(value, path)
    case 'number':
      if (!Number.isFinite(value)) throw notJson(pathText(path), `the number ${value} has no JSON form`)
      // ES Number::toString is exactly RFC 8785's number format; it already prints -0 as "0".
      return String(value)
    case 'boolean':
      return value ? 'true' : 'false'
    case 'bigint':
      throw notJson(pathText(path), 'a bigint has no canonical JSON form', 'encode bigints as decimal strings (e.g. priceWei: 10n.toString())')
    case 'undefined':
      throw notJson(pathText(path), 'undefined has no JSON form', 'omit the value or use null')
    case 'function':
    case 'symbol':
      throw notJson(pathText(path), `a ${typeof value} has no JSON form`)
    case 'object':
      break
  }
  if (value === null) return 'null'
  if (ancestors.has(value)) throw notJson(pathText(path), 'the value contains a reference cycle')
  ancestors.add(value)
  try {
    if (Array.isArray(value)) {
      let text = '['
      for (let index = 0; index < value.length; index++) {
        path.push(index)
        text += (index === 0 ? '' : ',') + serialize(value[index], path, ancestors)
        path.pop()
      }
      return text + ']'
    }
    const proto = Object.getPrototypeOf(value) as unknown
    if (proto !== Object.prototype && proto !== null) {
      const kind = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object'
      throw notJson(pathText(path), `a ${kind} is not a plain JSON object`, 'convert it first (dates to ISO strings, bytes to hex)')
    }
    const record = value as Record<string, unknown>
    let text = '{'
    let first = true
    // Default sort compares UTF-16 code units, which is what RFC 8785 asks for.
    for (const key of Object.keys(record).sort()) {
      const member = record[key]
      if (member === undefined) continue
      const name = serializeString(key, path, ' key')
      path.push(key)
      text += `${first ? '' : ','}${name}:${serialize(member, path, ancestors)}`
      path.pop()
      first = false
    }
    return text + '}'
  } finally {
    ancestors.delete(value)
  }
}

function serializeString(value: string, path: Path, suffix = ''): string {
  // RFC 8785 requires well-formed Unicode; JSON.stringify would emit an escaped lone surrogate instead.
  if (!value.isWellFormed()) throw notJson(pathText(path, suffix), 'the string contains a lone UTF-16 surrogate')
  return JSON.stringify(value)
}

function notJson(path: string, what: string, hint?: string): HearthError {
  return new HearthError('HEARTH_ERR_INTERNAL', `Cannot canonicalize ${path}: ${what}`, {
    ...(hint === undefined ? {} : { hint }),
    details: { path },
  })
}
