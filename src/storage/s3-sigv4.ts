/**
 * AWS Signature Version 4 as S3 uses it, for the S3 endpoint (s3-server.ts): the canonical request (path encoded once,
 * as S3 wants it, query and headers canonicalized as AWS specifies), the signing key, and the check of a request signed
 * in its Authorization header or in its query string (a presigned URL). The signatures of aws-chunked bodies chain from
 * the request's signature (s3-body.ts uses chunkSignature). A client's side is here too (signRequest, presignUrl), for
 * tests and tools that talk to the endpoint without an SDK.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { S3Error } from './s3-errors.ts'

export const sigV4Algorithm = 'AWS4-HMAC-SHA256'
export const emptySha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
export const unsignedPayload = 'UNSIGNED-PAYLOAD'
/** How far a request's time may be from the server's. */
export const maxClockSkewMs = 15 * 60 * 1000
/** The longest a presigned URL may be valid, as S3 allows: 7 days. */
export const maxPresignSeconds = 7 * 24 * 3600

export interface S3Credentials {
  accessKeyId: string
  secretAccessKey: string
}

/** A request's path and query, decoded. */
export interface RequestTarget {
  /** The path as sent, still percent-encoded. */
  rawPath: string
  /** The path decoded. */
  path: string
  /** Query parameters decoded, in the order sent. */
  query: Array<[string, string]>
}

/** What a request proved by its signature: what a signed body's chunks chain from, and what its payload is said to be. */
export interface Authenticated {
  accessKeyId: string
  /** The request time, as signed (YYYYMMDDTHHMMSSZ). */
  amzDate: string
  /** The credential scope: date/region/s3/aws4_request. */
  scope: string
  signingKey: Buffer
  /** The request's signature: the seed of an aws-chunked body's chunk signatures. */
  signature: string
  /** The x-amz-content-sha256 the request was signed with (a hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* mode). */
  payloadHash: string
  presigned: boolean
}

const sha256Hex = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex')
const hmac = (key: Uint8Array | string, data: string): Buffer => createHmac('sha256', key).update(data).digest()

/** RFC 3986 encoding as SigV4 specifies: every byte but A-Z a-z 0-9 - _ . ~ as %XX; '/' kept when `keepSlash`. */
export function awsEncode(text: string, keepSlash = false): string {
  const encoded = encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  return keepSlash ? encoded.replace(/%2F/g, '/') : encoded
}

function decodeComponent(text: string, what: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    throw new S3Error('InvalidURI', `the ${what} ${JSON.stringify(text.slice(0, 100))} is not valid percent-encoded UTF-8`)
  }
}

/** Splits a request's URL (origin form, as node:http gives it) into its decoded path and query. */
export function parseTarget(url: string): RequestTarget {
  // Bytes above 0x7f sent unencoded reach node:http as Latin-1 characters: read them back as the UTF-8 they were.
  const text = /[\u0080-\u00ff]/.test(url) ? Buffer.from(url, 'latin1').toString('utf8') : url
  if (!text.startsWith('/')) throw new S3Error('InvalidURI', 'the request target must be a path starting with "/"')
  const mark = text.indexOf('?')
  const rawPath = mark < 0 ? text : text.slice(0, mark)
  const rawQuery = mark < 0 ? '' : text.slice(mark + 1)
  const path = rawPath.split('/').map((segment) => decodeComponent(segment, 'path')).join('/')
  const query: Array<[string, string]> = []
  for (const part of rawQuery.split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    const name = eq < 0 ? part : part.slice(0, eq)
    const value = eq < 0 ? '' : part.slice(eq + 1)
    query.push([decodeComponent(name.replace(/\+/g, '%20'), 'query'), decodeComponent(value.replace(/\+/g, '%20'), 'query')])
  }
  return { rawPath, path, query }
}

/** The canonical query string: names and values encoded, sorted by name then value. */
export function canonicalQuery(query: Array<[string, string]>): string {
  return query
    .map(([name, value]) => [awsEncode(name), awsEncode(value)] as const)
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&')
}

