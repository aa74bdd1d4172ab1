/**
 * The S3 endpoint's multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
 * AbortMultipartUpload, ListParts and ListMultipartUploads. Parts are staged as files (s3-staging.ts); completing
 * checks the parts named against those staged (numbers ascending, ETags matching, all but the last at least the
 * minimum size) and streams them, in order, into the store under the ETag S3 gives a multipart object: the MD5 of the
 * parts' binary MD5s, a dash, and their count. A completion that takes a while is answered 200 early and kept alive
 * with whitespace, as S3 does; a failure after that comes as an error document in the 200's body.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import type { ObjectInfo } from './object-store.ts'
import { checksumAlgorithmOfHeader, checksummer, type Checksummer } from './s3-checksum.ts'
import { S3Error, toS3Error } from './s3-errors.ts'
import { headerOf, objectFailure, openRequestBody, readXmlBody, sendEmpty, sendXml, type S3Exchange, type S3Settings } from './s3-http.ts'
import { metadataOf, refuseUnsupportedPut } from './s3-objects.ts'
import type { StagedPart, Upload } from './s3-staging.ts'
import { awsEncode } from './s3-sigv4.ts'
import { childrenNamed, childText, document, element, errorDocument, isoTime, s3Namespace } from './s3-xml.ts'

/** The most parts an upload may have, as S3 allows. */
export const maxParts = 10000
/** How often a long completion writes a space to keep its connection alive. */
const keepAliveMs = 5000

function findUpload(ex: S3Exchange, settings: S3Settings): Upload {
  const id = ex.query.get('uploadId') ?? ''
  return settings.staging.find(id, ex.bucket!, ex.key!)
}

function partNumberOf(text: string | undefined): number {
  const number = /^\d{1,5}$/.test(text ?? '') ? Number(text) : NaN
  if (!(number >= 1 && number <= maxParts)) throw new S3Error('InvalidArgument', `Part number must be an integer between 1 and ${maxParts}, inclusive.`)
  return number
}

/** CreateMultipartUpload (POST /bucket/key?uploads). */
export async function createMultipartUpload(ex: S3Exchange, settings: S3Settings): Promise<void> {
  const metadata = metadataOf(ex)
  if (!(await settings.store.hasBucket(ex.bucket!))) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist.')
  const contentType = headerOf(ex, 'content-type')
  const upload = settings.staging.create({ bucket: ex.bucket!, key: ex.key!, contentType, metadata })
  sendXml(ex, 200, document('InitiateMultipartUploadResult', `${element('Bucket', upload.bucket)}${element('Key', upload.key)}${element('UploadId', upload.id)}`))
}

/** UploadPart (PUT /bucket/key?partNumber=n&uploadId=id): stages the part; answers with its ETag (its MD5). */
export async function uploadPart(ex: S3Exchange, settings: S3Settings): Promise<void> {
  refuseUnsupportedPut(ex)
  const partNumber = partNumberOf(ex.query.get('partNumber'))
  const upload = findUpload(ex, settings)
  if (upload.completing) throw new S3Error('OperationAborted', 'the upload is being completed: a part can no longer be sent to it')
  const body = openRequestBody(ex, settings.maxPartBytes)
  let part: StagedPart
  try {
    part = await settings.staging.writePart(upload, partNumber, body.body, () => body.md5Hex(), () => body.checksum())
  } catch (error) {
    throw body.failure() ?? toS3Error(error)
  }
  sendEmpty(ex, 200, { etag: `"${part.etag}"`, ...(part.checksum === undefined ? {} : { [part.checksum.name]: part.checksum.value }) })
}

/** AbortMultipartUpload (DELETE /bucket/key?uploadId=id): 204, the staged parts removed. */
export async function abortMultipartUpload(ex: S3Exchange, settings: S3Settings): Promise<void> {
  const upload = findUpload(ex, settings)
  if (upload.completing) throw new S3Error('OperationAborted', 'the upload is being completed and can no longer be aborted')
  await settings.staging.remove(upload)
  sendEmpty(ex, 204)
}

const unquote = (etag: string): string => etag.trim().replace(/^"|"$/g, '')

/** A part as the CompleteMultipartUpload document names it. */
interface NamedPart {
  partNumber: number
  etag: string
  checksums: Array<[string, string]>
}

async function namedParts(ex: S3Exchange, settings: S3Settings): Promise<NamedPart[]> {
  const root = await readXmlBody(ex, 'CompleteMultipartUpload', settings.maxXmlBytes * 2, false)
  const parts = childrenNamed(root, 'Part').map((part) => {
    const etag = childText(part, 'ETag')
    if (etag === undefined) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed: a <Part> has no <ETag>.')
    const checksums = part.children.filter((child) => child.name.startsWith('Checksum') && child.name !== 'ChecksumType').map((child): [string, string] => [`x-amz-checksum-${child.name.slice(8).toLowerCase()}`, child.text.trim()])
    return { partNumber: partNumberOf(childText(part, 'PartNumber')?.trim()), etag: unquote(etag), checksums }
  })
  if (parts.length === 0) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed: name at least one <Part>.')
  return parts
}

