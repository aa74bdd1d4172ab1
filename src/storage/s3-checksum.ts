/**
 * The additional checksums S3 clients send with a body (an x-amz-checksum-* header or trailer), computed as the body
 * streams: CRC32 (node:zlib's), CRC32C (here, slicing by 8), SHA-1 and SHA-256. CRC64NVME is refused with a clear error
 * rather than left unchecked. Values are base64 of the big-endian checksum, as S3 writes them.
 */
import { createHash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { S3Error } from './s3-errors.ts'

export const checksumAlgorithms = ['crc32', 'crc32c', 'sha1', 'sha256'] as const
export type ChecksumAlgorithm = (typeof checksumAlgorithms)[number]

/** A checksum computed piece by piece. */
export interface Checksummer {
  update(data: Uint8Array): void
  /** The checksum of everything given, base64. */
  digest(): string
}

/** The CRC-32C (Castagnoli) tables for slicing by 8: table[k][b] is byte b's remainder shifted through k more bytes. */
const crc32cTables: Uint32Array[] = (() => {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256))
  for (let b = 0; b < 256; b++) {
    let crc = b
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1
    tables[0]![b] = crc >>> 0
  }
  for (let b = 0; b < 256; b++) {
    for (let k = 1; k < 8; k++) tables[k]![b] = (tables[k - 1]![b]! >>> 8) ^ tables[0]![tables[k - 1]![b]! & 0xff]!
  }
  return tables
})()

/** CRC-32C of `data`, continuing from `previous` (0 to start). */
export function crc32c(data: Uint8Array, previous = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = crc32cTables as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array]
  let crc = ~previous >>> 0
  let i = 0
  const whole = data.length - (data.length % 8)
  for (; i < whole; i += 8) {
    const low = (crc ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0
    crc = t7[low & 0xff]! ^ t6[(low >>> 8) & 0xff]! ^ t5[(low >>> 16) & 0xff]! ^ t4[low >>> 24]! ^ t3[data[i + 4]!]! ^ t2[data[i + 5]!]! ^ t1[data[i + 6]!]! ^ t0[data[i + 7]!]!
  }
  for (; i < data.length; i++) crc = (crc >>> 8) ^ t0[(crc ^ data[i]!) & 0xff]!
  return ~crc >>> 0
}

function crcSummer(step: (data: Uint8Array, previous: number) => number): Checksummer {
  let value = 0
  return {
    update(data) {
      value = step(data, value)
    },
    digest() {
      const bytes = Buffer.alloc(4)
      bytes.writeUInt32BE(value >>> 0)
      return bytes.toString('base64')
    },
  }
}

/** A new checksummer for `algorithm`. */
export function checksummer(algorithm: ChecksumAlgorithm): Checksummer {
  if (algorithm === 'crc32') return crcSummer((data, previous) => crc32(data, previous))
  if (algorithm === 'crc32c') return crcSummer(crc32c)
  const hash = createHash(algorithm)
  return {
    update: (data) => void hash.update(data),
    digest: () => hash.digest('base64'),
  }
}

/**
 * The algorithm an x-amz-checksum-<name> header or trailer names; undefined for a header of another kind
 * (x-amz-checksum-algorithm, x-amz-checksum-type, x-amz-checksum-mode). Throws for algorithms not supported here.
 */
export function checksumAlgorithmOfHeader(name: string): ChecksumAlgorithm | undefined {
  const match = /^x-amz-checksum-(.+)$/.exec(name.toLowerCase())
  if (match === null || ['algorithm', 'type', 'mode'].includes(match[1]!)) return undefined
  const algorithm = checksumAlgorithms.find((known) => known === match[1])
  if (algorithm === undefined) {
    throw new S3Error('InvalidRequest', `the checksum ${name} is not supported by this endpoint: send CRC32, CRC32C, SHA1 or SHA256 (e.g. the AWS SDK's checksumAlgorithm CRC32)`)
  }
  return algorithm
}
