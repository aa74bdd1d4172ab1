import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { chunkLeaves, leafHash, merkleLevels, merkleProof, merkleRoot, verifyProof } from './merkle.ts'

const chunk = 1024

test('every chunk of a piece proves itself against the root, at every tree width', () => {
  for (const chunks of [1, 2, 3, 4, 5, 7, 8, 9, 33]) {
    const piece = randomBytes(chunks * chunk - 17)
    const leaves = chunkLeaves(piece, chunk)
    assert.equal(leaves.length, chunks)
    const levels = merkleLevels(leaves)
    const root = merkleRoot(leaves)
    for (let i = 0; i < chunks; i++) {
      const bytes = piece.subarray(i * chunk, Math.min(piece.length, (i + 1) * chunk))
      const proof = merkleProof(levels, i)
      assert.ok(proof.length <= Math.ceil(Math.log2(chunks)))
      assert.equal(verifyProof(root, chunks, i, bytes, proof), true, `${chunks} chunks, leaf ${i}`)
    }
  }
})

test('a proof fails for a changed chunk, another index, a changed or cut proof, another root or leaf count', () => {
  const piece = randomBytes(9 * chunk)
  const levels = merkleLevels(chunkLeaves(piece, chunk))
  const root = levels.at(-1)![0]!
  const bytes = piece.subarray(4 * chunk, 5 * chunk)
  const proof = merkleProof(levels, 4)
  assert.equal(verifyProof(root, 9, 4, bytes, proof), true)
  const altered = Buffer.from(bytes)
  altered[0]! ^= 1
  assert.equal(verifyProof(root, 9, 4, altered, proof), false)
  assert.equal(verifyProof(root, 9, 5, bytes, proof), false)
  assert.equal(verifyProof(root, 9, 4, bytes, proof.slice(1)), false)
  assert.equal(verifyProof(root, 9, 4, bytes, [...proof, proof[0]!]), false)
  assert.equal(verifyProof(root, 9, 4, bytes, proof.map((p, i) => (i === 1 ? randomBytes(32) : p))), false)
  assert.equal(verifyProof(randomBytes(32), 9, 4, bytes, proof), false)
  // The owner keeps the chunk count with the root: a proof at the tree's right edge binds it.
  const lastProof = merkleProof(levels, 8)
  assert.equal(verifyProof(root, 9, 8, piece.subarray(8 * chunk), lastProof), true)
  assert.equal(verifyProof(root, 10, 8, piece.subarray(8 * chunk), lastProof), false)
  assert.equal(verifyProof(root, 9, 9, bytes, proof), false)
  assert.equal(verifyProof(root, 9, -1, bytes, proof), false)
  assert.throws(() => merkleProof(levels, 9), /leaf 9 is not in a tree of 9 leaves/)
})

test('an inner node cannot pass for a chunk: leaves and nodes hash apart', () => {
  const leaves = chunkLeaves(randomBytes(4 * chunk), chunk)
  const levels = merkleLevels(leaves)
  const root = levels.at(-1)![0]!
  // The two children of the left inner node, given as a "chunk" of a two-leaf tree, would hash to it without the prefix.
  const forged = Buffer.concat([leaves[0]!, leaves[1]!])
  assert.equal(verifyProof(root, 2, 0, forged, [levels[1]![1]!]), false)
  assert.notDeepEqual(leafHash(forged), createHash('sha256').update(Buffer.of(1)).update(forged).digest())
  assert.equal(chunkLeaves(new Uint8Array(0)).length, 1)
})
