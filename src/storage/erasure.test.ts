/**
 * Tests of the erasure coding of storage stripes: whatever m shards are lost, the stripe comes back byte for byte, and
 * repair rebuilds lost shards identical to the ones first written, since peers compare shards by hash.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { decodeStripe, encodeStripe, maxStripeBytes, rebuildShards, shardBytes } from './erasure.ts'
import type { ErasureParams } from './erasure.ts'

/** Every way of choosing `size` of the indexes 0 … n - 1. */
function combinations(n: number, size: number): number[][] {
  if (size === 0) return [[]]
  if (n < size) return []
  return [...combinations(n - 1, size), ...combinations(n - 1, size - 1).map((rest) => [...rest, n - 1])]
}

/** `shards` with the slots at `lost` emptied. */
function without(shards: readonly Uint8Array[], lost: readonly number[]): (Uint8Array | undefined)[] {
  return shards.map((shard, i) => (lost.includes(i) ? undefined : shard))
}

/** A stripe's shards concatenated, as a Buffer for byte comparison. */
function joined(shards: readonly Uint8Array[]): Buffer {
  return Buffer.concat(shards.map((shard) => Buffer.from(shard.buffer, shard.byteOffset, shard.length)))
}

function bytes(view: Uint8Array): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.length)
}

test('round trips random data, losing the last m shards, the first m, and none', async () => {
  const cases: Array<[ErasureParams, number]> = [
    [{ k: 1, m: 1 }, 4096],
    [{ k: 4, m: 2 }, 100_000],
    [{ k: 10, m: 6 }, 1_000_003],
    [{ k: 12, m: 6 }, 65_536],
    [{ k: 24, m: 6 }, 1024 * 1024],
  ]
  for (const [params, size] of cases) {
    const data = randomBytes(size)
    const shards = await encodeStripe(params, data)
    const n = params.k + params.m
    assert.equal(shards.length, n)
    for (const shard of shards) assert.equal(shard.length, shardBytes(params, size))
    const padded = joined(shards.slice(0, params.k))
    assert.deepEqual(padded.subarray(0, size), data, `k=${params.k}: the data shards are the data`)
    assert.ok(padded.subarray(size).every((byte) => byte === 0), `k=${params.k}: padding is zeros`)
    const losses = [[], Array.from({ length: params.m }, (_, i) => i), Array.from({ length: params.m }, (_, i) => n - 1 - i)]
    for (const lost of losses) {
      const decoded = await decodeStripe(params, without(shards, lost), size)
      assert.deepEqual(bytes(decoded), data, `k=${params.k}, m=${params.m}, lost ${lost.join(',')}`)
    }
  }
})

test('(4, 2): every way of losing up to 2 shards still decodes byte-identical', async () => {
  const params = { k: 4, m: 2 }
  const data = randomBytes(12_345)
  const shards = await encodeStripe(params, data)
  let ways = 0
  for (const size of [1, 2]) {
    for (const lost of combinations(6, size)) {
      const decoded = await decodeStripe(params, without(shards, lost), data.length)
      assert.deepEqual(bytes(decoded), data, `lost ${lost.join(',')}`)
      ways++
    }
  }
  assert.equal(ways, 6 + 15)
})

test('(10, 6): losing 6 shards picked at random still decodes', async () => {
  const params = { k: 10, m: 6 }
  const data = randomBytes(333_333)
  const shards = await encodeStripe(params, data)
  const all = combinations(16, 6)
  for (let i = 0; i < 40; i++) {
    const lost = all[(i * 7919) % all.length]!
    assert.deepEqual(bytes(await decodeStripe(params, without(shards, lost), data.length)), data, `lost ${lost.join(',')}`)
  }
})

test('losing m + 1 shards throws a clear error', async () => {
  const params = { k: 4, m: 2 }
  const shards = await encodeStripe(params, randomBytes(1000))
  for (const lost of combinations(6, 3)) {
    await assert.rejects(decodeStripe(params, without(shards, lost), 1000), (error: Error) => {
      assert.match(error.message, /^3 of the 4 shards needed are present: shards .* are missing/)
      return true
    })
    await assert.rejects(rebuildShards(params, without(shards, lost), lost), /3 of the 4 shards needed are present/)
  }
})

