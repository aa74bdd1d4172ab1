/**
 * A request body as the S3 endpoint (s3-server.ts) reads it: streamed, never held whole, and checked as it passes
 * against everything the client said of it: its length, the SHA-256 it was signed with, its Content-MD5, an
 * x-amz-checksum-* header or trailer, and, for an aws-chunked body, every chunk's signature (chained from the request's
 * own) and its trailer's. A check that fails throws from the body's iterator before its end, so a store reading it
 * never commits what it read; the failure is kept too, to be answered as the S3 error it is.
 */
import { createHash, type Hash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { checksumAlgorithmOfHeader, checksummer, type ChecksumAlgorithm, type Checksummer } from './s3-checksum.ts'
import { S3Error } from './s3-errors.ts'
import { chunkSignature, sameSignature, unsignedPayload, type Authenticated } from './s3-sigv4.ts'

/** The longest line of an aws-chunked body (a chunk's size and signature, a trailer) accepted. */
export const maxChunkLineBytes = 4096
const maxTrailers = 8

type PayloadMode = { kind: 'sha256'; sha256: string } | { kind: 'unsigned' } | { kind: 'chunked'; signed: boolean; trailer: boolean }

/** A checksum the client sent for the body: in a header (`expected` known) or to come in the trailer. */
interface ChecksumClaim {
  algorithm: ChecksumAlgorithm
  /** The header or trailer name, lower-case (x-amz-checksum-crc32). */
  name: string
  expected: string | undefined
}

/** What a body is to be checked against, from the request's headers alone. */
export interface BodyPlan {
  mode: PayloadMode
  /** The body's length (decoded, for aws-chunked) when the request states it. */
  declaredBytes: number | undefined
  maxBytes: number
  contentMd5: string | undefined
  checksum: ChecksumClaim | undefined
}

const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name]
  return Array.isArray(value) ? value.join(',') : value
}

function payloadMode(payloadHash: string): PayloadMode {
  if (/^[0-9a-f]{64}$/.test(payloadHash)) return { kind: 'sha256', sha256: payloadHash }
  if (payloadHash === unsignedPayload) return { kind: 'unsigned' }
  if (payloadHash === 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD') return { kind: 'chunked', signed: true, trailer: false }
  if (payloadHash === 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER') return { kind: 'chunked', signed: true, trailer: true }
  if (payloadHash === 'STREAMING-UNSIGNED-PAYLOAD-TRAILER') return { kind: 'chunked', signed: false, trailer: true }
  if (payloadHash.startsWith('STREAMING-AWS4-ECDSA')) throw new S3Error('NotImplemented', 'SigV4a (ECDSA) streaming signatures are not supported: sign with AWS4-HMAC-SHA256')
  throw new S3Error('InvalidArgument', `x-amz-content-sha256 must be a lower-case hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* mode (got ${JSON.stringify(payloadHash.slice(0, 80))})`)
}

function lengthHeader(headers: IncomingHttpHeaders, name: string): number | undefined {
  const value = header(headers, name)
  if (value === undefined) return undefined
  if (!/^\d{1,16}$/.test(value)) throw new S3Error('InvalidArgument', `${name} must be a whole number of bytes (got ${JSON.stringify(value.slice(0, 40))})`)
  return Number(value)
}

const checksumBytes: Record<ChecksumAlgorithm, number> = { crc32: 4, crc32c: 4, sha1: 20, sha256: 32 }

function checkChecksumValue(name: string, algorithm: ChecksumAlgorithm, value: string): void {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value) || Buffer.from(value, 'base64').length !== checksumBytes[algorithm]) {
    throw new S3Error('InvalidRequest', `Value for ${name} header is invalid: expected the base64 of a ${checksumBytes[algorithm]}-byte checksum.`)
  }
}

function checksumClaim(headers: IncomingHttpHeaders, mode: PayloadMode, withHeaders: boolean): ChecksumClaim | undefined {
  const claims: ChecksumClaim[] = []
  if (withHeaders) {
    for (const name of Object.keys(headers)) {
      const algorithm = checksumAlgorithmOfHeader(name)
      if (algorithm === undefined) continue
      const expected = header(headers, name)!
      checkChecksumValue(name, algorithm, expected)
      claims.push({ algorithm, name, expected })
    }
  }
  const trailer = header(headers, 'x-amz-trailer')?.trim().toLowerCase()
  if (trailer !== undefined && trailer !== '') {
    if (mode.kind !== 'chunked' || !mode.trailer) throw new S3Error('InvalidRequest', 'x-amz-trailer goes only with a STREAMING-*-TRAILER payload')
    const algorithm = checksumAlgorithmOfHeader(trailer)
    if (algorithm === undefined) throw new S3Error('InvalidRequest', `the trailer ${JSON.stringify(trailer.slice(0, 60))} is not supported: only an x-amz-checksum-* trailer is`)
    claims.push({ algorithm, name: trailer, expected: undefined })
  }
  if (claims.length > 1) throw new S3Error('InvalidRequest', 'Expecting a single x-amz-checksum- header: send one checksum, in a header or in the trailer')
  return claims[0]
}

