/**
 * One error type for all of Hearth, with a closed registry of codes.
 *
 * Each code states what it means, whose fault it is, whether and where a retry can help, and what the person can do.
 * docs/errors.md is generated from this registry (`npm run docs:errors`); a test fails when it is stale. A caller
 * branches on `code` (or on its `errorInfo`), a person reads `shortMessage` (what went wrong) and `hint` (what to do).
 */

/** Whose doing an error is. */
export const errorFaults = {
  caller: 'the person or program using this node: a command line, configuration, job file or call it was given',
  requestor: 'the requestor that sent the request: what it asked for, or what it owes',
  provider: 'the provider that answered: its answer is not what it was asked for',
  peer: 'the node on the other side, requestor or provider, whichever sent the message',
  task: "the task's own program: it failed or outgrew its limits, and would do so on any provider",
  network: 'the network between the nodes, or the chain\'s JSON-RPC endpoint: unreachable or slow',
  nobody: 'no one is at fault: the other side is busy, paused or too small for now, or it is not time yet',
  hearth: 'Hearth itself: a bug, or a damaged installation or database',
} as const

export type ErrorFault = keyof typeof errorFaults

/** Whether a retry can help, and where. */
export const errorRetries = {
  no: 'the same request fails the same way, here and elsewhere',
  later: 'the same request to the same node may succeed after a while',
  elsewhere: 'another provider or peer may take it',
  'after-fix': 'only once the cause the action names is corrected',
} as const

export type ErrorRetry = keyof typeof errorRetries

export interface ErrorInfo {
  /** What went wrong, in general (the message says what, in particular). */
  meaning: string
  fault: ErrorFault
  retry: ErrorRetry
  /** What the person can do about it: one or two sentences. */
  action: string
}

