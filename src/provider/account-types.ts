/**
 * The vocabulary of the provider's accounts (provider-account.ts): the limits on unpaid work and how escrows are
 * checked, the claim policy, and the shapes of an agreement's account, its reservations, exposure and settlement.
 */
import type { Address, Hex } from 'viem'
import type { AgreementTerms } from '../market/agreement.ts'
import type { DebitNote, Invoice } from '../market/billing.ts'
import type { Usage } from '../market/pricing.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import type { VoucherJson } from '../payment/voucher.ts'
import type { ClaimRecord } from '../store/repositories.ts'
import type { Store } from '../store/store.ts'

export interface AccountLimits {
  /** Tasks delivered or running under one agreement that no received voucher covers. At the cap no new work starts. */
  maxUnpaidTasks: number
  /** The same in wei of delivered work (none by default: the task bound, times the agreed prices, applies). */
  maxUnpaidWei?: bigint
  /** An escrow read older than this is read again before work relies on it. */
  escrowMaxAgeMs: number
  /** Work stops this long before the escrow expires, so that the last claims land before anyone may refund. */
  stopBeforeEscrowExpirySec: number
  /** The escrow contract must give providers at least this long after expiry to claim; a contract with less is refused. */
  minClaimGraceSec: number
}

export interface ClaimPolicy {
  /** Claim as soon as the unclaimed amount of an agreement reaches this (none by default). */
  thresholdWei?: bigint
  /** Claim everything unclaimed this long before an escrow expires (by chain time). */
  beforeExpirySec: number
  /** How often claims are retried, confirmed and scheduled, and overdue agreements ended. */
  checkEveryMs: number
  /** Blocks a claim must have (its own included) before it counts as paid. */
  confirmations: number
  /** A failed claim is tried again after this, doubling per failure up to `maxRetryMs`. */
  firstRetryMs: number
  maxRetryMs: number
}

export const defaultAccountLimits: AccountLimits = {
  maxUnpaidTasks: 32,
  escrowMaxAgeMs: 5_000,
  stopBeforeEscrowExpirySec: 300,
  minClaimGraceSec: 3_600,
}

export const defaultClaimPolicy: ClaimPolicy = {
  beforeExpirySec: 600,
  checkEveryMs: 30_000,
  confirmations: 1,
  firstRetryMs: 5_000,
  maxRetryMs: 10 * 60_000,
}

export interface ProviderAccountsInit {
  address: Address
  store: Store
  /** The provider's chain client and the contracts it is paid through. */
  payment: EscrowContext
  limits?: Partial<AccountLimits>
  claimPolicy?: Partial<ClaimPolicy>
  /** Sends a debit note that no answer will carry to the requestor now; resolves with the voucher it answered with. */
  pushNote?(note: DebitNote, requestor: Address): Promise<VoucherJson | null>
  /** Asks a requestor for the newest voucher it signed under an agreement (a restarted provider collecting what it is owed). */
  askOwed?(agreementId: string, requestor: Address): Promise<VoucherJson | null>
  /** Where failed claims and ended agreements are reported (stderr in the CLI). */
  log?(message: string): void
  /**
   * Where earnings go: after claims count as paid, the node's token balance is moved there, so that earnings do not
   * sit in the node's hot key (none: they stay).
   */
  payoutAddress?: Address
  /** The wall clock, for tests. */
  nowMs?(): number
}

/** Work admitted under an agreement: completed (billed) or cancelled (not billed). */
export interface Reservation {
  /**
   * Bills the work and returns the debit note it gives rise to, for the answer to carry. With `deferSave` the running
   * usage is written by the account's persist() instead (a batch's tasks: once, before their answer goes out).
   */
  complete(usage: Usage, options?: { deferSave?: boolean }): DebitNote | undefined
  /** The work did not happen (handed back, refused, failed in the sandbox's set-up): nothing is billed. */
  cancel(): void
}

export interface Exposure {
  /** Delivered work no received voucher covers, at the agreed prices. */
  unpaidWei: bigint
  /** The same in tasks (delivered and uncovered), plus the tasks and activities running now. */
  unpaidTasks: number
  runningTasks: number
}

export interface SettleOutcome {
  invoice: Invoice
  claimTx: Hex | null
  paidWei: bigint
  refundedWei: bigint
}

export interface ProviderAccount {
  readonly agreementId: string
  readonly terms: AgreementTerms
  /** Admits one task or activity, after every check above; throws a HearthError saying which failed. */
  reserve(): Promise<Reservation>
  /** Writes the running usage that work completed with `deferSave` left unwritten. */
  persist(): void
  /** The checks for more work under what is already admitted (an activity's next batch): all but the task bounds. */
  check(): Promise<void>
  /** Whether the agreement's escrow is open and names this provider (read from the chain when not known). */
  backed(): Promise<boolean>
  /** Bills work done without a new task (an activity still running, a service by time); returns a note when one is due. */
  meter(usage: Usage): DebitNote | undefined
  /** Sends a note that no answer will carry; the voucher answering it is taken as any other. */
  deliver(note: DebitNote): void
  /** Takes a voucher from the requestor: checked against the agreement, the deposit and the work delivered. */
  acceptVoucher(json: unknown): Promise<bigint>
  /** All work delivered, its cost, and what the vouchers cover. */
  invoice(): Invoice
  delivered(): Usage
  exposure(): Exposure
}

export interface AgreementMoney {
  agreementId: string
  requestor: string
  state: string
  delivered: Usage
  billedWei: bigint
  vouchedWei: bigint
  /** Claimed on chain with the configured confirmations. */
  claimedWei: bigint
  exposure: Exposure
  unpaidNotes: number
  claim: ClaimRecord | undefined
}

export interface ProviderAccounts {
  /** The account of an agreement this provider signed with `requestor`; throws when there is none. */
  account(agreementId: string, requestor: Address): ProviderAccount
  /** Checks the contract's claim grace, reconciles claims with the chain, claims what is owed, starts the timer. */
  start(): Promise<void>
  stop(): Promise<void>
  /**
   * Ends an agreement at the requestor's request: takes the final voucher, writes the invoice, claims and releases
   * the rest of the deposit.
   */
  settle(agreementId: string, requestor: Address, finalVoucher: unknown): Promise<SettleOutcome>
  /** Claims the newest unclaimed voucher of every agreement (at start, at stop). */
  claimOutstanding(options?: { release?: boolean }): Promise<{ agreementId: string; txHash: string; paidWei: bigint }[]>
  /** One round of the timer's work: retries, confirmations, sweeps, claims before expiry, overdue agreements, owed vouchers. */
  tick(): Promise<void>
  /** Moves claimed earnings to the payout address, when one is set and no claim awaits confirmations. */
  sweep(): Promise<void>
  /** Every agreement's money, for status and earnings. */
  money(): AgreementMoney[]
  /** Tasks and activities running under all agreements. */
  running(): number
}