/**
 * What the body of a request is to be checked against, from its headers and signature. `withChecksumHeaders` is false
 * where x-amz-checksum-* headers describe something else than the body (CompleteMultipartUpload's whole object).
 * Throws the S3Error for a request whose headers already say the body cannot be taken.
 */
export function planBody(headers: IncomingHttpHeaders, auth: Authenticated, maxBytes: number, withChecksumHeaders = true): BodyPlan {
  const mode = payloadMode(auth.payloadHash)
  const chunked = mode.kind === 'chunked'
  const declaredBytes = lengthHeader(headers, chunked ? 'x-amz-decoded-content-length' : 'content-length')
  if (chunked && declaredBytes === undefined) throw new S3Error('MissingContentLength', 'an aws-chunked body needs x-amz-decoded-content-length: the length of the data it carries')
  if (declaredBytes !== undefined && declaredBytes > maxBytes) throw new S3Error('EntityTooLarge', `Your proposed upload of ${declaredBytes} bytes exceeds the maximum allowed size of ${maxBytes} bytes.`)
  const contentMd5 = withChecksumHeaders ? header(headers, 'content-md5') : undefined
  if (contentMd5 !== undefined && (!/^[A-Za-z0-9+/]{22}==$/.test(contentMd5))) throw new S3Error('InvalidDigest', 'The Content-MD5 you specified is not valid: send the base64 of the body\'s 16-byte MD5.')
  return { mode, declaredBytes, maxBytes, contentMd5, checksum: checksumClaim(headers, mode, withChecksumHeaders) }
}

/** A body being read and checked. */
export interface VerifiedBody {
  /** The body's bytes (decoded from aws-chunked); the iterator throws an S3Error, before its end, when a check fails. */
  body: AsyncIterable<Uint8Array>
  /** The body's length as the request declared it (decoded, for aws-chunked), when it did. */
  declaredBytes: number | undefined
  /** MD5 of the body, hex: known once the body was read to its end. */
  md5Hex(): string
  /** The checksum the client sent and that matched, to echo in the answer. */
  checksum(): { name: string; value: string } | undefined
  /** The S3Error the body failed with, if it did. */
  failure(): S3Error | undefined
  /** Whether the body was read to its end and passed every check. */
  finished(): boolean
}

const malformedChunk = (what: string): S3Error => new S3Error('InvalidRequest', `the aws-chunked body is malformed: ${what}`)
const chunkSignatureMismatch = (): S3Error => new S3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided: a chunk signature of the aws-chunked body is wrong.')

/** The parser state of an aws-chunked body. */
interface ChunkState {
  phase: 'size' | 'data' | 'data-end' | 'final' | 'trailer' | 'done'
  remaining: number
  allowed: number
  chunkHash: Hash | undefined
  chunkSig: string
  previous: string
  trailers: Array<[string, string]>
  trailerSigned: boolean
}

interface ChunkOptions {
  signed: boolean
  trailer: boolean
  auth: Authenticated
  allowed: number
}

function onSizeLine(state: ChunkState, line: string, options: ChunkOptions): void {
  const match = /^([0-9a-fA-F]{1,16})((?:;[^;]*)*)$/.exec(line)
  if (match === null) throw malformedChunk(`the chunk-size line ${JSON.stringify(line.slice(0, 80))} is not <hex size>[;chunk-signature=<signature>]`)
  const size = Number.parseInt(match[1]!, 16)
  if (size > state.allowed) throw malformedChunk(`a chunk of ${size} bytes passes the ${options.allowed} bytes the request declared in x-amz-decoded-content-length`)
  state.allowed -= size
  if (options.signed) {
    const signature = /;chunk-signature=([0-9a-f]{64})(;|$)/.exec(match[2]!)
    if (signature === null) throw malformedChunk('a chunk has no chunk-signature=<64 hex digits>')
    state.chunkSig = signature[1]!
  }
  if (size === 0) {
    checkChunkSignature(state, options, createHash('sha256'))
    state.phase = options.trailer ? 'trailer' : 'final'
    return
  }
  state.remaining = size
  state.chunkHash = options.signed ? createHash('sha256') : undefined
  state.phase = 'data'
}

