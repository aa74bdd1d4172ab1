/**
 * The manifest: what an owner has stored and where, as one document sealed under the storage key (seal.ts) so that it
 * can live in the network beside the files it lists: the key alone then restores everything on a new machine. Names,
 * sizes and placements are inside the seal; a provider holding the manifest learns nothing from it. A sealed manifest
 * is its random file id (16 bytes) followed by its sealed bytes; every save seals it anew under a fresh id.
 */
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { newFileId, openFile, sealFile } from './seal.ts'
import type { StorageKey } from './storage-key.ts'

const hex = z.string().regex(/^[0-9a-f]+$/)

const layoutSchema = z.strictObject({
  fileId: hex.length(32),
  plainBytes: z.number().int().nonnegative(),
  segmentBytes: z.number().int().positive(),
  k: z.number().int().min(1).max(24),
  m: z.number().int().min(1).max(6),
  shardBytes: z.number().int().positive(),
  stripes: z.number().int().positive(),
  pieces: z.array(z.strictObject({ index: z.number().int().nonnegative(), root: hex.length(64) })),
})

const entrySchema = z.strictObject({
  bucket: z.string().min(1).max(63),
  key: z.string().min(1).max(1024),
  createdAtMs: z.number().int().nonnegative(),
  /** The file's SHA-256 before sealing, hex: what `get` checks the bytes it gives back against. */
  sha256: hex.length(64),
  /** What S3 clients see of it: its ETag, content type and user metadata. */
  etag: z.string().max(80).optional(),
  contentType: z.string().max(256).optional(),
  metadata: z.record(z.string().max(128), z.string().max(2048)).optional(),
  layout: layoutSchema,
  /** Where each piece is: its provider (address), the agreement it is held under, the provider's region. */
  placements: z.array(z.strictObject({
    piece: z.number().int().nonnegative(),
    provider: z.string().regex(/^0x[0-9a-fA-F]{40}$/),
    agreementId: z.string().regex(/^0x[0-9a-f]{64}$/).optional(),
    region: z.string().max(32).optional(),
  })),
})

export const manifestSchema = z.strictObject({
  version: z.literal(1),
  /** When it was saved: of two copies found in the network, the newer wins. */
  savedAtMs: z.number().int().nonnegative().optional(),
  buckets: z.array(z.strictObject({ name: z.string().min(1).max(63), createdAtMs: z.number().int().nonnegative() })).optional(),
  entries: z.array(entrySchema),
})

export type Manifest = z.output<typeof manifestSchema>
export type ManifestEntry = z.output<typeof entrySchema>

export const emptyManifest = (): Manifest => ({ version: 1, entries: [] })

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) parts.push(chunk)
  return Buffer.concat(parts)
}

/** The manifest sealed: its file id, then its sealed JSON. */
export async function sealManifest(key: StorageKey, manifest: Manifest): Promise<Uint8Array> {
  const checked = manifestSchema.safeParse(manifest)
  if (!checked.success) throw new HearthError('HEARTH_ERR_API_MISUSE', `sealManifest was given no manifest: ${checked.error.issues[0]?.path.join('.')}: ${checked.error.issues[0]?.message}`)
  const fileId = newFileId()
  const sealed = await collect(sealFile(key, fileId, [Buffer.from(JSON.stringify(checked.data))]))
  return new Uint8Array(Buffer.concat([fileId, sealed]))
}

/** A sealed manifest opened and checked whole; HEARTH_ERR_STORAGE_CORRUPT when it was altered or is not one. */
export async function openManifest(key: StorageKey, sealed: Uint8Array): Promise<Manifest> {
  if (sealed.length < 16 + 16) throw new HearthError('HEARTH_ERR_STORAGE_CORRUPT', 'the stored manifest is too short to be one', { hint: 'read the manifest from another provider' })
  const json = await collect(openFile(key, sealed.subarray(0, 16), [sealed.subarray(16)]))
  let parsed: unknown
  try {
    parsed = JSON.parse(json.toString('utf8'))
  } catch {
    throw new HearthError('HEARTH_ERR_STORAGE_CORRUPT', 'the manifest decrypts but is not JSON', { hint: 'it was written by another program: read an older copy' })
  }
  const checked = manifestSchema.safeParse(parsed)
  if (!checked.success) throw new HearthError('HEARTH_ERR_STORAGE_CORRUPT', `the manifest decrypts but is not one Hearth reads: ${checked.error.issues[0]?.message ?? 'invalid'}`, { hint: 'it was written by another version: read an older copy' })
  return checked.data
}

/** The entry for `bucket`/`key`, if stored. */
export function findEntry(manifest: Manifest, bucket: string, key: string): ManifestEntry | undefined {
  return manifest.entries.find((entry) => entry.bucket === bucket && entry.key === key)
}

/** The manifest with `entry` in place of any under the same bucket and key. */
export function withEntry(manifest: Manifest, entry: ManifestEntry): Manifest {
  return { ...manifest, entries: [...manifest.entries.filter((e) => e.bucket !== entry.bucket || e.key !== entry.key), entry] }
}

/** The manifest without the entry at `bucket`/`key`. */
export function withoutEntry(manifest: Manifest, bucket: string, key: string): Manifest {
  return { ...manifest, entries: manifest.entries.filter((e) => e.bucket !== bucket || e.key !== key) }
}

/** The manifest with a new, empty bucket; HEARTH_ERR_STORAGE_STATE when one of that name exists. */
export function withBucket(manifest: Manifest, name: string, nowMs = Date.now()): Manifest {
  if ((manifest.buckets ?? []).some((b) => b.name === name)) throw new HearthError('HEARTH_ERR_STORAGE_STATE', `bucket ${name} exists already`, { hint: 'pick another name, or use it as it is' })
  return { ...manifest, buckets: [...(manifest.buckets ?? []), { name, createdAtMs: nowMs }] }
}

/** The manifest without bucket `name`; HEARTH_ERR_STORAGE_STATE while it holds objects. */
export function withoutBucket(manifest: Manifest, name: string): Manifest {
  if (manifest.entries.some((entry) => entry.bucket === name)) throw new HearthError('HEARTH_ERR_STORAGE_STATE', `bucket ${name} is not empty`, { hint: 'remove its objects first' })
  return { ...manifest, buckets: (manifest.buckets ?? []).filter((b) => b.name !== name) }
}
