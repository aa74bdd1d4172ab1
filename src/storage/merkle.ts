/**
 * Merkle trees over a piece, for audits: the owner keeps one root per piece; to prove it still holds the piece, a
 * provider answers a challenge for a random chunk with the chunk and the hashes on its path to the root. The owner
 * needs only the root and the chunk count to check, so it keeps nothing of the piece itself.
 *
 * SHA-256 with domain separation (RFC 6962): a leaf hashes 0x00 and the chunk, an inner node 0x01 and its two
 * children, so a chunk can never pass for an inner node. A level with an odd count carries its last node up as it is.
 */
import { createHash } from 'node:crypto'

/** The chunk size audits challenge: small enough to answer at once, large enough that the proof stays short. */
export const defaultChunkBytes = 64 * 1024

export function leafHash(chunk: Uint8Array): Buffer {
  return createHash('sha256').update(Buffer.of(0)).update(chunk).digest()
}

function nodeHash(left: Buffer, right: Buffer): Buffer {
  return createHash('sha256').update(Buffer.of(1)).update(left).update(right).digest()
}

/** Every level of the tree over `leaves` (leaf hashes), the leaves first and the root last. */
export function merkleLevels(leaves: readonly Buffer[]): Buffer[][] {
  if (leaves.length === 0) throw new RangeError('a Merkle tree needs at least one leaf: an empty piece has one empty chunk')
  const levels: Buffer[][] = [leaves.slice()]
  while (levels.at(-1)!.length > 1) {
    const below = levels.at(-1)!
    const level: Buffer[] = []
    for (let i = 0; i < below.length; i += 2) level.push(i + 1 < below.length ? nodeHash(below[i]!, below[i + 1]!) : below[i]!)
    levels.push(level)
  }
  return levels
}

/** The leaf hashes of `bytes` cut into chunks of `chunkBytes` (an empty piece is one empty chunk). */
export function chunkLeaves(bytes: Uint8Array, chunkBytes = defaultChunkBytes): Buffer[] {
  const leaves: Buffer[] = []
  for (let at = 0; at < bytes.length; at += chunkBytes) leaves.push(leafHash(bytes.subarray(at, Math.min(bytes.length, at + chunkBytes))))
  return leaves.length === 0 ? [leafHash(new Uint8Array(0))] : leaves
}

export function merkleRoot(leaves: readonly Buffer[]): Buffer {
  return merkleLevels(leaves).at(-1)![0]!
}

/** The sibling hashes from leaf `index` up to the root (a level where it has no sibling adds none). */
export function merkleProof(levels: readonly Buffer[][], index: number): Buffer[] {
  if (!Number.isInteger(index) || index < 0 || index >= levels[0]!.length) throw new RangeError(`leaf ${index} is not in a tree of ${levels[0]!.length} leaves`)
  const proof: Buffer[] = []
  let at = index
  for (const level of levels.slice(0, -1)) {
    const sibling = at % 2 === 0 ? at + 1 : at - 1
    if (sibling < level.length) proof.push(level[sibling]!)
    at = Math.floor(at / 2)
  }
  return proof
}

/**
 * Whether `chunk` is leaf `index` of the tree of `leafCount` leaves whose root is `root`, by `proof`. Any proof of the
 * wrong length, or for an index outside the tree, fails.
 */
export function verifyProof(root: Uint8Array, leafCount: number, index: number, chunk: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (!Number.isInteger(index) || index < 0 || index >= leafCount || proof.length > 64) return false
  let hash = leafHash(chunk)
  let at = index
  let width = leafCount
  let used = 0
  while (width > 1) {
    const sibling = at % 2 === 0 ? at + 1 : at - 1
    if (sibling < width) {
      const next = proof[used++]
      if (next === undefined || next.length !== 32) return false
      hash = at % 2 === 0 ? nodeHash(hash, Buffer.from(next)) : nodeHash(Buffer.from(next), hash)
    }
    at = Math.floor(at / 2)
    width = Math.ceil(width / 2)
  }
  return used === proof.length && hash.equals(Buffer.from(root))
}
