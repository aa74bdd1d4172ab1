/**
 * The S3 endpoint's object operations: PutObject, GetObject and HeadObject (ranges and conditional requests included),
 * DeleteObject and DeleteObjects. Bodies stream both ways: a put's body goes to the store as it arrives, checked as it
 * passes (s3-http.ts, s3-body.ts), and an object is piped to the client as the store gives it, never held whole.
 */
import type { OutgoingHttpHeaders } from 'node:http'
import { pipeline } from 'node:stream/promises'
import type { ByteRange, ObjectInfo } from './object-store.ts'
import { S3Error, toS3Error } from './s3-errors.ts'
import { hasBody, headerOf, objectFailure, openRequestBody, readXmlBody, sendEmpty, sendXml, type S3Exchange, type S3Settings } from './s3-http.ts'
import { childrenNamed, childText, document, element } from './s3-xml.ts'

/** The most user metadata an object may carry, names and values together, as S3 allows. */
export const maxMetadataBytes = 2048
/** The longest key, in bytes of UTF-8. */
export const maxKeyBytes = 1024
const maxDeleteKeys = 1000

/** Throws KeyTooLongError for a key over 1024 bytes of UTF-8. */
export function checkKey(key: string): void {
  if (Buffer.byteLength(key, 'utf8') > maxKeyBytes) throw new S3Error('KeyTooLongError', `Your key is too long: a key may be at most ${maxKeyBytes} bytes of UTF-8.`)
}

/** The x-amz-meta-* headers of a request, names lower-case without the prefix; MetadataTooLarge past 2 KiB. */
export function metadataOf(ex: S3Exchange): Record<string, string> {
  const metadata: Record<string, string> = {}
  let bytes = 0
  for (const [name, value] of Object.entries(ex.req.headers)) {
    if (!name.startsWith('x-amz-meta-') || value === undefined) continue
    const text = Array.isArray(value) ? value.join(',') : value
    metadata[name.slice('x-amz-meta-'.length)] = text
    bytes += Buffer.byteLength(name.slice('x-amz-meta-'.length)) + Buffer.byteLength(text)
  }
  if (bytes > maxMetadataBytes) throw new S3Error('MetadataTooLarge', `Your metadata headers exceed the maximum allowed metadata size: at most ${maxMetadataBytes} bytes.`)
  return metadata
}

/** Refuses what a PUT may ask that this endpoint does not do rather than doing something else. */
export function refuseUnsupportedPut(ex: S3Exchange): void {
  if (headerOf(ex, 'x-amz-copy-source') !== undefined) throw new S3Error('NotImplemented', 'copying objects (x-amz-copy-source) is not supported by this endpoint: download and upload the object instead')
  if (headerOf(ex, 'if-match') !== undefined || headerOf(ex, 'if-none-match') !== undefined) {
    throw new S3Error('NotImplemented', 'conditional writes (If-Match, If-None-Match on a PUT) are not supported by this endpoint')
  }
  if (ex.req.headers['content-length'] === undefined && ex.req.headers['transfer-encoding'] === undefined) {
    throw new S3Error('MissingContentLength', 'You must provide the Content-Length HTTP header.')
  }
}

/** A header value node:http can send: as it is when it can, else RFC 2047-encoded UTF-8. */
export function safeHeaderValue(value: string): string {
  return /^[\t\x20-\x7e\x80-\xff]*$/.test(value) ? value : `=?UTF-8?B?${Buffer.from(value, 'utf8').toString('base64')}?=`
}

/** PutObject: streams the body into the store; answers with its ETag (the body's MD5). */
export async function putObject(ex: S3Exchange, settings: S3Settings): Promise<void> {
  refuseUnsupportedPut(ex)
  const metadata = metadataOf(ex)
  const contentType = headerOf(ex, 'content-type')
  if (!(await settings.store.hasBucket(ex.bucket!))) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist.')
  const body = openRequestBody(ex, settings.maxObjectBytes)
  let info: ObjectInfo
  try {
    info = await settings.store.putObject({ bucket: ex.bucket!, key: ex.key!, body: body.body, ...(body.declaredBytes === undefined ? {} : { size: body.declaredBytes }), ...(contentType === undefined ? {} : { contentType }), metadata, etag: () => body.md5Hex() })
  } catch (error) {
    throw ex.body?.failure() ?? (await objectFailure(ex, settings, error))
  }
  const checksum = body.checksum()
  sendEmpty(ex, 200, { etag: `"${info.etag}"`, ...(checksum === undefined ? {} : { [checksum.name]: checksum.value }) })
}

