/**
 * The S3 endpoint's listings: ListBuckets, ListObjectsV2 (prefix, delimiter and common prefixes, max-keys,
 * continuation tokens, start-after, encoding-type=url) and the older ListObjects (marker), cut from the store's sorted
 * listing of a bucket. A continuation token names the last key or common prefix of its page, so the next page starts
 * after it (after every key of that prefix) whatever was stored meanwhile.
 */
import type { ObjectInfo } from './object-store.ts'
import { S3Error, toS3Error } from './s3-errors.ts'
import { sendXml, type S3Exchange, type S3Settings } from './s3-http.ts'
import { awsEncode } from './s3-sigv4.ts'
import { document, element, isoTime } from './s3-xml.ts'

const maxListKeys = 1000
const owner = '<Owner><ID>hearth</ID><DisplayName>hearth</DisplayName></Owner>'

/** Where a page starts: after a key, or after every key of a common prefix. */
type Cursor = { kind: 'key' | 'prefix'; value: string } | undefined

interface Page {
  contents: ObjectInfo[]
  prefixes: string[]
  truncated: boolean
  /** The last key or common prefix on the page. */
  last: Cursor
}

const compareUtf8 = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))

/** One page of `all` (sorted, every key starting with `prefix`): keys and common prefixes after `cursor`. */
function pageOf(all: ObjectInfo[], prefix: string, delimiter: string, cursor: Cursor, maxKeys: number): Page {
  const page: Page = { contents: [], prefixes: [], truncated: false, last: undefined }
  if (maxKeys === 0) return page
  let count = 0
  for (const info of all) {
    if (cursor !== undefined && (compareUtf8(info.key, cursor.value) <= 0 || (cursor.kind === 'prefix' && info.key.startsWith(cursor.value)))) continue
    const cut = delimiter === '' ? -1 : info.key.indexOf(delimiter, prefix.length)
    const common = cut < 0 ? undefined : info.key.slice(0, cut + delimiter.length)
    if (common !== undefined && page.last?.kind === 'prefix' && page.last.value === common) continue
    if (count === maxKeys) {
      page.truncated = true
      break
    }
    count++
    if (common === undefined) {
      page.contents.push(info)
      page.last = { kind: 'key', value: info.key }
    } else {
      page.prefixes.push(common)
      page.last = { kind: 'prefix', value: common }
    }
  }
  return page
}

function maxKeysOf(ex: S3Exchange, name: string): number {
  const text = ex.query.get(name)
  if (text === undefined) return maxListKeys
  if (!/^\d{1,9}$/.test(text)) throw new S3Error('InvalidArgument', `${name} must be a whole number from 0 (got ${JSON.stringify(text.slice(0, 40))})`)
  return Math.min(Number(text), maxListKeys)
}

const encodeToken = (cursor: Cursor): string | undefined => (cursor === undefined ? undefined : Buffer.from(`${cursor.kind === 'key' ? 'k' : 'p'}${cursor.value}`, 'utf8').toString('base64url'))

function decodeToken(token: string): Cursor {
  const text = /^[A-Za-z0-9_-]{1,4000}$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : ''
  if (text.length < 2 || (text[0] !== 'k' && text[0] !== 'p')) throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect: pass NextContinuationToken as it was given')
  return { kind: text[0] === 'k' ? 'key' : 'prefix', value: text.slice(1) }
}

function contentsXml(info: ObjectInfo, encode: (text: string) => string, withOwner: boolean): string {
  return `<Contents>${element('Key', encode(info.key))}${element('LastModified', isoTime(info.lastModifiedMs))}${element('ETag', `"${info.etag}"`)}${element('Size', info.size)}${withOwner ? owner : ''}<StorageClass>STANDARD</StorageClass></Contents>`
}

async function listAll(ex: S3Exchange, settings: S3Settings, prefix: string): Promise<ObjectInfo[]> {
  try {
    return await settings.store.listObjects(ex.bucket!, prefix)
  } catch (error) {
    throw toS3Error(error)
  }
}

