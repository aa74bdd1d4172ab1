import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { hashFile, isContentId, sha256Hex } from './content-hash.ts'

describe('content-hash', () => {
  it('hashes bytes to a sha256 content id (known vector)', () => {
    assert.equal(sha256Hex(new TextEncoder().encode('abc')), 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    assert.equal(sha256Hex('abc'), sha256Hex(new Uint8Array([0x61, 0x62, 0x63])))
    assert.ok(isContentId(sha256Hex(new Uint8Array(0))))
    assert.ok(!isContentId('sha256:ABC'))
  })

  it('hashes a file by streaming, equal to hashing its bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hearth-hash-'))
    try {
      const bytes = new Uint8Array(3 * 1024 * 1024 + 7).map((_, i) => (i * 31) & 0xff)
      const path = join(dir, 'blob')
      await writeFile(path, bytes)
      assert.equal(await hashFile(path), sha256Hex(bytes))
      await assert.rejects(hashFile(join(dir, 'missing')), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INPUT_MISSING'))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
