import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { sha256Hex } from './content-hash.ts'
import { createPackageCache } from './package-cache.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-cache-'))
after(() => rm(dir, { recursive: true, force: true }))

async function put(cache: ReturnType<typeof createPackageCache>, text: string, usedSec: number): Promise<string> {
  const id = sha256Hex(text)
  await writeFile(cache.pathOf(id), text)
  await utimes(cache.pathOf(id), usedSec, usedSec)
  return id
}

test('the least recently used packages go first when a bound is passed, and packages in use stay', async () => {
  const cache = createPackageCache({ dir, maxBytes: 25, maxEntries: 3 })
  const a = await put(cache, 'aaaaaaaaaa', 1000)
  const b = await put(cache, 'bbbbbbbbbb', 2000)
  const c = await put(cache, 'cccccccccc', 3000)
  // 30 bytes in 3 packages: over the byte bound, so the oldest (a) goes.
  assert.deepEqual(await cache.evict(), [a])
  // b is used again: now c is the oldest. A fourth package passes both bounds; c goes, b stays.
  await cache.touch(b)
  const d = await put(cache, 'dddddddddd', 4000)
  assert.deepEqual(await cache.evict(), [c])
  // While b is in use it is never removed, even when it is the oldest.
  const e = await put(cache, 'eeeeeeeeee', 5000)
  await cache.using(b, async () => {
    assert.deepEqual(await cache.evict(), [d])
  })
  assert.deepEqual((await readdir(dir)).sort(), [b, e].map((id) => id.replace(':', '-')).sort())
})

test('files that are not packages (partial downloads) are left alone', async () => {
  const cache = createPackageCache({ dir, maxBytes: 0, maxEntries: 0 })
  const id = sha256Hex('partial')
  await writeFile(`${cache.pathOf(id)}.part`, 'partial')
  await cache.evict()
  assert.ok((await readdir(dir)).includes(`${id.replace(':', '-')}.part`))
})

test('tells onEvict each evicted package once its file is gone; a failing hook stops nothing and is reported', async () => {
  const hookDir = await mkdtemp(join(tmpdir(), 'hearth-cache-hook-'))
  after(() => rm(hookDir, { recursive: true, force: true }))
  const told: { contentId: string; fileLeft: boolean }[] = []
  const cache = createPackageCache({
    dir: hookDir,
    maxBytes: 1 << 20,
    maxEntries: 1,
    onEvict: async (contentId) => {
      told.push({ contentId, fileLeft: (await readdir(hookDir)).includes(contentId.replace(':', '-')) })
      if (told.length === 1) throw new Error('the engine is not answering')
    },
  })
  const a = await put(cache, 'aaaa', 1000)
  const b = await put(cache, 'bbbb', 2000)
  const c = await put(cache, 'cccc', 3000)
  await assert.rejects(cache.evict(), (error) => {
    assert.ok(isHearthError(error, 'HEARTH_ERR_EXEC_FAILED'))
    assert.match(error.message, /the engine is not answering/)
    assert.deepEqual(error.details?.removed, [a, b])
    assert.deepEqual(error.details?.failed, [a])
    return true
  })
  assert.deepEqual(told, [{ contentId: a, fileLeft: false }, { contentId: b, fileLeft: false }])
  assert.deepEqual(await readdir(hookDir), [c.replace(':', '-')])
  // Evictions run one at a time, so two at once never tell the hook of one package twice.
  await put(cache, 'dddd', 4000)
  await Promise.all([cache.evict(), cache.evict()])
  assert.deepEqual(told.map((entry) => entry.contentId), [a, b, c])
})
