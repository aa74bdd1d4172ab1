/**
 * How a provider node winds down before it closes: new work is refused at once, running tasks get a grace period to
 * finish (then are handed back, and answer their requestors before the host goes), vouchers on their way for
 * finished tasks are waited for a little, and what the requestors have signed over is claimed on chain.
 */
import type { DebitNote } from '../market/billing.ts'
import type { Store } from '../store/store.ts'
import type { ProviderAgent } from './provider-agent.ts'

export interface WindDownInit {
  agent: ProviderAgent
  store: Store
  /** When this run started: only its debit notes are waited on. */
  startedAtMs: number
  /** How long running tasks may finish before they are handed back. */
  graceMs: number
}

export interface WoundDown {
  handedBack: number
  claimed: { agreementId: string; txHash: string; paidWei: bigint }[]
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export async function windDown(init: WindDownInit): Promise<WoundDown> {
  const { agent, store, startedAtMs } = init
  /** Whether a debit note this run sent is not yet covered by a voucher. */
  const awaitingVouchers = (): boolean =>
    store.paymentDocuments
      .list({ kind: 'debit-note' })
      .some((note) => note.createdAtMs >= startedAtMs && BigInt((note.document as DebitNote).amountDueWei) > (store.vouchers.latest(note.agreementId)?.cumulativeWei ?? 0n))

  // Stop taking work first; running tasks may finish within the grace period.
  await agent.pause('the provider is stopping')
  const deadline = Date.now() + init.graceMs
  while (agent.running().tasks > 0 && Date.now() < deadline) await sleep(100)
  const handedBack = agent.running().tasks
  if (handedBack > 0) {
    await agent.pause('the provider is stopping', { handBack: true })
    // A handed-back task answers its requestor (retry elsewhere) once its run is killed; the host stays up until
    // then (and a moment more for the answer to be written), else the requestor sees only a closed stream.
    const answered = Date.now() + 10_000
    while (agent.running().tasks > 0 && Date.now() < answered) await sleep(20)
    await sleep(100)
  }
  // A requestor answers a finished task's debit note with a voucher right after the result: those on their way
  // are waited for (a little), so that what the tasks earned is claimed now rather than at the next start.
  const vouchersDue = Date.now() + 5_000
  while (awaitingVouchers() && Date.now() < vouchersDue) await sleep(50)
  // What requestors have signed over is claimed before the node goes: a restart would claim it too, but the
  // owner may not restart before the agreements expire.
  const claimed = await agent.claimOutstanding().catch(() => [])
  return { handedBack, claimed }
}