function listParameters(ex: S3Exchange): { prefix: string; delimiter: string; encode: (text: string) => string; encodingType: string | undefined } {
  const encodingType = ex.query.get('encoding-type')
  if (encodingType !== undefined && encodingType !== 'url') throw new S3Error('InvalidArgument', 'Invalid Encoding Method specified in Request: encoding-type may only be url')
  const encode = encodingType === 'url' ? (text: string) => awsEncode(text, true) : (text: string) => text
  return { prefix: ex.query.get('prefix') ?? '', delimiter: ex.query.get('delimiter') ?? '', encode, encodingType }
}

/** ListObjectsV2 (GET /bucket?list-type=2). */
export async function listObjectsV2(ex: S3Exchange, settings: S3Settings): Promise<void> {
  const { prefix, delimiter, encode, encodingType } = listParameters(ex)
  const maxKeys = maxKeysOf(ex, 'max-keys')
  const token = ex.query.get('continuation-token')
  const startAfter = ex.query.get('start-after')
  const cursor: Cursor = token !== undefined ? decodeToken(token) : startAfter !== undefined && startAfter !== '' ? { kind: 'key', value: startAfter } : undefined
  const page = pageOf(await listAll(ex, settings, prefix), prefix, delimiter, cursor, maxKeys)
  const withOwner = ex.query.get('fetch-owner') === 'true'
  const inner = [
    element('Name', ex.bucket!),
    element('Prefix', encode(prefix)),
    delimiter === '' ? '' : element('Delimiter', encode(delimiter)),
    element('MaxKeys', maxKeys),
    element('EncodingType', encodingType),
    element('KeyCount', page.contents.length + page.prefixes.length),
    element('IsTruncated', page.truncated),
    element('ContinuationToken', token),
    page.truncated ? element('NextContinuationToken', encodeToken(page.last)) : '',
    element('StartAfter', startAfter === undefined ? undefined : encode(startAfter)),
    ...page.contents.map((info) => contentsXml(info, encode, withOwner)),
    ...page.prefixes.map((common) => `<CommonPrefixes>${element('Prefix', encode(common))}</CommonPrefixes>`),
  ]
  sendXml(ex, 200, document('ListBucketResult', inner.join('')))
}

/** ListObjects, the first version (GET /bucket): marker and NextMarker instead of tokens. */
export async function listObjectsV1(ex: S3Exchange, settings: S3Settings): Promise<void> {
  const { prefix, delimiter, encode, encodingType } = listParameters(ex)
  const maxKeys = maxKeysOf(ex, 'max-keys')
  const marker = ex.query.get('marker') ?? ''
  // A marker that is a common prefix (as NextMarker gives it) skips every key of that prefix.
  const cursor: Cursor = marker === '' ? undefined : { kind: delimiter !== '' && marker.endsWith(delimiter) ? 'prefix' : 'key', value: marker }
  const page = pageOf(await listAll(ex, settings, prefix), prefix, delimiter, cursor, maxKeys)
  const inner = [
    element('Name', ex.bucket!),
    element('Prefix', encode(prefix)),
    element('Marker', encode(marker)),
    delimiter === '' ? '' : element('Delimiter', encode(delimiter)),
    element('MaxKeys', maxKeys),
    element('EncodingType', encodingType),
    element('IsTruncated', page.truncated),
    page.truncated && page.last !== undefined ? element('NextMarker', encode(page.last.value)) : '',
    ...page.contents.map((info) => contentsXml(info, encode, true)),
    ...page.prefixes.map((common) => `<CommonPrefixes>${element('Prefix', encode(common))}</CommonPrefixes>`),
  ]
  sendXml(ex, 200, document('ListBucketResult', inner.join('')))
}

/** ListBuckets (GET /). */
export async function listBuckets(ex: S3Exchange, settings: S3Settings): Promise<void> {
  let buckets
  try {
    buckets = await settings.store.listBuckets()
  } catch (error) {
    throw toS3Error(error)
  }
  const list = buckets.map((bucket) => `<Bucket>${element('Name', bucket.name)}${element('CreationDate', isoTime(bucket.createdAtMs))}</Bucket>`).join('')
  sendXml(ex, 200, document('ListAllMyBucketsResult', `${owner}<Buckets>${list}</Buckets>`))
}
