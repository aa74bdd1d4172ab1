/**
 * A provider's earnings from its own store: per agreement, the work delivered (metered), what it is billed at, what
 * the requestor's vouchers cover, what has been claimed on chain (counted once the claim has its confirmations), the
 * claim in flight or failed (attempts, last error, next try), and the exposure: delivered work no voucher covers. With
 * the owner's costs, the estimated cost of the CPU time lent and the net. Read-only, so `hearth provider earnings`
 * works whether the provider is running or not; a running provider passes its accounts' live figures (tasks running
 * now count towards the exposure).
 */
import type { Agreement } from '../market/agreement.ts'
import type { DebitNote } from '../market/billing.ts'
import { costWei, noUsage, type Usage } from '../market/pricing.ts'
import type { ClaimRecord, ClaimState } from '../store/repositories.ts'
import type { Store } from '../store/store.ts'
import { costOfCpuWei, type MachineShare, type OwnerCosts } from './profitability.ts'
import { confirmedClaimWei, uncoveredWork, type AgreementMoney } from './provider-account.ts'

export interface ClaimView {
  /** `pending`: being sent; `sent`: on chain, short of its confirmations; `confirmed`: paid; `failed`: to be tried again. */
  state: ClaimState
  /** The voucher amount the claim redeems. */
  cumulativeWei: string
  /** Whether the claim also gives the rest of the deposit back (the end of the agreement). */
  release: boolean
  txHash: string | null
  blockNumber: number | null
  attempts: number
  lastError: string | null
  /** When a failed claim is tried next (wall clock, ms); null when it is not failed or will never be tried again. */
  nextAttemptAtMs: number | null
  /** A failed claim that will not be tried again (its escrow was closed before it landed). */
  final: boolean
  updatedAtMs: number
}

export interface ExposureView {
  /** Delivered work no received voucher covers, at the agreed prices. */
  unpaidWei: string
  /** The same in tasks, plus the tasks running now (0 when read from the store alone). */
  unpaidTasks: number
  runningTasks: number
}

export interface AgreementEarnings {
  agreementId: string
  requestor: string
  state: string
  usage: Usage
  /** What the delivered work costs at the agreed prices. */
  billedWei: string
  /** The newest voucher's cumulative amount: what the requestor has signed over. */
  vouchedWei: string
  /** Claimed on chain with the configured confirmations. */
  claimedWei: string
  /** Claimed on chain but still short of its confirmations: not counted as claimed yet. */
  confirmingWei: string
  /** Vouched and not (yet) claimed: vouched = claimed + confirming + unclaimed. */
  unclaimedWei: string
  lastClaimTx: string | null
  exposure: ExposureView
  /** Debit notes sent that no voucher covers yet. */
  unpaidNotes: number
  /** The newest claim under the agreement, with its retries; null when none was tried. */
  claim: ClaimView | null
}

export interface EarningsReport {
  agreements: AgreementEarnings[]
  totals: {
    agreements: number
    tasks: number
    cpuMs: number
    billedWei: string
    /** Revenue: what vouchers cover (signed by requestors, claimable). */
    revenueWei: string
    /** Claimed with the configured confirmations. */
    claimedWei: string
    /** Claims on chain still short of their confirmations. */
    confirmingWei: string
    unclaimedWei: string
    /** Billed but not covered by any voucher yet. */
    owedWei: string
    /** Work delivered that no voucher covers, over all agreements (the money at risk now). */
    exposureWei: string
    /** Agreements whose claim failed and waits to be tried again (or never will be). */
    failedClaims: number
    /** Agreements whose claim is being sent or waits for confirmations. */
    confirmingClaims: number
    /** Estimated cost of the CPU time delivered (power and wear), when costs are known. */
    estimatedCostWei: string | null
    /** Revenue less estimated cost. */
    netWei: string | null
  }
}

/** A claim that never comes back: the account marks a failure final by a retry time no clock reaches. */
const neverMs = Number.MAX_SAFE_INTEGER

function claimView(record: ClaimRecord | undefined): ClaimView | null {
  if (record === undefined) return null
  const final = record.state === 'failed' && record.nextAttemptAtMs >= neverMs
  return {
    state: record.state,
    cumulativeWei: record.cumulativeWei.toString(),
    release: record.release,
    txHash: record.txHash,
    blockNumber: record.blockNumber,
    attempts: record.attempts,
    lastError: record.lastError,
    nextAttemptAtMs: record.state === 'failed' && !final ? record.nextAttemptAtMs : null,
    final,
    updatedAtMs: record.updatedAtMs,
  }
}

/**
 * The provider's earnings from its store; `costs` adds the estimated cost and net; `live` (a running provider's
 * `accounts.money()`) gives the exposure with the tasks running now and the debit notes its ledgers hold unpaid.
 */
