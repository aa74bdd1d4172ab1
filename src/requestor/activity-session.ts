/**
 * One ExeScript activity as the requestor keeps it while it lives (activity-client.ts creates it, activity-exec.ts
 * runs its batches): its state (kept in the store too), the usage the provider's signed answers report (held to what
 * was observed, and put on the agreement's bill), the debit notes that come with them, and its release once it ends.
 */
import type { Address } from 'viem'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { DebitNote } from '../market/billing.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import type { ActivityState, ActivityUsage } from '../exec/exescript.ts'
import type { Store } from '../store/store.ts'
import type { BlobScope } from './blob-server.ts'
import type { RequestorAccount } from './agreement-account.ts'
import { plausibleUsage } from './justified-usage.ts'

export interface ActivitySession {
  host: Host
  identity: NodeIdentity
  store: Store | undefined
  /** The agreement's account, when debit notes are paid. */
  account: RequestorAccount | undefined
  /** What the activity serves its provider, who may fetch while the activity lives. */
  blobs: BlobScope
  activityId: string
  agreementId: string
  /** Where to reach the provider. */
  target: PeerTarget
  /** The provider's address, lower case. */
  peer: string
  /** Largest file a transfer back may deliver. */
  maxFileBytes: number
  /** The state as this requestor last heard it. */
  state: ActivityState
  /** Batches sent so far. */
  batches: number
  /** When the create request was sent (performance.now()). */
  sentCreateAt: number
  released: boolean
  /** The batch running now, if any. */
  running: { cancel(reason?: string): void } | undefined
  /** The most of its life this requestor pays for, when less than all of it (see ActivityOptions.justifiedLifeMs). */
  justifiedLifeMs: (() => number | undefined) | undefined
}

/** The activity's state as this requestor heard it, kept in the store. */
export function setState(session: ActivitySession, next: ActivityState, error?: string): void {
  session.state = next
  session.store?.activities.setState('requestor', session.activityId, next, error)
}

/** What this requestor observed of the activity so far: its life and the batches sent. */
export function observed(session: ActivitySession): { lifeMs: number; batches: number } {
  const lifeMs = performance.now() - session.sentCreateAt
  const cap = session.justifiedLifeMs?.()
  return { lifeMs: cap === undefined ? lifeMs : Math.max(0, Math.min(lifeMs, cap)), batches: session.batches }
}

/** Usage a signed answer reported, as far as it is believable; kept in the store and on the agreement's bill. */
export function recordUsage(session: ActivitySession, signer: Address | undefined, usage: ActivityUsage, ended: boolean): ActivityUsage | undefined {
  if (signer === undefined) return undefined
  const { account, activityId } = session
  const seen = observed(session)
  // An ended activity is justified by its final signed report alone, no longer by its life so far.
  if (ended) account?.untrackActivity(activityId)
  if (account !== undefined) return account.reportActivity(activityId, signer, usage, seen)
  if (signer.toLowerCase() !== session.peer) return undefined
  const kept = plausibleUsage(usage, seen)
  session.store?.activities.setUsage('requestor', activityId, kept)
  return kept
}

/** Answers a debit note through the agreement's account (when there is one), once its voucher has been sent. */
export function answerNote(session: ActivitySession, note: DebitNote | undefined): Promise<void> {
  const { account } = session
  return note === undefined || account === undefined ? Promise.resolve() : account.answer(note).then(() => account.sent()).catch(() => undefined)
}

/** The activity is over (once): its provider may fetch no more for it, and its blobs are dropped. */
export function release(session: ActivitySession): void {
  if (session.released) return
  session.released = true
  session.account?.untrackActivity(session.activityId)
  session.blobs.release()
}