function checkChunkSignature(state: ChunkState, options: ChunkOptions, hash: Hash | undefined): void {
  if (!options.signed || hash === undefined) return
  const { signingKey, amzDate, scope } = options.auth
  if (!sameSignature(state.chunkSig, chunkSignature(signingKey, amzDate, scope, state.previous, hash.digest('hex')))) throw chunkSignatureMismatch()
  state.previous = state.chunkSig
}

function onTrailerLine(state: ChunkState, line: string, options: ChunkOptions): void {
  if (line === '') {
    if (options.signed && !state.trailerSigned) throw malformedChunk('the trailer has no x-amz-trailer-signature')
    state.phase = 'done'
    return
  }
  const colon = line.indexOf(':')
  if (colon <= 0) throw malformedChunk(`the trailer line ${JSON.stringify(line.slice(0, 80))} is not <name>:<value>`)
  const name = line.slice(0, colon).trim().toLowerCase()
  const value = line.slice(colon + 1).trim()
  if (name === 'x-amz-trailer-signature' && options.signed) {
    const canonical = state.trailers.map(([key, text]) => `${key}:${text}\n`).join('')
    const { signingKey, amzDate, scope } = options.auth
    const expected = chunkSignature(signingKey, amzDate, scope, state.previous, createHash('sha256').update(canonical).digest('hex'), 'TRAILER')
    if (!sameSignature(value, expected)) throw chunkSignatureMismatch()
    state.trailerSigned = true
    return
  }
  if (state.trailerSigned) throw malformedChunk('a trailer follows the trailer signature')
  if (state.trailers.length >= maxTrailers) throw malformedChunk(`more than ${maxTrailers} trailers`)
  state.trailers.push([name, value])
}

function onLine(state: ChunkState, line: string, options: ChunkOptions): void {
  if (state.phase === 'size') onSizeLine(state, line, options)
  else if (state.phase === 'data-end') {
    if (line !== '') throw malformedChunk('a chunk holds more bytes than its size says')
    checkChunkSignature(state, options, state.chunkHash)
    state.phase = 'size'
  } else if (state.phase === 'final') {
    if (line !== '') throw malformedChunk('bytes follow the final chunk')
    state.phase = 'done'
  } else onTrailerLine(state, line, options)
}

/** Decodes an aws-chunked body, checking chunk and trailer signatures when signed; the trailers land in `trailers`. */
async function* decodeAwsChunked(source: AsyncIterable<Buffer>, options: ChunkOptions, trailers: Array<[string, string]>): AsyncGenerator<Buffer> {
  const state: ChunkState = { phase: 'size', remaining: 0, allowed: options.allowed, chunkHash: undefined, chunkSig: '', previous: options.auth.signature, trailers, trailerSigned: false }
  let line: Buffer[] = []
  let lineBytes = 0
  for await (const buffer of source) {
    let at = 0
    while (at < buffer.length) {
      if (state.phase === 'done') throw malformedChunk('bytes follow the end of the body')
      if (state.phase === 'data') {
        const take = Math.min(state.remaining, buffer.length - at)
        const piece = buffer.subarray(at, at + take)
        state.chunkHash?.update(piece)
        state.remaining -= take
        at += take
        if (state.remaining === 0) state.phase = 'data-end'
        yield piece
        continue
      }
      const newline = buffer.indexOf(10, at)
      const end = newline < 0 ? buffer.length : newline + 1
      lineBytes += end - at
      if (lineBytes > maxChunkLineBytes) throw malformedChunk(`a line is longer than ${maxChunkLineBytes} bytes`)
      line.push(buffer.subarray(at, end))
      at = end
      if (newline < 0) continue
      const text = Buffer.concat(line).toString('latin1')
      line = []
      lineBytes = 0
      if (!text.endsWith('\r\n')) throw malformedChunk('a line does not end in CRLF')
      onLine(state, text.slice(0, -2), options)
    }
  }
  // Some clients leave out the body's closing empty line: the end of the body stands for it.
  if ((state.phase === 'final' || state.phase === 'trailer') && lineBytes === 0) onLine(state, '', options)
  if (state.phase !== 'done') throw new S3Error('IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length HTTP header: the aws-chunked body ends early.')
}

