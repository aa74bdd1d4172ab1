/**
 * The requestor's account of one agreement (requestor-account.ts holds them all): the work it accepted under the
 * agreement (task results, and activities as far as the provider's signed answers and this requestor's own
 * observation justify), what that costs, the cumulative vouchers signed for it (one at a time, in order) and sent to
 * the provider, and the settlement that ends the agreement.
 */
import type { Address, Hex } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import type { AgreementTerms } from '../market/agreement.ts'
import type { DebitNote, Invoice } from '../market/billing.ts'
import { addUsage, costWei, noUsage, type Usage } from '../market/pricing.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { ActivityUsage } from '../exec/exescript.ts'
import { settleProtocol, voucherProtocol } from '../payment/payment-protocols.ts'
import { signVoucher, voucherToJson, type VoucherJson } from '../payment/voucher.ts'
import { refreshEscrow, type AccountsContext } from './escrow-upkeep.ts'
import { billedUsage, plausibleUsage, voucherAmountFor } from './justified-usage.ts'

export interface Settlement {
  agreementId: string
  /** The final voucher's amount: everything accepted, at the agreed prices. */
  finalWei: bigint
  /** The provider's invoice, when it answered. */
  invoice: Invoice | undefined
  settleTx: Hex | null
  /** Read from the chain after the provider's claim. */
  paidWei: bigint
  refundedWei: bigint
  closed: boolean
  /** Why the provider did not settle, when it did not: its vouchers are delivered later. */
  failure?: string
}

export interface RequestorAccount {
  readonly agreementId: string
  readonly terms: AgreementTerms
  readonly provider: Address
  readonly depositWei: bigint
  /** Where the provider can be reached. */
  target(): PeerTarget
  /** A task result that passed verification: its metered work is owed (and kept, so a resumed job pays it). */
  acceptTask(usage: { cpuMs: number; durationMs: number }): void
  /**
   * Work accepted without a task: time (and CPU) of an agreement billed by time, such as a service that stayed up
   * for an hour, as this requestor verified it. Kept like accepted tasks.
   */
  acceptUsage(usage: Usage): void
  /**
   * What a signed answer of the provider reported for one of this requestor's activities, held to what was observed.
   * Reports not signed by the agreement's provider count for nothing. Returns the usage kept.
   */
  reportActivity(activityId: string, signer: Address, reported: ActivityUsage, observed: { lifeMs: number; batches: number }): ActivityUsage | undefined
  /** An activity running under the agreement: how long it has lived, and how to end it (settling ends it first). */
  trackActivity(activityId: string, observe: () => { lifeMs: number; batches: number }, terminate: () => Promise<unknown>): void
  untrackActivity(activityId: string): void
  /** Work accepted so far: tasks, plus activities as far as they are justified. */
  accepted(): Usage
  /** What the accepted work costs, capped by the deposit: the most any voucher under the agreement may promise. */
  owedWei(): bigint
  /** The newest voucher signed, and the newest the provider acknowledged. */
  signedWei(): bigint
  deliveredWei(): bigint
  /** Vouchers signed under the agreement. */
  vouchers(): number
  /** Answers a debit note with a voucher for what it asks, never more than is justified; sends it (in order) unless told not to. */
  answer(note: DebitNote, options?: { send?: boolean; onDelivered?(acceptedWei: bigint): void }): Promise<VoucherJson | null>
  /** Resolves once every voucher sent so far has been answered or failed. */
  sent(): Promise<void>
  /**
   * Ends the agreement: ends the activities still running, sends the final voucher for everything accepted (again
   * while the provider is away, a few times), and reads from the chain what was paid and refunded.
   */
  settle(): Promise<Settlement>
}

/** What an account works with: the accounts' context, and how a settle request is retried. */
export interface AgreementAccountDeps extends AccountsContext {
  /** Tries of a settle request to a provider that is away, and the first pause between them (doubling). */
  settleTries?: number
  settleRetryMs?: number
}

interface Tracked {
  observe(): { lifeMs: number; batches: number }
  terminate(): Promise<unknown>
}

/** One account's figures as it runs; the store keeps what outlives it. */
interface Ledger {
  deps: AgreementAccountDeps
  agreementId: string
  terms: AgreementTerms
  provider: Address
  depositWei: bigint
  /** Work accepted without an activity (tasks, usage billed by time), as kept in the store. */
  taskUsage: Usage
  /** Activities' usage as their signed reports justify it. */
  activityUsage: Map<string, ActivityUsage>
  /** Activities running under the agreement. */
  running: Map<string, Tracked>
  /** Voucher work in order: vouchers are cumulative, so they are signed and sent one at a time. */
  queue: Promise<void>
  /** The largest amount a debit note asked so far (-1 before any). */
  lastNoteWei: bigint
}