/** The staged parts the document names, checked: InvalidPartOrder, InvalidPart or EntityTooSmall when they are not right. */
function checkedParts(upload: Upload, named: NamedPart[], minPartBytes: number): StagedPart[] {
  const invalid = (number: number): S3Error =>
    new S3Error('InvalidPart', `One or more of the specified parts could not be found or its entity tag did not match: part ${number}. Upload it, or name it with the ETag its upload answered.`)
  const parts = named.map((want, index) => {
    if (index > 0 && want.partNumber <= named[index - 1]!.partNumber) throw new S3Error('InvalidPartOrder', 'The list of parts was not in ascending order: list each part once, by part number.')
    const staged = upload.parts.get(want.partNumber)
    if (staged === undefined || staged.etag !== want.etag) throw invalid(want.partNumber)
    for (const [name, value] of want.checksums) if (staged.checksum !== undefined && staged.checksum.name === name && staged.checksum.value !== value) throw invalid(want.partNumber)
    return staged
  })
  const small = parts.find((part, index) => index < parts.length - 1 && part.size < minPartBytes)
  if (small !== undefined) {
    throw new S3Error('EntityTooSmall', `Your proposed upload is smaller than the minimum allowed size: part ${small.partNumber} holds ${small.size} bytes; every part but the last needs at least ${minPartBytes}.`)
  }
  return parts
}

/** The whole object's CRC the client asks to be checked (x-amz-checksum-<crc> on Complete, no "-<parts>" suffix). */
function fullObjectChecksum(ex: S3Exchange): { name: string; expected: string; summer: Checksummer } | undefined {
  for (const name of Object.keys(ex.req.headers)) {
    const algorithm = checksumAlgorithmOfHeader(name)
    const expected = headerOf(ex, name)
    if (algorithm === undefined || expected === undefined || expected.includes('-')) continue
    if (algorithm !== 'crc32' && algorithm !== 'crc32c') throw new S3Error('InvalidRequest', `a whole-object checksum may only be a CRC (got ${name})`)
    return { name, expected, summer: checksummer(algorithm) }
  }
  return undefined
}

