import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { crc32 } from 'node:zlib'
import { after, before, describe, it } from 'node:test'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type S3ServiceException,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { Client as MinioClient } from 'minio'
import { HearthError } from '../errors.ts'
import { openFolderObjectStore } from './folder-object-store.ts'
import type { ObjectStore } from './object-store.ts'
import { crc32c } from './s3-checksum.ts'
import { parseRange } from './s3-objects.ts'
import { startS3Server, type S3Server } from './s3-server.ts'
import { chunkSignature, presignUrl, signRequest } from './s3-sigv4.ts'
import { parseXml } from './s3-xml.ts'

const region = 'us-east-1'
const credentials = { accessKeyId: 'HEARTHTESTKEY0000001', secretAccessKey: randomBytes(30).toString('base64') }
const MiB = 1024 * 1024

let dir: string
let stagingDir: string
let store: ObjectStore
let server: S3Server
let s3: S3Client

const sha256Hex = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex')
const md5Hex = (data: Uint8Array): string => createHash('md5').update(data).digest('hex')

function clientWith(keys: { accessKeyId: string; secretAccessKey: string }): S3Client {
  return new S3Client({ endpoint: server.url, region, forcePathStyle: true, credentials: keys, maxAttempts: 1 })
}

async function bytesOf(body: AsyncIterable<Uint8Array> | undefined): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of body ?? []) parts.push(chunk)
  return Buffer.concat(parts)
}

/** The S3 error code a failed SDK call carries. */
async function sdkError(call: Promise<unknown>): Promise<{ code: string; status: number | undefined }> {
  try {
    await call
  } catch (error) {
    const failure = error as S3ServiceException
    return { code: failure.name, status: failure.$metadata?.httpStatusCode }
  }
  assert.fail('the call succeeded, but it should have failed')
}

interface RawAnswer {
  status: number
  headers: IncomingHttpHeaders
  text: string
}

/** Sends one request over its own connection (never pooled), as a hostile client might. */
function send(method: string, path: string, headers: Record<string, string | number>, body?: Buffer | ((write: (chunk: Buffer) => void, end: () => void, abort: () => void) => void)): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, server.url)
    const req = httpRequest({ host: url.hostname, port: url.port, method, path: url.pathname + url.search, headers, agent: false })
    req.on('response', (res) => {
      const parts: Buffer[] = []
      res.on('data', (chunk: Buffer) => parts.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(parts).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    if (typeof body === 'function') body((chunk) => req.write(chunk), () => req.end(), () => req.destroy())
    else req.end(body)
  })
}

/** Sends a request signed in its Authorization header. */
function signed(method: string, path: string, options: { body?: Buffer; headers?: Record<string, string>; payloadHash?: string; keys?: typeof credentials; nowMs?: number } = {}): Promise<RawAnswer> {
  const url = new URL(path, server.url)
  const body = options.body
  const payloadHash = options.payloadHash ?? sha256Hex(body ?? Buffer.alloc(0))
  const headers = { ...options.headers, ...(body === undefined ? {} : { 'content-length': String(body.length) }) }
  const { headers: sent } = signRequest({ method, url, headers, payloadHash, credentials: options.keys ?? credentials, region, ...(options.nowMs === undefined ? {} : { nowMs: options.nowMs }) })
  return send(method, path, sent, body)
}

const codeOf = (answer: RawAnswer): string | undefined => /<Code>([^<]*)<\/Code>/.exec(answer.text)?.[1]

interface ChunkSigning {
  signingKey: Buffer
  amzDate: string
  scope: string
  signature: string
}

interface ChunkedOptions {
  /** Signs each chunk in the chain from the request's signature; unsigned chunks when absent. */
  signing?: ChunkSigning
  /** The chunk whose signature is altered. */
  tamper?: number
  /** A trailing header, signed when the chunks are; `tamperTrailer` alters its signature. */
  trailer?: [string, string]
  tamperTrailer?: boolean
}

const flip = (signature: string): string => `${signature[0] === '0' ? '1' : '0'}${signature.slice(1)}`

/** `data` as an aws-chunked body of 64 KiB chunks. */
function awsChunked(data: Buffer, options: ChunkedOptions): Buffer {
  const chunks: Buffer[] = []
  for (let at = 0; at < data.length; at += 64 * 1024) chunks.push(data.subarray(at, at + 64 * 1024))
  chunks.push(Buffer.alloc(0))
  const { signing } = options
  let previous = signing?.signature ?? ''
  const parts: Buffer[] = []
  chunks.forEach((chunk, index) => {
    let extension = ''
    if (signing !== undefined) {
      previous = chunkSignature(signing.signingKey, signing.amzDate, signing.scope, previous, sha256Hex(chunk))
      extension = `;chunk-signature=${index === options.tamper ? flip(previous) : previous}`
    }
    parts.push(Buffer.from(`${chunk.length.toString(16)}${extension}\r\n`), chunk)
    if (chunk.length > 0) parts.push(Buffer.from('\r\n'))
  })
  if (options.trailer !== undefined) {
    const [name, value] = options.trailer
    parts.push(Buffer.from(`${name}:${value}\r\n`))
    if (signing !== undefined) {
      const signature = chunkSignature(signing.signingKey, signing.amzDate, signing.scope, previous, sha256Hex(`${name}:${value}\n`), 'TRAILER')
      parts.push(Buffer.from(`x-amz-trailer-signature:${options.tamperTrailer === true ? flip(signature) : signature}\r\n`))
    }
  }
  parts.push(Buffer.from('\r\n'))
  return Buffer.concat(parts)
}

