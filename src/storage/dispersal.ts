/**
 * A sealed file dispersed into n pieces, any k of which give it back: each sealed segment (seal.ts) is one stripe,
 * erasure-coded into n shards (erasure.ts), and piece i is shard i of every stripe, one after another. The owner keeps
 * the layout: the file's size and id, the code, and for each piece a Merkle root over its shards (merkle.ts: one leaf
 * per stripe), so that every shard read back, and every audit answer, is checked against what was stored before it
 * is used. A shard that fails its check counts as missing; the stripe is rebuilt from the others.
 *
 * Pieces are written and read through small interfaces (a provider's connection, a folder in tests), stripe by stripe,
 * so a file of any size goes through in memory of a few stripes.
 */
import { HearthError } from '../errors.ts'
import { decodeStripe, encodeStripe, rebuildShards, shardBytes, type ErasureParams } from './erasure.ts'
import { leafHash, merkleLevels, merkleProof, merkleRoot, verifyProof } from './merkle.ts'
import { defaultSegmentBytes, openFile, openSegment, sealedBytes, sealFile } from './seal.ts'
import type { StorageKey } from './storage-key.ts'

/** Where a piece's bytes go as they are made. */
export interface PieceSink {
  write(shard: Uint8Array): Promise<void>
  end(): Promise<unknown>
}

/** Where a piece's shards are read back from: shard `stripe` with its Merkle proof, or an error when it cannot be had. */
export interface PieceSource {
  read(stripe: number): Promise<{ shard: Uint8Array; proof: Uint8Array[] }>
}

export interface PieceLayout {
  index: number
  /** Merkle root over its shards, hex. */
  root: string
}

/** What the owner keeps of a dispersed file: enough to read it back from any k pieces and to audit each. */
export interface FileLayout {
  fileId: string
  plainBytes: number
  segmentBytes: number
  k: number
  m: number
  shardBytes: number
  stripes: number
  pieces: PieceLayout[]
}

/** The shards a piece holds, with the tree over them: what a provider keeps to answer reads and audits. */
export interface StoredPiece {
  shards: Uint8Array[]
  levels: Buffer[][]
}

/** A shard and its proof, from a piece's stored shards (a provider's answer to a read or an audit). */
export function answerRead(piece: StoredPiece, stripe: number): { shard: Uint8Array; proof: Uint8Array[] } {
  return { shard: piece.shards[stripe]!, proof: merkleProof(piece.levels, stripe) }
}

/** The shape of every piece of a file of `plainBytes`: what a provider reserves before the first shard comes. */
export function pieceShape(params: ErasureParams, plainBytes: number, segmentBytes = defaultSegmentBytes): { shardBytes: number; stripes: number } {
  return { shardBytes: shardBytes(params, segmentBytes + 16), stripes: Math.max(1, Math.ceil(plainBytes / segmentBytes)) }
}

/**
 * Seals `source` and disperses it over `sinks` (n = k + m of them, piece i to sink i); resolves with the layout. The
 * tree of each piece is built as its shards are written.
 */
export async function disperseFile(key: StorageKey, fileId: Uint8Array, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, params: ErasureParams, sinks: readonly PieceSink[], segmentBytes = defaultSegmentBytes): Promise<FileLayout> {
  const n = params.k + params.m
  if (sinks.length !== n) throw new RangeError(`a ${params.k} of ${n} code needs ${n} pieces; ${sinks.length} were given`)
  const size = shardBytes(params, segmentBytes + 16)
  const leaves: Buffer[][] = Array.from({ length: n }, () => [])
  let plainBytes = 0
  let stripes = 0
  const counted = async function* (): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      plainBytes += chunk.length
      yield chunk
    }
  }
  for await (const segment of sealFile(key, fileId, counted(), segmentBytes)) {
    // Every stripe's shards are the size a whole segment's are, so a shard's place in its piece follows from its index.
    const padded = new Uint8Array(size * params.k)
    padded.set(segment)
    const shards = await encodeStripe(params, padded)
    await Promise.all(shards.map(async (shard, i) => {
      leaves[i]!.push(leafHash(shard))
      await sinks[i]!.write(shard)
    }))
    stripes++
  }
  await Promise.all(sinks.map((sink) => sink.end()))
  return {
    fileId: Buffer.from(fileId).toString('hex'),
    plainBytes,
    segmentBytes,
    k: params.k,
    m: params.m,
    shardBytes: size,
    stripes,
    pieces: leaves.map((pieceLeaves, index) => ({ index, root: merkleLevels(pieceLeaves).at(-1)![0]!.toString('hex') })),
  }
}

/** A piece's shard read and checked against its root: undefined when it cannot be had or fails its proof. */
async function checkedShard(layout: FileLayout, source: PieceSource | undefined, piece: number, stripe: number): Promise<Uint8Array | undefined> {
  if (source === undefined) return undefined
  try {
    const { shard, proof } = await source.read(stripe)
    const root = Buffer.from(layout.pieces[piece]!.root, 'hex')
    return shard.length === layout.shardBytes && verifyProof(root, layout.stripes, stripe, shard, proof) ? shard : undefined
  } catch {
    return undefined
  }
}

/**
 * The first k shards of `stripe` that pass their check (data pieces first, so an intact file needs no decoding),
 * skipping the pieces in `skip`; HEARTH_ERR_STORAGE_CORRUPT when fewer than k can be had.
 */