/** The parts' bytes in order, from their staged files; the whole-object checksum checked before the end. */
async function* partsBody(parts: StagedPart[], checksum: ReturnType<typeof fullObjectChecksum>): AsyncGenerator<Uint8Array> {
  for (const part of parts) {
    let size = 0
    for await (const chunk of createReadStream(part.path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
      size += chunk.length
      checksum?.summer.update(chunk)
      yield chunk
    }
    if (size !== part.size) throw new S3Error('InternalError', `the staged part ${part.partNumber} holds ${size} bytes, not the ${part.size} it was sent with`)
  }
  if (checksum !== undefined && checksum.summer.digest() !== checksum.expected) {
    throw new S3Error('BadDigest', `The ${checksum.name.slice('x-amz-checksum-'.length).toUpperCase()} you specified for the whole object did not match the calculated checksum.`)
  }
}

/** The ETag of a multipart object: MD5 of the parts' binary MD5s, "-", their count. */
export function multipartEtag(partEtags: string[]): string {
  const md5 = createHash('md5')
  for (const etag of partEtags) md5.update(Buffer.from(etag, 'hex'))
  return `${md5.digest('hex')}-${partEtags.length}`
}

/** CompleteMultipartUpload (POST /bucket/key?uploadId=id). */
export async function completeMultipartUpload(ex: S3Exchange, settings: S3Settings): Promise<void> {
  findUpload(ex, settings)
  const named = await namedParts(ex, settings)
  // Found again: it may have been aborted while its document was read.
  const upload = findUpload(ex, settings)
  if (upload.completing) throw new S3Error('OperationAborted', 'the upload is being completed by another request')
  const parts = checkedParts(upload, named, settings.minPartBytes)
  const size = parts.reduce((sum, part) => sum + part.size, 0)
  if (size > settings.maxObjectBytes) throw new S3Error('EntityTooLarge', `Your proposed upload of ${size} bytes exceeds the maximum allowed size of ${settings.maxObjectBytes} bytes.`)
  const checksum = fullObjectChecksum(ex)
  upload.completing = true
  let answered = false
  const timer = setInterval(() => {
    if (ex.res.destroyed) return
    if (!answered) ex.res.writeHead(200, { 'content-type': 'application/xml', 'x-amz-request-id': ex.requestId, 'x-amz-id-2': ex.requestId })
    ex.res.write(answered ? ' ' : '<?xml version="1.0" encoding="UTF-8"?>\n')
    answered = true
  }, keepAliveMs)
  let info: ObjectInfo
  try {
    const etag = multipartEtag(parts.map((part) => part.etag))
    info = await settings.store.putObject({ bucket: upload.bucket, key: upload.key, body: partsBody(parts, checksum), size, ...(upload.contentType === undefined ? {} : { contentType: upload.contentType }), metadata: upload.metadata, etag: () => etag })
  } catch (error) {
    upload.completing = false
    const failure = error instanceof S3Error ? error : await objectFailure(ex, settings, error)
    if (!answered) throw failure
    ex.res.end(errorDocument(failure.code, failure.message, ex.target.rawPath, ex.requestId).replace(/^<\?xml[^>]*>\n/, ''))
    return
  } finally {
    clearInterval(timer)
  }
  await settings.staging.remove(upload)
  const location = `http://${headerOf(ex, 'host') ?? 'localhost'}/${awsEncode(upload.bucket)}/${awsEncode(upload.key, true)}`
  const result = `<CompleteMultipartUploadResult xmlns="${s3Namespace}">${element('Location', location)}${element('Bucket', upload.bucket)}${element('Key', upload.key)}${element('ETag', `"${info.etag}"`)}</CompleteMultipartUploadResult>`
  if (answered) ex.res.end(result)
  else sendXml(ex, 200, `<?xml version="1.0" encoding="UTF-8"?>\n${result}`, checksum === undefined ? {} : { [checksum.name]: checksum.expected })
}

/** ListParts (GET /bucket/key?uploadId=id): max-parts and part-number-marker. */
export async function listParts(ex: S3Exchange, settings: S3Settings): Promise<void> {
  const upload = findUpload(ex, settings)
  const maxText = ex.query.get('max-parts') ?? '1000'
  const marker = Number(ex.query.get('part-number-marker') ?? '0')
  if (!/^\d{1,6}$/.test(maxText) || !Number.isInteger(marker) || marker < 0) throw new S3Error('InvalidArgument', 'max-parts and part-number-marker must be whole numbers')
  const maxList = Math.min(Number(maxText), 1000)
  const after = [...upload.parts.values()].filter((part) => part.partNumber > marker).sort((a, b) => a.partNumber - b.partNumber)
  const page = after.slice(0, maxList)
  const truncated = after.length > page.length
  const parts = page.map((part) => `<Part>${element('PartNumber', part.partNumber)}${element('LastModified', isoTime(part.lastModifiedMs))}${element('ETag', `"${part.etag}"`)}${element('Size', part.size)}</Part>`)
  const inner = [
    element('Bucket', upload.bucket),
    element('Key', upload.key),
    element('UploadId', upload.id),
    '<Initiator><ID>hearth</ID><DisplayName>hearth</DisplayName></Initiator><Owner><ID>hearth</ID><DisplayName>hearth</DisplayName></Owner>',
    '<StorageClass>STANDARD</StorageClass>',
    element('PartNumberMarker', marker),
    element('NextPartNumberMarker', page.length > 0 ? page[page.length - 1]!.partNumber : marker),
    element('MaxParts', maxList),
    element('IsTruncated', truncated),
    ...parts,
  ]
  sendXml(ex, 200, document('ListPartsResult', inner.join('')))
}

/** ListMultipartUploads (GET /bucket?uploads): prefix, key-marker, upload-id-marker and max-uploads. */
export async function listMultipartUploads(ex: S3Exchange, settings: S3Settings): Promise<void> {
  if (!(await settings.store.hasBucket(ex.bucket!))) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist.')
  const prefix = ex.query.get('prefix') ?? ''
  const keyMarker = ex.query.get('key-marker') ?? ''
  const idMarker = ex.query.get('upload-id-marker') ?? ''
  const maxText = ex.query.get('max-uploads') ?? '1000'
  if (!/^\d{1,6}$/.test(maxText)) throw new S3Error('InvalidArgument', 'max-uploads must be a whole number')
  const maxList = Math.min(Number(maxText), 1000)
  const all = settings.staging.list(ex.bucket!).filter((upload) => upload.key.startsWith(prefix))
  const start = keyMarker === '' ? 0 : all.findIndex((upload) => (upload.key === keyMarker && idMarker !== '' ? upload.id > idMarker : Buffer.compare(Buffer.from(upload.key), Buffer.from(keyMarker)) > 0))
  const rest = start < 0 ? [] : all.slice(start)
  const page = rest.slice(0, maxList)
  const last = page[page.length - 1]
  const uploads = page.map((upload) => `<Upload>${element('Key', upload.key)}${element('UploadId', upload.id)}<Initiator><ID>hearth</ID><DisplayName>hearth</DisplayName></Initiator><Owner><ID>hearth</ID><DisplayName>hearth</DisplayName></Owner><StorageClass>STANDARD</StorageClass>${element('Initiated', isoTime(upload.initiatedMs))}</Upload>`)
  const inner = [
    element('Bucket', ex.bucket!),
    element('KeyMarker', keyMarker),
    element('UploadIdMarker', idMarker),
    element('NextKeyMarker', last?.key ?? ''),
    element('NextUploadIdMarker', last?.id ?? ''),
    element('Prefix', prefix),
    element('MaxUploads', maxList),
    element('IsTruncated', rest.length > page.length),
    ...uploads,
  ]
  sendXml(ex, 200, document('ListMultipartUploadsResult', inner.join('')))
}
