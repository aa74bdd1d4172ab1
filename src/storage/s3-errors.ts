/**
 * The errors the S3 endpoint (s3-server.ts) answers with: S3's own codes, each with the HTTP status S3 gives it, and
 * the mapping from the object store's HearthErrors to them. An S3Error's message is what the client reads in the
 * `<Message>` of the error document, so it says what is wrong and what to do; it never holds a stack.
 */
import { toHearthError } from '../errors.ts'

/** S3's error codes this endpoint uses, with their HTTP status. */
export const s3ErrorStatus = {
  AccessDenied: 403,
  InvalidAccessKeyId: 403,
  SignatureDoesNotMatch: 403,
  RequestTimeTooSkewed: 403,
  AuthorizationHeaderMalformed: 400,
  AuthorizationQueryParametersError: 400,
  InvalidToken: 400,
  XAmzContentSHA256Mismatch: 400,
  BadDigest: 400,
  InvalidDigest: 400,
  InvalidRequest: 400,
  InvalidArgument: 400,
  InvalidURI: 400,
  InvalidBucketName: 400,
  KeyTooLongError: 400,
  MetadataTooLarge: 400,
  EntityTooLarge: 400,
  EntityTooSmall: 400,
  IncompleteBody: 400,
  MalformedXML: 400,
  MaxMessageLengthExceeded: 400,
  InvalidPart: 400,
  InvalidPartOrder: 400,
  InvalidLocationConstraint: 400,
  MissingContentLength: 411,
  NoSuchBucket: 404,
  NoSuchKey: 404,
  NoSuchUpload: 404,
  MethodNotAllowed: 405,
  BucketAlreadyOwnedByYou: 409,
  BucketNotEmpty: 409,
  OperationAborted: 409,
  PreconditionFailed: 412,
  InvalidRange: 416,
  InternalError: 500,
  NotImplemented: 501,
  ServiceUnavailable: 503,
} as const

export type S3ErrorCode = keyof typeof s3ErrorStatus

/** An error answered to an S3 client as an `<Error>` document (or a bare status, for HEAD). */
export class S3Error extends Error {
  override name = 'S3Error'
  readonly code: S3ErrorCode
  readonly status: number
  /** Response headers that go with it (Content-Range for InvalidRange). */
  readonly headers: Record<string, string>

  constructor(code: S3ErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.code = code
    this.status = s3ErrorStatus[code]
    this.headers = headers
  }
}

/** What a request was about when the store failed: it says which S3 code a missing thing or a conflict becomes. */
export interface StoreErrorContext {
  /** NOT_FOUND means a missing key (NoSuchKey) rather than a missing bucket (NoSuchBucket). */
  missingKey?: boolean
  /** STATE means the bucket exists already (CreateBucket) or is not empty (DeleteBucket). */
  conflict?: 'BucketAlreadyOwnedByYou' | 'BucketNotEmpty'
}

/** Any failure as an S3Error: S3Errors as they are, the store's HearthErrors mapped, anything else an InternalError. */
export function toS3Error(error: unknown, context: StoreErrorContext = {}): S3Error {
  if (error instanceof S3Error) return error
  const hearth = toHearthError(error)
  if (hearth.code === 'HEARTH_ERR_STORAGE_NOT_FOUND') {
    return context.missingKey === true ? new S3Error('NoSuchKey', 'The specified key does not exist.') : new S3Error('NoSuchBucket', 'The specified bucket does not exist.')
  }
  if (hearth.code === 'HEARTH_ERR_STORAGE_STATE') {
    if (context.conflict === 'BucketAlreadyOwnedByYou') return new S3Error('BucketAlreadyOwnedByYou', 'Your previous request to create the named bucket succeeded and you already own it.')
    if (context.conflict === 'BucketNotEmpty') return new S3Error('BucketNotEmpty', 'The bucket you tried to delete is not empty: delete its objects first.')
    return new S3Error('OperationAborted', hearth.shortMessage)
  }
  if (hearth.code === 'HEARTH_ERR_STORAGE_UNAVAILABLE') {
    return new S3Error('ServiceUnavailable', `${hearth.shortMessage} (try again later)`)
  }
  return new S3Error('InternalError', hearth.shortMessage)
}
