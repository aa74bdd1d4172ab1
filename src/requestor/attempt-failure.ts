/**
 * Why an attempt to run a task on a provider failed, and whose doing it was: the task's (it broke its own sandbox
 * limits), the provider's (no answer, a result that fails its checks, failures in a row), nobody's (the provider has
 * no room for now, is unreachable for a while, or this requestor gave the attempt up). Dispatch acts on the verdict;
 * the reputation book hears of the provider's part.
 */
import { codesWhere, toHearthError, type ErrorCode } from '../errors.ts'
import type { AttemptFailed } from './dispatch.ts'
import type { ReputationBook } from './reputation.ts'

/**
 * Sandbox verdicts, the codes the registry puts down to the task's own program: it, not the provider, went wrong (it
 * may still be retried once elsewhere).
 */
const taskFaultCodes: ReadonlySet<string> = codesWhere((info) => info.fault === 'task')

/**
 * Refusals that say "not now", the codes that are nobody's fault and for which a retry later helps: the provider has
 * no room, its inbound budget is full, or it waits for a voucher to cover unpaid work. The task goes elsewhere (or
 * here again a little later), and nothing counts against the provider.
 */
const notNowCodes: ReadonlySet<string> = codesWhere((info) => info.fault === 'nobody' && info.retry === 'later')

/**
 * What this requestor found wrong in a provider's answer: a code the registry puts down to the provider (a result
 * that does not answer the request, metering that does not fit), or a signature that does not bind the answer, whose
 * only signer in an attempt is the provider.
 */
const badAnswerCodes: ReadonlySet<ErrorCode> = new Set([...codesWhere((info) => info.fault === 'provider'), 'HEARTH_ERR_SIGNATURE_INVALID'])

export interface FailureJudgeInit {
  reputation?: ReputationBook
  /** Whether this node itself is running: while it is not, every provider looks unreachable. */
  online(): boolean
}

/** The provider's side of a failed attempt: its failures in a row are counted here. */
export interface FailedSlot {
  provider: string
  failures: number
}

/** Why an attempt failed, and whose doing it was. */
export async function judgeFailure(init: FailureJudgeInit, slot: FailedSlot, error: unknown, signal: AbortSignal): Promise<AttemptFailed> {
  const { reputation } = init
  const hearthError = toHearthError(error)
  const remoteCode = hearthError.details?.remoteCode
  const taskAtFault = typeof remoteCode === 'string' && taskFaultCodes.has(remoteCode)
  const message = taskAtFault ? String(hearthError.details?.remoteMessage ?? hearthError.shortMessage) : hearthError.shortMessage
  // Given up by this requestor (another provider finished the task first, or the job was cancelled): nobody's fault.
  if (signal.aborted) return { ok: false, message, taskAtFault: false, providerAtFault: false }
  const timedOut = hearthError.code === 'HEARTH_ERR_NET_TIMEOUT'
  // A provider whose owner came back (paused) or that has no room right now declined the task: no mark
  // against it, but a paused one gets no more work from this job, and either way the task goes elsewhere.
  const notNow = notNowCodes.has(typeof remoteCode === 'string' ? remoteCode : hearthError.code)
  const declined = remoteCode === 'HEARTH_ERR_PROVIDER_PAUSED' || remoteCode === 'HEARTH_ERR_PROVIDER_TOO_SMALL' || notNow
  if (!taskAtFault && !declined && !signal.aborted) reputation?.record(slot.provider, timedOut ? 'timeout' : 'failed')
  if (remoteCode === 'HEARTH_ERR_PROVIDER_TOO_SMALL') {
    // It lends too little for this job's tasks: no more of them go there, and the task is not at fault.
    return { ok: false, message, taskAtFault: false, providerAtFault: true, declined: true }
  }
  if (notNow) {
    // Full for now, or waiting to be paid: the task goes elsewhere, and this provider is asked again a little later.
    await new Promise((resolve) => setTimeout(resolve, 250))
    return { ok: false, message, taskAtFault: false, providerAtFault: false, declined: true }
  }
  // Not reachable, or gone while it held the task (its connection closed without an answer): a home machine that
  // restarts or loses its line. The scheduler asks it again after a backoff; nothing counts against the task.
  // With this node itself stopped, every provider looks unreachable: that is no provider's churn.
  const unreachable =
    init.online() &&
    ((hearthError.code === 'HEARTH_ERR_NET_DIAL' && hearthError.details?.reason !== 'unsupported-protocol') ||
      (hearthError.code === 'HEARTH_ERR_NET_REMOTE' && remoteCode === undefined))
  if (unreachable) return { ok: false, message, taskAtFault: false, providerAtFault: false, unreachable: true }
  // A provider that fails twice in a row gets no more tasks from this job; a task that broke its own sandbox
  // limits is the task's doing, not the provider's. A result that fails its own checks is the provider's, and so
  // is no answer at all: its sandbox ends a task at the deadline, and the network deadline adds 30 s to that.
  const providerAtFault =
    remoteCode === 'HEARTH_ERR_PROVIDER_PAUSED' || (!taskAtFault && (badAnswerCodes.has(hearthError.code) || (timedOut && remoteCode === undefined) || ++slot.failures >= 2))
  return { ok: false, message, taskAtFault, providerAtFault }
}