/** Sends `data` as an aws-chunked PutObject: signed chunks unless `signed` is false, with a CRC32 trailer if asked. */
function putChunked(path: string, data: Buffer, options: { signed?: boolean; tamper?: number; trailer?: [string, string]; tamperTrailer?: boolean } = {}): Promise<RawAnswer> {
  const url = new URL(path, server.url)
  const signedChunks = options.signed !== false
  const placeholder = signedChunks ? { signingKey: Buffer.alloc(32), amzDate: '', scope: '', signature: '0'.repeat(64) } : undefined
  const length = awsChunked(data, { ...options, ...(placeholder === undefined ? {} : { signing: placeholder }) }).length
  const headers: Record<string, string> = { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': String(data.length), 'content-length': String(length) }
  if (options.trailer !== undefined) headers['x-amz-trailer'] = options.trailer[0]
  const mode = `STREAMING-${signedChunks ? 'AWS4-HMAC-SHA256' : 'UNSIGNED'}-PAYLOAD${options.trailer === undefined ? '' : '-TRAILER'}`
  const signing = signRequest({ method: 'PUT', url, headers, payloadHash: mode, credentials, region })
  return send('PUT', path, signing.headers, awsChunked(data, { ...options, ...(signedChunks ? { signing } : {}) }))
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-s3-'))
  stagingDir = join(dir, 'staging')
  store = await openFolderObjectStore(join(dir, 'store'))
  server = await startS3Server({ store, credentials, stagingDir })
  s3 = clientWith(credentials)
})

after(async () => {
  s3.destroy()
  await server.close()
  await rm(dir, { recursive: true, force: true })
})