test('rebuildShards returns data and parity shards identical to the originals', async () => {
  for (const params of [{ k: 4, m: 2 }, { k: 12, m: 6 }, { k: 1, m: 1 }]) {
    const n = params.k + params.m
    const shards = (await encodeStripe(params, randomBytes(50_000))).map((shard) => Uint8Array.from(shard))
    const all = combinations(n, params.m)
    // Every way for (4, 2); for the wider codes the first, a middle and the last way (data only, mixed, parity only).
    const losses = params.k === 4 ? all : [all[0]!, all[Math.floor(all.length / 2)]!, all.at(-1)!]
    for (const lost of losses) {
      const rebuilt = await rebuildShards(params, without(shards, lost), lost)
      assert.equal(rebuilt.length, lost.length)
      lost.forEach((index, i) => assert.deepEqual(bytes(rebuilt[i]!), bytes(shards[index]!), `k=${params.k}: shard ${index}`))
    }
  }
  const params = { k: 4, m: 2 }
  const shards = await encodeStripe(params, randomBytes(777))
  // Asked for a present shard, a lost data shard and a lost parity shard, in any order.
  const rebuilt = await rebuildShards(params, without(shards, [1, 5]), [5, 3, 1])
  assert.deepEqual(rebuilt.map(bytes), [5, 3, 1].map((i) => bytes(shards[i]!)))
  assert.deepEqual(await rebuildShards(params, without(shards, [0]), []), [])
})

test('odd sizes: 1 byte, 7 bytes, 1 MiB + 3, empty and the largest stripe', async () => {
  for (const [params, size] of [
    [{ k: 4, m: 2 }, 1],
    [{ k: 4, m: 2 }, 7],
    [{ k: 1, m: 1 }, 7],
    [{ k: 10, m: 6 }, 1024 * 1024 + 3],
    [{ k: 3, m: 2 }, 0],
    [{ k: 4, m: 2 }, maxStripeBytes],
  ] as Array<[ErasureParams, number]>) {
    const data = randomBytes(size)
    const shards = await encodeStripe(params, data)
    assert.equal(shards[0]!.length % 8, 0)
    assert.ok(shards[0]!.length * params.k >= size)
    const lost = Array.from({ length: params.m }, (_, i) => i)
    assert.deepEqual(bytes(await decodeStripe(params, without(shards, lost), size)), data, `k=${params.k}, ${size} bytes`)
  }
  assert.equal(shardBytes({ k: 4, m: 2 }, 1), 8)
  assert.equal(shardBytes({ k: 4, m: 2 }, 33), 16)
  assert.equal(shardBytes({ k: 4, m: 2 }, 64), 16)
  assert.equal(shardBytes({ k: 10, m: 6 }, 1024 * 1024), 104_864)
})

test('invalid params, sizes and shards are rejected with what to do', async () => {
  for (const params of [{ k: 0, m: 1 }, { k: 25, m: 1 }, { k: 1.5, m: 1 }, { k: Number.NaN, m: 1 }]) {
    assert.throws(() => shardBytes(params, 10), /erasure k \(data shards\) is .*; it must be a whole number from 1 to 24/)
    await assert.rejects(encodeStripe(params, new Uint8Array(10)), RangeError)
  }
  for (const params of [{ k: 4, m: 0 }, { k: 4, m: 7 }, { k: 4, m: -1 }]) {
    assert.throws(() => shardBytes(params, 10), /erasure m \(parity shards\) is .*; it must be a whole number from 1 to 6/)
    await assert.rejects(decodeStripe(params, [], 10), RangeError)
  }
  const params = { k: 4, m: 2 }
  assert.throws(() => shardBytes(params, -1), /stripe size is -1 bytes/)
  await assert.rejects(encodeStripe(params, new Uint8Array(maxStripeBytes + 1)), /cut larger data into several stripes/)
  const shards = await encodeStripe(params, randomBytes(100))
  await assert.rejects(decodeStripe(params, shards.slice(0, 5), 100), /got 5 shard slots; k = 4, m = 2 needs exactly 6/)
  await assert.rejects(decodeStripe(params, shards, 4 * 32 + 1), /it must be a whole number from 0 to 128/)
  await assert.rejects(decodeStripe(params, [...shards.slice(0, 5), new Uint8Array(40)], 100), /shard 5 is 40 bytes but shard 0 is 32/)
  await assert.rejects(decodeStripe(params, shards.map((s) => s.subarray(0, 30)), 100), /shard 0 is 30 bytes; shards are a positive multiple of 8/)
  await assert.rejects(rebuildShards(params, shards, [6]), /wanted shard index 6 is out of range/)
})
