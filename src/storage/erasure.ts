/**
 * Reed-Solomon erasure coding of storage stripes: a stripe of data is cut into k data shards and m parity shards
 * (n = k + m), any k of which rebuild the stripe, so a file survives the loss of any m of the n peers holding its shards.
 *
 * The code is systematic: the first k shards are the data itself, zero-padded, so a reader holding all of them needs no
 * decoding at all. The arithmetic runs in @ronomon/reed-solomon, a native addon that works on Node's threadpool (Cauchy
 * bit matrices, XOR only), so coding neither blocks the event loop nor costs a GF(2^8) table lookup per byte in JS.
 * The addon wants one contiguous buffer for the data shards and one for the parity shards, shards a multiple of 8 bytes
 * long, and at most 24 data and 6 parity shards: the limits below are its own.
 *
 * Errors are plain RangeError / Error with a message saying what is wrong and what to do; callers wrap them in their
 * own error type.
 */
import { createRequire } from 'node:module'

/** How a stripe is cut: `k` data shards, any k of the n = k + m shards rebuild it, so any `m` may be lost. */
export interface ErasureParams {
  k: number
  m: number
}

/** The addon's limits: the bit-matrix context is built for at most this many data and parity shards. */
export const maxDataShards = 24
export const maxParityShards = 6
/**
 * The largest stripe accepted. The addon takes sizes as 32-bit integers; well below that, a stripe this size keeps one
 * coding call (and the buffers it holds) short, and larger data is cut into several stripes anyway.
 */
export const maxStripeBytes = 16 * 1024 * 1024
/** The addon works on 8-byte words, so every shard is a multiple of this. */
const shardAlignment = 8

/** The part of the addon's API used here (it ships no types). */
interface ReedSolomonAddon {
  create(k: number, m: number): Buffer
  encode(
    context: Buffer,
    sources: number,
    targets: number,
    buffer: Buffer,
    bufferOffset: number,
    bufferSize: number,
    parity: Buffer,
    parityOffset: number,
    paritySize: number,
    callback: (error: Error | undefined) => void,
  ): void
}

// A native addon cannot be imported as ESM; createRequire loads it as CommonJS.
const reedSolomon = createRequire(import.meta.url)('@ronomon/reed-solomon') as ReedSolomonAddon

/** One context per (k, m): building its bit matrix costs far more than a small stripe's coding, and it is read-only. */
const contexts = new Map<string, Buffer>()

function contextFor({ k, m }: ErasureParams): Buffer {
  const key = `${k}/${m}`
  let context = contexts.get(key)
  if (context === undefined) {
    context = reedSolomon.create(k, m)
    contexts.set(key, context)
  }
  return context
}

function checkParams(params: ErasureParams): void {
  const { k, m } = params
  if (!Number.isInteger(k) || k < 1 || k > maxDataShards) {
    throw new RangeError(`erasure k (data shards) is ${k}; it must be a whole number from 1 to ${maxDataShards}`)
  }
  if (!Number.isInteger(m) || m < 1 || m > maxParityShards) {
    throw new RangeError(`erasure m (parity shards) is ${m}; it must be a whole number from 1 to ${maxParityShards}`)
  }
}

/**
 * The size in bytes of every shard of a stripe holding `stripeBytes` bytes of data: the data split k ways, rounded up
 * to a multiple of 8 (the addon's word), and at least 8 so that even an empty stripe has shards to code.
 */
export function shardBytes(params: ErasureParams, stripeBytes: number): number {
  checkParams(params)
  if (!Number.isInteger(stripeBytes) || stripeBytes < 0 || stripeBytes > maxStripeBytes) {
    throw new RangeError(`stripe size is ${stripeBytes} bytes; it must be a whole number from 0 to ${maxStripeBytes}: cut larger data into several stripes`)
  }
  const perShard = Math.ceil(stripeBytes / params.k)
  return Math.max(shardAlignment, Math.ceil(perShard / shardAlignment) * shardAlignment)
}

/** Runs one coding call on the threadpool: rebuilds the `targets` shards (bit i = shard i) from the `sources` shards. */
function code(params: ErasureParams, sources: number, targets: number, data: Buffer, parity: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    reedSolomon.encode(contextFor(params), sources, targets, data, 0, data.length, parity, 0, parity.length, (error) => {
      if (error) reject(error)
      else resolve()
    })
  })
}

/** Views of `count` consecutive shards of `size` bytes in `buffer`, as plain Uint8Arrays sharing its memory. */
function views(buffer: Buffer, count: number, size: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => new Uint8Array(buffer.buffer, buffer.byteOffset + i * size, size))
}

/**
 * Cuts `data` into k data shards (zero-padded to k × shardBytes) and computes m parity shards. Returns the n = k + m
 * shards, data shards first, each `shardBytes(params, data.length)` long: the first k shards concatenated are `data`
 * followed by zeros. The shards are views of two buffers (data, parity); copy one to keep it apart from the others.
 */
export async function encodeStripe(params: ErasureParams, data: Uint8Array): Promise<Uint8Array[]> {
  const size = shardBytes(params, data.length)
  const { k, m } = params
  // Buffer.alloc zero-fills, which is the padding the tail of the last data shard needs.
  const dataBuffer = Buffer.alloc(k * size)
  dataBuffer.set(data)
  const parityBuffer = Buffer.alloc(m * size)
  await code(params, bitsOf(range(0, k)), bitsOf(range(k, k + m)), dataBuffer, parityBuffer)
  return [...views(dataBuffer, k, size), ...views(parityBuffer, m, size)]
}