describe('the S3 endpoint with @aws-sdk/client-s3 (default checksums)', () => {
  const bucket = 'sdk-bucket'
  const big = randomBytes(3 * MiB + 12345)

  before(async () => {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }))
  })

  it('creates a bucket, lists and heads it, and refuses to create it twice', async () => {
    const { Buckets } = await s3.send(new ListBucketsCommand({}))
    assert.ok(Buckets?.some((b) => b.Name === bucket))
    await s3.send(new HeadBucketCommand({ Bucket: bucket }))
    assert.equal((await sdkError(s3.send(new CreateBucketCommand({ Bucket: bucket })))).code, 'BucketAlreadyOwnedByYou')
    assert.equal((await sdkError(s3.send(new HeadBucketCommand({ Bucket: 'no-such-bucket' })))).status, 404)
  })

  it('puts a string and a multi-MiB buffer, and gets them back whole, by range, and their headers', async () => {
    const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'notes/hello.txt', Body: 'hello, hearth', ContentType: 'text/plain', Metadata: { colour: 'amber' } }))
    assert.equal(put.ETag, `"${md5Hex(Buffer.from('hello, hearth'))}"`)
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'data/big.bin', Body: big }))
    const text = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'notes/hello.txt' }))
    assert.equal(await text.Body?.transformToString(), 'hello, hearth')
    assert.equal(text.ContentType, 'text/plain')
    assert.deepEqual(text.Metadata, { colour: 'amber' })
    const whole = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'data/big.bin' }))
    assert.ok(Buffer.from(await whole.Body!.transformToByteArray()).equals(big))
    const part = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'data/big.bin', Range: 'bytes=1000000-1999999' }))
    assert.equal(part.ContentRange, `bytes 1000000-1999999/${big.length}`)
    assert.ok(Buffer.from(await part.Body!.transformToByteArray()).equals(big.subarray(1000000, 2000000)))
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'data/big.bin' }))
    assert.equal(head.ContentLength, big.length)
    assert.equal(head.ETag, `"${md5Hex(big)}"`)
    assert.equal((await sdkError(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'data/big.bin', Range: `bytes=${big.length}-` })))).code, 'InvalidRange')
    assert.equal((await sdkError(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'missing' })))).code, 'NoSuchKey')
    assert.equal((await sdkError(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'missing' })))).status, 404)
  })

  it('streams a 32 MiB body of unknown make (aws-chunked with a CRC32 trailer) in and out', async () => {
    const block = randomBytes(MiB)
    const blocks = 32
    const source = Readable.from((function* () {
      for (let i = 0; i < blocks; i++) yield block
    })())
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'stream/32m.bin', Body: source, ContentLength: blocks * MiB }))
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'stream/32m.bin' }))
    let offset = 0
    for await (const chunk of got.Body as AsyncIterable<Uint8Array>) {
      for (let at = 0; at < chunk.length; ) {
        const within = (offset + at) % MiB
        const take = Math.min(chunk.length - at, MiB - within)
        assert.ok(Buffer.from(chunk.buffer, chunk.byteOffset + at, take).equals(block.subarray(within, within + take)), `bytes at ${offset + at}`)
        at += take
      }
      offset += chunk.length
    }
    assert.equal(offset, blocks * MiB)
  })

  it('answers GetBucketLocation, ListObjects (the first version, with markers) and conditional GETs', async () => {
    assert.equal((await s3.send(new GetBucketLocationCommand({ Bucket: bucket }))).LocationConstraint, undefined)
    await Promise.all(['v1/a', 'v1/b/1', 'v1/b/2', 'v1/c'].map((Key) => s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }))))
    const first = await s3.send(new ListObjectsCommand({ Bucket: bucket, Prefix: 'v1/', Delimiter: '/', MaxKeys: 2 }))
    assert.deepEqual([first.Contents?.map((object) => object.Key), first.CommonPrefixes?.map((common) => common.Prefix), first.IsTruncated, first.NextMarker], [['v1/a'], ['v1/b/'], true, 'v1/b/'])
    const second = await s3.send(new ListObjectsCommand({ Bucket: bucket, Prefix: 'v1/', Delimiter: '/', MaxKeys: 2, Marker: first.NextMarker }))
    assert.deepEqual([second.Contents?.map((object) => object.Key), second.CommonPrefixes, second.IsTruncated], [['v1/c'], undefined, false])
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'v1/a' }))
    assert.equal((await sdkError(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'v1/a', IfNoneMatch: head.ETag })))).status, 304)
    assert.equal((await sdkError(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'v1/a', IfMatch: '"0123"' })))).code, 'PreconditionFailed')
    assert.equal(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'v1/a', IfMatch: head.ETag }))).Body?.transformToString(), 'v1/a')
  })

  it('lists with prefix, delimiter and continuation tokens over more keys than max-keys', async () => {
    const keys = Array.from({ length: 23 }, (_, i) => `list/item-${String(i).padStart(2, '0')}`)
    await Promise.all(keys.map((Key) => s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }))))
    await Promise.all(['list/dir-a/x', 'list/dir-a/y', 'list/dir-b/z'].map((Key) => s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }))))
    const seen: string[] = []
    const prefixes: string[] = []
    let token: string | undefined
    let pages = 0
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'list/', Delimiter: '/', MaxKeys: 5, ContinuationToken: token }))
      pages++
      assert.equal(page.KeyCount, (page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0))
      assert.ok((page.KeyCount ?? 0) <= 5)
      seen.push(...(page.Contents ?? []).map((object) => object.Key!))
      prefixes.push(...(page.CommonPrefixes ?? []).map((common) => common.Prefix!))
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
    assert.equal(pages, 5)
    assert.deepEqual(seen, keys)
    assert.deepEqual(prefixes, ['list/dir-a/', 'list/dir-b/'])
    const after = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'list/item-', StartAfter: 'list/item-20' }))
    assert.deepEqual(after.Contents?.map((object) => object.Key), ['list/item-21', 'list/item-22'])
    const encoded = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'list/dir-a/', EncodingType: 'url' }))
    assert.deepEqual(encoded.Contents?.map((object) => decodeURIComponent(object.Key!)), ['list/dir-a/x', 'list/dir-a/y'])
  })

  it('uploads 12 MiB in 5 MiB parts through lib-storage Upload: byte-identical back, ETag of 3 parts', async () => {
    const body = randomBytes(12 * MiB + 999)
    const upload = new Upload({ client: s3, params: { Bucket: bucket, Key: 'multi/lib-storage.bin', Body: body, ContentType: 'application/x-test' }, partSize: 5 * MiB, queueSize: 2 })
    const done = await upload.done()
    assert.match(done.ETag ?? '', /^"[0-9a-f]{32}-3"$/)
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'multi/lib-storage.bin' }))
    assert.equal(got.ETag, done.ETag)
    assert.equal(got.ContentType, 'application/x-test')
    assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body))
    assert.deepEqual(await readdir(stagingDir), [])
  })

  it('runs the multipart commands one by one: parts listed, completed, and an aborted upload leaves nothing', async () => {
    const Key = 'multi/explicit.bin'
    const parts = [randomBytes(5 * MiB), randomBytes(1234)]
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key, Metadata: { origin: 'test' } }))
    const etags: string[] = []
    for (const [index, Body] of parts.entries()) etags.push((await s3.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: index + 1, Body }))).ETag!)
    const staged = await readdir(stagingDir)
    assert.equal(staged.length, 2)
    assert.equal((await stat(stagingDir)).mode & 0o777, 0o700)
    for (const name of staged) assert.equal((await stat(join(stagingDir, name))).mode & 0o777, 0o600)
    const listed = await s3.send(new ListPartsCommand({ Bucket: bucket, Key, UploadId }))
    assert.deepEqual(listed.Parts?.map((part) => [part.PartNumber, part.Size, part.ETag]), [[1, 5 * MiB, etags[0]], [2, 1234, etags[1]]])
    const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts: etags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) } }))
    const expected = createHash('md5').update(Buffer.concat(parts.map((part) => createHash('md5').update(part).digest()))).digest('hex')
    assert.equal(done.ETag, `"${expected}-2"`)
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key }))
    assert.deepEqual(got.Metadata, { origin: 'test' })
    assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(Buffer.concat(parts)))

    const aborted = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'multi/aborted.bin' }))
    await s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'multi/aborted.bin', UploadId: aborted.UploadId, PartNumber: 1, Body: randomBytes(1000) }))
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'multi/aborted.bin', UploadId: aborted.UploadId }))
    assert.deepEqual(await readdir(stagingDir), [])
    assert.equal(await store.headObject(bucket, 'multi/aborted.bin'), undefined)
    assert.equal((await sdkError(s3.send(new ListPartsCommand({ Bucket: bucket, Key: 'multi/aborted.bin', UploadId: aborted.UploadId })))).code, 'NoSuchUpload')
  })

  it('refuses parts under 5 MiB but the last with EntityTooSmall', async () => {
    const Key = 'multi/small.bin'
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }))
    const etags: string[] = []
    for (const PartNumber of [1, 2]) etags.push((await s3.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber, Body: randomBytes(1000) }))).ETag!)
    const failure = await sdkError(s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts: etags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) } })))
    assert.equal(failure.code, 'EntityTooSmall')
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }))
  })

  it('deletes objects one by one and in a batch, and a bucket only once it is empty', async () => {
    const scratch = 'sdk-scratch'
    await s3.send(new CreateBucketCommand({ Bucket: scratch }))
    await Promise.all(['a', 'b', 'c/d'].map((Key) => s3.send(new PutObjectCommand({ Bucket: scratch, Key, Body: Key }))))
    assert.equal((await sdkError(s3.send(new DeleteBucketCommand({ Bucket: scratch })))).code, 'BucketNotEmpty')
    await s3.send(new DeleteObjectCommand({ Bucket: scratch, Key: 'a' }))
    await s3.send(new DeleteObjectCommand({ Bucket: scratch, Key: 'never-there' }))
    const batch = await s3.send(new DeleteObjectsCommand({ Bucket: scratch, Delete: { Objects: [{ Key: 'b' }, { Key: 'c/d' }] } }))
    assert.deepEqual(batch.Deleted?.map((deleted) => deleted.Key).sort(), ['b', 'c/d'])
    assert.deepEqual(await store.listObjects(scratch), [])
    await s3.send(new DeleteBucketCommand({ Bucket: scratch }))
    assert.equal(await store.hasBucket(scratch), false)
    assert.equal((await sdkError(s3.send(new DeleteBucketCommand({ Bucket: scratch })))).code, 'NoSuchBucket')
  })

  it('refuses a wrong secret with SignatureDoesNotMatch and an unknown key id with InvalidAccessKeyId', async () => {
    const wrongSecret = clientWith({ accessKeyId: credentials.accessKeyId, secretAccessKey: 'not-the-secret' })
    const unknownKey = clientWith({ accessKeyId: 'SOMEONEELSE', secretAccessKey: credentials.secretAccessKey })
    try {
      assert.deepEqual(await sdkError(wrongSecret.send(new PutObjectCommand({ Bucket: bucket, Key: 'forged', Body: 'x' }))), { code: 'SignatureDoesNotMatch', status: 403 })
      assert.deepEqual(await sdkError(unknownKey.send(new ListObjectsV2Command({ Bucket: bucket }))), { code: 'InvalidAccessKeyId', status: 403 })
      assert.deepEqual(await sdkError(wrongSecret.send(new PutObjectCommand({ Bucket: bucket, Key: 'forged', Body: randomBytes(6 * MiB) }))), { code: 'SignatureDoesNotMatch', status: 403 })
      assert.deepEqual(await sdkError(s3.send(new PutObjectCommand({ Bucket: 'no-such-bucket', Key: 'k', Body: randomBytes(6 * MiB) }))), { code: 'NoSuchBucket', status: 404 })
    } finally {
      wrongSecret.destroy()
      unknownKey.destroy()
    }
    assert.equal(await store.headObject(bucket, 'forged'), undefined)
  })

  it('serves a presigned GET URL and refuses one that was tampered with', async () => {
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: 'notes/hello.txt' }), { expiresIn: 300 })
    const good = await fetch(url)
    assert.equal(good.status, 200)
    assert.equal(await good.text(), 'hello, hearth')
    const tampered = new URL(url)
    tampered.pathname = `/${bucket}/data/big.bin`
    const bad = await fetch(tampered)
    assert.equal(bad.status, 403)
    assert.match(await bad.text(), /<Code>SignatureDoesNotMatch<\/Code>/)
    const expires = new URL(url)
    expires.searchParams.set('X-Amz-Expires', '3000')
    assert.equal((await fetch(expires)).status, 403)
  })
})