function md5Matches(md5: Buffer, contentMd5: string | undefined): boolean {
  return contentMd5 === undefined || md5.toString('base64') === contentMd5
}

/**
 * The body of `source` (the request) checked against `plan` as it streams. The iterator of `body` throws the S3Error
 * of the first check that fails; a source that fails (the client gone) counts as an IncompleteBody.
 */
export function verifyBody(source: AsyncIterable<Buffer>, plan: BodyPlan, auth: Authenticated): VerifiedBody {
  let md5Hex: string | undefined
  let failure: S3Error | undefined
  let finished = false
  let checksumValue: string | undefined
  const trailers: Array<[string, string]> = []
  const summer: Checksummer | undefined = plan.checksum === undefined ? undefined : checksummer(plan.checksum.algorithm)
  const mode = plan.mode
  async function* run(): AsyncGenerator<Uint8Array> {
    const md5 = createHash('md5')
    const sha256 = mode.kind === 'sha256' ? createHash('sha256') : undefined
    const allowed = Math.min(plan.maxBytes, plan.declaredBytes ?? plan.maxBytes)
    const decoded = mode.kind === 'chunked' ? decodeAwsChunked(source, { signed: mode.signed, trailer: mode.trailer, auth, allowed }, trailers) : source
    let total = 0
    for await (const chunk of decoded) {
      total += chunk.length
      if (total > plan.maxBytes) throw new S3Error('EntityTooLarge', `Your proposed upload exceeds the maximum allowed size of ${plan.maxBytes} bytes.`)
      md5.update(chunk)
      sha256?.update(chunk)
      summer?.update(chunk)
      yield chunk
    }
    if (plan.declaredBytes !== undefined && total !== plan.declaredBytes) {
      throw new S3Error('IncompleteBody', `You did not provide the number of bytes specified: ${plan.declaredBytes} declared, ${total} sent.`)
    }
    if (sha256 !== undefined && mode.kind === 'sha256' && sha256.digest('hex') !== mode.sha256) {
      throw new S3Error('XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.")
    }
    const digest = md5.digest()
    if (!md5Matches(digest, plan.contentMd5)) throw new S3Error('BadDigest', 'The Content-MD5 you specified did not match what we received.')
    checksumValue = summer?.digest()
    checkChecksum(plan.checksum, checksumValue, trailers)
    md5Hex = digest.toString('hex')
    finished = true
  }
  async function* guarded(): AsyncGenerator<Uint8Array> {
    try {
      yield* run()
    } catch (error) {
      failure = error instanceof S3Error ? error : new S3Error('IncompleteBody', 'The request body ended before its end: the client closed the connection or sent too few bytes.')
      throw failure
    }
  }
  return {
    body: guarded(),
    declaredBytes: plan.declaredBytes,
    md5Hex: () => {
      if (md5Hex === undefined) throw new S3Error('InternalError', 'the body\'s MD5 was asked before the body was read to its end')
      return md5Hex
    },
    checksum: () => (plan.checksum === undefined || checksumValue === undefined || !finished ? undefined : { name: plan.checksum.name, value: checksumValue }),
    failure: () => failure,
    finished: () => finished,
  }
}

function checkChecksum(claim: ChecksumClaim | undefined, computed: string | undefined, trailers: Array<[string, string]>): void {
  if (claim === undefined || computed === undefined) return
  const expected = claim.expected ?? trailers.find(([name]) => name === claim.name)?.[1]
  if (expected === undefined) throw new S3Error('InvalidRequest', `the body's trailer does not hold the ${claim.name} that x-amz-trailer announced`)
  if (claim.expected === undefined) checkChecksumValue(claim.name, claim.algorithm, expected)
  if (computed !== expected) throw new S3Error('BadDigest', `The ${claim.algorithm.toUpperCase()} you specified did not match the calculated checksum.`)
}

/** Reads a small body (an XML document) whole; MaxMessageLengthExceeded when it holds more than `maxBytes`. */
export async function readSmallBody(body: VerifiedBody, maxBytes: number): Promise<Buffer> {
  const parts: Uint8Array[] = []
  let total = 0
  for await (const chunk of body.body) {
    total += chunk.length
    if (total > maxBytes) throw new S3Error('MaxMessageLengthExceeded', `Your request was too big: an XML body may hold at most ${maxBytes} bytes.`)
    parts.push(chunk)
  }
  return Buffer.concat(parts)
}