async function goodShards(layout: FileLayout, sources: readonly (PieceSource | undefined)[], stripe: number, onBadShard?: (piece: number, stripe: number) => void): Promise<(Uint8Array | undefined)[]> {
  const n = layout.k + layout.m
  const shards: (Uint8Array | undefined)[] = new Array(n).fill(undefined)
  let found = 0
  const tryPieces = async (pieces: number[]): Promise<void> => {
    // Read at once from different providers; each answer checked on its own.
    const got = await Promise.all(pieces.map((piece) => checkedShard(layout, sources[piece], piece, stripe)))
    for (const [i, shard] of got.entries()) {
      const piece = pieces[i]!
      if (shard === undefined && sources[piece] !== undefined) onBadShard?.(piece, stripe)
      if (shard !== undefined) {
        shards[piece] = shard
        found++
      }
    }
  }
  // The first k pieces that have a source (data pieces first: an intact file needs no decoding), then as many of
  // the rest as are still missing, until k are good or none are left.
  const order = Array.from({ length: n }, (_, piece) => piece).filter((piece) => sources[piece] !== undefined)
  let next = 0
  while (found < layout.k && next < order.length) {
    const batch = order.slice(next, next + layout.k - found)
    next += batch.length
    await tryPieces(batch)
  }
  if (found < layout.k) {
    throw new HearthError('HEARTH_ERR_STORAGE_CORRUPT', `stripe ${stripe} of the file has ${found} good pieces of the ${layout.k} needed`, {
      hint: 'more providers than the code allows for have lost or altered their pieces: the file cannot be read back whole',
    })
  }
  return shards
}

/**
 * Reads a dispersed file back from `sources` (piece i from source i; undefined for a piece that is gone), stripe by
 * stripe: the first k shards that pass their check, the stripe rebuilt, opened and yielded. `onBadShard` hears of
 * every shard that could not be read or failed its check, so the caller can stop trusting its provider and repair.
 */
export async function* readFile(key: StorageKey, layout: FileLayout, sources: readonly (PieceSource | undefined)[], onBadShard?: (piece: number, stripe: number) => void): AsyncGenerator<Uint8Array> {
  const params = { k: layout.k, m: layout.m }
  const fileId = new Uint8Array(Buffer.from(layout.fileId, 'hex'))
  const segments = async function* (): AsyncGenerator<Uint8Array> {
    const sealedTotal = sealedBytes(layout.plainBytes, layout.segmentBytes)
    for (let stripe = 0; stripe < layout.stripes; stripe++) {
      const shards = await goodShards(layout, sources, stripe, onBadShard)
      const segmentLength = Math.min(layout.segmentBytes + 16, sealedTotal - stripe * (layout.segmentBytes + 16))
      yield decodeStripe(params, shards, segmentLength)
    }
  }
  yield* openFile(key, fileId, segments(), layout.segmentBytes)
}

/**
 * Reads bytes `range.start` to `range.end` (both included) of a dispersed file: only the stripes that hold them are
 * fetched, each checked and opened on its own (segment = stripe), and the bytes outside the range cut off.
 */
export async function* readRange(key: StorageKey, layout: FileLayout, sources: readonly (PieceSource | undefined)[], range: { start: number; end: number }, onBadShard?: (piece: number, stripe: number) => void): AsyncGenerator<Uint8Array> {
  if (!(range.start >= 0 && range.end >= range.start && range.end < layout.plainBytes)) throw new RangeError(`bytes ${range.start}-${range.end} are not within a file of ${layout.plainBytes}`)
  const params = { k: layout.k, m: layout.m }
  const fileId = new Uint8Array(Buffer.from(layout.fileId, 'hex'))
  const sealedTotal = sealedBytes(layout.plainBytes, layout.segmentBytes)
  const first = Math.floor(range.start / layout.segmentBytes)
  const last = Math.floor(range.end / layout.segmentBytes)
  for (let stripe = first; stripe <= last; stripe++) {
    const shards = await goodShards(layout, sources, stripe, onBadShard)
    const segmentLength = Math.min(layout.segmentBytes + 16, sealedTotal - stripe * (layout.segmentBytes + 16))
    const plain = openSegment(key, fileId, stripe, stripe === layout.stripes - 1, await decodeStripe(params, shards, segmentLength))
    const base = stripe * layout.segmentBytes
    yield plain.subarray(Math.max(0, range.start - base), Math.min(plain.length, range.end - base + 1))
  }
}

/**
 * Rebuilds the pieces at `lost` from any k of the others, stripe by stripe, into `sinks` (one per lost piece, in
 * order). The code is deterministic, so a rebuilt piece is byte-identical to the one lost: its root, and the layout,
 * stay as they were, and that is checked before this resolves (HEARTH_ERR_STORAGE_CORRUPT otherwise). No key is
 * needed: repair works on ciphertext.
 */
export async function repairPieces(layout: FileLayout, sources: readonly (PieceSource | undefined)[], lost: readonly number[], sinks: readonly PieceSink[], onBadShard?: (piece: number, stripe: number) => void): Promise<void> {
  const params = { k: layout.k, m: layout.m }
  const leaves: Buffer[][] = lost.map(() => [])
  const others = sources.map((source, piece) => (lost.includes(piece) ? undefined : source))
  for (let stripe = 0; stripe < layout.stripes; stripe++) {
    const rebuilt = await rebuildShards(params, await goodShards(layout, others, stripe, onBadShard), lost)
    await Promise.all(rebuilt.map(async (shard, i) => {
      leaves[i]!.push(leafHash(shard))
      await sinks[i]!.write(shard)
    }))
  }
  await Promise.all(sinks.map((sink) => sink.end()))
  for (const [i, piece] of lost.entries()) {
    if (merkleRoot(leaves[i]!).toString('hex') !== layout.pieces[piece]!.root) {
      throw new HearthError('HEARTH_ERR_STORAGE_CORRUPT', `piece ${piece} rebuilt does not match its root`, { hint: 'a piece that passed its checks was wrong: repair from other providers' })
    }
  }
}