describe('the S3 endpoint in front of a slow store', () => {
  let slowServer: S3Server
  let client: S3Client

  before(async () => {
    const slow: ObjectStore = {
      ...store,
      async putObject(input) {
        await new Promise((resolve) => setTimeout(resolve, 5_500))
        if (input.key.endsWith('fail.bin')) throw new HearthError('HEARTH_ERR_STORAGE_UNAVAILABLE', 'too few providers agreed to hold the pieces')
        return store.putObject(input)
      },
    }
    slowServer = await startS3Server({ store: slow, credentials, stagingDir: join(dir, 'slow-staging') })
    client = new S3Client({ endpoint: slowServer.url, region, forcePathStyle: true, credentials, maxAttempts: 1 })
    await client.send(new CreateBucketCommand({ Bucket: 'slow-bucket' }))
  })

  after(async () => {
    client.destroy()
    await slowServer.close()
  })

  it('keeps a long CompleteMultipartUpload alive with whitespace, and reports a late failure in the 200 body', async () => {
    const complete = async (Key: string): Promise<string | undefined> => {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: 'slow-bucket', Key }))
      const part = await client.send(new UploadPartCommand({ Bucket: 'slow-bucket', Key, UploadId, PartNumber: 1, Body: 'only part' }))
      const done = await client.send(new CompleteMultipartUploadCommand({ Bucket: 'slow-bucket', Key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }))
      return done.ETag
    }
    const [succeeded, failed] = await Promise.all([complete('slow/ok.bin'), sdkError(complete('slow/fail.bin'))])
    assert.equal(succeeded, `"${createHash('md5').update(createHash('md5').update('only part').digest()).digest('hex')}-1"`)
    assert.equal(failed.code, 'ServiceUnavailable')
    assert.equal(await store.headObject('slow-bucket', 'slow/fail.bin'), undefined)
  })
})

