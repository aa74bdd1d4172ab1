/**
 * A provider's earnings from its own store: per agreement, the work delivered (metered), what it is billed at, what
 * the requestor's vouchers cover, what has been claimed on chain and what is still unclaimed; and, with the owner's
 * costs, the estimated cost of the CPU time lent and the net. Read-only, so `hearth provider earnings` works whether
 * the provider is running or not.
 */
import type { Agreement } from '../market/agreement.ts'
import { costWei, noUsage, type Usage } from '../market/pricing.ts'
import type { Store } from '../store/store.ts'
import { costOfCpuWei, type MachineShare, type OwnerCosts } from './profitability.ts'

export interface AgreementEarnings {
  agreementId: string
  requestor: string
  state: string
  usage: Usage
  /** What the delivered work costs at the agreed prices. */
  billedWei: string
  /** The newest voucher's cumulative amount: what the requestor has signed over. */
  vouchedWei: string
  claimedWei: string
  unclaimedWei: string
  lastClaimTx: string | null
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
    claimedWei: string
    unclaimedWei: string
    /** Billed but not covered by any voucher yet. */
    owedWei: string
    /** Estimated cost of the CPU time delivered (power and wear), when costs are known. */
    estimatedCostWei: string | null
    /** Revenue less estimated cost. */
    netWei: string | null
  }
}

/** The provider's earnings from its store; `costs` adds the estimated cost and net. */
export function readEarnings(store: Store, costs?: { owner: OwnerCosts; share: MachineShare }): EarningsReport {
  const agreements: AgreementEarnings[] = []
  let billed = 0n
  let revenue = 0n
  let claimed = 0n
  let unclaimed = 0n
  let tasks = 0
  let cpuMs = 0
  for (const record of store.agreements.list()) {
    if (record.role !== 'provider') continue
    const agreement = record.document as Partial<Agreement>
    if (agreement.terms === undefined || !['approved', 'terminated', 'expired'].includes(record.state)) continue
    const usage = (store.paymentDocuments.list({ agreementId: record.id, kind: 'usage' })[0]?.document as Usage | undefined) ?? noUsage
    const latest = store.vouchers.latest(record.id)
    const vouched = latest?.cumulativeWei ?? 0n
    const claimedHere = store.vouchers.claimedWei(record.id)
    const billedHere = costWei(agreement.terms.pricing, usage)
    const lastClaimTx = store.vouchers.listFor(record.id).filter((v) => v.claimedTx !== null).at(-1)?.claimedTx ?? null
    agreements.push({
      agreementId: record.id,
      requestor: record.requestor,
      state: record.state,
      usage,
      billedWei: billedHere.toString(),
      vouchedWei: vouched.toString(),
      claimedWei: claimedHere.toString(),
      unclaimedWei: (vouched - claimedHere).toString(),
      lastClaimTx,
    })
    billed += billedHere
    revenue += vouched
    claimed += claimedHere
    unclaimed += vouched - claimedHere
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
      unclaimedWei: unclaimed.toString(),
      owedWei: (billed > revenue ? billed - revenue : 0n).toString(),
      estimatedCostWei: estimatedCost?.toString() ?? null,
      netWei: estimatedCost === undefined ? null : (revenue - estimatedCost).toString(),
    },
  }
}