/** Header values by lower-case name, from node:http's raw header list (repeated headers kept apart). */
export function headerLists(rawHeaders: string[]): Map<string, string[]> {
  const lists = new Map<string, string[]>()
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase()
    const list = lists.get(name)
    if (list === undefined) lists.set(name, [rawHeaders[i + 1]!])
    else list.push(rawHeaders[i + 1]!)
  }
  return lists
}

function canonicalHeaders(headers: Map<string, string[]>, signed: string[]): string {
  return signed.map((name) => `${name}:${(headers.get(name) ?? []).map((value) => value.trim().replace(/\s+/g, ' ')).join(',')}\n`).join('')
}

/** The canonical request's parts, as SigV4 joins them. */
interface CanonicalParts {
  method: string
  canonicalUri: string
  query: Array<[string, string]>
  headers: Map<string, string[]>
  signedHeaders: string[]
  payloadHash: string
}

function canonicalRequest(parts: CanonicalParts): string {
  return [parts.method, parts.canonicalUri, canonicalQuery(parts.query), canonicalHeaders(parts.headers, parts.signedHeaders), parts.signedHeaders.join(';'), parts.payloadHash].join('\n')
}

function stringToSign(amzDate: string, scope: string, canonical: string): string {
  return [sigV4Algorithm, amzDate, scope, sha256Hex(canonical)].join('\n')
}

/** The signing key of a secret, a day (YYYYMMDD) and a region, for S3. */
export function signingKey(secretAccessKey: string, day: string, region: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, day), region), 's3'), 'aws4_request')
}

/** The signature of an aws-chunked body's chunk (or, with `kind` 'TRAILER', of its trailing headers). */
export function chunkSignature(key: Buffer, amzDate: string, scope: string, previous: string, dataSha256: string, kind: 'PAYLOAD' | 'TRAILER' = 'PAYLOAD'): string {
  const lines = kind === 'PAYLOAD' ? [`${sigV4Algorithm}-PAYLOAD`, amzDate, scope, previous, emptySha256, dataSha256] : [`${sigV4Algorithm}-TRAILER`, amzDate, scope, previous, dataSha256]
  return hmac(key, lines.join('\n')).toString('hex')
}

/** Whether two signatures (hex) are the same, in time that does not depend on where they differ. */
export function sameSignature(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'utf8')
  const b = Buffer.from(expected, 'utf8')
  if (a.length !== b.length) {
    timingSafeEqual(b, b)
    return false
  }
  return timingSafeEqual(a, b)
}

/** YYYYMMDDTHHMMSSZ of a time. */
export function amzDateOf(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
}

function parseAmzDate(text: string | undefined): number | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text ?? '')
  if (match === null) return undefined
  const ms = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]), Number(match[4]), Number(match[5]), Number(match[6]))
  return Number.isNaN(ms) ? undefined : ms
}

/** What a signature claims, from the Authorization header or the X-Amz-* query parameters. */
interface Claim {
  accessKeyId: string
  day: string
  region: string
  service: string
  terminator: string
  signedHeaders: string[]
  signature: string
  amzDate: string
}

function parseCredential(credential: string, fault: 'AuthorizationHeaderMalformed' | 'AuthorizationQueryParametersError'): Pick<Claim, 'accessKeyId' | 'day' | 'region' | 'service' | 'terminator'> {
  const parts = credential.split('/')
  if (parts.length !== 5 || parts.some((part) => part === '')) {
    throw new S3Error(fault, `the credential ${JSON.stringify(credential.slice(0, 200))} is malformed: expected <access key>/<YYYYMMDD>/<region>/s3/aws4_request`)
  }
  const [accessKeyId, day, region, service, terminator] = parts as [string, string, string, string, string]
  return { accessKeyId, day, region, service, terminator }
}