/**
 * Rebuilds the `dataBytes` bytes of a stripe from its n = k + m shard slots, `undefined` where a shard is missing; any
 * k present shards do. Throws when fewer than k are present, or when the shards do not fit together.
 */
export async function decodeStripe(params: ErasureParams, shards: readonly (Uint8Array | undefined)[], dataBytes: number): Promise<Uint8Array> {
  const size = checkShards(params, shards)
  const { k } = params
  if (!Number.isInteger(dataBytes) || dataBytes < 0 || dataBytes > k * size) {
    throw new RangeError(`stripe size is ${dataBytes} bytes; with ${k} data shards of ${size} bytes it must be a whole number from 0 to ${k * size}`)
  }
  const missingData = range(0, k).filter((i) => shards[i] === undefined)
  if (missingData.length === 0) return joinShards(shards, size, dataBytes)
  const { data } = await rebuildInto(params, shards, size, missingData)
  return new Uint8Array(data.buffer, data.byteOffset, dataBytes)
}

/**
 * Rebuilds the shards at the `wanted` indexes (data or parity, 0 to n - 1) from any k present shards, as repair does
 * when a peer holding some of them is gone. Returns them in the order asked, each a fresh copy; a wanted shard that is
 * present is copied as it is.
 */
export async function rebuildShards(params: ErasureParams, shards: readonly (Uint8Array | undefined)[], wanted: readonly number[]): Promise<Uint8Array[]> {
  const size = checkShards(params, shards)
  const n = params.k + params.m
  for (const index of wanted) {
    if (!Number.isInteger(index) || index < 0 || index >= n) {
      throw new RangeError(`wanted shard index ${index} is out of range; with k + m = ${n} shards it must be a whole number from 0 to ${n - 1}`)
    }
  }
  const missingWanted = [...new Set(wanted)].filter((i) => shards[i] === undefined)
  const rebuilt = missingWanted.length === 0 ? undefined : await rebuildInto(params, shards, size, missingWanted)
  return wanted.map((index) => {
    const present = shards[index]
    if (present !== undefined) return Uint8Array.from(present)
    const { data, parity } = rebuilt!
    const [buffer, slot] = index < params.k ? [data, index] : [parity, index - params.k]
    return Uint8Array.from(buffer.subarray(slot * size, (slot + 1) * size))
  })
}

/**
 * Copies k present shards (data shards first: they need no arithmetic to be read back) into fresh data and parity
 * buffers and rebuilds the `targets` shards there. Only k sources are given: the addon needs no more, and fewer copies
 * are made.
 */
async function rebuildInto(
  params: ErasureParams,
  shards: readonly (Uint8Array | undefined)[],
  size: number,
  targets: readonly number[],
): Promise<{ data: Buffer; parity: Buffer }> {
  const { k, m } = params
  const data = Buffer.alloc(k * size)
  const parity = Buffer.alloc(m * size)
  const sources = range(0, k + m).filter((i) => shards[i] !== undefined).slice(0, k)
  for (const index of sources) {
    if (index < k) data.set(shards[index]!, index * size)
    else parity.set(shards[index]!, (index - k) * size)
  }
  await code(params, bitsOf(sources), bitsOf(targets), data, parity)
  return { data, parity }
}

/**
 * Checks the shard slots against `params` and returns the shard size: n slots, every present shard the same length (a
 * positive multiple of 8), at least k of them present.
 */
function checkShards(params: ErasureParams, shards: readonly (Uint8Array | undefined)[]): number {
  checkParams(params)
  const { k, m } = params
  if (shards.length !== k + m) {
    throw new RangeError(`got ${shards.length} shard slots; k = ${k}, m = ${m} needs exactly ${k + m} (undefined where a shard is missing)`)
  }
  const present = range(0, k + m).filter((i) => shards[i] !== undefined)
  if (present.length < k) {
    const missing = range(0, k + m).filter((i) => shards[i] === undefined)
    throw new Error(
      `${present.length} of the ${k} shards needed are present: shards ${missing.join(', ')} of ${k + m} are missing; ` +
        `fetch at least ${k - present.length} more of them to rebuild the stripe`,
    )
  }
  const size = shards[present[0]!]!.length
  if (size === 0 || size % shardAlignment !== 0 || size > maxStripeBytes) {
    throw new RangeError(`shard ${present[0]} is ${size} bytes; shards are a positive multiple of ${shardAlignment} bytes, at most ${maxStripeBytes}`)
  }
  for (const index of present) {
    const length = shards[index]!.length
    if (length !== size) {
      throw new RangeError(
        `shard ${index} is ${length} bytes but shard ${present[0]} is ${size}: all shards of a stripe are the same size; drop the odd one as missing`,
      )
    }
  }
  return size
}

/** The first `dataBytes` bytes of the data shards (all present), laid end to end in a fresh array: no padding copied. */
function joinShards(shards: readonly (Uint8Array | undefined)[], size: number, dataBytes: number): Uint8Array {
  const joined = new Uint8Array(dataBytes)
  for (let offset = 0, i = 0; offset < dataBytes; offset += size, i++) joined.set(shards[i]!.subarray(0, Math.min(size, dataBytes - offset)), offset)
  return joined
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i)
}

/** The addon's shard set: bit i stands for shard i (k + m ≤ 30, so it fits a 32-bit integer). */
function bitsOf(indexes: readonly number[]): number {
  return indexes.reduce((bits, index) => bits | (1 << index), 0)
}
