/**
 * One error type for all of Hearth, with a closed registry of codes.
 *
 * Every code is listed in docs/errors.md; a test fails when this file and that table drift apart.
 * A caller branches on `code`, a person reads `shortMessage` (what went wrong) and `hint` (what to do).
 */

export const errorCodes = {
  HEARTH_ERR_INTERNAL: 'an unexpected failure inside Hearth',
  HEARTH_ERR_CONFIG_INVALID: 'a configuration value is missing or malformed',
  HEARTH_ERR_IDENTITY_KEY: 'the node key file is unreadable, malformed or has unsafe permissions',
  HEARTH_ERR_SIGNATURE_INVALID: 'a signature is missing, malformed or from the wrong signer',
  HEARTH_ERR_STORE_MIGRATION: 'the node database could not be opened or migrated',
  HEARTH_ERR_NET_MESSAGE_INVALID: 'a network message failed schema validation',
  HEARTH_ERR_NET_MESSAGE_TOO_LARGE: 'a network message exceeds the size limit',
  HEARTH_ERR_NET_TIMEOUT: 'a peer did not answer in time',
  HEARTH_ERR_NET_REMOTE: 'a peer answered a request with an error',
  HEARTH_ERR_NET_DIAL: 'a peer could not be reached',
  HEARTH_ERR_NET_BUSY: 'a node is over its budget for inbound messages and refused one unread; nobody is at fault, retry later',
  HEARTH_ERR_NET_VERSION: 'a peer speaks another major version of a Hearth protocol than this node',
  HEARTH_ERR_MARKET_NO_OFFERS: 'no offer matches the demand',
  HEARTH_ERR_MARKET_OFFER_INVALID: 'an offer is malformed, expired or wrongly signed',
  HEARTH_ERR_MARKET_AGREEMENT_REJECTED: 'a provider rejected a proposed agreement',
  HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN: 'a message names an agreement this node does not hold',
  HEARTH_ERR_MARKET_CONSTRAINTS_INVALID: 'a constraint filter is malformed, too long or nested too deep',
  HEARTH_ERR_MARKET_PROPERTIES_INVALID: 'market properties cannot be flattened into typed values',
  HEARTH_ERR_EXEC_PACKAGE_INVALID: 'a package is not a valid program for its runtime',
  HEARTH_ERR_EXEC_PACKAGE_HASH: 'a transferred blob does not match its content hash',
  HEARTH_ERR_EXEC_TIMEOUT: 'a task ran past its deadline and was stopped',
  HEARTH_ERR_EXEC_MEMORY: 'a task asked for more memory than its limit',
  HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE: 'a task wrote more output than its limit',
  HEARTH_ERR_EXEC_PATH_INVALID: 'a guest path is not an absolute path inside the task directory',
  HEARTH_ERR_EXEC_FAILED: 'a task trapped or its runtime failed',
  HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE: 'a runtime cannot run on this machine: a tool, program or kernel feature it needs is missing',
  HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED: 'a task names a program the provider does not offer',
  HEARTH_ERR_EXEC_ENV_NOT_ALLOWED: 'a task sets an environment variable the native runtime does not pass to programs (such as LD_PRELOAD), or gives a path where a name belongs',
  HEARTH_ERR_EXEC_IMAGE_MISSING: 'a task names a container image the provider has not loaded',
  HEARTH_ERR_EXEC_BATCH_INVALID: 'an ExeScript batch names an unknown command, or a command is malformed',
  HEARTH_ERR_EXEC_ACTIVITY_STATE: 'an activity command is not allowed in the activity\'s state, or the activity is unknown or has ended',
  HEARTH_ERR_PAYMENT_CHAIN: 'a chain request or transaction failed',
  HEARTH_ERR_PAYMENT_VOUCHER_INVALID: 'a voucher is malformed, for another agreement, or exceeds the deposit',
  HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS: 'the wallet holds too few tokens for the deposit',
  HEARTH_ERR_PAYMENT_UNPAID: 'the provider has as much unpaid work under the agreement as it allows; it takes more once a voucher covers it',
  HEARTH_ERR_PAYMENT_OVERDUE: 'a debit note went unpaid past the agreed payment timeout, so the provider stopped working',
  HEARTH_ERR_PAYMENT_FEE_TOO_HIGH: 'the chain\'s gas fee is above the configured cap, so nothing was sent',
  HEARTH_ERR_PAYMENT_FAUCET_DISABLED: 'the token has no faucet: it was deployed for a real chain',
  HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY: 'an escrow cannot be refunded yet: its expiry plus the contract\'s claim grace, in which the provider may still claim, has not passed; retry from the time the message names',
  HEARTH_ERR_PROVIDER_PAUSED: 'the provider is not taking work now (its owner is using the machine, or it is stopping); retry elsewhere',
  HEARTH_ERR_PROVIDER_BUSY: 'the provider has no room now for the task within the memory and disk its owner lends; retry elsewhere',
  HEARTH_ERR_PROVIDER_TOO_SMALL: 'the task alone asks for more memory or disk than the provider lends to all its tasks; it never fits there, run it elsewhere',
  HEARTH_ERR_PROVIDER_NOT_RUNNING: 'no provider is running from this data directory, or its local API refused the key',
  HEARTH_ERR_JOB_INVALID: 'a job file is malformed',
  HEARTH_ERR_JOB_INPUT_MISSING: 'a job names an input file that does not exist',
  HEARTH_ERR_JOB_TASK_FAILED: 'a task failed on every provider that tried it',
} as const

export type ErrorCode = keyof typeof errorCodes

export interface HearthErrorOptions {
  /** What the person can do about it. */
  hint?: string
  /** Extra facts (field names, limits, sizes) for logs and JSON reports. */
  details?: Record<string, unknown>
  cause?: unknown
}

export class HearthError extends Error {
  override name = 'HearthError'
  readonly code: ErrorCode
  readonly shortMessage: string
  readonly hint: string | undefined
  readonly details: Record<string, unknown> | undefined

  constructor(code: ErrorCode, shortMessage: string, options: HearthErrorOptions = {}) {
    const lines = [shortMessage]
    if (options.hint !== undefined) lines.push(`Hint: ${options.hint}`)
    lines.push(`Code: ${code} (see docs/errors.md)`)
    super(lines.join('\n'), options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.shortMessage = shortMessage
    this.hint = options.hint
    this.details = options.details
  }

  toJSON(): { code: ErrorCode; message: string; hint?: string; details?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.shortMessage,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      ...(this.details === undefined ? {} : { details: this.details }),
    }
  }
}

export function isHearthError(error: unknown, code?: ErrorCode): error is HearthError {
  return error instanceof HearthError && (code === undefined || error.code === code)
}

/** Wraps any thrown value as a HearthError, keeping the original as `cause`. */
export function toHearthError(error: unknown, code: ErrorCode = 'HEARTH_ERR_INTERNAL'): HearthError {
  if (error instanceof HearthError) return error
  const message = error instanceof Error ? error.message : String(error)
  return new HearthError(code, message, { cause: error })
}