/** Every code, with its meaning, fault, retry and action. Grouped by area; docs/errors.md keeps this order. */
export const errorRegistry = {
  HEARTH_ERR_INTERNAL: {
    meaning: 'an unexpected failure inside Hearth',
    fault: 'hearth',
    retry: 'after-fix',
    action: 'Report it with the message and what led to it: it is a bug in Hearth.',
  },
  HEARTH_ERR_CONFIG_INVALID: {
    meaning: 'a configuration value (a field of the provider config, an option a component is made with, the deployment or chain it names) is missing, malformed, or disagrees with another',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Correct the value the message names (it says where the value came from), then start again.',
  },
  HEARTH_ERR_CLI_ARGUMENT_INVALID: {
    meaning: 'a command-line option or argument (or the option of the function behind the command) is missing, malformed, or does not go with the others given',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Correct the command line as the message and hint say; `hearth <command> --help` lists the options.',
  },
  HEARTH_ERR_API_MISUSE: {
    meaning: "a program calls Hearth's programming interface wrongly: a second handler or subscription for one protocol or topic, a protocol defined with a malformed id or limit, a call without what it needs or with an argument out of range",
    fault: 'caller',
    retry: 'after-fix',
    action: 'Fix the calling code: the message names the call and the value it refused.',
  },
  HEARTH_ERR_IDENTITY_KEY: {
    meaning: 'a key file (the node key, a funder\'s or deployer\'s key, the local API key, the storage key) is missing, unreadable, malformed or has unsafe permissions',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Fix the key file as the hint says: one key, readable by its owner only (chmod 600). A key others could read counts as leaked: make a new one.',
  },
  HEARTH_ERR_SIGNATURE_INVALID: {
    meaning: 'a signature is missing, malformed, from the wrong signer, or over other content than the one it should bind',
    fault: 'peer',
    retry: 'elsewhere',
    action: 'Nothing on this side: the message was refused and its sender is trusted no further; Hearth goes on with other peers. If your own node sent it, check that it runs with its own key.',
  },
  HEARTH_ERR_STORE_MIGRATION: {
    meaning: 'the node database could not be opened or migrated, or does not hold what Hearth wrote',
    fault: 'hearth',
    retry: 'after-fix',
    action: 'Check the data directory: writable, on a disk with room, and not from a newer Hearth. The message names the database and the cause.',
  },
  HEARTH_ERR_NET_MESSAGE_INVALID: {
    meaning: 'a network message failed schema validation',
    fault: 'peer',
    retry: 'elsewhere',
    action: 'Nothing on this side: the message was refused. If both nodes are yours, run the same Hearth version on both.',
  },
  HEARTH_ERR_NET_MESSAGE_TOO_LARGE: {
    meaning: 'a network message exceeds the size limit',
    fault: 'peer',
    retry: 'elsewhere',
    action: 'If your node sent it, send less in one message (smaller inputs or outputs, fewer tasks per batch); otherwise nothing: it was refused unread.',
  },
  HEARTH_ERR_NET_TIMEOUT: {
    meaning: 'a peer did not answer in time',
    fault: 'network',
    retry: 'later',
    action: 'Try again (Hearth does, elsewhere first); if it keeps happening, the peer is overloaded or its link is slow.',
  },
  HEARTH_ERR_NET_REMOTE: {
    meaning: 'a peer answered a request with an error, or closed the connection without an answer',
    fault: 'peer',
    retry: 'elsewhere',
    action: "Read the peer's own code and message (details.remoteCode, details.remoteMessage): they say what went wrong there, and whose doing it was.",
  },
  HEARTH_ERR_NET_DIAL: {
    meaning: 'a peer could not be reached',
    fault: 'network',
    retry: 'later',
    action: 'Check that the peer is online and reachable (its addresses, or a relay); Hearth tries it again after a backoff.',
  },
  HEARTH_ERR_NET_BUSY: {
    meaning: 'a node is over its budget for inbound messages and refused one unread',
    fault: 'nobody',
    retry: 'later',
    action: 'Nothing: send it again a little later (Hearth does). The budget bounds what peers can make a node hold.',
  },
  HEARTH_ERR_NET_VERSION: {
    meaning: 'a peer speaks another major version of a Hearth protocol than this node',
    fault: 'nobody',
    retry: 'elsewhere',
    action: 'Upgrade the older of the two nodes; until then each works only with peers of its own major version.',
  },
  HEARTH_ERR_MARKET_NO_OFFERS: {
    meaning: 'no offer matches the demand',
    fault: 'nobody',
    retry: 'later',
    action: "Wait for providers to announce offers, or relax the job's constraints, runtime or price cap.",
  },
  HEARTH_ERR_MARKET_OFFER_INVALID: {
    meaning: 'an offer is malformed, expired or wrongly signed',
    fault: 'provider',
    retry: 'elsewhere',
    action: "Nothing: the offer was dropped, and other providers' offers still count.",
  },
  HEARTH_ERR_MARKET_AGREEMENT_REJECTED: {
    meaning: 'a provider rejected a proposed agreement, or an agreement has no room for more tasks',
    fault: 'nobody',
    retry: 'elsewhere',
    action: 'Hearth asks other providers; if all refuse, raise the price cap or relax the terms the message names.',
  },
  HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN: {
    meaning: 'a message names an agreement this node does not hold',
    fault: 'peer',
    retry: 'after-fix',
    action: 'Check the agreement id; a node that lost its database (or never signed the agreement) needs a new agreement.',
  },
  HEARTH_ERR_MARKET_CONSTRAINTS_INVALID: {
    meaning: 'a constraint filter is malformed, too long or nested too deep',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Fix the filter at the position the message names (the constraint language is in the README).',
  },
  HEARTH_ERR_MARKET_PROPERTIES_INVALID: {
    meaning: 'market properties cannot be flattened into typed values',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Give each property a string, number, boolean or list of them, as the message says.',
  },
  HEARTH_ERR_EXEC_PACKAGE_INVALID: {
    meaning: 'a package is not a valid program for its runtime',
    fault: 'task',
    retry: 'after-fix',
    action: 'Rebuild the package for its runtime (a WASI module for wasi, an image archive for docker) and check that it runs locally.',
  },
  HEARTH_ERR_EXEC_PACKAGE_HASH: {
    meaning: 'a transferred blob does not match its content hash',
    fault: 'peer',
    retry: 'elsewhere',
    action: 'Nothing: the blob was refused, and Hearth fetches it again or from elsewhere. If your own input files changed during the run, run again.',
  },
  HEARTH_ERR_EXEC_TIMEOUT: {
    meaning: 'a task ran past its deadline and was stopped',
    fault: 'task',
    retry: 'after-fix',
    action: "Give the job a longer timeoutMs, or make each task do less.",
  },
  HEARTH_ERR_EXEC_MEMORY: {
    meaning: 'a task asked for more memory than its limit',
    fault: 'task',
    retry: 'after-fix',
    action: "Raise the job's maxMemoryMib, or make the program use less memory.",
  },
  HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE: {
    meaning: 'a task wrote more output than its limit',
    fault: 'task',
    retry: 'after-fix',
    action: "Raise the job's maxOutputMib, or make the program write less.",
  },
  HEARTH_ERR_EXEC_PATH_INVALID: {
    meaning: 'a guest path is not an absolute path inside the task directory',
    fault: 'requestor',
    retry: 'after-fix',
    action: 'Use absolute guest paths inside the task directory (such as /out/result.txt), with no `..` and no links out of it.',
  },
  HEARTH_ERR_EXEC_FAILED: {
    meaning: 'a task trapped or its runtime failed',
    fault: 'task',
    retry: 'after-fix',
    action: "Read the task's stderr in the report, and run the program locally with the same arguments to see it fail.",
  },
  HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE: {
    meaning: 'a runtime cannot run on this machine: a tool, program or kernel feature it needs is missing',
    fault: 'nobody',
    retry: 'elsewhere',
    action: 'On your own machine, install what the message names or use another runtime; a provider that lacks it offers only the runtimes it can run.',
  },
  HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED: {
    meaning: 'a task names a program the provider does not offer',
    fault: 'requestor',
    retry: 'elsewhere',
    action: "Name a program the provider's offer lists, or let the job's constraints pick providers that offer it.",
  },
  HEARTH_ERR_EXEC_ENV_NOT_ALLOWED: {
    meaning: 'a task sets an environment variable the native runtime does not pass to programs (such as LD_PRELOAD), or gives a path where a name belongs',
    fault: 'task',
    retry: 'after-fix',
    action: "Drop the variable from the job's env, or give a name where the message says a name belongs.",
  },
  HEARTH_ERR_EXEC_IMAGE_MISSING: {
    meaning: 'a task names a container image the provider has not loaded',
    fault: 'requestor',
    retry: 'elsewhere',
    action: 'Send the image archive with the job, or pick providers that hold the image.',
  },
  HEARTH_ERR_EXEC_BATCH_INVALID: {
    meaning: 'an ExeScript batch names an unknown command, or a command is malformed',
    fault: 'requestor',
    retry: 'after-fix',
    action: 'Fix the batch: the message names the command and the field.',
  },
  HEARTH_ERR_EXEC_ACTIVITY_STATE: {
    meaning: "an activity command is not allowed in the activity's state, or the activity is unknown or has ended",
    fault: 'requestor',
    retry: 'after-fix',
    action: 'Send commands in an order the activity allows (deploy, start, then run), or create a new activity.',
  },
  HEARTH_ERR_EXEC_RESULT_INVALID: {
    meaning: "a provider's answer does not answer the request: it answers fewer tasks than were sent, names another task or request, or returns outputs not asked for, over the output limit, or not matching their hashes",
    fault: 'provider',
    retry: 'elsewhere',
    action: 'Nothing: the result was refused and is not paid for, the task goes to another provider, and this one gets no more tasks from the job.',
  },
  HEARTH_ERR_PAYMENT_METERING_REFUSED: {
    meaning: "a provider's metering (run time, CPU time) does not fit what the requestor saw, so its result is refused and not paid for",
    fault: 'provider',
    retry: 'elsewhere',
    action: 'Nothing: the task goes to another provider, and this one gets no more tasks from the job.',
  },
  HEARTH_ERR_PAYMENT_CHAIN: {
    meaning: 'a chain request or transaction failed',
    fault: 'network',
    retry: 'later',
    action: "Check that the JSON-RPC URL answers and the account has gas; the message names the call and the chain's answer.",
  },
  HEARTH_ERR_PAYMENT_VOUCHER_INVALID: {
    meaning: 'a voucher is malformed, for another agreement, or exceeds the deposit',
    fault: 'requestor',
    retry: 'no',
    action: "None on the provider: the voucher was refused. A requestor that sees it should check that it signs vouchers for the agreement's escrow, within its deposit.",
  },
  HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS: {
    meaning: "the wallet (or an agreement's escrow) holds too few tokens for the deposit, or the job's budget is too small for it",
    fault: 'requestor',
    retry: 'after-fix',
    action: 'Fund the wallet (`hearth wallet` shows its address and balance) or raise the budget; or hire fewer providers, or lower the price cap.',
  },
  HEARTH_ERR_PAYMENT_UNPAID: {
    meaning: 'the provider has as much unpaid work under the agreement as it allows; it takes more once a voucher covers it',
    fault: 'nobody',
    retry: 'later',
    action: 'Nothing: the requestor sends a voucher for each debit note, and the provider then takes more work.',
  },
  HEARTH_ERR_PAYMENT_OVERDUE: {
    meaning: 'a debit note went unpaid past the agreed payment timeout, so the provider stopped working',
    fault: 'requestor',
    retry: 'no',
    action: 'The agreement has ended; a requestor must pay each debit note within the payment timeout. Negotiate a new agreement to go on.',
  },
  HEARTH_ERR_PAYMENT_FEE_TOO_HIGH: {
    meaning: "the chain's gas fee is above the configured cap, so nothing was sent",
    fault: 'nobody',
    retry: 'later',
    action: 'Send again when fees fall, or raise the gas fee cap.',
  },
  HEARTH_ERR_PAYMENT_FAUCET_DISABLED: {
    meaning: 'the token has no faucet: it was deployed for a real chain',
    fault: 'caller',
    retry: 'no',
    action: 'Get tokens on this chain by a transfer from a funded account; faucets exist only on development chains.',
  },
  HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY: {
    meaning: "an escrow cannot be refunded yet: its expiry plus the contract's claim grace, in which the provider may still claim, has not passed",
    fault: 'nobody',
    retry: 'later',
    action: 'Refund again from the time the message names (`hearth payments refund`).',
  },
  HEARTH_ERR_PROVIDER_PAUSED: {
    meaning: 'the provider is not taking work now (its owner is using the machine, or it is stopping)',
    fault: 'nobody',
    retry: 'elsewhere',
    action: 'Nothing: the work goes to other providers.',
  },
  HEARTH_ERR_PROVIDER_BUSY: {
    meaning: 'the provider has no room now for the task within the memory and disk its owner lends',
    fault: 'nobody',
    retry: 'later',
    action: 'Nothing: the task goes to another provider, or here again once a running task ends.',
  },
  HEARTH_ERR_PROVIDER_TOO_SMALL: {
    meaning: 'the task alone asks for more memory or disk than the provider lends to all its tasks; it never fits there',
    fault: 'nobody',
    retry: 'elsewhere',
    action: 'Run the task on a provider that lends more, or make it ask for less memory or disk.',
  },
  HEARTH_ERR_PROVIDER_NOT_RUNNING: {
    meaning: 'no provider is running from this data directory, or its local API refused the key',
    fault: 'nobody',
    retry: 'after-fix',
    action: 'Start the provider (`hearth provider start`), or pass the --data-dir it runs from.',
  },
  HEARTH_ERR_PROVIDER_ALREADY_RUNNING: {
    meaning: 'a provider is already running from this data directory',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Stop that provider first (`hearth provider stop`), or start this one with another --data-dir.',
  },
  HEARTH_ERR_PROVIDER_LOCAL_API: {
    meaning: "the provider's local API cannot be served (the loopback interface is down, or the data directory is not writable), or its record in provider.json cannot be read or is not one",
    fault: 'caller',
    retry: 'after-fix',
    action: 'Check that 127.0.0.1 works and that the provider can write its data directory; remove a damaged provider.json when no provider runs from that directory.',
  },
  HEARTH_ERR_REQUESTOR_NOT_RUNNING: {
    meaning: 'no requestor node is running from this data directory, or its local API refused the key',
    fault: 'nobody',
    retry: 'after-fix',
    action: 'Start the requestor node (`hearth requestor start`), or pass the --data-dir it runs from.',
  },
  HEARTH_ERR_REQUESTOR_ALREADY_RUNNING: {
    meaning: 'a requestor node is already running from this data directory',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Stop that node first (`hearth requestor stop`), or start this one with another --data-dir.',
  },
  HEARTH_ERR_REQUESTOR_LOCAL_API: {
    meaning: "the requestor node's local API cannot be served (the loopback interface is down, or the data directory is not writable), or its record in requestor.json cannot be read or is not one",
    fault: 'caller',
    retry: 'after-fix',
    action: 'Check that 127.0.0.1 works and that the node can write its data directory; remove a damaged requestor.json when no requestor node runs from that directory.',
  },
  HEARTH_ERR_JOB_INVALID: {
    meaning: 'a job file is malformed, or asks for what cannot be given here (such as spot checks, which need a wasi job and a local wasi runtime)',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Fix the job file: the message names every field that is wrong.',
  },
  HEARTH_ERR_JOB_INPUT_MISSING: {
    meaning: 'a job names an input file that does not exist',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Create the file, or fix its path in the job file (relative paths are from the job file\'s folder).',
  },
  HEARTH_ERR_JOB_STATE: {
    meaning: 'a job cannot do what was asked: it is closed or cancelled, the node holds no job by that id, or the job to resume is not in this data directory or was started from another job file',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Open a new job, name a job the node lists, or resume with the id and the job file of a job this data directory holds.',
  },
  HEARTH_ERR_JOB_TASK_FAILED: {
    meaning: 'a task failed on every provider that tried it',
    fault: 'task',
    retry: 'after-fix',
    action: "Read why each task failed in the report (its stderr, or the providers' refusals), fix the task or its limits, and run the job again.",
  },
  HEARTH_ERR_SERVICE_INVALID: {
    meaning: 'a service file or a service request is not valid: a field is missing, of the wrong type or out of range',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Fix the field the message names (see the service file format in the README) and deploy again.',
  },
  HEARTH_ERR_SERVICE_NOT_ALLOWED: {
    meaning: 'a peer asked a provider for a replica it may not reach: not the service owner, nor a gateway the owner trusts',
    fault: 'caller',
    retry: 'after-fix',
    action: "Run the gateway with the owner's trust (the owner lists its peer id in the service's gateways), or reach the service through one that has it.",
  },
  HEARTH_ERR_SERVICE_NOT_HOSTED: {
    meaning: 'a provider does not host services, or not this one any more (never started, stopped, or moved)',
    fault: 'provider',
    retry: 'elsewhere',
    action: 'Nothing: the owner replaces the replica on another provider. A provider that should host services sets services.enabled in its config.',
  },
  HEARTH_ERR_SERVICE_UNAVAILABLE: {
    meaning: 'no healthy replica of the service could take the request',
    fault: 'provider',
    retry: 'later',
    action: "Retry after the Retry-After time; the owner's node replaces replicas that fail. If it persists, check `hearth service status`.",
  },
  HEARTH_ERR_SERVICE_STATE: {
    meaning: 'a service cannot do what was asked in its present state: unknown, removed, or already being updated',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Check `hearth service ls`: use a service that exists, and wait for an update to finish before the next.',
  },
  HEARTH_ERR_STORAGE_FULL: {
    meaning: 'a provider has no room for a piece: it would pass the disk its owner offered for storage',
    fault: 'nobody',
    retry: 'elsewhere',
    action: 'Place the piece with another provider; this one takes more once pieces are removed or its owner offers more disk.',
  },
  HEARTH_ERR_STORAGE_CORRUPT: {
    meaning: 'stored data does not decrypt under the storage key: a piece or segment was altered, cut short, reordered, or belongs to another key or file',
    fault: 'provider',
    retry: 'elsewhere',
    action: 'Nothing is returned that failed its check: read the piece from other providers (any k of n rebuild it). If every copy fails, check that the storage key is the one the data was stored with.',
  },
  HEARTH_ERR_STORAGE_NOT_FOUND: {
    meaning: 'no stored bucket or object has that name (it was never stored, or was removed)',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Check the name with `hearth store ls`; names are case-sensitive. A bucket is made with `hearth store put` or an S3 CreateBucket.',
  },
  HEARTH_ERR_STORAGE_STATE: {
    meaning: 'the storage request conflicts with what is stored: a bucket that exists already, a bucket not empty, an upload that is not open',
    fault: 'caller',
    retry: 'after-fix',
    action: 'Remove the objects before their bucket, pick another bucket name, or start the multipart upload again.',
  },
  HEARTH_ERR_STORAGE_UNAVAILABLE: {
    meaning: 'too few storage providers can be reached or agree to hold pieces: fewer than the n pieces need, or fewer than k to read back',
    fault: 'nobody',
    retry: 'later',
    action: 'Wait for more providers offering storage (hearth market offers), lower n or the regions asked for, or keep the owner\'s node running so repair can restore redundancy.',
  },
} as const satisfies Record<`HEARTH_ERR_${string}`, ErrorInfo>

export type ErrorCode = keyof typeof errorRegistry

/** Each code's meaning alone, code by code. */
export const errorCodes: Readonly<Record<ErrorCode, string>> = Object.fromEntries(
  Object.entries(errorRegistry).map(([code, info]) => [code, info.meaning]),
) as Record<ErrorCode, string>

/** Whether `value` is one of the codes (as a peer's answer or a JSON report carries it). */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorRegistry, value)
}

/** What a code means, whose fault it is, whether a retry can help, and what to do. */
export function errorInfo(code: ErrorCode): ErrorInfo {
  return errorRegistry[code]
}

/** Every code whose registry entry passes `test`, as a set to branch on. */
export function codesWhere(test: (info: ErrorInfo) => boolean): ReadonlySet<ErrorCode> {
  return new Set((Object.keys(errorRegistry) as ErrorCode[]).filter((code) => test(errorRegistry[code])))
}

/** Where docs/errors.md explains `code`: GitHub's anchor for the heading `### HEARTH_ERR_X` is `#hearth_err_x`. */
export function errorDocLink(code: ErrorCode): string {
  return `docs/errors.md#${code.toLowerCase()}`
}

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
    lines.push(`Code: ${code} (see ${errorDocLink(code)})`)
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