export function readEarnings(store: Store, costs?: { owner: OwnerCosts; share: MachineShare }, live?: readonly AgreementMoney[]): EarningsReport {
  const liveById = new Map((live ?? []).map((row) => [row.agreementId, row]))
  const agreements: AgreementEarnings[] = []
  let billed = 0n
  let revenue = 0n
  let claimed = 0n
  let confirming = 0n
  let unclaimed = 0n
  let exposure = 0n
  let failedClaims = 0
  let confirmingClaims = 0
  let tasks = 0
  let cpuMs = 0
  for (const record of store.agreements.list()) {
    if (record.role !== 'provider') continue
    const agreement = record.document as Partial<Agreement>
    if (agreement.terms === undefined || !['approved', 'terminated', 'expired'].includes(record.state)) continue
    const usage = (store.paymentDocuments.list({ agreementId: record.id, kind: 'usage' })[0]?.document as Usage | undefined) ?? noUsage
    const vouched = store.vouchers.latest(record.id)?.cumulativeWei ?? 0n
    const claimedHere = confirmedClaimWei(store, record.id)
    const onChain = store.vouchers.claimedWei(record.id)
    const confirmingHere = onChain > claimedHere ? onChain - claimedHere : 0n
    const billedHere = costWei(agreement.terms.pricing, usage)
    const lastClaimTx = store.vouchers.listFor(record.id).filter((v) => v.claimedTx !== null).at(-1)?.claimedTx ?? null
    const money = liveById.get(record.id)
    const exposureHere = money?.exposure ?? uncoveredWork(agreement.terms.pricing, usage, vouched)
    const unpaidNotes =
      money?.unpaidNotes ??
      store.paymentDocuments.list({ agreementId: record.id, kind: 'debit-note' }).filter((note) => BigInt((note.document as DebitNote).amountDueWei) > vouched).length
    const claim = claimView(store.claims.get(record.id))
    agreements.push({
      agreementId: record.id,
      requestor: record.requestor,
      state: record.state,
      usage,
      billedWei: billedHere.toString(),
      vouchedWei: vouched.toString(),
      claimedWei: claimedHere.toString(),
      confirmingWei: confirmingHere.toString(),
      unclaimedWei: (vouched - claimedHere - confirmingHere).toString(),
      lastClaimTx,
      exposure: { unpaidWei: exposureHere.unpaidWei.toString(), unpaidTasks: exposureHere.unpaidTasks, runningTasks: exposureHere.runningTasks },
      unpaidNotes,
      claim,
    })
    billed += billedHere
    revenue += vouched
    claimed += claimedHere
    confirming += confirmingHere
    unclaimed += vouched - claimedHere - confirmingHere
    exposure += exposureHere.unpaidWei
    if (claim?.state === 'failed') failedClaims++
    if (claim?.state === 'pending' || claim?.state === 'sent') confirmingClaims++
    tasks += usage.tasks
    cpuMs += usage.cpuMs
  }
  const estimatedCost = costs === undefined ? undefined : costOfCpuWei(cpuMs, costs.owner, costs.share)
  return {
    agreements,
    totals: {
      agreements: agreements.length,
      tasks,
      cpuMs,
      billedWei: billed.toString(),
      revenueWei: revenue.toString(),
      claimedWei: claimed.toString(),
      confirmingWei: confirming.toString(),
      unclaimedWei: unclaimed.toString(),
      owedWei: (billed > revenue ? billed - revenue : 0n).toString(),
      exposureWei: exposure.toString(),
      failedClaims,
      confirmingClaims,
      estimatedCostWei: estimatedCost?.toString() ?? null,
      netWei: estimatedCost === undefined ? null : (revenue - estimatedCost).toString(),
    },
  }
}

export interface EarningsHistory {
  /** Cumulative revenue (what vouchers received cover) and confirmed claims, oldest first, one point per change. */
  points: { atMs: number; revenueWei: string; claimedWei: string }[]
}

/** The provider's earnings over time, from the vouchers it received and the claims confirmed, in its store. */
export function readEarningsHistory(store: Store): EarningsHistory {
  const changes: { atMs: number; revenue: bigint; claimed: bigint }[] = []
  for (const record of store.agreements.list()) {
    if (record.role !== 'provider') continue
    let previous = 0n
    for (const voucher of [...store.vouchers.listFor(record.id)].sort((a, b) => a.receivedAtMs - b.receivedAtMs)) {
      if (voucher.cumulativeWei > previous) changes.push({ atMs: voucher.receivedAtMs, revenue: voucher.cumulativeWei - previous, claimed: 0n })
      previous = voucher.cumulativeWei > previous ? voucher.cumulativeWei : previous
    }
    const claim = store.claims.get(record.id)
    if (claim?.state === 'confirmed') changes.push({ atMs: claim.updatedAtMs, revenue: 0n, claimed: confirmedClaimWei(store, record.id) })
  }
  changes.sort((a, b) => a.atMs - b.atMs)
  let revenue = 0n
  let claimed = 0n
  return {
    points: changes.map((change) => {
      revenue += change.revenue
      claimed += change.claimed
      return { atMs: change.atMs, revenueWei: revenue.toString(), claimedWei: claimed.toString() }
    }),
  }
}
