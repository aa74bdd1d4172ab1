/**
 * Encryption on the owner's side, before anything leaves for a provider: providers hold only ciphertext and cannot
 * read a file or its name, nor alter, cut short or reorder it unnoticed.
 *
 * A file is sealed in segments (1 MiB by default) with AES-256-GCM under a key of its own, derived from the storage
 * key and the file's random 16-byte id (HKDF-SHA-256), so no two files share a key and a nonce can be a counter. Each
 * segment's nonce holds its index and whether it is the last (the STREAM construction of Hoang, Reyhanitabar, Rogaway
 * and Vizár): a segment moved elsewhere, or a file cut after a whole segment, fails to decrypt. A sealed segment is
 * the ciphertext followed by its 16-byte tag. Names are sealed whole under a key of their own with a random nonce.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { HearthError } from '../errors.ts'
import type { StorageKey } from './storage-key.ts'

export const defaultSegmentBytes = 1024 * 1024
const tagBytes = 16

/** What sealing adds to a file of `plainBytes`: one tag per segment (an empty file is one empty segment). */
export function sealedBytes(plainBytes: number, segmentBytes = defaultSegmentBytes): number {
  return plainBytes + Math.max(1, Math.ceil(plainBytes / segmentBytes)) * tagBytes
}

/** A new file's id: random, so that its key is its own. */
export function newFileId(): Uint8Array {
  return new Uint8Array(randomBytes(16))
}

function derive(key: StorageKey, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key.bytes, salt, info, 32))
}

/** Segment `index`'s nonce: 7 bytes of zero, then the index (4 bytes, big-endian), then 1 for the last segment. */
function nonceOf(index: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12)
  nonce.writeUInt32BE(index, 7)
  nonce[11] = last ? 1 : 0
  return nonce
}

const corrupt = (what: string): HearthError =>
  new HearthError('HEARTH_ERR_STORAGE_CORRUPT', `the stored data does not decrypt: ${what}`, { hint: 'read it from other pieces; check that this is the storage key the data was stored with' })

/** Cuts a stream of chunks into `segmentBytes` pieces, saying which is the last (an empty source gives one empty). */
async function* segmentsOf(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, segmentBytes: number): AsyncGenerator<{ bytes: Buffer; last: boolean }> {
  let pending: Buffer[] = []
  let pendingBytes = 0
  let ready: Buffer | undefined
  for await (const chunk of source) {
    let offset = 0
    while (offset < chunk.length) {
      const take = Math.min(segmentBytes - pendingBytes, chunk.length - offset)
      pending.push(Buffer.from(chunk.buffer, chunk.byteOffset + offset, take))
      pendingBytes += take
      offset += take
      if (pendingBytes === segmentBytes) {
        // A full segment is the last only if nothing follows: held back until more comes or the source ends.
        if (ready !== undefined) yield { bytes: ready, last: false }
        ready = Buffer.concat(pending, pendingBytes)
        pending = []
        pendingBytes = 0
      }
    }
  }
  if (pendingBytes > 0) {
    if (ready !== undefined) yield { bytes: ready, last: false }
    yield { bytes: Buffer.concat(pending, pendingBytes), last: true }
  } else {
    yield { bytes: ready ?? Buffer.alloc(0), last: true }
  }
}

/**
 * Seals a file's bytes (any iterable of chunks, so gigabytes go through in bounded memory): yields each sealed
 * segment, ciphertext and tag, in order.
 */
export async function* sealFile(key: StorageKey, fileId: Uint8Array, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, segmentBytes = defaultSegmentBytes): AsyncGenerator<Uint8Array> {
  const fileKey = derive(key, fileId, 'hearth/storage/file/1')
  let index = 0
  for await (const { bytes, last } of segmentsOf(source, segmentBytes)) {
    const cipher = createCipheriv('aes-256-gcm', fileKey, nonceOf(index, last))
    cipher.setAAD(fileId)
    const body = cipher.update(bytes)
    cipher.final()
    yield new Uint8Array(Buffer.concat([body, cipher.getAuthTag()]))
    index++
  }
}

