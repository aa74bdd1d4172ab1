/**
 * The multipart uploads the S3 endpoint holds open (s3-multipart.ts answers their requests): each upload's target and
 * metadata in memory, each part a file in the staging folder (mode 0700; files 0600) until the upload is completed,
 * into the object store, or aborted. A part is written to a file of its own and takes the place of an earlier part of
 * its number only once whole, so a part that fails, or is sent again, never spoils one already staged. Open uploads do
 * not outlive the endpoint: their files are removed when it closes, and any left by an endpoint that crashed are
 * removed when the next one opens the folder.
 */
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { S3Error } from './s3-errors.ts'
import { writeBody } from './write-body.ts'

export interface StagedPart {
  partNumber: number
  path: string
  size: number
  /** MD5 of the part, hex. */
  etag: string
  lastModifiedMs: number
  /** The checksum the client sent with the part and that matched, header name and value. */
  checksum: { name: string; value: string } | undefined
}

export interface Upload {
  id: string
  bucket: string
  key: string
  contentType: string | undefined
  metadata: Record<string, string>
  initiatedMs: number
  parts: Map<number, StagedPart>
  /** Set while the upload's parts are being streamed into the store. */
  completing: boolean
}

export interface Staging {
  create(init: Pick<Upload, 'bucket' | 'key' | 'contentType' | 'metadata'>): Upload
  /** The open upload `id` of bucket/key; NoSuchUpload when there is none. */
  find(id: string, bucket: string, key: string): Upload
  /** Open uploads of `bucket`, by key then id. */
  list(bucket: string): Upload[]
  /**
   * Stages part `partNumber` from `body`; `etag` is asked once the body is whole. The part replaces an earlier one of
   * its number only if the upload is still open and not completing.
   */
  writePart(upload: Upload, partNumber: number, body: AsyncIterable<Uint8Array>, etag: () => string, checksum: () => StagedPart['checksum']): Promise<StagedPart>
  /** Ends the upload: its part files removed, its id forgotten. */
  remove(upload: Upload): Promise<void>
  /** Removes every open upload. */
  close(): Promise<void>
}

const filePrefix = 's3-part-'

const noSuchUpload = (): S3Error =>
  new S3Error('NoSuchUpload', 'The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.')


/** Opens the staging folder `dir` (made if missing, made private), removing part files an earlier endpoint left. */
export async function openStaging(dir: string): Promise<Staging> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await chmod(dir, 0o700)
  for (const name of await readdir(dir)) if (name.startsWith(filePrefix)) await rm(join(dir, name), { force: true })
  const uploads = new Map<string, Upload>()

  const staging: Staging = {
    create(init) {
      const upload: Upload = { ...init, id: randomBytes(24).toString('base64url'), initiatedMs: Date.now(), parts: new Map(), completing: false }
      uploads.set(upload.id, upload)
      return upload
    },

    find(id, bucket, key) {
      const upload = uploads.get(id)
      if (upload === undefined || upload.bucket !== bucket || upload.key !== key) throw noSuchUpload()
      return upload
    },

    list(bucket) {
      return [...uploads.values()]
        .filter((upload) => upload.bucket === bucket)
        .sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    },

    async writePart(upload, partNumber, body, etag, checksum) {
      const path = join(dir, `${filePrefix}${upload.id}-${partNumber}-${randomBytes(6).toString('hex')}`)
      const handle = await open(path, 'wx', 0o600)
      let size = 0
      try {
        try {
          size = await writeBody(handle, body)
        } finally {
          await handle.close()
        }
        if (uploads.get(upload.id) !== upload) throw noSuchUpload()
        if (upload.completing) throw new S3Error('OperationAborted', 'the upload is being completed: a part can no longer be sent to it')
      } catch (error) {
        await rm(path, { force: true })
        throw error
      }
      const part: StagedPart = { partNumber, path, size, etag: etag(), lastModifiedMs: Date.now(), checksum: checksum() }
      const replaced = upload.parts.get(partNumber)
      upload.parts.set(partNumber, part)
      if (replaced !== undefined) await rm(replaced.path, { force: true })
      return part
    },

    async remove(upload) {
      if (uploads.get(upload.id) === upload) uploads.delete(upload.id)
      await Promise.all([...upload.parts.values()].map((part) => rm(part.path, { force: true })))
      upload.parts.clear()
    },

    async close() {
      await Promise.all([...uploads.values()].map((upload) => staging.remove(upload)))
    },
  }
  return staging
}
