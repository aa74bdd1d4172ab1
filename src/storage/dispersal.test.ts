import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { answerRead, disperseFile, readFile, repairPieces, type FileLayout, type PieceSink, type PieceSource, type StoredPiece } from './dispersal.ts'
import { leafHash, merkleLevels } from './merkle.ts'
import { newFileId } from './seal.ts'
import type { StorageKey } from './storage-key.ts'

const key: StorageKey = { bytes: new Uint8Array(randomBytes(32)) }
const segment = 256 * 1024
const params = { k: 4, m: 2 }

/** Pieces kept in memory as a provider would keep them: the shards, and the tree it answers proofs from. */
function memoryPieces(n: number): { sinks: PieceSink[]; pieces: StoredPiece[] } {
  const pieces: StoredPiece[] = Array.from({ length: n }, () => ({ shards: [], levels: [] }))
  const sinks = pieces.map((piece): PieceSink => ({
    write: async (shard) => void piece.shards.push(Uint8Array.from(shard)),
    end: async () => void (piece.levels = merkleLevels(piece.shards.map((shard) => leafHash(shard)))),
  }))
  return { sinks, pieces }
}

const honest = (piece: StoredPiece): PieceSource => ({ read: async (stripe) => answerRead(piece, stripe) })

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) parts.push(chunk)
  return Buffer.concat(parts)
}

async function stored(bytes: Uint8Array): Promise<{ layout: FileLayout; pieces: StoredPiece[] }> {
  const { sinks, pieces } = memoryPieces(params.k + params.m)
  const layout = await disperseFile(key, newFileId(), [bytes], params, sinks, segment)
  return { layout, pieces }
}

describe('a file dispersed into k of n pieces', () => {
  it('comes back byte for byte from any k pieces, and holds no plaintext in any piece', async () => {
    const marker = Buffer.from('HEARTH-PLAINTEXT-MARKER-7c1e')
    const file = Buffer.concat([randomBytes(segment - 5), marker, randomBytes(2 * segment + 1234), marker])
    const { layout, pieces } = await stored(file)
    assert.equal(layout.stripes, 4)
    assert.equal(layout.plainBytes, file.length)
    for (const piece of pieces) assert.ok(!Buffer.concat(piece.shards).includes(marker), 'a piece holds plaintext')
    const n = params.k + params.m
    for (let a = 0; a < n; a++) {
      for (let b = a + 1; b < n; b++) {
        const sources = pieces.map((piece, i) => (i === a || i === b ? undefined : honest(piece)))
        assert.ok((await collect(readFile(key, layout, sources))).equals(file), `pieces ${a} and ${b} lost`)
      }
    }
    const tooFew = pieces.map((piece, i) => (i < 3 ? undefined : honest(piece)))
    await assert.rejects(collect(readFile(key, layout, tooFew)), (error) => isHearthError(error, 'HEARTH_ERR_STORAGE_CORRUPT') && /3 good pieces of the 4 needed/.test((error as Error).message))
  })

  it('refuses a shard a provider altered or took from another stripe, names it, and reads the file from the others', async () => {
    const file = randomBytes(3 * segment)
    const { layout, pieces } = await stored(file)
    const altering: PieceSource = {
      read: async (stripe) => {
        const answer = answerRead(pieces[1]!, stripe)
        const shard = Uint8Array.from(answer.shard)
        if (stripe === 2) shard[100]! ^= 1
        return { shard, proof: answer.proof }
      },
    }
    const replaying: PieceSource = { read: async () => answerRead(pieces[0]!, 0) }
    const bad: string[] = []
    const sources = [replaying, altering, honest(pieces[2]!), honest(pieces[3]!), honest(pieces[4]!), honest(pieces[5]!)]
    assert.ok((await collect(readFile(key, layout, sources, (piece, stripe) => bad.push(`${piece}/${stripe}`)))).equals(file))
    assert.deepEqual(bad, ['0/1', '0/2', '1/2'])
  })

  it('repairs lost pieces from any k others into pieces identical to the lost ones, and the file reads from them', async () => {
    const file = randomBytes(4 * segment + 99)
    const { layout, pieces } = await stored(file)
    const { sinks, pieces: rebuilt } = memoryPieces(2)
    const sources = pieces.map((piece, i) => (i === 1 || i === 4 ? undefined : honest(piece)))
    await repairPieces(layout, sources, [1, 4], sinks)
    assert.deepEqual(rebuilt[0]!.shards, pieces[1]!.shards)
    assert.deepEqual(rebuilt[1]!.shards, pieces[4]!.shards)
    // Two other providers gone now: the repaired pieces carry the file.
    const after = [undefined, honest(rebuilt[0]!), honest(pieces[2]!), undefined, honest(rebuilt[1]!), honest(pieces[5]!)]
    assert.ok((await collect(readFile(key, layout, after))).equals(file))
    // With fewer than k good pieces left, there is nothing to repair from.
    const tooFew = pieces.map((piece, i) => (i <= 2 ? undefined : honest(piece)))
    await assert.rejects(repairPieces(layout, tooFew, [0], memoryPieces(1).sinks), (error) => isHearthError(error, 'HEARTH_ERR_STORAGE_CORRUPT'))
  })

  it('reads an empty file back empty', async () => {
    const { layout, pieces } = await stored(new Uint8Array(0))
    assert.equal(layout.stripes, 1)
    assert.equal((await collect(readFile(key, layout, pieces.map(honest)))).length, 0)
  })
})