describe('the S3 endpoint with minio', () => {
  const bucket = 'minio-bucket'
  let minio: MinioClient

  before(() => {
    minio = new MinioClient({ endPoint: '127.0.0.1', port: server.port, useSSL: false, accessKey: credentials.accessKeyId, secretKey: credentials.secretAccessKey, pathStyle: true, region, partSize: 5 * MiB })
  })

  it('makes a bucket, puts a small and a multipart object, lists, reads a range, stats and removes', async () => {
    await minio.makeBucket(bucket, region)
    assert.equal(await minio.bucketExists(bucket), true)
    await minio.putObject(bucket, 'small.txt', Buffer.from('minio says hi'), undefined, { 'Content-Type': 'text/plain', kind: 'greeting' })
    const big = randomBytes(11 * MiB + 7)
    const pieces = Array.from({ length: Math.ceil(big.length / (256 * 1024)) }, (_, i) => big.subarray(i * 256 * 1024, (i + 1) * 256 * 1024))
    await minio.putObject(bucket, 'dir/big.bin', Readable.from(pieces), big.length)
    const stat = await minio.statObject(bucket, 'dir/big.bin')
    assert.equal(stat.size, big.length)
    assert.match(stat.etag, /^[0-9a-f]{32}-3$/)
    const small = await minio.statObject(bucket, 'small.txt')
    assert.equal(small.metaData['content-type'], 'text/plain')
    assert.equal(small.metaData.kind, 'greeting')
    const names: string[] = []
    for await (const item of minio.listObjectsV2(bucket, '', true) as AsyncIterable<{ name: string }>) names.push(item.name)
    assert.deepEqual(names, ['dir/big.bin', 'small.txt'])
    const range = await bytesOf(await minio.getPartialObject(bucket, 'dir/big.bin', 5 * MiB - 10, 100))
    assert.ok(range.equals(big.subarray(5 * MiB - 10, 5 * MiB + 90)))
    assert.equal((await bytesOf(await minio.getObject(bucket, 'small.txt'))).toString(), 'minio says hi')
    assert.ok((await bytesOf(await minio.getObject(bucket, 'dir/big.bin'))).equals(big))
    await minio.removeObject(bucket, 'small.txt')
    await assert.rejects(minio.statObject(bucket, 'small.txt'), (error: Error & { code?: string }) => error.code === 'NotFound' || error.code === 'NoSuchKey')
    assert.deepEqual(await readdir(stagingDir), [])
  })

  it('is refused with wrong credentials', async () => {
    const wrong = new MinioClient({ endPoint: '127.0.0.1', port: server.port, useSSL: false, accessKey: credentials.accessKeyId, secretKey: 'wrong-secret', pathStyle: true, region })
    await assert.rejects(wrong.putObject(bucket, 'forged.txt', Buffer.from('x')), (error: Error & { code?: string }) => error.code === 'SignatureDoesNotMatch')
    const stranger = new MinioClient({ endPoint: '127.0.0.1', port: server.port, useSSL: false, accessKey: 'STRANGER', secretKey: credentials.secretAccessKey, pathStyle: true, region })
    await assert.rejects(stranger.listBuckets(), (error: Error & { code?: string }) => error.code === 'InvalidAccessKeyId')
    assert.equal(await store.headObject(bucket, 'forged.txt'), undefined)
  })
})

