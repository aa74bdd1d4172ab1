/**
 * An S3-compatible HTTP endpoint in front of an ObjectStore (object-store.ts), so that S3 tools and SDKs can store in
 * Hearth: path-style addressing (`/bucket/key`), one access key, AWS Signature Version 4 checked on every request
 * (s3-sigv4.ts), bodies streamed and checked as they pass (s3-body.ts), answers and errors as S3 writes them.
 *
 * Operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation (here); PutObject, GetObject,
 * HeadObject, DeleteObject, DeleteObjects (s3-objects.ts); ListObjectsV2 and ListObjects (s3-list.ts); the multipart
 * upload operations (s3-multipart.ts, parts staged by s3-staging.ts). Anything else is answered 501 NotImplemented
 * rather than half done.
 *
 * It is built for clients that may be hostile: header blocks, XML bodies, keys, metadata, parts and objects are all
 * bounded; a request that fails never crashes the server, and one whose body fails a check (or whose client leaves)
 * commits nothing, as the store reads the body through an iterator that throws before its end.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { HearthError } from '../errors.ts'
import type { ObjectStore } from './object-store.ts'
import { S3Error, toS3Error } from './s3-errors.ts'
import { hasBody, readXmlBody, sendEmpty, sendXml, type S3Exchange, type S3Settings } from './s3-http.ts'
import { listBuckets, listObjectsV1, listObjectsV2 } from './s3-list.ts'
import { abortMultipartUpload, completeMultipartUpload, createMultipartUpload, listMultipartUploads, listParts, uploadPart } from './s3-multipart.ts'
import { checkKey, deleteObject, deleteObjects, getObject, headObject, putObject } from './s3-objects.ts'
import { authenticate, parseTarget, type S3Credentials } from './s3-sigv4.ts'
import { openStaging } from './s3-staging.ts'
import { childText, errorDocument, escapeXml, s3Namespace } from './s3-xml.ts'

export interface S3ServerInit {
  store: ObjectStore
  /** The one key pair requests must be signed with. */
  credentials: S3Credentials
  /**
   * Where parts of multipart uploads are kept until completed (made private, mode 0700): this endpoint's own, as part
   * files found there when it starts are taken for leftovers and removed.
   */
  stagingDir: string
  /** Default 127.0.0.1. */
  host?: string
  /** Default 0: any free port. */
  port?: number
  /** The region clients sign for; default us-east-1. */
  region?: string
  /** The largest object accepted, in bytes; default 5 TiB, as S3. */
  maxObjectBytes?: number
  /** Called with one line per request, and with what went wrong inside. */
  log?(line: string): void
}

export interface S3Server {
  /** http://host:port, the endpoint clients are given. */
  url: string
  port: number
  /** Stops taking requests, cuts open connections, removes staged parts. */
  close(): Promise<void>
}

export const defaultMaxObjectBytes = 5 * 1024 ** 4
const maxPartBytes = 5 * 1024 ** 3
const minPartBytes = 5 * 1024 * 1024
/** The largest XML body (a CompleteMultipartUpload document may be twice that). */
export const maxXmlBytes = 1024 * 1024
/** The largest header block a request may send. */
export const maxHeaderBytes = 16 * 1024
/** How much of a body an error leaves unread is read and dropped, so that the client sees the answer. */
const maxDrainBytes = 16 * 1024 * 1024

type Handler = (ex: S3Exchange, settings: S3Settings) => Promise<void>

/** Query parameters an operation's own, or harmless; any other names an S3 feature this endpoint does not have. */
const knownParameters = new Set([
  'prefix', 'delimiter', 'max-keys', 'continuation-token', 'start-after', 'encoding-type', 'fetch-owner', 'list-type', 'marker',
  'partNumber', 'uploadId', 'uploads', 'delete', 'location', 'max-parts', 'part-number-marker', 'max-uploads', 'key-marker', 'upload-id-marker',
  'response-content-type', 'response-content-language', 'response-expires', 'response-cache-control', 'response-content-disposition', 'response-content-encoding',
])

/** Throws InvalidBucketName unless `name` follows S3's rules for bucket names. */
export function checkBucketName(name: string): void {
  const ok = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) && !name.includes('..') && !/^\d+\.\d+\.\d+\.\d+$/.test(name) && !/^(xn--|sthree-)/.test(name) && !/(-s3alias|--ol-s3)$/.test(name)
  if (!ok) throw new S3Error('InvalidBucketName', 'The specified bucket is not valid: 3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit.')
}

function decodePart(raw: string): string {
  try {
    return decodeURIComponent(raw)
  } catch {
    throw new S3Error('InvalidURI', 'Couldn\'t parse the specified URI: it is not valid percent-encoded UTF-8.')
  }
}

