import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { auditPiece, chooseStripes } from './audit.ts'
import { answerRead, disperseFile, type PieceSink, type PieceSource, type StoredPiece } from './dispersal.ts'
import { leafHash, merkleLevels } from './merkle.ts'
import { newFileId } from './seal.ts'

const segment = 16 * 1024
const key = { bytes: new Uint8Array(randomBytes(32)) }

async function sixPieces(bytes: number) {
  const pieces: StoredPiece[] = Array.from({ length: 6 }, () => ({ shards: [], levels: [] }))
  const sinks = pieces.map((piece): PieceSink => ({
    write: async (shard) => void piece.shards.push(Uint8Array.from(shard)),
    end: async () => void (piece.levels = merkleLevels(piece.shards.map((shard) => leafHash(shard)))),
  }))
  const layout = await disperseFile(key, newFileId(), [randomBytes(bytes)], { k: 4, m: 2 }, sinks, segment)
  return { layout, pieces }
}

test('a provider that keeps its piece passes every challenge; one that altered a shard fails the challenge that covers it', async () => {
  const { layout, pieces } = await sixPieces(10 * segment)
  const honest: PieceSource = { read: async (stripe) => answerRead(pieces[1]!, stripe) }
  const all = Array.from({ length: layout.stripes }, (_, i) => i)
  assert.ok((await auditPiece(layout, 1, honest, all, 5_000)).every((outcome) => outcome.ok))
  pieces[1]!.shards[6]![3]! ^= 1
  const outcomes = await auditPiece(layout, 1, honest, [5, 6, 7], 5_000)
  assert.deepEqual(outcomes.map((o) => [o.stripe, o.ok]), [[5, true], [6, false], [7, true]])
  assert.match(outcomes[1]!.reason!, /fails its proof/)
})

test('answers from another piece, of the wrong size, late or missing fail', async () => {
  const { layout, pieces } = await sixPieces(4 * segment)
  const otherPiece: PieceSource = { read: async (stripe) => answerRead(pieces[2]!, stripe) }
  const truncated: PieceSource = { read: async (stripe) => ({ ...answerRead(pieces[0]!, stripe), shard: pieces[0]!.shards[stripe]!.subarray(1) }) }
  const silent: PieceSource = { read: () => new Promise(() => undefined) }
  const gone: PieceSource = { read: async () => Promise.reject(new Error('connection refused')) }
  assert.equal((await auditPiece(layout, 0, otherPiece, [1], 5_000))[0]!.ok, false)
  assert.match((await auditPiece(layout, 0, truncated, [1], 5_000))[0]!.reason!, /bytes where/)
  assert.match((await auditPiece(layout, 0, silent, [1], 50))[0]!.reason!, /no answer within 50 ms/)
  assert.match((await auditPiece(layout, 0, gone, [1], 5_000))[0]!.reason!, /connection refused/)
})

test('challenged stripes are distinct, within the piece, and all of them when asked for more', () => {
  let next = 0
  const draws = [3, 3, 7, 0, 7, 9]
  assert.deepEqual(chooseStripes(10, 4, () => draws[next++]!), [0, 3, 7, 9])
  assert.deepEqual(chooseStripes(3, 5), [0, 1, 2])
  const drawn = chooseStripes(1000, 20)
  assert.equal(new Set(drawn).size, 20)
  assert.ok(drawn.every((stripe) => stripe >= 0 && stripe < 1000))
})