/**
 * Opens one sealed segment on its own (a range read): segment `index`, `last` when it is the file's last. Throws
 * HEARTH_ERR_STORAGE_CORRUPT when it fails its check.
 */
export function openSegment(key: StorageKey, fileId: Uint8Array, index: number, last: boolean, sealed: Uint8Array): Uint8Array {
  const fileKey = derive(key, fileId, 'hearth/storage/file/1')
  if (sealed.length < tagBytes) throw corrupt(`segment ${index} is shorter than its tag`)
  try {
    const decipher = createDecipheriv('aes-256-gcm', fileKey, nonceOf(index, last))
    decipher.setAAD(fileId)
    decipher.setAuthTag(sealed.subarray(sealed.length - tagBytes))
    return new Uint8Array(Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - tagBytes)), decipher.final()]))
  } catch {
    throw corrupt(`segment ${index} fails its check (altered, moved, or sealed under another key)`)
  }
}

/**
 * Opens a sealed file, given its sealed bytes in any chunking: yields the plaintext segment by segment, each only
 * once its tag checked out. Throws HEARTH_ERR_STORAGE_CORRUPT at the first segment that fails, and when the bytes end
 * before the last segment (a file cut short).
 */
export async function* openFile(key: StorageKey, fileId: Uint8Array, sealed: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, segmentBytes = defaultSegmentBytes): AsyncGenerator<Uint8Array> {
  const fileKey = derive(key, fileId, 'hearth/storage/file/1')
  const open = (bytes: Buffer, index: number, last: boolean): Buffer | undefined => {
    try {
      const decipher = createDecipheriv('aes-256-gcm', fileKey, nonceOf(index, last))
      decipher.setAAD(fileId)
      decipher.setAuthTag(bytes.subarray(bytes.length - tagBytes))
      return Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - tagBytes)), decipher.final()])
    } catch {
      return undefined
    }
  }
  let index = 0
  for await (const { bytes, last } of segmentsOf(sealed, segmentBytes + tagBytes)) {
    if (bytes.length < tagBytes) throw corrupt(`segment ${index} is shorter than its tag`)
    const plain = open(bytes, index, last)
    if (plain === undefined) {
      // Sealed as a segment with more after it, yet nothing follows: the file was cut after a whole segment.
      if (last && open(bytes, index, false) !== undefined) throw corrupt(`the file ends after segment ${index}, which is not its last: it was cut short`)
      throw corrupt(`segment ${index} fails its check (altered, moved, or sealed under another key)`)
    }
    yield new Uint8Array(plain)
    index++
  }
}

/** Seals a name (a file's or bucket's), base64url: the same name seals differently each time. */
export function sealName(key: StorageKey, name: string): string {
  const nonce = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', derive(key, new Uint8Array(0), 'hearth/storage/names/1'), nonce)
  const body = Buffer.concat([cipher.update(name, 'utf8'), cipher.final()])
  return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url')
}

/** Opens a name sealed by {@link sealName}; HEARTH_ERR_STORAGE_CORRUPT when it was altered or sealed under another key. */
export function openName(key: StorageKey, sealed: string): string {
  const bytes = Buffer.from(sealed, 'base64url')
  if (bytes.length < 12 + tagBytes) throw corrupt('a sealed name is too short')
  try {
    const decipher = createDecipheriv('aes-256-gcm', derive(key, new Uint8Array(0), 'hearth/storage/names/1'), bytes.subarray(0, 12))
    decipher.setAuthTag(bytes.subarray(bytes.length - tagBytes))
    return Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - tagBytes)), decipher.final()]).toString('utf8')
  } catch {
    throw corrupt('a sealed name fails its check')
  }
}