/** The account of an agreement this requestor signed, from what the store kept of it. */
export function createAccount(deps: AgreementAccountDeps, agreementId: string, terms: AgreementTerms): RequestorAccount {
  const ledger = openLedger(deps, agreementId, terms)
  const { store } = deps
  const account: RequestorAccount = {
    agreementId,
    terms,
    provider: ledger.provider,
    depositWei: ledger.depositWei,
    target: () => providerTarget(ledger),
    acceptTask(usage) {
      account.acceptUsage({ tasks: 1, cpuMs: usage.cpuMs, durationMs: usage.durationMs })
    },
    acceptUsage(usage) {
      ledger.taskUsage = addUsage(ledger.taskUsage, usage)
      // With the task's result, in the same transaction (see write-behind.ts); the latest total only.
      store.paymentDocuments.saveSoon({ agreementId, kind: 'usage', seq: 0, document: ledger.taskUsage, createdAtMs: Date.now() })
    },
    reportActivity(activityId, signer, reported, observed) {
      if (signer.toLowerCase() !== ledger.provider.toLowerCase()) return undefined
      const kept = plausibleUsage(reported, observed)
      ledger.activityUsage.set(activityId, kept)
      store.activities.setUsage('requestor', activityId, kept)
      return kept
    },
    trackActivity: (activityId, observe, terminate) => void ledger.running.set(activityId, { observe, terminate }),
    untrackActivity: (activityId) => void ledger.running.delete(activityId),
    accepted: () => acceptedUsage(ledger),
    owedWei: () => owedWei(ledger),
    signedWei: () => signedWei(ledger),
    deliveredWei: () => store.vouchers.latestDelivered(agreementId)?.cumulativeWei ?? 0n,
    vouchers: () => store.vouchers.listFor(agreementId).length,
    sent: () => ledger.queue,
    answer: (note, options = {}) => answerNote(ledger, note, options),
    settle: () => settle(ledger),
  }
  return account
}

function openLedger(deps: AgreementAccountDeps, agreementId: string, terms: AgreementTerms): Ledger {
  const { store } = deps
  const provider = terms.provider as Address
  const depositWei = BigInt(terms.depositWei)
  const taskUsage = (store.paymentDocuments.list({ agreementId, kind: 'usage' })[0]?.document as Usage | undefined) ?? noUsage
  const activityUsage = new Map<string, ActivityUsage>()
  for (const activity of store.activities.list('requestor', { agreementId })) {
    if (activity.usage !== null) activityUsage.set(activity.id, activity.usage)
  }
  const lastNoteWei = store.paymentDocuments.list({ agreementId, kind: 'debit-note' }).reduce((max, record) => {
    const due = BigInt((record.document as DebitNote).amountDueWei)
    return due > max ? due : max
  }, -1n)
  return { deps, agreementId, terms, provider, depositWei, taskUsage, activityUsage, running: new Map(), queue: Promise.resolve(), lastNoteWei }
}

/** Work accepted so far: tasks, plus activities as far as they are justified. */
function acceptedUsage(ledger: Ledger): Usage {
  const { activityUsage, running } = ledger
  let total = ledger.taskUsage
  const ids = new Set([...activityUsage.keys(), ...running.keys()])
  for (const id of ids) {
    const reported = activityUsage.get(id)
    const live = running.get(id)
    // A running activity is justified up to its observed life so far (its notes arrive while it runs).
    const bound = live === undefined ? undefined : plausibleUsage({ durationSec: Number.POSITIVE_INFINITY, cpuSec: Number.POSITIVE_INFINITY }, live.observe())
    const usage = bound === undefined ? reported! : reported === undefined ? bound : { durationSec: Math.max(bound.durationSec, reported.durationSec), cpuSec: Math.max(bound.cpuSec, reported.cpuSec) }
    total = addUsage(total, billedUsage(usage))
  }
  return total
}

/** What the accepted work costs, capped by the deposit. */
function owedWei(ledger: Ledger): bigint {
  const cost = costWei(ledger.terms.pricing, acceptedUsage(ledger))
  return cost < ledger.depositWei ? cost : ledger.depositWei
}

function signedWei(ledger: Ledger): bigint {
  return ledger.deps.store.vouchers.latest(ledger.agreementId)?.cumulativeWei ?? 0n
}

/** Where the provider can be reached: its peer when connected, else an address it was seen at. */
function providerTarget(ledger: Ledger): PeerTarget {
  const { store, host } = ledger.deps
  const { provider } = ledger
  const known = store.peers.get(provider)
  if (known === undefined) throw new HearthError('HEARTH_ERR_NET_DIAL', `this requestor does not know where provider ${provider} is`)
  if (host.peers().some((peer) => peer.toString() === known.peerId)) return known.peerId
  const address = known.multiaddrs.find((a) => !a.includes('/p2p-circuit')) ?? known.multiaddrs[0]
  if (address === undefined) return known.peerId
  return address.includes('/p2p/') ? address : `${address}/p2p/${known.peerId}`
}

async function sign(ledger: Ledger, cumulativeWei: bigint): Promise<VoucherJson> {
  const { identity, payment, store } = ledger.deps
  const { agreementId } = ledger
  const voucher = await signVoucher({ privateKey: identity.privateKey, chainId: payment.client.chainId, escrowAddress: payment.escrowAddress, agreementId: agreementId as Hex, cumulativeWei })
  store.vouchers.save({ agreementId, cumulativeWei, document: voucherToJson(voucher), receivedAtMs: Date.now() })
  return voucherToJson(voucher)
}