function headerClaim(authorization: string, headers: Map<string, string[]>): Claim {
  const fault = 'AuthorizationHeaderMalformed'
  const match = /^AWS4-HMAC-SHA256\s+(.+)$/s.exec(authorization.trim())
  if (match === null) throw new S3Error('InvalidArgument', 'the authorization mechanism is not supported: sign requests with AWS Signature Version 4 (AWS4-HMAC-SHA256)')
  const fields = new Map<string, string>()
  for (const field of match[1]!.split(',')) {
    const eq = field.indexOf('=')
    if (eq > 0) fields.set(field.slice(0, eq).trim(), field.slice(eq + 1).trim())
  }
  const credential = fields.get('Credential')
  const signedHeaders = fields.get('SignedHeaders')
  const signature = fields.get('Signature')
  if (credential === undefined || signedHeaders === undefined || signature === undefined) {
    throw new S3Error(fault, 'the Authorization header must hold Credential=, SignedHeaders= and Signature=')
  }
  const amzDate = headers.get('x-amz-date')?.[0] ?? dateHeaderAsAmz(headers.get('date')?.[0])
  if (amzDate === undefined) throw new S3Error('AccessDenied', 'the request has no valid X-Amz-Date (or Date) header: sign it with the time it is sent')
  return { ...parseCredential(credential, fault), signedHeaders: signedHeaders.split(';'), signature, amzDate }
}

function dateHeaderAsAmz(date: string | undefined): string | undefined {
  if (date === undefined) return undefined
  const ms = Date.parse(date)
  return Number.isNaN(ms) ? undefined : amzDateOf(ms)
}

function queryClaim(query: Map<string, string>): Claim & { expiresSeconds: number } {
  const fault = 'AuthorizationQueryParametersError'
  if (query.get('X-Amz-Algorithm') !== sigV4Algorithm) throw new S3Error(fault, `X-Amz-Algorithm must be ${sigV4Algorithm}`)
  const credential = query.get('X-Amz-Credential')
  const signedHeaders = query.get('X-Amz-SignedHeaders')
  const signature = query.get('X-Amz-Signature')
  const amzDate = query.get('X-Amz-Date')
  const expires = query.get('X-Amz-Expires')
  if (credential === undefined || signedHeaders === undefined || signature === undefined || amzDate === undefined || expires === undefined) {
    throw new S3Error(fault, 'a presigned URL must hold X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature')
  }
  const expiresSeconds = /^\d{1,7}$/.test(expires) ? Number(expires) : NaN
  if (!(expiresSeconds >= 1 && expiresSeconds <= maxPresignSeconds)) throw new S3Error(fault, `X-Amz-Expires must be a whole number of seconds from 1 to ${maxPresignSeconds}`)
  return { ...parseCredential(credential, fault), signedHeaders: signedHeaders.split(';'), signature, amzDate, expiresSeconds }
}

/** Checks what a claim says of itself: the key, scope and time; throws the S3Error a client should see. */
function checkClaim(claim: Claim, credentials: S3Credentials, region: string, presigned: boolean): void {
  const fault = presigned ? 'AuthorizationQueryParametersError' : 'AuthorizationHeaderMalformed'
  if (!sameSignature(claim.accessKeyId, credentials.accessKeyId)) throw new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.')
  if (claim.service !== 's3' || claim.terminator !== 'aws4_request') throw new S3Error(fault, 'the credential scope must end in /s3/aws4_request')
  if (claim.region !== region) throw new S3Error(fault, `the credential scope names region ${JSON.stringify(claim.region.slice(0, 60))}, but this endpoint is in ${region}: sign for ${region}`)
  if (parseAmzDate(claim.amzDate) === undefined) throw new S3Error(fault, 'the request time is not in the form YYYYMMDDTHHMMSSZ')
  if (claim.day !== claim.amzDate.slice(0, 8)) throw new S3Error(fault, `the credential scope's day ${claim.day} is not the day of the request time ${claim.amzDate}`)
  if (!claim.signedHeaders.includes('host')) throw new S3Error(fault, 'the signed headers must include host')
  if (claim.signedHeaders.some((name) => name !== name.toLowerCase() || name === '')) throw new S3Error(fault, 'the signed headers must be lower-case names separated by ";"')
}

