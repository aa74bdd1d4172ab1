/**
 * What the S3 endpoint's handlers (s3-server.ts, s3-objects.ts, s3-list.ts, s3-multipart.ts) share: one request as
 * they see it once it is authenticated (an S3Exchange), the endpoint's settings, and the ways to answer it and to read
 * its body, checked as s3-body.ts checks it.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { isHearthError } from '../errors.ts'
import type { ObjectStore } from './object-store.ts'
import { planBody, readSmallBody, verifyBody, type VerifiedBody } from './s3-body.ts'
import { S3Error, toS3Error } from './s3-errors.ts'
import type { Authenticated, RequestTarget } from './s3-sigv4.ts'
import type { Staging } from './s3-staging.ts'
import { parseDocument, type XmlElement } from './s3-xml.ts'

/** The endpoint's settings, as the handlers use them. */
export interface S3Settings {
  store: ObjectStore
  staging: Staging
  region: string
  /** The largest object, in bytes. */
  maxObjectBytes: number
  /** The largest part of a multipart upload. */
  maxPartBytes: number
  /** The smallest part of a multipart upload, but for its last. */
  minPartBytes: number
  /** The largest XML body of a request (a CompleteMultipartUpload may be twice that). */
  maxXmlBytes: number
  log(line: string): void
}

/** One authenticated request and its response. */
export interface S3Exchange {
  req: IncomingMessage
  res: ServerResponse
  requestId: string
  target: RequestTarget
  /** Query parameters, the first value of each name. */
  query: Map<string, string>
  bucket: string | undefined
  key: string | undefined
  auth: Authenticated
  /** Whether the client waits for "100 Continue" before it sends its body. */
  expectsContinue: boolean
  continued: boolean
  /** The body, once reading it began. */
  body: VerifiedBody | undefined
}

/** A header's value (repeated headers joined with ","); undefined when absent. */
export function headerOf(ex: S3Exchange, name: string): string | undefined {
  const value = ex.req.headers[name]
  return Array.isArray(value) ? value.join(',') : value
}

/** Whether the request carries a body (a length above 0, or chunked transfer encoding). */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/**
 * Starts reading the request's body, checked against its headers and signature (see s3-body.ts); asks the client for
 * it first when it waits for "100 Continue". Throws the S3Error of headers that already rule the body out.
 */
export function openRequestBody(ex: S3Exchange, maxBytes: number, withChecksumHeaders = true): VerifiedBody {
  const plan = planBody(ex.req.headers, ex.auth, maxBytes, withChecksumHeaders)
  if (ex.expectsContinue && !ex.continued) {
    ex.res.writeContinue()
    ex.continued = true
  }
  // The request stays open when reading stops early, so that an error can still be answered on it.
  ex.body = verifyBody(ex.req.iterator({ destroyOnReturn: false }), plan, ex.auth)
  return ex.body
}

/** Reads an XML body whole (at most `maxBytes`) and parses it; MalformedXML unless its root is `rootName`. */
export async function readXmlBody(ex: S3Exchange, rootName: string, maxBytes: number, withChecksumHeaders = true): Promise<XmlElement> {
  let body: VerifiedBody
  try {
    body = openRequestBody(ex, maxBytes, withChecksumHeaders)
  } catch (error) {
    if (error instanceof S3Error && error.code === 'EntityTooLarge') throw new S3Error('MaxMessageLengthExceeded', `Your request was too big: an XML body may hold at most ${maxBytes} bytes.`)
    throw error
  }
  const bytes = await readSmallBody(body, maxBytes)
  return parseDocument(bytes.toString('utf8'), rootName)
}

/**
 * The S3Error a store call about an object failed with: a NOT_FOUND is a missing key while the bucket is there, a
 * missing bucket otherwise.
 */
export async function objectFailure(ex: S3Exchange, settings: S3Settings, error: unknown): Promise<S3Error> {
  if (!isHearthError(error, 'HEARTH_ERR_STORAGE_NOT_FOUND')) return toS3Error(error)
  const bucketThere = await settings.store.hasBucket(ex.bucket!).catch(() => false)
  return toS3Error(error, { missingKey: bucketThere })
}

function baseHeaders(ex: S3Exchange): OutgoingHttpHeaders {
  return { 'x-amz-request-id': ex.requestId, 'x-amz-id-2': ex.requestId }
}

/** Answers with an XML document. */
export function sendXml(ex: S3Exchange, status: number, xml: string, headers: OutgoingHttpHeaders = {}): void {
  const body = Buffer.from(xml, 'utf8')
  ex.res.writeHead(status, { ...baseHeaders(ex), 'content-type': 'application/xml', 'content-length': body.length, ...headers })
  ex.res.end(ex.req.method === 'HEAD' ? undefined : body)
}

/** Answers with no body (content-length 0, unless `headers` say otherwise, as a HEAD does). */
export function sendEmpty(ex: S3Exchange, status: number, headers: OutgoingHttpHeaders = {}): void {
  ex.res.writeHead(status, { ...baseHeaders(ex), 'content-length': 0, ...headers })
  ex.res.end()
}
