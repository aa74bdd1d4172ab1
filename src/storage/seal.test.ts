import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { newFileId, openFile, openName, sealedBytes, sealFile, sealName } from './seal.ts'
import { formatStorageKey, loadStorageKey, parseStorageKey, type StorageKey } from './storage-key.ts'

const key: StorageKey = { bytes: new Uint8Array(randomBytes(32)) }
const segment = 64 * 1024

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) parts.push(chunk)
  return Buffer.concat(parts)
}

/** `bytes` in chunks of `size`, as a stream delivers them (unrelated to the segment size). */
function* chunked(bytes: Uint8Array, size: number): Generator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, Math.min(bytes.length, at + size))
}

const corrupt = (pattern: RegExp) => (error: unknown) => isHearthError(error, 'HEARTH_ERR_STORAGE_CORRUPT') && pattern.test((error as Error).message)

describe('sealing files on the owner\'s side', () => {
  it('opens what it sealed, byte for byte, at sizes around the segment boundaries and in any chunking', async () => {
    for (const size of [0, 1, segment - 1, segment, segment + 1, 3 * segment, 3 * segment + 12_345]) {
      const plain = randomBytes(size)
      const id = newFileId()
      const sealed = await collect(sealFile(key, id, chunked(plain, 7_777), segment))
      assert.equal(sealed.length, sealedBytes(size, segment), `size ${size}`)
      assert.ok(size < 32 || !sealed.includes(plain.subarray(0, 32)), 'no plaintext in the sealed bytes')
      const opened = await collect(openFile(key, id, chunked(sealed, 5_000), segment))
      assert.ok(opened.equals(plain), `size ${size}`)
    }
  })

  it('refuses bytes altered, reordered, cut short, extended, from another file or under another key', async () => {
    const plain = randomBytes(3 * segment + 100)
    const id = newFileId()
    const sealed = await collect(sealFile(key, id, [plain], segment))
    const whole = segment + 16
    const flipped = Buffer.from(sealed)
    flipped[whole + 10]! ^= 1
    await assert.rejects(collect(openFile(key, id, [flipped], segment)), corrupt(/segment 1 fails its check/))
    const swapped = Buffer.concat([sealed.subarray(whole, 2 * whole), sealed.subarray(0, whole), sealed.subarray(2 * whole)])
    await assert.rejects(collect(openFile(key, id, [swapped], segment)), corrupt(/segment 0 fails its check/))
    await assert.rejects(collect(openFile(key, id, [sealed.subarray(0, 2 * whole)], segment)), corrupt(/ends after segment 1, which is not its last: it was cut short/))
    await assert.rejects(collect(openFile(key, id, [sealed.subarray(0, sealed.length - 1)], segment)), corrupt(/segment 3 fails its check/))
    await assert.rejects(collect(openFile(key, id, [Buffer.concat([sealed, Buffer.alloc(20)])], segment)), corrupt(/fails its check/))
    await assert.rejects(collect(openFile(key, newFileId(), [sealed], segment)), corrupt(/segment 0 fails its check/))
    await assert.rejects(collect(openFile({ bytes: new Uint8Array(randomBytes(32)) }, id, [sealed], segment)), corrupt(/segment 0 fails its check/))
    await assert.rejects(collect(openFile(key, id, [], segment)), corrupt(/shorter than its tag/))
  })

  it('seals names so that the same name never looks the same twice, and opens them only under its key', () => {
    const name = 'photos/2026/holiday ü.jpg'
    const a = sealName(key, name)
    const b = sealName(key, name)
    assert.notEqual(a, b)
    assert.ok(!a.includes('photos') && /^[A-Za-z0-9_-]+$/.test(a))
    assert.equal(openName(key, a), name)
    assert.equal(openName(key, b), name)
    assert.throws(() => openName({ bytes: new Uint8Array(randomBytes(32)) }, a), corrupt(/sealed name fails its check/))
    assert.throws(() => openName(key, `${a.slice(0, -2)}AA`), corrupt(/fails its check/))
    assert.throws(() => openName(key, 'abc'), corrupt(/too short/))
  })
})

describe('the storage key file', () => {
  const dir = mkdtemp(join(tmpdir(), 'hearth-storage-key-'))
  after(async () => rm(await dir, { recursive: true, force: true }))

  it('is made once, 0600, apart from the node key, and read back; never overwritten', async () => {
    const path = join(await dir, 'node', 'storage.key')
    await assert.rejects(loadStorageKey(path), (error) => isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY') && /there is no storage key file/.test((error as Error).message))
    const made = await loadStorageKey(path, { create: true })
    assert.equal(made.created, true)
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.equal((await readFile(path, 'utf8')).trim(), formatStorageKey(made.key))
    const again = await loadStorageKey(path, { create: true })
    assert.equal(again.created, false)
    assert.deepEqual(again.key.bytes, made.key.bytes)
  })

  it('refuses a key file others can read, and one that holds no key', async () => {
    const path = join(await dir, 'loose.key')
    await writeFile(path, `${'ab'.repeat(32)}\n`, { mode: 0o644 })
    await chmod(path, 0o644)
    await assert.rejects(loadStorageKey(path), (error) => isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY') && /accessible by group or others/.test((error as Error).message))
    await chmod(path, 0o600)
    assert.deepEqual((await loadStorageKey(path)).key.bytes, parseStorageKey('ab'.repeat(32)).bytes)
    await writeFile(path, 'not a key\n', { mode: 0o600 })
    await assert.rejects(loadStorageKey(path), (error) => isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY') && /expected 64 hex digits/.test((error as Error).message))
  })
})