function checkTime(claim: Claim, nowMs: number, expiresSeconds: number | undefined): void {
  const timeMs = parseAmzDate(claim.amzDate)!
  if (expiresSeconds === undefined) {
    if (Math.abs(timeMs - nowMs) > maxClockSkewMs) {
      throw new S3Error('RequestTimeTooSkewed', `The difference between the request time (${claim.amzDate}) and the server's time (${amzDateOf(nowMs)}) is too large: set the client's clock right.`)
    }
    return
  }
  if (timeMs - nowMs > maxClockSkewMs) throw new S3Error('RequestTimeTooSkewed', `the presigned URL's time ${claim.amzDate} lies in the future: set the signer's clock right`)
  if (nowMs > timeMs + expiresSeconds * 1000) throw new S3Error('AccessDenied', 'Request has expired: presign the URL again.')
}

/** Headers a client may leave unsigned although they start x-amz-: none, as S3 wants every x-amz-* header signed. */
function unsignedAmzHeaders(headers: Map<string, string[]>, signed: string[]): string[] {
  return [...headers.keys()].filter((name) => name.startsWith('x-amz-') && !signed.includes(name))
}

/** The inputs of authenticate: the request as node:http received it. */
export interface SignedRequestInput {
  method: string
  target: RequestTarget
  rawHeaders: string[]
}

/**
 * Checks a request's SigV4 signature (Authorization header or presigned query) against the one key pair this endpoint
 * knows; returns what the signature covers. Throws the S3Error a client should see: AccessDenied unsigned,
 * InvalidAccessKeyId, SignatureDoesNotMatch, RequestTimeTooSkewed, or a malformed-authorization error.
 */
export function authenticate(request: SignedRequestInput, credentials: S3Credentials, region: string, nowMs: number = Date.now()): Authenticated {
  const headers = headerLists(request.rawHeaders)
  const authorization = headers.get('authorization')
  const query = new Map(request.target.query)
  const presigned = query.has('X-Amz-Signature') || query.has('X-Amz-Credential')
  if (authorization === undefined && !presigned) throw new S3Error('AccessDenied', 'Access Denied: the request is not signed (sign it with AWS Signature Version 4)')
  if (authorization !== undefined && presigned) throw new S3Error('InvalidArgument', 'a request is signed either in its Authorization header or in its query, not both')
  if (authorization !== undefined && authorization.length !== 1) throw new S3Error('InvalidArgument', 'a request may hold one Authorization header only')
  const claim = authorization === undefined ? queryClaim(query) : headerClaim(authorization[0]!, headers)
  checkClaim(claim, credentials, region, presigned)
  checkTime(claim, nowMs, 'expiresSeconds' in claim ? (claim.expiresSeconds as number) : undefined)
  if (headers.has('x-amz-security-token') || query.has('X-Amz-Security-Token')) throw new S3Error('InvalidToken', 'this endpoint takes no session tokens: sign with its access key alone')
  const unsigned = unsignedAmzHeaders(headers, claim.signedHeaders)
  if (unsigned.length > 0) throw new S3Error('AccessDenied', `There were headers present in the request which were not signed: ${unsigned.slice(0, 5).join(', ')}`)
  const declaredHash = headers.get('x-amz-content-sha256')?.[0]
  if (!presigned && declaredHash === undefined) throw new S3Error('InvalidRequest', 'Missing required header for this request: x-amz-content-sha256')
  const payloadHash = declaredHash ?? query.get('X-Amz-Content-Sha256') ?? unsignedPayload
  const key = signingKey(credentials.secretAccessKey, claim.day, region)
  const scope = `${claim.day}/${region}/s3/aws4_request`
  const signedQuery = presigned ? request.target.query.filter(([name]) => name !== 'X-Amz-Signature') : request.target.query
  const base = { method: request.method, query: signedQuery, headers, signedHeaders: claim.signedHeaders, payloadHash }
  // S3 clients encode the path once, each segment as SigV4 encodes; the path exactly as sent is also accepted, for
  // clients that leave some safe characters unencoded.
  const uris = [...new Set([awsEncode(request.target.path, true), request.target.rawPath])]
  const matched = uris.some((canonicalUri) => sameSignature(claim.signature, hmac(key, stringToSign(claim.amzDate, scope, canonicalRequest({ ...base, canonicalUri }))).toString('hex')))
  if (!matched) {
    throw new S3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.')
  }
  return { accessKeyId: claim.accessKeyId, amzDate: claim.amzDate, scope, signingKey: key, signature: claim.signature, payloadHash, presigned }
}

