import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { emptyManifest, findEntry, openManifest, sealManifest, withEntry, withoutEntry, type ManifestEntry } from './manifest.ts'
import type { StorageKey } from './storage-key.ts'

const key: StorageKey = { bytes: new Uint8Array(randomBytes(32)) }

const entry = (bucket: string, name: string): ManifestEntry => ({
  bucket,
  key: name,
  createdAtMs: 1,
  sha256: 'ab'.repeat(32),
  layout: { fileId: '11'.repeat(16), plainBytes: 10, segmentBytes: 1024, k: 4, m: 2, shardBytes: 264, stripes: 1, pieces: [{ index: 0, root: 'cd'.repeat(32) }] },
  placements: [{ piece: 0, provider: `0x${'22'.repeat(20)}`, region: 'eu' }],
})

test('a manifest sealed under the storage key opens whole under it, and shows no name to anyone else', async () => {
  const manifest = withEntry(withEntry(emptyManifest(), entry('photos', 'secret-holiday.jpg')), entry('docs', 'tax-return-2026.pdf'))
  const sealed = await sealManifest(key, manifest)
  assert.ok(!Buffer.from(sealed).includes(Buffer.from('secret-holiday')) && !Buffer.from(sealed).includes(Buffer.from('photos')))
  assert.deepEqual(await openManifest(key, sealed), manifest)
  // Each save seals anew: two saves of the same manifest look unrelated.
  assert.notDeepEqual(await sealManifest(key, manifest), sealed)
})

test('an altered, cut or foreign manifest is refused, and a broken one is never sealed', async () => {
  const sealed = await sealManifest(key, withEntry(emptyManifest(), entry('b', 'k')))
  const altered = Uint8Array.from(sealed)
  altered[40]! ^= 1
  const corrupt = (error: unknown) => isHearthError(error, 'HEARTH_ERR_STORAGE_CORRUPT')
  await assert.rejects(openManifest(key, altered), corrupt)
  await assert.rejects(openManifest(key, sealed.subarray(0, sealed.length - 1)), corrupt)
  await assert.rejects(openManifest(key, sealed.subarray(0, 20)), corrupt)
  await assert.rejects(openManifest({ bytes: new Uint8Array(randomBytes(32)) }, sealed), corrupt)
  await assert.rejects(sealManifest(key, { version: 1, entries: [{ ...entry('b', 'k'), placements: [{ piece: 0, provider: 'nobody' }] }] }), (error) => isHearthError(error, 'HEARTH_ERR_API_MISUSE') && /placements\.0\.provider/.test((error as Error).message))
})

test('an entry replaces the one under the same bucket and key; removing leaves the others', () => {
  const one = withEntry(emptyManifest(), entry('b', 'k'))
  const replaced = withEntry(one, { ...entry('b', 'k'), createdAtMs: 2 })
  assert.equal(replaced.entries.length, 1)
  assert.equal(findEntry(replaced, 'b', 'k')?.createdAtMs, 2)
  const two = withEntry(replaced, entry('b', 'other'))
  assert.deepEqual(withoutEntry(two, 'b', 'k').entries.map((e) => e.key), ['other'])
  assert.equal(findEntry(two, 'c', 'k'), undefined)
})