describe('the S3 endpoint against raw requests', () => {
  const bucket = 'raw-bucket'

  before(async () => {
    assert.equal((await signed('PUT', `/${bucket}`)).status, 200)
  })

  it('refuses an unsigned request with AccessDenied', async () => {
    const answer = await send('GET', `/${bucket}?list-type=2`, {})
    assert.equal(answer.status, 403)
    assert.equal(codeOf(answer), 'AccessDenied')
    assert.match(answer.text, /<RequestId>[0-9A-F]+<\/RequestId>/)
  })

  it('refuses a request signed 20 minutes off with RequestTimeTooSkewed', async () => {
    const answer = await signed('GET', `/${bucket}?list-type=2`, { nowMs: Date.now() - 20 * 60_000 })
    assert.equal(answer.status, 403)
    assert.equal(codeOf(answer), 'RequestTimeTooSkewed')
  })

  it('takes a signed body whole and keys with any UTF-8, but refuses one whose SHA-256 does not match, storing nothing', async () => {
    const key = 'dir/ünïcode key+(1)!.txt'
    const good = await signed('PUT', `/${bucket}/${encodeURIComponent(key).replace(/%2F/g, '/')}`, { body: Buffer.from('right') })
    assert.equal(good.status, 200)
    assert.equal((await store.headObject(bucket, key))?.size, 5)
    const answer = await signed('PUT', `/${bucket}/tampered.txt`, { body: Buffer.from('the body sent'), payloadHash: sha256Hex('another body') })
    assert.equal(answer.status, 400)
    assert.equal(codeOf(answer), 'XAmzContentSHA256Mismatch')
    assert.equal(await store.headObject(bucket, 'tampered.txt'), undefined)
  })

  it('refuses a body whose CRC32 or Content-MD5 header does not match it', async () => {
    const crc = await signed('PUT', `/${bucket}/crc.txt`, { body: Buffer.from('data'), headers: { 'x-amz-checksum-crc32': 'AAAAAA==' } })
    assert.equal(crc.status, 400)
    assert.equal(codeOf(crc), 'BadDigest')
    const md5 = await signed('PUT', `/${bucket}/md5.txt`, { body: Buffer.from('data'), headers: { 'content-md5': createHash('md5').update('other').digest('base64') } })
    assert.equal(codeOf(md5), 'BadDigest')
    const crc32cGood = await signed('PUT', `/${bucket}/crc32c.txt`, { body: Buffer.from('123456789'), headers: { 'x-amz-checksum-crc32c': Buffer.from('e3069283', 'hex').toString('base64') } })
    assert.equal(crc32cGood.status, 200)
    assert.equal(crc32cGood.headers['x-amz-checksum-crc32c'], '4waSgw==')
    assert.equal(await store.headObject(bucket, 'crc.txt'), undefined)
    assert.equal(await store.headObject(bucket, 'md5.txt'), undefined)
  })

  it('takes a signed aws-chunked body, and refuses one with a chunk signature altered, storing nothing', async () => {
    const data = randomBytes(200 * 1024 + 17)
    const good = await putChunked(`/${bucket}/chunked.bin`, data)
    assert.equal(good.status, 200, good.text)
    assert.equal(good.headers.etag, `"${md5Hex(data)}"`)
    assert.ok((await bytesOf((await store.getObject(bucket, 'chunked.bin'))!.body)).equals(data))
    for (const tamper of [1, 4]) {
      const answer = await putChunked(`/${bucket}/forged-chunks.bin`, data, { tamper })
      assert.equal(answer.status, 403, `chunk ${tamper}`)
      assert.equal(codeOf(answer), 'SignatureDoesNotMatch')
    }
    assert.equal(await store.headObject(bucket, 'forged-chunks.bin'), undefined)
  })

  it('checks the trailer of an aws-chunked body: its signature, and the CRC32 it carries', async () => {
    const data = randomBytes(100 * 1024)
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(data))
    const right: [string, string] = ['x-amz-checksum-crc32', crc.toString('base64')]
    const wrong: [string, string] = ['x-amz-checksum-crc32', 'AAAAAA==']
    const good = await putChunked(`/${bucket}/trailer.bin`, data, { trailer: right })
    assert.equal(good.status, 200, good.text)
    assert.equal(good.headers['x-amz-checksum-crc32'], right[1])
    const unsignedGood = await putChunked(`/${bucket}/trailer-unsigned.bin`, data, { signed: false, trailer: right })
    assert.equal(unsignedGood.status, 200, unsignedGood.text)
    assert.equal(codeOf(await putChunked(`/${bucket}/trailer-bad.bin`, data, { trailer: right, tamperTrailer: true })), 'SignatureDoesNotMatch')
    assert.equal(codeOf(await putChunked(`/${bucket}/trailer-bad.bin`, data, { signed: false, trailer: wrong })), 'BadDigest')
    assert.equal(codeOf(await putChunked(`/${bucket}/trailer-bad.bin`, data, { trailer: wrong })), 'BadDigest')
    assert.equal(await store.headObject(bucket, 'trailer-bad.bin'), undefined)
    assert.ok((await bytesOf((await store.getObject(bucket, 'trailer-unsigned.bin'))!.body)).equals(data))
  })

  it('answers a malformed chunk-size line or an absurd chunk size with 400, and goes on answering', async () => {
    const url = new URL(`/${bucket}/bad-chunks.bin`, server.url)
    for (const body of ['zz;chunk-signature=00\r\n', `${'f'.repeat(15)};chunk-signature=${'0'.repeat(64)}\r\n`, `5;${'x'.repeat(9000)}\r\n`]) {
      const headers = { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': '10', 'content-length': String(body.length) }
      const { headers: sent } = signRequest({ method: 'PUT', url, headers, payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', credentials, region })
      const answer = await send('PUT', url.pathname, sent, Buffer.from(body))
      assert.equal(answer.status, 400, body.slice(0, 30))
    }
    assert.equal(await store.headObject(bucket, 'bad-chunks.bin'), undefined)
    assert.equal((await signed('GET', `/${bucket}?list-type=2`)).status, 200)
  })

  it('reads and drops a body an error left unread, so the connection goes on to the next request', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const ask = (path: string, body: Buffer): Promise<{ status: number; text: string; reused: boolean }> =>
        new Promise((resolve, reject) => {
          const url = new URL(path, server.url)
          const { headers } = signRequest({ method: 'PUT', url, headers: { 'content-length': String(body.length) }, payloadHash: 'UNSIGNED-PAYLOAD', credentials, region })
          const req = httpRequest({ host: url.hostname, port: url.port, method: 'PUT', path: url.pathname, headers, agent }, (res) => {
            const parts: Buffer[] = []
            res.on('data', (chunk: Buffer) => parts.push(chunk))
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString(), reused: req.reusedSocket }))
          })
          req.on('error', reject)
          req.end(body)
        })
      const refused = await ask('/no-such-bucket/k', randomBytes(2 * MiB))
      assert.equal(refused.status, 404)
      const next = await ask(`/${bucket}/after-drain.txt`, Buffer.from('next'))
      assert.equal(next.status, 200)
      assert.equal(next.reused, true)
    } finally {
      agent.destroy()
    }
  })

  it('commits nothing when the client disconnects mid-upload', async () => {
    const path = `/${bucket}/cut-short.bin`
    const url = new URL(path, server.url)
    const { headers } = signRequest({ method: 'PUT', url, headers: { 'content-length': String(4 * MiB) }, payloadHash: 'UNSIGNED-PAYLOAD', credentials, region })
    await assert.rejects(send('PUT', path, headers, (write, _end, abort) => {
      write(randomBytes(MiB))
      setTimeout(abort, 100)
    }))
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(await store.headObject(bucket, 'cut-short.bin'), undefined)
    assert.deepEqual(await readdir(join(dir, 'store', `b-${Buffer.from(bucket).toString('hex')}`, 'tmp')), [])
  })

  it('answers a CompleteMultipartUpload naming a part never uploaded with InvalidPart', async () => {
    const created = await signed('POST', `/${bucket}/parts.bin?uploads`)
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.text)![1]!
    const part = await signed('PUT', `/${bucket}/parts.bin?partNumber=1&uploadId=${uploadId}`, { body: Buffer.from('part one') })
    const xml = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${part.headers.etag}</ETag></Part><Part><PartNumber>2</PartNumber><ETag>"${md5Hex(Buffer.from('x'))}"</ETag></Part></CompleteMultipartUpload>`
    const answer = await signed('POST', `/${bucket}/parts.bin?uploadId=${uploadId}`, { body: Buffer.from(xml) })
    assert.equal(answer.status, 400)
    assert.equal(codeOf(answer), 'InvalidPart')
    const unordered = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${part.headers.etag}</ETag></Part><Part><PartNumber>1</PartNumber><ETag>${part.headers.etag}</ETag></Part></CompleteMultipartUpload>`
    assert.equal(codeOf(await signed('POST', `/${bucket}/parts.bin?uploadId=${uploadId}`, { body: Buffer.from(unordered) })), 'InvalidPartOrder')
    assert.equal((await signed('DELETE', `/${bucket}/parts.bin?uploadId=${uploadId}`)).status, 204)
  })

  it('refuses an XML body over the limit, and XML with a DOCTYPE', async () => {
    const huge = `<Delete>${'<Object><Key>k</Key></Object>'.repeat(50_000)}</Delete>`
    const answer = await signed('POST', `/${bucket}?delete`, { body: Buffer.from(huge) })
    assert.equal(answer.status, 400)
    assert.equal(codeOf(answer), 'MaxMessageLengthExceeded')
    const entity = '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&e;</Key></Object></Delete>'
    assert.equal(codeOf(await signed('POST', `/${bucket}?delete`, { body: Buffer.from(entity) })), 'MalformedXML')
  })

  it('refuses a key over 1024 bytes with KeyTooLongError, a bad bucket name, and unknown operations with 501', async () => {
    const long = await signed('PUT', `/${bucket}/${'k'.repeat(1025)}`, { body: Buffer.from('x') })
    assert.equal(long.status, 400)
    assert.equal(codeOf(long), 'KeyTooLongError')
    assert.equal(codeOf(await signed('PUT', '/Not_A_Bucket')), 'InvalidBucketName')
    const acl = await signed('GET', `/${bucket}?acl`)
    assert.equal(acl.status, 501)
    assert.equal(codeOf(acl), 'NotImplemented')
    const copy = await signed('PUT', `/${bucket}/copy.txt`, { body: Buffer.alloc(0), headers: { 'x-amz-copy-source': `/${bucket}/chunked.bin` } })
    assert.equal(copy.status, 501)
  })

  it('answers ranges as HTTP says: suffix ranges, open ends, and 416 with the size', async () => {
    const data = Buffer.from('0123456789')
    await signed('PUT', `/${bucket}/digits.txt`, { body: data })
    const suffix = await signed('GET', `/${bucket}/digits.txt`, { headers: { range: 'bytes=-3' } })
    assert.equal(suffix.status, 206)
    assert.equal(suffix.text, '789')
    assert.equal(suffix.headers['content-range'], 'bytes 7-9/10')
    const open = await signed('HEAD', `/${bucket}/digits.txt`, { headers: { range: 'bytes=4-' } })
    assert.equal(open.status, 206)
    assert.equal(open.headers['content-length'], '6')
    const beyond = await signed('GET', `/${bucket}/digits.txt`, { headers: { range: 'bytes=10-20' } })
    assert.equal(beyond.status, 416)
    assert.equal(codeOf(beyond), 'InvalidRange')
    assert.equal(beyond.headers['content-range'], 'bytes */10')
    assert.deepEqual(parseRange('bytes=2-1', 10), undefined)
    assert.deepEqual(parseRange('bytes=5-100', 10), { start: 5, end: 9 })
    assert.deepEqual(parseRange('bytes=-100', 10), { start: 0, end: 9 })
  })

  it('serves a URL presigned by its own signer, and refuses it once expired', async () => {
    const url = presignUrl({ method: 'GET', url: new URL(`/${bucket}/digits.txt`, server.url), credentials, region, expiresSeconds: 60 })
    assert.equal((await send('GET', url.pathname + url.search, {})).text, '0123456789')
    const old = presignUrl({ method: 'GET', url: new URL(`/${bucket}/digits.txt`, server.url), credentials, region, expiresSeconds: 60, nowMs: Date.now() - 120_000 })
    const expired = await send('GET', old.pathname + old.search, {})
    assert.equal(expired.status, 403)
    assert.equal(codeOf(expired), 'AccessDenied')
  })

  it('refuses an x-amz-* header left out of the signature', async () => {
    const url = new URL(`/${bucket}/meta.txt`, server.url)
    const { headers } = signRequest({ method: 'PUT', url, headers: { 'content-length': '1' }, payloadHash: sha256Hex('x'), credentials, region })
    const answer = await send('PUT', url.pathname, { ...headers, 'x-amz-meta-injected': 'yes' }, Buffer.from('x'))
    assert.equal(answer.status, 403)
    assert.equal(await store.headObject(bucket, 'meta.txt'), undefined)
  })
})

