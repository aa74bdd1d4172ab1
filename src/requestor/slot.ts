/**
 * A slot: one agreement of an open job, as the engine's parts see it. Sourcing makes slots, dispatch gives them work,
 * the task exchange talks to their providers, settlement closes them. Also here: answering a provider's debit note,
 * which every part that accepts work from a slot does the same way.
 */
import type { Hex } from 'viem'
import type { Agreement } from '../market/agreement.ts'
import type { DebitNote } from '../market/billing.ts'
import type { Offer } from '../market/offer.ts'
import type { DispatchSlot } from './dispatch.ts'
import type { JobEventListener } from './events.ts'
import type { RequestorAccount } from './requestor-account.ts'
import type { TaskOutcome } from './task-runner.ts'

export interface Slot extends DispatchSlot {
  agreement: Agreement
  offer: Offer
  peer: string
  /** The agreement's money: accepted work, vouchers, settlement. */
  account: RequestorAccount
  /** Results of this provider accepted and rejected in this job. */
  accepted: number
  rejected: number
  failures: number
  /** The provider's measured round trip (ms), for the report. */
  latencyMs: number | null
  openTx: Hex
  /** The latest debit note, answered once a result of this provider is accepted. */
  pendingNote?: DebitNote
}

/** A provider's result on its way to a verdict. */
export interface Delivered {
  slot: Slot
  outcome: TaskOutcome
  envelope: unknown
  usage: { durationMs: number; cpuMs: number }
}

/** A debit note is paid through the agreement's account: never more than the accepted results justify. */
export async function answerDebitNote(slot: Slot, note: DebitNote, emit: JobEventListener): Promise<void> {
  await slot.account.answer(note, {
    onDelivered: (acceptedWei) => emit({ type: 'voucher-delivered', provider: slot.offer.provider, agreementId: slot.agreement.id, cumulativeWei: acceptedWei.toString() }),
  })
}
