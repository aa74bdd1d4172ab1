import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { disperseFile, pieceShape, readFile as readStoredFile, type PieceSink, type PieceSource } from './dispersal.ts'
import { openPieceStore, type PieceStore } from './piece-store.ts'
import { newFileId } from './seal.ts'
import type { StorageKey } from './storage-key.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-piece-store-'))
after(() => rm(dir, { recursive: true, force: true }))
const key: StorageKey = { bytes: new Uint8Array(randomBytes(32)) }
const params = { k: 4, m: 2 }
const segment = 64 * 1024

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) parts.push(chunk)
  return Buffer.concat(parts)
}

/** Six providers' stores; the file dispersed over them, one piece each. */
async function storedOnSix(file: Uint8Array, name: string): Promise<{ stores: PieceStore[]; layout: Awaited<ReturnType<typeof disperseFile>> }> {
  const stores = await Promise.all(Array.from({ length: 6 }, (_, i) => openPieceStore({ dir: join(dir, name, `provider-${i}`), maxBytes: 10 << 20 })))
  const shape = pieceShape(params, file.length, segment)
  const sinks: PieceSink[] = await Promise.all(stores.map((store) => store.create('piece-a', shape)))
  const layout = await disperseFile(key, newFileId(), [file], params, sinks, segment)
  assert.deepEqual({ shardBytes: layout.shardBytes, stripes: layout.stripes }, shape)
  return { stores, layout }
}

const from = (store: PieceStore): PieceSource => ({ read: (stripe) => store.read('piece-a', stripe) })

test('pieces written to six providers\' stores read back into the file, also after the stores are opened again', async () => {
  const file = randomBytes(5 * segment + 77)
  const { stores, layout } = await storedOnSix(file, 'round')
  for (const [i, store] of stores.entries()) assert.equal(store.usedBytes(), layout.shardBytes * layout.stripes, `store ${i}`)
  assert.ok((await collect(readStoredFile(key, layout, stores.map(from)))).equals(file))
  const files = await readdir(join(dir, 'round', 'provider-0'))
  assert.deepEqual(files.sort(), ['piece-a.json', 'piece-a.piece'])
  assert.equal((await stat(join(dir, 'round', 'provider-0', 'piece-a.piece'))).mode & 0o777, 0o600)
  const reopened = await Promise.all(stores.map((_, i) => openPieceStore({ dir: join(dir, 'round', `provider-${i}`), maxBytes: 10 << 20 })))
  const someGone = reopened.map((store, i) => (i === 0 || i === 3 ? undefined : from(store)))
  assert.ok((await collect(readStoredFile(key, layout, someGone))).equals(file))
})

test('a piece altered on a provider\'s disk is caught by the owner, who reads the file from the others', async () => {
  const file = randomBytes(3 * segment)
  const { stores, layout } = await storedOnSix(file, 'rot')
  const handle = await open(join(dir, 'rot', 'provider-2', 'piece-a.piece'), 'r+')
  await handle.write(Buffer.from('bit rot'), 0, 7, layout.shardBytes + 5)
  await handle.close()
  const reopened = await Promise.all(stores.map((_, i) => openPieceStore({ dir: join(dir, 'rot', `provider-${i}`), maxBytes: 10 << 20 })))
  const bad: string[] = []
  assert.ok((await collect(readStoredFile(key, layout, reopened.map(from), (piece, stripe) => bad.push(`${piece}/${stripe}`)))).equals(file))
  assert.deepEqual(bad, ['2/1'])
})

test('a store takes no piece past the disk offered, nor shards of another size or number, nor an id that is a path', async () => {
  const store = await openPieceStore({ dir: join(dir, 'small'), maxBytes: 1000 })
  await assert.rejects(store.create('big', { shardBytes: 256, stripes: 4 }), (error) => isHearthError(error, 'HEARTH_ERR_STORAGE_FULL') && /1024 bytes does not fit: 0 of the 1000/.test((error as Error).message))
  const writer = await store.create('fits', { shardBytes: 200, stripes: 3 })
  await assert.rejects(store.create('second', { shardBytes: 200, stripes: 3 }), (error) => isHearthError(error, 'HEARTH_ERR_STORAGE_FULL'))
  await assert.rejects(writer.write(new Uint8Array(199)), /a shard of 199 bytes where 200 were agreed/)
  assert.equal(store.usedBytes(), 0, 'a refused piece gives its room back')
  const again = await store.create('fits', { shardBytes: 200, stripes: 1 })
  await again.write(new Uint8Array(200))
  await assert.rejects(again.write(new Uint8Array(200)), /more than the 1 shards agreed/)
  const short = await store.create('short', { shardBytes: 100, stripes: 2 })
  await short.write(new Uint8Array(100))
  await assert.rejects(short.end(), /1 shards of the 2 agreed/)
  for (const id of ['../escape', 'a/b', '', 'UPPER', '.hidden']) {
    await assert.rejects(store.create(id, { shardBytes: 8, stripes: 1 }), (error) => isHearthError(error, 'HEARTH_ERR_API_MISUSE'))
  }
  await assert.rejects(store.read('nothing', 0), /holds no piece nothing/)
  const kept = await store.create('kept', { shardBytes: 8, stripes: 2 })
  await kept.write(new Uint8Array(8))
  await kept.write(new Uint8Array(8))
  await kept.end()
  await assert.rejects(store.read('kept', 2), /has no stripe 2/)
  await store.remove('kept')
  assert.equal(store.has('kept'), false)
  assert.equal(store.usedBytes(), 0)
})
