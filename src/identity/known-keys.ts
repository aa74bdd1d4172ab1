/**
 * Public keys of the peers this node talks to, for checking their signatures without recovering the key.
 *
 * A secp256k1 PeerId is its public key, so every connection tells this node the key behind its remote peer's address
 * (node-identity.ts remembers it here). A signature that must be by that address is then checked against the key:
 * R' = (e/s)·G + (r/s)·Q must be the point that the signature's r and v name. That holds exactly when recovering the
 * key from the signature gives Q, so the check accepts and refuses what recovery followed by an address comparison
 * would; it only costs less. With a key met often, a table of its multiples makes it cheaper still (about a quarter of
 * a recovery): the tables are kept for a few keys only, the most recently used. Everything here is public (keys,
 * signatures, digests), so the table walks take variable time: only additions for the digits that are not zero.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js'

type CurvePoint = ReturnType<typeof secp256k1.Point.fromBytes>

/** Multiples of a point for a fixed-window walk: entry w·half + j - 1 is j·2^(w·bits)·P, for j from 1 to half. */
interface Table {
  bits: number
  windows: number
  entries: CurvePoint[]
}

interface KnownKey {
  /** The key as its PeerId carries it (compressed). */
  raw: Uint8Array
  /** Decoded at the first check. */
  point: CurvePoint | undefined
  checks: number
  table: Table | undefined
}

/** Keys remembered, by lower-case address, most recently used last. */
const known = new Map<string, KnownKey>()
const maxKnownKeys = 256
/** Keys with a table of multiples (~270 KB each at window 6). */
const maxTabledKeys = 32
const tableWindow = 6
/** The generator's table: window 8 (~1 MB), built at the first check that needs it. */
const generatorWindow = 8
let generatorTable: Table | undefined
/** A table costs about two checks: it is built for a key at its second check. */
const tableAfterChecks = 2
let tabledKeys = 0

const { Fn } = secp256k1.Point
const curveOrder = secp256k1.Point.CURVE().n

/** Remembers that `address` is the address of `publicKey` (the caller derived it from that key). */
export function rememberPublicKey(address: string, publicKey: Uint8Array): void {
  const id = address.toLowerCase()
  const entry = known.get(id)
  if (entry !== undefined) {
    known.delete(id)
    known.set(id, entry)
    return
  }
  known.set(id, { raw: publicKey, point: undefined, checks: 0, table: undefined })
  while (known.size > maxKnownKeys) forget(known.keys().next().value!)
}

function forget(id: string): void {
  const entry = known.get(id)
  if (entry?.table !== undefined) tabledKeys--
  known.delete(id)
}

/** Keeps at most maxTabledKeys tables: the least recently used lose theirs (and their entry). */
function makeRoomForTable(): void {
  for (const [id, entry] of known) {
    if (tabledKeys < maxTabledKeys) return
    if (entry.table !== undefined) forget(id)
  }
}

/** The table of `point` for windows of `bits` bits, enough for scalars below the curve order. */
function tableOf(point: CurvePoint, bits: number): Table {
  const windows = Math.ceil(256 / bits) + 1
  const half = 2 ** (bits - 1)
  const entries: CurvePoint[] = []
  let base = point
  for (let w = 0; w < windows; w++) {
    let multiple = base
    for (let j = 0; j < half; j++) {
      entries.push(multiple)
      multiple = multiple.add(base)
    }
    base = entries[entries.length - 1]!.double()
  }
  return { bits, windows, entries }
}

/** scalar·P from P's table, one addition per non-zero signed digit of the scalar. */
function walk(table: Table, scalar: bigint): CurvePoint {
  const { bits, windows, entries } = table
  const half = 2 ** (bits - 1)
  const full = 2 ** bits
  const mask = BigInt(full - 1)
  const shift = BigInt(bits)
  let rest = scalar
  let sum = secp256k1.Point.ZERO
  for (let w = 0; w < windows; w++) {
    let digit = Number(rest & mask)
    rest >>= shift
    if (digit > half) {
      digit -= full
      rest += 1n
    }
    if (digit > 0) sum = sum.add(entries[w * half + digit - 1]!)
    else if (digit < 0) sum = sum.add(entries[w * half - digit - 1]!.negate())
  }
  return sum
}

function toBigInt(bytes: Uint8Array): bigint {
  return BigInt('0x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex'))
}

/**
 * Whether `signature` (65 bytes: r, s, v with v 0/1 or 27/28) over the 32-byte `digest` was made with the key of
 * `address`, decided as recovery would decide it. False when it was not, when the signature is malformed, and when
 * this node does not know the key of `address` (the caller then recovers the signer instead).
 */
export function signedByKnownKey(digest: Uint8Array, signature: Uint8Array, address: string): boolean {
  const id = address.toLowerCase()
  const entry = known.get(id)
  if (entry === undefined || signature.length !== 65 || digest.length !== 32) return false
  const v = signature[64]!
  const recovery = v >= 27 ? v - 27 : v
  const r = toBigInt(signature.subarray(0, 32))
  const s = toBigInt(signature.subarray(32, 64))
  if ((recovery !== 0 && recovery !== 1) || r === 0n || r >= curveOrder || s === 0n || s >= curveOrder) return false
  try {
    entry.point ??= secp256k1.Point.fromBytes(entry.raw)
  } catch {
    forget(id)
    return false
  }
  known.delete(id)
  known.set(id, entry)
  entry.checks++
  if (entry.table === undefined && entry.checks >= tableAfterChecks) {
    makeRoomForTable()
    entry.table = tableOf(entry.point, tableWindow)
    tabledKeys++
  }
  // R' = u1·G + u2·Q with u1 = e/s, u2 = r/s (e: the digest as a number mod n, as signing and recovery take it).
  const w = Fn.inv(s)
  const u1 = Fn.mul(Fn.create(toBigInt(digest)), w)
  const u2 = Fn.mul(r, w)
  let point: CurvePoint
  if (entry.table === undefined) {
    point = secp256k1.Point.BASE.mulAddUnsafe(u1, entry.point, u2)
  } else {
    generatorTable ??= tableOf(secp256k1.Point.BASE, generatorWindow)
    point = walk(generatorTable, u1).add(walk(entry.table, u2))
  }
  if (point.is0()) return false
  const { x, y } = point.toAffine()
  // The point recovery would start from has x = r (v below 2) and the parity of y that v names.
  return x === r && Number(y & 1n) === recovery
}