/** The bucket and key a path names: `/bucket` or `/bucket/` a bucket, `/bucket/key` an object. */
function splitPath(rawPath: string): { bucket: string | undefined; key: string | undefined } {
  const cut = rawPath.indexOf('/', 1)
  const bucket = decodePart(cut < 0 ? rawPath.slice(1) : rawPath.slice(1, cut))
  const key = cut < 0 ? '' : decodePart(rawPath.slice(cut + 1))
  return { bucket: bucket === '' ? undefined : bucket, key: key === '' ? undefined : key }
}

async function createBucket(ex: S3Exchange, settings: S3Settings): Promise<void> {
  if (hasBody(ex.req)) {
    const root = await readXmlBody(ex, 'CreateBucketConfiguration', maxXmlBytes)
    const constraint = childText(root, 'LocationConstraint')?.trim() ?? ''
    if (constraint !== '' && constraint !== settings.region) {
      throw new S3Error('InvalidLocationConstraint', `The specified location-constraint is not valid: this endpoint is in ${settings.region} and makes its buckets there.`)
    }
  }
  try {
    await settings.store.createBucket(ex.bucket!)
  } catch (error) {
    throw toS3Error(error, { conflict: 'BucketAlreadyOwnedByYou' })
  }
  sendEmpty(ex, 200, { location: `/${ex.bucket!}` })
}

async function headBucket(ex: S3Exchange, settings: S3Settings): Promise<void> {
  if (!(await settings.store.hasBucket(ex.bucket!))) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist.')
  sendEmpty(ex, 200, { 'x-amz-bucket-region': settings.region })
}

async function deleteBucket(ex: S3Exchange, settings: S3Settings): Promise<void> {
  try {
    await settings.store.deleteBucket(ex.bucket!)
  } catch (error) {
    throw toS3Error(error, { conflict: 'BucketNotEmpty' })
  }
  for (const upload of settings.staging.list(ex.bucket!)) if (!upload.completing) await settings.staging.remove(upload)
  sendEmpty(ex, 204)
}

async function getBucketLocation(ex: S3Exchange, settings: S3Settings): Promise<void> {
  if (!(await settings.store.hasBucket(ex.bucket!))) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist.')
  const region = settings.region === 'us-east-1' ? '' : settings.region
  sendXml(ex, 200, `<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="${s3Namespace}">${escapeXml(region)}</LocationConstraint>`)
}

const notImplemented = (what: string): S3Error => new S3Error('NotImplemented', `A header or query you provided implies functionality that is not implemented: ${what}.`)

function bucketRoute(ex: S3Exchange): Handler {
  const { query } = ex
  switch (ex.req.method) {
    case 'GET':
      if (query.has('location')) return getBucketLocation
      if (query.has('uploads')) return listMultipartUploads
      if (query.has('list-type')) {
        if (query.get('list-type') !== '2') throw new S3Error('InvalidArgument', 'list-type must be 2')
        return listObjectsV2
      }
      return listObjectsV1
    case 'HEAD':
      return headBucket
    case 'PUT':
      return createBucket
    case 'DELETE':
      return deleteBucket
    case 'POST':
      if (query.has('delete')) return deleteObjects
      throw notImplemented('POST on a bucket other than ?delete (browser form uploads)')
    default:
      throw new S3Error('MethodNotAllowed', `The specified method ${ex.req.method} is not allowed against this resource.`)
  }
}

function objectRoute(ex: S3Exchange): Handler {
  const { query } = ex
  const upload = query.has('uploadId')
  switch (ex.req.method) {
    case 'GET':
      return upload ? listParts : getObject
    case 'HEAD':
      return headObject
    case 'PUT':
      if (upload !== query.has('partNumber')) throw new S3Error('InvalidRequest', 'UploadPart needs both partNumber and uploadId')
      return upload ? uploadPart : putObject
    case 'DELETE':
      return upload ? abortMultipartUpload : deleteObject
    case 'POST':
      if (query.has('uploads')) return createMultipartUpload
      if (upload) return completeMultipartUpload
      throw notImplemented('POST on an object other than ?uploads or ?uploadId')
    default:
      throw new S3Error('MethodNotAllowed', `The specified method ${ex.req.method} is not allowed against this resource.`)
  }
}

/** The handler of a request, by method, path and query; NotImplemented for operations not supported. */
function routeOf(ex: S3Exchange): Handler {
  for (const [name, value] of ex.target.query) {
    if (knownParameters.has(name) || /^x-/i.test(name)) continue
    if (name === 'versionId' && value === 'null') continue
    throw notImplemented(`the ?${name.slice(0, 40)} operation or parameter`)
  }
  if (ex.bucket === undefined) {
    if (ex.req.method === 'GET') return listBuckets
    throw new S3Error('MethodNotAllowed', `The specified method ${ex.req.method} is not allowed against the service.`)
  }
  checkBucketName(ex.bucket)
  if (ex.key === undefined) return bucketRoute(ex)
  checkKey(ex.key)
  return objectRoute(ex)
}