describe('the S3 endpoint\'s parts', () => {
  it('computes CRC-32C as its check value says', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283)
    assert.equal(crc32c(Buffer.from('56789'), crc32c(Buffer.from('1234'))), 0xe3069283)
    assert.equal(crc32c(Buffer.alloc(0)), 0)
  })

  it('parses plain XML and refuses entities, DOCTYPEs and mismatched tags', () => {
    const root = parseXml('<?xml version="1.0"?><a:Delete xmlns:a="x"><a:Object><a:Key>a &amp; b &#x263A;<![CDATA[<c>]]></a:Key></a:Object></a:Delete>')
    assert.equal(root.name, 'Delete')
    assert.equal(root.children[0]?.children[0]?.text, 'a & b \u263a<c>')
    assert.throws(() => parseXml('<a>&ext;</a>'), /MalformedXML|entity/)
    assert.throws(() => parseXml('<!DOCTYPE a><a/>'), /document type/)
    assert.throws(() => parseXml('<a><b></a></b>'), /does not match/)
    assert.throws(() => parseXml(`${'<a>'.repeat(40)}${'</a>'.repeat(40)}`), /nest deeper/)
  })

  it('keeps objects in a folder under any UTF-8 key, and leaves nothing of a body that fails', async () => {
    const folder = await openFolderObjectStore(join(dir, 'folder-store'))
    await folder.createBucket('b')
    const keys = ['a/b/c', 'a/b', '😀/x', 'z'.repeat(1024), '\u00e9', 'e\u0301']
    for (const key of keys) await folder.putObject({ bucket: 'b', key, body: [Buffer.from(key)] as unknown as AsyncIterable<Uint8Array> })
    assert.deepEqual((await folder.listObjects('b')).map((info) => info.key), [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))))
    assert.deepEqual((await folder.listObjects('b', 'a/')).map((info) => info.key), ['a/b', 'a/b/c'])
    assert.equal((await bytesOf((await folder.getObject('b', '😀/x', { start: 1, end: 3 }))!.body)).toString('hex'), Buffer.from('😀/x').subarray(1, 4).toString('hex'))
    const failing = (async function* () {
      yield Buffer.from('partial')
      throw new Error('the body broke')
    })()
    await assert.rejects(folder.putObject({ bucket: 'b', key: 'a/b', body: failing }), /the body broke/)
    assert.equal((await folder.headObject('b', 'a/b'))?.size, 3)
    assert.deepEqual(await readdir(join(dir, 'folder-store', `b-${Buffer.from('b').toString('hex')}`, 'tmp')), [])
    await assert.rejects(folder.createBucket('b'), (error: Error & { code?: string }) => error.code === 'HEARTH_ERR_STORAGE_STATE')
    await assert.rejects(folder.deleteBucket('b'), (error: Error & { code?: string }) => error.code === 'HEARTH_ERR_STORAGE_STATE')
    await assert.rejects(folder.headObject('none', 'k'), (error: Error & { code?: string }) => error.code === 'HEARTH_ERR_STORAGE_NOT_FOUND')
    for (const key of keys) await folder.deleteObject('b', key)
    await folder.deleteBucket('b')
    assert.deepEqual(await folder.listBuckets(), [])
  })
})