/** What a client signs: a request to `url` with these headers (host added from the URL). */
export interface ClientRequest {
  method: string
  url: URL
  headers?: Record<string, string>
  /** The x-amz-content-sha256 to send: the body's hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* mode. */
  payloadHash: string
  credentials: S3Credentials
  region: string
  nowMs?: number
}

/**
 * Signs a request in its Authorization header, as an S3 client does: returns the headers to send (host, x-amz-date and
 * x-amz-content-sha256 added), and the signature, the seed of an aws-chunked body's chunk signatures.
 */
export function signRequest(request: ClientRequest): { headers: Record<string, string>; signature: string; amzDate: string; scope: string; signingKey: Buffer } {
  const amzDate = amzDateOf(request.nowMs ?? Date.now())
  const headers: Record<string, string> = { ...request.headers, host: request.url.host, 'x-amz-date': amzDate, 'x-amz-content-sha256': request.payloadHash }
  const lists = new Map(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), [value]]))
  const signedHeaders = [...lists.keys()].sort()
  const target = parseTarget(request.url.pathname + request.url.search)
  const scope = `${amzDate.slice(0, 8)}/${request.region}/s3/aws4_request`
  const key = signingKey(request.credentials.secretAccessKey, amzDate.slice(0, 8), request.region)
  const canonical = canonicalRequest({ method: request.method, canonicalUri: awsEncode(target.path, true), query: target.query, headers: lists, signedHeaders, payloadHash: request.payloadHash })
  const signature = hmac(key, stringToSign(amzDate, scope, canonical)).toString('hex')
  headers.authorization = `${sigV4Algorithm} Credential=${request.credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders.join(';')}, Signature=${signature}`
  return { headers, signature, amzDate, scope, signingKey: key }
}

/** A presigned URL for `method` on `url`, valid `expiresSeconds` from now; only the host header is signed. */
export function presignUrl(request: Omit<ClientRequest, 'payloadHash' | 'headers'> & { expiresSeconds: number }): URL {
  const amzDate = amzDateOf(request.nowMs ?? Date.now())
  const scope = `${amzDate.slice(0, 8)}/${request.region}/s3/aws4_request`
  const url = new URL(request.url)
  url.searchParams.set('X-Amz-Algorithm', sigV4Algorithm)
  url.searchParams.set('X-Amz-Credential', `${request.credentials.accessKeyId}/${scope}`)
  url.searchParams.set('X-Amz-Date', amzDate)
  url.searchParams.set('X-Amz-Expires', String(request.expiresSeconds))
  url.searchParams.set('X-Amz-SignedHeaders', 'host')
  const target = parseTarget(url.pathname + url.search)
  const key = signingKey(request.credentials.secretAccessKey, amzDate.slice(0, 8), request.region)
  const canonical = canonicalRequest({ method: request.method, canonicalUri: awsEncode(target.path, true), query: target.query, headers: new Map([['host', [url.host]]]), signedHeaders: ['host'], payloadHash: unsignedPayload })
  url.searchParams.set('X-Amz-Signature', hmac(key, stringToSign(amzDate, scope, canonical)).toString('hex'))
  return url
}
