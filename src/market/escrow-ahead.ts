/**
 * Escrows topped up as work goes, for agreements that run long (a service's day): instead of locking the whole
 * agreement's most up front, the requestor keeps the escrow a stated amount ahead of the work, `escrowAheadWei` in the
 * terms (one task at its longest: an hour of a service's uptime by default).
 *
 * - The escrow opens with twice that (never more than the agreed deposit, which stays the cap on what vouchers and
 *   claims may reach).
 * - The requestor tops it up once what it holds beyond the work accepted so far falls under one and a half times
 *   the amount, back to two and a half times: one step of about the amount at a time.
 * - The provider works only while the escrow holds at least the work it delivered plus half the amount: it refuses
 *   new work, and ends running activities (a service's server), once the requestor fell that far behind.
 *
 * So the provider never works beyond what is deposited, the requestor locks at most about two and a half times the
 * amount at once, and between the requestor's top-up and the provider's stop lies the amount's worth of work: time
 * for a transaction to land on a busy chain, and for the requestor's view of the work (its observation of running
 * activities) to trail the provider's meter.
 */
import { costWei, maxTaskCostWei, type Pricing, type Usage } from './pricing.ts'

/** The terms of an agreement that these rules read (see AgreementTerms in agreement.ts). */
interface AheadTerms {
  depositWei: string
  escrowAheadWei?: string | undefined
  pricing: Pricing
}

/** What the escrow stays ahead of the work under `pricing`: one task at its longest. */
export function escrowAheadWeiFor(pricing: Pricing, taskTimeoutMs: number): bigint {
  return maxTaskCostWei(pricing, taskTimeoutMs)
}

const min = (a: bigint, b: bigint): bigint => (a < b ? a : b)

/** What the requestor deposits when it opens the agreement's escrow. */
export function openingDepositWei(terms: Omit<AheadTerms, 'pricing'>): bigint {
  const deposit = BigInt(terms.depositWei)
  return terms.escrowAheadWei === undefined ? deposit : min(deposit, 2n * BigInt(terms.escrowAheadWei))
}

/** The least the escrow must hold for the provider to work, after it delivered `delivered`. */
export function backingNeededWei(terms: AheadTerms, delivered: Usage): bigint {
  const deposit = BigInt(terms.depositWei)
  if (terms.escrowAheadWei === undefined) return deposit
  return min(deposit, costWei(terms.pricing, delivered) + BigInt(terms.escrowAheadWei) / 2n)
}

/** How much the requestor adds now (0n: nothing is due) when the escrow holds `depositedWei` and it owes `owedWei`. */
export function topUpDueWei(terms: Omit<AheadTerms, 'pricing'>, depositedWei: bigint, owedWei: bigint): bigint {
  if (terms.escrowAheadWei === undefined) return 0n
  const ahead = BigInt(terms.escrowAheadWei)
  const deposit = BigInt(terms.depositWei)
  if (depositedWei >= deposit || 2n * (depositedWei - owedWei) >= 3n * ahead) return 0n
  const wanted = min(deposit, owedWei + (5n * ahead) / 2n)
  return wanted > depositedWei ? wanted - depositedWei : 0n
}
