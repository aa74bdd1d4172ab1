/**
 * The ExeScript activities alive on this provider, each with its agreement's account and reservation: metered while
 * they run (a note that falls due goes to the requestor at once), ended when asked, when idle too long or when the
 * provider stops (the rest of their work billed, with the activity as one task), and the notes their ends gave rise
 * to kept for the next answer under their agreement.
 */
import type { Address } from 'viem'
import { HearthError, toHearthError, type ErrorCode } from '../errors.ts'
import type { Activity } from '../exec/exescript.ts'
import type { AgreementTerms } from '../market/agreement.ts'
import type { DebitNote } from '../market/billing.ts'
import type { Usage } from '../market/pricing.ts'
import type { Store } from '../store/store.ts'
import type { ProviderAccount, Reservation } from './provider-account.ts'

export interface Live {
  activity: Activity
  agreementId: string
  requestor: Address
  terms: AgreementTerms
  account: ProviderAccount
  /** The activity's place under the agreement's task and exposure bounds; completed (billed) when it ends. */
  reservation: Reservation
  /** Usage already billed while it ran. */
  metered: Usage
  /** Lets go of the activity's image, kept on the engine while the activity lives. */
  releaseImage?: () => void
  idleTimer: NodeJS.Timeout | undefined
}

export interface LiveActivitiesInit {
  store: Store
  /** An activity without a batch for this long is terminated. */
  idleTimeoutMs: number
}

export interface LiveActivities {
  get(id: string): Live | undefined
  has(id: string): boolean
  size(): number
  /** Activities alive under an agreement. */
  countFor(agreementId: string): number
  ids(): string[]
  /** Adds an activity, its idle timer started. */
  add(id: string, entry: Live): void
  /** The live activity `id` of `requestor` under `agreementId`, or a clear error. */
  owned(id: string, agreementId: string, requestor: Address): Live
  /** Ends an activity: its sandbox stops, its directory goes, its work is metered and billed. */
  end(id: string, reason: string, state?: 'Terminated' | 'Unresponsive'): Promise<void>
  /** (Re)starts an activity's idle timer. */
  armIdle(id: string): void
  /** Stops an activity's idle timer while a batch runs. */
  disarmIdle(entry: Live): void
  /**
   * Bills what each running activity used since the last round (a note that falls due goes to its requestor now), and
   * ends those whose agreement no longer backs work: its escrow fell behind (not topped up), a debit note is overdue,
   * or the agreement ended.
   */
  meterRunning(): void
  /** The debit note to hand over with an answer under `agreementId`, if any; it is handed over once. */
  takeNote(agreementId: string): { debitNote?: DebitNote }
}

/** The refusals of an agreement's account that end its running activities (not the exposure cap: a voucher lifts it). */
const endingCodes = new Set<ErrorCode>(['HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', 'HEARTH_ERR_PAYMENT_OVERDUE', 'HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN'])

/** What an activity used beyond what was billed already, in whole milliseconds. */
function usageSince(activity: Activity, metered: Usage): Usage {
  const usage = activity.usage()
  return {
    tasks: 0,
    cpuMs: Math.max(0, Math.round(usage.cpuSec * 1000) - metered.cpuMs),
    durationMs: Math.max(0, Math.round(usage.durationSec * 1000) - metered.durationMs),
  }
}

export function createLiveActivities(init: LiveActivitiesInit): LiveActivities {
  const { store } = init
  const live = new Map<string, Live>()
  /** The newest debit note per agreement not yet handed to its requestor (notes are cumulative: newer covers older). */
  const undelivered = new Map<string, DebitNote>()

  async function end(id: string, reason: string, state: 'Terminated' | 'Unresponsive' = 'Terminated'): Promise<void> {
    const entry = live.get(id)
    if (entry === undefined) return
    live.delete(id)
    if (entry.idleTimer !== undefined) clearTimeout(entry.idleTimer)
    await entry.activity.terminate(reason, state)
    entry.releaseImage?.()
    store.activities.setUsage('provider', id, entry.activity.usage())
    // The rest of its work, and the activity itself as one task.
    const note = entry.reservation.complete({ ...usageSince(entry.activity, entry.metered), tasks: 1 })
    if (note !== undefined) undelivered.set(entry.agreementId, note)
  }

  function armIdle(id: string): void {
    const entry = live.get(id)
    if (entry === undefined) return
    if (entry.idleTimer !== undefined) clearTimeout(entry.idleTimer)
    entry.idleTimer = setTimeout(() => void end(id, `no batch for ${init.idleTimeoutMs} ms`).catch(() => undefined), init.idleTimeoutMs)
    entry.idleTimer.unref()
  }

  return {
    get: (id) => live.get(id),
    has: (id) => live.has(id),
    size: () => live.size,
    countFor: (agreementId) => [...live.values()].filter((entry) => entry.agreementId === agreementId).length,
    ids: () => [...live.keys()],
    add(id, entry) {
      live.set(id, entry)
      armIdle(id)
    },
    owned(id, agreementId, requestor) {
      const entry = live.get(id)
      if (entry === undefined || entry.requestor.toLowerCase() !== requestor.toLowerCase() || entry.agreementId !== agreementId) {
        const known = store.activities.get('provider', id)
        const ended = known !== undefined && known.peer.toLowerCase() === requestor.toLowerCase() ? ` (it is ${known.state}${known.lastError === null ? '' : `: ${known.lastError}`})` : ''
        throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `this provider runs no activity ${id} of yours under agreement ${agreementId}${ended}`, {
          hint: 'create an activity first; an ended activity cannot be reused',
        })
      }
      return entry
    },
    end,
    armIdle,
    disarmIdle(entry) {
      if (entry.idleTimer !== undefined) clearTimeout(entry.idleTimer)
    },
    meterRunning() {
      for (const [id, entry] of live) {
        const delta = usageSince(entry.activity, entry.metered)
        if (delta.cpuMs !== 0 || delta.durationMs !== 0) {
          entry.metered = { tasks: 0, cpuMs: entry.metered.cpuMs + delta.cpuMs, durationMs: entry.metered.durationMs + delta.durationMs }
          const note = entry.account.meter(delta)
          if (note !== undefined) entry.account.deliver(note)
        }
        void entry.account.check().catch((error: unknown) => {
          const refusal = toHearthError(error)
          if (endingCodes.has(refusal.code) && live.get(id) === entry) void end(id, refusal.shortMessage).catch(() => undefined)
        })
      }
    },
    takeNote(agreementId) {
      const note = undelivered.get(agreementId)
      if (note === undefined) return {}
      undelivered.delete(agreementId)
      return { debitNote: note }
    },
  }
}