/** Takes what a client still sends of a body an error left unread, up to a bound, so that it reads the answer. */
function drainBody(req: IncomingMessage): void {
  if (req.readableEnded || req.destroyed) return
  let dropped = 0
  const timer = setTimeout(() => req.socket.destroy(), 10_000)
  timer.unref()
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length
    if (dropped > maxDrainBytes) req.socket.destroy()
  })
  req.once('close', () => clearTimeout(timer))
  req.resume()
}

interface Answering {
  req: IncomingMessage
  res: ServerResponse
  requestId: string
  resource: string
  ex: S3Exchange | undefined
  expectsContinue: boolean
}

/** Answers a failure as S3 does: the error document (only the status for HEAD), or a cut connection once answering began. */
function answerError(answering: Answering, error: unknown, log: (line: string) => void): S3Error {
  const { req, res } = answering
  const failure = toS3Error(error)
  if (failure.code === 'InternalError') log(`s3 ${answering.requestId}: ${error instanceof Error ? error.message : String(error)}`)
  if (res.headersSent) {
    res.destroy()
    return failure
  }
  // A body left unread is read and dropped (up to a bound), so the client reads the answer and the connection stays
  // usable; a client still waiting for "100 Continue" never sends its body, and the connection is closed instead.
  const unread = hasBody(req) && !req.readableEnded
  const waiting = answering.expectsContinue && answering.ex?.continued !== true
  if (unread && !waiting) drainBody(req)
  const body = Buffer.from(errorDocument(failure.code, failure.message, answering.resource, answering.requestId), 'utf8')
  const headers = { 'x-amz-request-id': answering.requestId, 'x-amz-id-2': answering.requestId, 'content-type': 'application/xml', 'content-length': body.length, ...failure.headers, ...(unread && waiting ? { connection: 'close' } : {}) }
  res.writeHead(failure.status, headers)
  res.end(req.method === 'HEAD' ? undefined : body)
  return failure
}

function handler(settings: S3Settings, credentials: S3Credentials) {
  return async (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> => {
    const startedMs = Date.now()
    const requestId = randomBytes(8).toString('hex').toUpperCase()
    const answering: Answering = { req, res, requestId, resource: '/', ex: undefined, expectsContinue }
    res.on('error', () => undefined)
    let code = ''
    try {
      const target = parseTarget(req.url ?? '/')
      answering.resource = target.rawPath
      const auth = authenticate({ method: req.method ?? 'GET', target, rawHeaders: req.rawHeaders }, credentials, settings.region)
      const { bucket, key } = splitPath(target.rawPath)
      const query = new Map<string, string>()
      for (const [name, value] of target.query) if (!query.has(name)) query.set(name, value)
      const ex: S3Exchange = { req, res, requestId, target, query, bucket, key, auth, expectsContinue, continued: false, body: undefined }
      answering.ex = ex
      await routeOf(ex)(ex, settings)
    } catch (error) {
      code = ` ${answerError(answering, error, settings.log).code}`
    }
    settings.log(`s3 ${requestId} ${req.method} ${answering.resource} ${res.statusCode}${code} ${Date.now() - startedMs}ms`)
  }
}

/** Starts the endpoint on host:port; resolves once it listens. */
export async function startS3Server(init: S3ServerInit): Promise<S3Server> {
  const maxObjectBytes = init.maxObjectBytes ?? defaultMaxObjectBytes
  if (!(Number.isSafeInteger(maxObjectBytes) && maxObjectBytes > 0)) throw new HearthError('HEARTH_ERR_API_MISUSE', `startS3Server: maxObjectBytes must be a positive whole number of bytes (got ${maxObjectBytes})`)
  if (init.credentials.accessKeyId === '' || init.credentials.secretAccessKey === '') throw new HearthError('HEARTH_ERR_API_MISUSE', 'startS3Server: the access key id and the secret must not be empty')
  const staging = await openStaging(init.stagingDir)
  const settings: S3Settings = {
    store: init.store,
    staging,
    region: init.region ?? 'us-east-1',
    maxObjectBytes,
    maxPartBytes: Math.min(maxPartBytes, maxObjectBytes),
    minPartBytes,
    maxXmlBytes,
    log: init.log ?? (() => undefined),
  }
  const handle = handler(settings, init.credentials)
  const server = createServer({ maxHeaderSize: maxHeaderBytes, requestTimeout: 0, headersTimeout: 30_000, keepAliveTimeout: 5_000 })
  server.maxHeadersCount = 200
  // A body may take long to send or to be read; a connection that does nothing for 5 minutes is closed.
  server.timeout = 5 * 60_000
  // handle answers every failure itself; should answering fail too, the connection is cut rather than the server.
  const serve = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void => void handle(req, res, expectsContinue).catch(() => res.destroy())
  server.on('request', (req: IncomingMessage, res: ServerResponse) => serve(req, res, false))
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => serve(req, res, true))
  const host = init.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', (error) => settings.log(`s3 server: ${error.message}`))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      await staging.close()
    },
  }
}