/**
 * The byte range a Range header asks of an object of `size` bytes: undefined for none (or one this endpoint ignores,
 * as HTTP allows: not bytes=, several ranges, end before start); InvalidRange when it starts past the end.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined
  const match = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim())
  if (match === null || (match[1] === '' && match[2] === '')) return undefined
  const unsatisfiable = (): S3Error => new S3Error('InvalidRange', 'The requested range is not satisfiable', { 'content-range': `bytes */${size}` })
  if (match[1] === '') {
    const suffix = Number(match[2])
    if (suffix === 0 || size === 0) throw unsatisfiable()
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(match[1])
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1)
  if (match[2] !== '' && Number(match[2]) < start) return undefined
  if (start >= size) throw unsatisfiable()
  return { start, end }
}

const overrides: Array<[string, string]> = [
  ['response-content-type', 'content-type'],
  ['response-content-language', 'content-language'],
  ['response-expires', 'expires'],
  ['response-cache-control', 'cache-control'],
  ['response-content-disposition', 'content-disposition'],
  ['response-content-encoding', 'content-encoding'],
]

function objectHeaders(ex: S3Exchange, info: ObjectInfo, range: ByteRange | undefined): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {
    'content-type': safeHeaderValue(info.contentType ?? 'binary/octet-stream'),
    'content-length': range === undefined ? info.size : range.end - range.start + 1,
    etag: `"${info.etag}"`,
    'last-modified': new Date(info.lastModifiedMs).toUTCString(),
    'accept-ranges': 'bytes',
  }
  if (range !== undefined) headers['content-range'] = `bytes ${range.start}-${range.end}/${info.size}`
  for (const [name, value] of Object.entries(info.metadata)) {
    if (/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) headers[`x-amz-meta-${name}`] = safeHeaderValue(value)
  }
  for (const [parameter, name] of overrides) {
    const value = ex.query.get(parameter)
    if (value !== undefined) headers[name] = safeHeaderValue(value)
  }
  return headers
}

const etagMatches = (list: string, etag: string): boolean => list.split(',').some((item) => item.trim() === '*' || item.trim().replace(/^W\//, '').replace(/"/g, '') === etag)

/** The answer conditional headers give before the object: 'not-modified', or PreconditionFailed thrown. */
function checkConditions(ex: S3Exchange, info: ObjectInfo): 'not-modified' | undefined {
  const ifMatch = headerOf(ex, 'if-match')
  const ifNoneMatch = headerOf(ex, 'if-none-match')
  const modifiedSince = Date.parse(headerOf(ex, 'if-modified-since') ?? '')
  const unmodifiedSince = Date.parse(headerOf(ex, 'if-unmodified-since') ?? '')
  const modifiedSeconds = Math.floor(info.lastModifiedMs / 1000) * 1000
  const failed = (): S3Error => new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
  if (ifMatch !== undefined && !etagMatches(ifMatch, info.etag)) throw failed()
  if (ifMatch === undefined && !Number.isNaN(unmodifiedSince) && modifiedSeconds > unmodifiedSince) throw failed()
  if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, info.etag)) return 'not-modified'
  if (ifNoneMatch === undefined && !Number.isNaN(modifiedSince) && modifiedSeconds <= modifiedSince) return 'not-modified'
  return undefined
}

/** Lets go of a body never read: its iterator returned, so the store can close what it opened. */
export async function discard(body: AsyncIterable<Uint8Array>): Promise<void> {
  await body[Symbol.asyncIterator]().return?.()
}

/** The object (or the asked range of it) as the store gives it, the range computed against the version read. */
async function openObject(ex: S3Exchange, settings: S3Settings, rangeHeader: string | undefined): Promise<{ info: ObjectInfo; range: ByteRange | undefined; body: AsyncIterable<Uint8Array> }> {
  const { store } = settings
  const noSuchKey = (): S3Error => new S3Error('NoSuchKey', 'The specified key does not exist.')
  for (let attempt = 0; attempt < 3; attempt++) {
    const head = rangeHeader === undefined ? undefined : await store.headObject(ex.bucket!, ex.key!)
    if (rangeHeader !== undefined && head === undefined) throw noSuchKey()
    const range = head === undefined ? undefined : parseRange(rangeHeader, head.size)
    const got = await store.getObject(ex.bucket!, ex.key!, range)
    if (got === undefined) throw noSuchKey()
    if (head === undefined || range === undefined || (got.info.etag === head.etag && got.info.size === head.size)) return { info: got.info, range, body: got.body }
    await discard(got.body)
  }
  throw new S3Error('ServiceUnavailable', 'the object kept changing while it was read: read it again')
}

/** Yields `body`, failing when it gives other than `expected` bytes: the response's length was promised. */
async function* exactly(body: AsyncIterable<Uint8Array>, expected: number): AsyncGenerator<Uint8Array> {
  let total = 0
  for await (const chunk of body) {
    total += chunk.length
    if (total > expected) throw new S3Error('InternalError', `the store gave more than the ${expected} bytes announced`)
    yield chunk
  }
  if (total !== expected) throw new S3Error('InternalError', `the store gave ${total} of the ${expected} bytes announced`)
}

/** GetObject: the object, or a range of it (206), streamed as the store gives it. */
export async function getObject(ex: S3Exchange, settings: S3Settings): Promise<void> {
  if (ex.query.has('partNumber')) throw new S3Error('NotImplemented', 'reading one part of a multipart object (partNumber) is not supported: ask for a byte range instead')
  let opened: Awaited<ReturnType<typeof openObject>>
  try {
    opened = await openObject(ex, settings, headerOf(ex, 'range'))
  } catch (error) {
    throw await objectFailure(ex, settings, error)
  }
  const { info, range, body } = opened
  let condition: 'not-modified' | undefined
  try {
    condition = checkConditions(ex, info)
  } catch (error) {
    await discard(body)
    throw error
  }
  if (condition === 'not-modified') {
    await discard(body)
    sendEmpty(ex, 304, { etag: `"${info.etag}"`, 'last-modified': new Date(info.lastModifiedMs).toUTCString() })
    return
  }
  const headers = objectHeaders(ex, info, range)
  ex.res.writeHead(range === undefined ? 200 : 206, { 'x-amz-request-id': ex.requestId, 'x-amz-id-2': ex.requestId, ...headers })
  await pipeline(exactly(body, headers['content-length'] as number), ex.res)
}

/** HeadObject: the object's headers, for a range too (206). */
export async function headObject(ex: S3Exchange, settings: S3Settings): Promise<void> {
  if (ex.query.has('partNumber')) throw new S3Error('NotImplemented', 'reading one part of a multipart object (partNumber) is not supported')
  let info: ObjectInfo | undefined
  try {
    info = await settings.store.headObject(ex.bucket!, ex.key!)
  } catch (error) {
    throw await objectFailure(ex, settings, error)
  }
  if (info === undefined) throw new S3Error('NoSuchKey', 'The specified key does not exist.')
  if (checkConditions(ex, info) === 'not-modified') {
    sendEmpty(ex, 304, { etag: `"${info.etag}"` })
    return
  }
  const range = parseRange(headerOf(ex, 'range'), info.size)
  sendEmpty(ex, range === undefined ? 200 : 206, objectHeaders(ex, info, range))
}

/** DeleteObject: 204, whether or not the object was there. */
export async function deleteObject(ex: S3Exchange, settings: S3Settings): Promise<void> {
  try {
    await settings.store.deleteObject(ex.bucket!, ex.key!)
  } catch (error) {
    throw await objectFailure(ex, settings, error)
  }
  sendEmpty(ex, 204)
}

/** DeleteObjects (POST /bucket?delete): up to 1000 keys; each deleted or reported with its error. */
export async function deleteObjects(ex: S3Exchange, settings: S3Settings): Promise<void> {
  if (!hasBody(ex.req)) throw new S3Error('MalformedXML', 'DeleteObjects needs a <Delete> document naming the keys.')
  const root = await readXmlBody(ex, 'Delete', settings.maxXmlBytes)
  const objects = childrenNamed(root, 'Object')
  if (objects.length === 0 || objects.length > maxDeleteKeys) throw new S3Error('MalformedXML', `a <Delete> document must name 1 to ${maxDeleteKeys} objects (it names ${objects.length})`)
  if (!(await settings.store.hasBucket(ex.bucket!))) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist.')
  const quiet = childText(root, 'Quiet')?.trim() === 'true'
  const results: string[] = []
  for (const object of objects) {
    const key = childText(object, 'Key')
    try {
      if (key === undefined || key === '') throw new S3Error('InvalidArgument', 'an <Object> has no <Key>')
      checkKey(key)
      await settings.store.deleteObject(ex.bucket!, key)
      if (!quiet) results.push(`<Deleted>${element('Key', key)}</Deleted>`)
    } catch (error) {
      const failure = toS3Error(error)
      results.push(`<Error>${element('Key', key ?? '')}${element('Code', failure.code)}${element('Message', failure.message)}</Error>`)
    }
  }
  sendXml(ex, 200, document('DeleteResult', results.join('')))
}
