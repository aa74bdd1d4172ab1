/**
 * What the owner's node stores, as buckets of named objects: the one interface behind `hearth store` and the S3
 * endpoint (s3-server.ts). The node's dispersed store implements it (sealed, erasure-coded pieces on providers); tests
 * of the S3 protocol may use a folder on disk. Names are plain here: sealing them is the implementation's concern.
 *
 * Errors are HearthErrors: HEARTH_ERR_STORAGE_NOT_FOUND for a bucket or object that is not there,
 * HEARTH_ERR_STORAGE_STATE for a bucket that exists already or is not empty, HEARTH_ERR_STORAGE_UNAVAILABLE when too
 * few providers can take or give back the pieces.
 */

export interface BucketInfo {
  name: string
  createdAtMs: number
}

export interface ObjectInfo {
  bucket: string
  key: string
  /** Plaintext bytes. */
  size: number
  /** The ETag S3 clients see, without quotes (the MD5 of a single put; `<md5 of part md5s>-<parts>` of a multipart one). */
  etag: string
  lastModifiedMs: number
  contentType?: string
  /** User metadata (S3's x-amz-meta-*), names lower-case. */
  metadata: Record<string, string>
}

export interface PutObjectInput {
  bucket: string
  key: string
  body: AsyncIterable<Uint8Array>
  /** The body's length when known up front (Content-Length, a file's size); else the store finds it out. */
  size?: number
  contentType?: string
  metadata?: Record<string, string>
  /**
   * The ETag, asked once the body has been read to its end (the caller hashes the body as it passes). When absent
   * the store computes the MD5 of the body itself.
   */
  etag?: () => string
}

/** A byte range, both ends included, as HTTP and S3 state it; `end` within the object. */
export interface ByteRange {
  start: number
  end: number
}

export interface ObjectStore {
  listBuckets(): Promise<BucketInfo[]>
  /** HEARTH_ERR_STORAGE_STATE when it exists already. */
  createBucket(name: string): Promise<void>
  /** HEARTH_ERR_STORAGE_STATE when it holds objects; HEARTH_ERR_STORAGE_NOT_FOUND when there is none. */
  deleteBucket(name: string): Promise<void>
  hasBucket(name: string): Promise<boolean>
  /** Stores the body under bucket/key, replacing what was there once the new object is whole. */
  putObject(input: PutObjectInput): Promise<ObjectInfo>
  headObject(bucket: string, key: string): Promise<ObjectInfo | undefined>
  /** The object, or the bytes in `range` of it; undefined when there is none (the bucket missing: NOT_FOUND thrown). */
  getObject(bucket: string, key: string, range?: ByteRange): Promise<{ info: ObjectInfo; body: AsyncIterable<Uint8Array> } | undefined>
  /** Objects whose key starts with `prefix`, sorted by key (UTF-8 byte order, as S3 lists them). */
  listObjects(bucket: string, prefix?: string): Promise<ObjectInfo[]>
  /** Removes the object; nothing happens when there is none. */
  deleteObject(bucket: string, key: string): Promise<void>
}