function send(ledger: Ledger, voucher: VoucherJson, onDelivered?: (acceptedWei: bigint) => void): void {
  const { host, store } = ledger.deps
  ledger.queue = ledger.queue.then(async () => {
    try {
      const ack = await host.request(providerTarget(ledger), voucherProtocol, voucher)
      const acceptedWei = BigInt(ack.acceptedWei)
      store.vouchers.markDelivered(ledger.agreementId, acceptedWei < BigInt(voucher.cumulativeWei) ? acceptedWei : BigInt(voucher.cumulativeWei))
      onDelivered?.(acceptedWei)
    } catch {
      // A lost voucher costs the provider nothing: the next (cumulative) one, or a later delivery, covers it.
    }
  })
}

/** Answers a debit note with a voucher for what it asks, never more than is justified; sends it unless told not to. */
async function answerNote(ledger: Ledger, note: DebitNote, options: { send?: boolean; onDelivered?(acceptedWei: bigint): void }): Promise<VoucherJson | null> {
  const { agreementId } = ledger
  if (note.agreementId.toLowerCase() !== agreementId.toLowerCase()) return null
  // Kept as evidence when it asks for more than the last one did (notes are cumulative; a repeat adds nothing).
  if (BigInt(note.amountDueWei) > ledger.lastNoteWei) {
    ledger.lastNoteWei = BigInt(note.amountDueWei)
    ledger.deps.store.paymentDocuments.saveSoon({ agreementId, kind: 'debit-note', seq: note.seq, document: note, createdAtMs: Date.now() })
  }
  let signed: VoucherJson | null = null
  const next = ledger.queue.then(async () => {
    const amount = voucherAmountFor(note, { justifiedWei: owedWei(ledger), voucheredWei: signedWei(ledger), depositWei: ledger.depositWei })
    if (amount !== undefined) signed = await sign(ledger, amount)
  })
  ledger.queue = next.catch(() => undefined)
  await next
  if (signed !== null && options.send !== false) send(ledger, signed, options.onDelivered)
  return signed
}

/** Ends the agreement: its activities, the final voucher (delivered with the settle request), the chain's figures. */
async function settle(ledger: Ledger): Promise<Settlement> {
  const { deps, agreementId } = ledger
  const { store } = deps
  // The provider meters an activity as it ends: end them first, so the final voucher covers their work.
  await Promise.allSettled([...ledger.running.values()].map((activity) => activity.terminate()))
  await ledger.queue
  const finalWei = owedWei(ledger)
  const latest = store.vouchers.latest(agreementId)
  // A new voucher only when accepted work outgrew the last one; otherwise the last one, as signed, is final.
  const voucher = finalWei > (latest?.cumulativeWei ?? 0n) ? await sign(ledger, finalWei) : ((latest?.document ?? null) as VoucherJson | null)
  const { invoice, settleTx, failure } = await requestSettle(ledger, voucher)
  if (failure !== undefined) deps.log(`agreement ${agreementId}: provider ${ledger.provider} did not settle (${failure}); its voucher for ${finalWei} wei is delivered again while the escrow lasts`)
  store.agreements.setState(agreementId, 'terminated')
  const chain = await refreshEscrow(deps, agreementId)
  return { agreementId, finalWei, invoice, settleTx, paidWei: chain?.claimedWei ?? 0n, refundedWei: chain?.refundedWei ?? 0n, closed: chain?.closed ?? false, ...(failure === undefined ? {} : { failure }) }
}

/** The settle request, asked again (a few times, with a doubling pause) while the provider is away. */
async function requestSettle(ledger: Ledger, voucher: VoucherJson | null): Promise<{ invoice: Invoice | undefined; settleTx: Hex | null; failure: string | undefined }> {
  const { deps, agreementId } = ledger
  const { host, store } = deps
  let invoice: Invoice | undefined
  let settleTx: Hex | null = null
  let failure: string | undefined
  const tries = deps.settleTries ?? 4
  for (let attempt = 1; attempt <= tries; attempt++) {
    try {
      const answer = await host.request(providerTarget(ledger), settleProtocol, { agreementId, voucher })
      invoice = answer.invoice
      settleTx = answer.claimTx as Hex | null
      failure = undefined
      if (voucher !== null) store.vouchers.markDelivered(agreementId, BigInt(voucher.cumulativeWei))
      store.paymentDocuments.save({ agreementId, kind: 'invoice', seq: 1, document: answer.invoice, createdAtMs: Date.now() })
      break
    } catch (error) {
      const hearth = toHearthError(error)
      failure = hearth.shortMessage
      // Only a provider that is away (restarting, a network fault) is worth asking again now; a refusal is final.
      const away = hearth.code === 'HEARTH_ERR_NET_DIAL' || hearth.code === 'HEARTH_ERR_NET_TIMEOUT'
      if (!away || attempt === tries) break
      await new Promise((resolve) => setTimeout(resolve, (deps.settleRetryMs ?? 500) * 2 ** (attempt - 1)))
    }
  }
  return { invoice, settleTx, failure }
}
