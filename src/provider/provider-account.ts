/**
 * The provider's money, one account per agreement, in one place: the work delivered (metered) and running, the debit
 * notes sent and which of them are unpaid, the exposure no voucher covers, the vouchers received, the invoice, and the
 * claims on chain with their retries and confirmations.
 *
 * Before any work for a requestor's money the account checks that the agreement is approved and this requestor's;
 * that its escrow is open, holds the agreed deposit, names this provider and outlives the agreement by the agreed
 * margin (read again from the chain when the last read is older than a few seconds, so a closed escrow is noticed);
 * that neither the agreement nor the escrow is about to end (by chain time); that no debit note is overdue; that the
 * agreement has tasks left; and that the work delivered or running which no voucher covers stays under the exposure
 * cap, in tasks and in tokens. Tasks, ExeScript activities and work billed by time alone (services, storage) all go
 * through the same account, so a requestor that stops paying leaves the provider unpaid for at most the cap.
 */
import type { Address, Hex } from 'viem'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { escrowExpiryMarginSec, type Agreement, type AgreementTerms } from '../market/agreement.ts'
import type { DebitNote, Invoice } from '../market/billing.ts'
import { addUsage, costWei, noUsage, type Pricing, type Usage } from '../market/pricing.ts'
import { claimVoucher, escrowClaimGraceSec, getEscrow, releaseEscrow, chainTimeSec, tokenBalanceOf, transferTokens, type EscrowContext, type EscrowState } from '../payment/escrow.ts'
import { verifyVoucher, voucherFromJson, voucherToJson, type Voucher, type VoucherJson } from '../payment/voucher.ts'
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
  /** Bills the work and returns the debit note it gives rise to, for the answer to carry. */
  complete(usage: Usage): DebitNote | undefined
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

/** The working state of one agreement's account; what must survive a restart is in the store. */
interface Ledger {
  agreementId: string
  terms: AgreementTerms
  requestor: Address
  delivered: Usage
  running: number
  /** Notes sent and not covered by a voucher, oldest first. */
  unpaidNotes: DebitNote[]
  lastNoteAtMs: number
  lastNoteWei: bigint
  lastPushAtMs: number
  seq: number
  escrow?: { state: EscrowState | undefined; chainSec: number; readAtMs: number }
  account: ProviderAccount
}

export function createProviderAccounts(init: ProviderAccountsInit): ProviderAccounts {
  const { store, payment } = init
  const limits: AccountLimits = { ...defaultAccountLimits, ...init.limits }
  const policy: ClaimPolicy = { ...defaultClaimPolicy, ...init.claimPolicy }
  const now = init.nowMs ?? Date.now
  const log = init.log ?? (() => undefined)
  const ledgers = new Map<string, Ledger>()
  /** One claim at a time per agreement: two in flight would claim the same voucher and the second would revert. */
  const claiming = new Map<string, Promise<ClaimResult>>()
  let timer: NodeJS.Timeout | undefined
  let ticking: Promise<void> | undefined

  function agreementRecord(agreementId: string, requestor: Address): { agreement: Agreement; state: string } {
    const record = store.agreements.get(agreementId)
    const agreement = record?.document as Agreement | undefined
    if (record === undefined || record.role !== 'provider' || agreement?.terms === undefined) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `no agreement ${agreementId} with this provider`, {
        hint: 'negotiate an agreement before sending tasks or vouchers',
      })
    }
    if (agreement.terms.requestor.toLowerCase() !== requestor.toLowerCase()) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${agreementId} belongs to another requestor`)
    }
    return { agreement, state: record.state }
  }

  function ledgerOf(agreementId: string, requestor: Address): Ledger {
    const known = ledgers.get(agreementId)
    if (known !== undefined) {
      if (known.requestor.toLowerCase() !== requestor.toLowerCase()) agreementRecord(agreementId, requestor)
      return known
    }
    const { agreement } = agreementRecord(agreementId, requestor)
    const terms = agreement.terms
    const delivered = (store.paymentDocuments.list({ agreementId, kind: 'usage' })[0]?.document as Usage | undefined) ?? noUsage
    // After a restart: the notes sent that no voucher covers are still unpaid, their ages still count.
    const notes = store.paymentDocuments.list({ agreementId, kind: 'debit-note' }).map((record) => record.document as DebitNote)
    const coveredWei = store.vouchers.latest(agreementId)?.cumulativeWei ?? 0n
    const last = notes.at(-1)
    const ledger: Ledger = {
      agreementId,
      terms,
      requestor: terms.requestor as Address,
      delivered,
      running: 0,
      unpaidNotes: notes.filter((note) => BigInt(note.amountDueWei) > coveredWei),
      lastNoteAtMs: last?.issuedAtMs ?? 0,
      lastNoteWei: last === undefined ? 0n : BigInt(last.amountDueWei),
      lastPushAtMs: 0,
      seq: notes.reduce((max, note) => Math.max(max, note.seq), 0),
      account: undefined as unknown as ProviderAccount,
    }
    ledger.account = accountOf(ledger)
    ledgers.set(agreementId, ledger)
    return ledger
  }

  function exposureOf(ledger: Ledger): Exposure {
    return uncoveredWork(ledger.terms.pricing, ledger.delivered, store.vouchers.latest(ledger.agreementId)?.cumulativeWei ?? 0n, ledger.running)
  }

  async function escrowOf(ledger: Ledger): Promise<{ state: EscrowState | undefined; chainNowSec: number }> {
    const cached = ledger.escrow
    if (cached === undefined || now() - cached.readAtMs > limits.escrowMaxAgeMs || cached.state === undefined || cached.state.closed) {
      const [state, chainSec] = await Promise.all([
        getEscrow(payment, { requestorAddress: ledger.requestor, agreementId: ledger.agreementId as Hex }),
        chainTimeSec(payment),
      ])
      ledger.escrow = { state, chainSec: Number(chainSec), readAtMs: now() }
    }
    const fresh = ledger.escrow!
    return { state: fresh.state, chainNowSec: fresh.chainSec + (now() - fresh.readAtMs) / 1000 }
  }

  /** The escrow backs the work: open, this requestor's, naming this provider, funded, and outliving the agreement. */
  async function ensureBacked(ledger: Ledger): Promise<void> {
    const { agreementId, terms } = ledger
    const { state: escrow, chainNowSec } = await escrowOf(ledger)
    const refuse = (why: string, hint: string): never => {
      throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `agreement ${agreementId} is not backed: ${why}`, { hint, details: { agreementId } })
    }
    if (escrow === undefined) refuse('its requestor has opened no escrow for it', 'open the escrow (escrow.open) for the agreed deposit before sending work')
    if (escrow!.closed) refuse('its escrow is closed', 'the agreement has ended; negotiate a new one')
    if (escrow!.providerAddress.toLowerCase() !== init.address.toLowerCase()) refuse('its escrow names another provider', 'open the escrow for this provider')
    if (escrow!.depositedWei < BigInt(terms.depositWei)) refuse(`its escrow holds ${escrow!.depositedWei} wei of the agreed ${terms.depositWei}`, 'top the escrow up to the agreed deposit')
    const neededExpirySec = terms.expiresAtSec + escrowExpiryMarginSec
    if (escrow!.expiresAtSec < BigInt(neededExpirySec)) {
      refuse(`its escrow expires at ${escrow!.expiresAtSec}, before the agreement's end plus ${escrowExpiryMarginSec} s (${neededExpirySec})`, 'open escrows that expire at least the margin after the agreement')
    }
    const workEndsAtSec = Math.min(terms.expiresAtSec, Number(escrow!.expiresAtSec) - limits.stopBeforeEscrowExpirySec)
    if (chainNowSec >= workEndsAtSec) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${agreementId} has ended (chain time ${Math.floor(chainNowSec)} is past ${workEndsAtSec})`, {
        hint: 'negotiate a new agreement',
      })
    }
  }

  /** A note unpaid past the agreed timeout ends the agreement: no more work, what is held is claimed. */
  function ensureNotOverdue(ledger: Ledger): void {
    const oldest = ledger.unpaidNotes[0]
    if (oldest === undefined || now() - oldest.issuedAtMs <= ledger.terms.paymentTimeoutSec * 1000) return
    const state = store.agreements.get(ledger.agreementId)?.state
    if (state === 'approved') {
      store.agreements.setState(ledger.agreementId, 'terminated')
      log(`agreement ${ledger.agreementId}: debit note ${oldest.seq} (${oldest.amountDueWei} wei) unpaid for more than ${ledger.terms.paymentTimeoutSec} s; the agreement is ended and what its vouchers cover is claimed`)
      void claim(ledger.agreementId, { release: false }).catch(() => undefined)
    }
    throw new HearthError('HEARTH_ERR_PAYMENT_OVERDUE', `debit note ${oldest.seq} of agreement ${ledger.agreementId} (${oldest.amountDueWei} wei) has gone unpaid for more than ${ledger.terms.paymentTimeoutSec} s; this provider has ended the agreement`, {
      hint: 'answer debit notes with vouchers within the payment timeout; negotiate a new agreement',
      details: { agreementId: ledger.agreementId, seq: oldest.seq, amountDueWei: oldest.amountDueWei },
    })
  }

  /** The agreement is approved, backed by its escrow, not ending, and not overdue. */
  async function ensureWorking(ledger: Ledger): Promise<void> {
    const state = store.agreements.get(ledger.agreementId)?.state
    if (state !== 'approved') {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${ledger.agreementId} is ${state ?? 'unknown'}, not approved`, { hint: 'negotiate a new agreement' })
    }
    await ensureBacked(ledger)
    ensureNotOverdue(ledger)
  }

  /**
   * At the exposure cap: no more work until a voucher covers some. The requestor may hold no note for the newest work
   * (or may have lost the one it had), so the newest goes out again, at most every few seconds.
   */
  function refuseUnpaid(ledger: Ledger, exposure: Exposure): never {
    const over = exposure.unpaidTasks >= limits.maxUnpaidTasks
    const what = over ? `${exposure.unpaidTasks} tasks (the cap is ${limits.maxUnpaidTasks})` : `${exposure.unpaidWei} wei (the cap is ${limits.maxUnpaidWei})`
    const nowMs = now()
    if (nowMs - ledger.lastPushAtMs >= 5_000) {
      ledger.lastPushAtMs = nowMs
      const latest = ledger.unpaidNotes.at(-1)
      const note = latest !== undefined && BigInt(latest.amountDueWei) >= costWei(ledger.terms.pricing, ledger.delivered) ? latest : bill(ledger, noUsage)
      if (note !== undefined) push(ledger, note)
    }
    throw new HearthError('HEARTH_ERR_PAYMENT_UNPAID', `agreement ${ledger.agreementId} has ${what} of work that no voucher covers; this provider takes no more until it is paid`, {
      hint: 'answer the provider\'s debit note with a voucher, then send work again',
      details: { agreementId: ledger.agreementId, unpaidWei: exposure.unpaidWei.toString(), unpaidTasks: exposure.unpaidTasks },
    })
  }

  /** Records delivered work; a debit note when the interval has passed or the unpaid work reaches half the cap. */
  function bill(ledger: Ledger, usage: Usage): DebitNote | undefined {
    ledger.delivered = addUsage(ledger.delivered, usage)
    const nowMs = now()
    store.paymentDocuments.save({ agreementId: ledger.agreementId, kind: 'usage', seq: 0, document: ledger.delivered, createdAtMs: nowMs })
    const dueWei = costWei(ledger.terms.pricing, ledger.delivered)
    if (dueWei <= ledger.lastNoteWei) return undefined
    const exposure = exposureOf(ledger)
    const halfCap = exposure.unpaidTasks * 2 >= limits.maxUnpaidTasks || (limits.maxUnpaidWei !== undefined && exposure.unpaidWei * 2n >= limits.maxUnpaidWei)
    if (!halfCap && nowMs - ledger.lastNoteAtMs < ledger.terms.debitNoteIntervalSec * 1000) return undefined
    const note: DebitNote = { agreementId: ledger.agreementId, seq: ++ledger.seq, usage: ledger.delivered, amountDueWei: dueWei.toString(), issuedAtMs: nowMs }
    store.paymentDocuments.save({ agreementId: ledger.agreementId, kind: 'debit-note', seq: note.seq, document: note, createdAtMs: nowMs })
    ledger.lastNoteAtMs = nowMs
    ledger.lastNoteWei = dueWei
    ledger.unpaidNotes.push(note)
    return note
  }

  /** Sends a note no answer carries; the voucher that answers it is taken like any other. */
  function push(ledger: Ledger, note: DebitNote): void {
    if (init.pushNote === undefined) return
    void init
      .pushNote(note, ledger.requestor)
      .then((voucher) => (voucher === null ? undefined : ledger.account.acceptVoucher(voucher)))
      .catch((error: unknown) => log(`agreement ${ledger.agreementId}: debit note ${note.seq} not delivered: ${toHearthError(error).shortMessage}`))
  }

  function accountOf(ledger: Ledger): ProviderAccount {
    const { agreementId, terms } = ledger
    return {
      agreementId,
      terms,
      delivered: () => ledger.delivered,
      exposure: () => exposureOf(ledger),

      async check() {
        await ensureWorking(ledger)
        if (limits.maxUnpaidWei !== undefined && exposureOf(ledger).unpaidWei >= limits.maxUnpaidWei) refuseUnpaid(ledger, exposureOf(ledger))
      },

      async backed() {
        const escrow = await escrowOf(ledger).catch(() => undefined)
        return escrow?.state !== undefined && !escrow.state.closed && escrow.state.providerAddress.toLowerCase() === init.address.toLowerCase()
      },

      deliver: (note) => push(ledger, note),

      async reserve() {
        await ensureWorking(ledger)
        if (ledger.delivered.tasks + ledger.running >= terms.maxTasks) {
          throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', `agreement ${agreementId} already had its ${terms.maxTasks} tasks`, {
            hint: 'negotiate a new agreement for more tasks',
          })
        }
        const exposure = exposureOf(ledger)
        if (exposure.unpaidTasks >= limits.maxUnpaidTasks || (limits.maxUnpaidWei !== undefined && exposure.unpaidWei >= limits.maxUnpaidWei)) refuseUnpaid(ledger, exposure)
        ledger.running++
        let open = true
        return {
          complete(usage) {
            if (!open) return undefined
            open = false
            ledger.running--
            return bill(ledger, usage)
          },
          cancel() {
            if (!open) return
            open = false
            ledger.running--
          },
        }
      },

      meter(usage) {
        if (usage.tasks === 0 && usage.cpuMs === 0 && usage.durationMs === 0) return undefined
        return bill(ledger, usage)
      },

      async acceptVoucher(json) {
        const voucher: Voucher = voucherFromJson(json)
        await verifyVoucher(voucher, {
          expectedSigner: terms.requestor as Address,
          chainId: payment.client.chainId,
          escrowAddress: payment.escrowAddress,
          agreementId: agreementId as Hex,
        })
        // Never more than the delivered work costs by this provider's own metering, nor than the deposit.
        const owedAtMost = costWei(terms.pricing, ledger.delivered)
        if (voucher.cumulativeWei > BigInt(terms.depositWei) || voucher.cumulativeWei > owedAtMost) {
          throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', `voucher for ${voucher.cumulativeWei} wei exceeds what agreement ${agreementId} allows (${owedAtMost} wei delivered, ${terms.depositWei} deposited)`)
        }
        store.vouchers.save({ agreementId, cumulativeWei: voucher.cumulativeWei, document: voucherToJson(voucher), receivedAtMs: now() })
        const latestWei = store.vouchers.latest(agreementId)?.cumulativeWei ?? voucher.cumulativeWei
        // A voucher pays every debit note it covers.
        ledger.unpaidNotes = ledger.unpaidNotes.filter((note) => BigInt(note.amountDueWei) > latestWei)
        if (policy.thresholdWei !== undefined && latestWei - store.vouchers.claimedWei(agreementId) >= policy.thresholdWei) {
          // Off the answer's path: the requestor need not wait for our transaction.
          void claim(agreementId, { release: false }).catch(() => undefined)
        }
        return latestWei
      },

      invoice() {
        return {
          agreementId,
          usage: ledger.delivered,
          amountDueWei: costWei(terms.pricing, ledger.delivered).toString(),
          paidWei: (store.vouchers.latest(agreementId)?.cumulativeWei ?? 0n).toString(),
          issuedAtMs: now(),
        }
      },
    }
  }

  interface ClaimResult {
    claimTx: Hex | null
    paidWei: bigint
    refundedWei: bigint
  }

  function saveClaim(agreementId: string, update: Partial<ClaimRecord> & Pick<ClaimRecord, 'state'>): void {
    const previous = store.claims.get(agreementId)
    store.claims.save({
      agreementId,
      cumulativeWei: previous?.cumulativeWei ?? 0n,
      release: previous?.release ?? false,
      txHash: previous?.txHash ?? null,
      blockNumber: previous?.blockNumber ?? null,
      attempts: previous?.attempts ?? 0,
      lastError: previous?.lastError ?? null,
      nextAttemptAtMs: previous?.nextAttemptAtMs ?? 0,
      ...update,
      updatedAtMs: now(),
    })
  }

  /**
   * Claims the newest voucher (with `release`, also gives the rest of the deposit back and closes the escrow, by
   * `release` alone when there is nothing to claim). A failure is recorded, logged and retried with backoff; a claim
   * that already landed (an earlier run's, unrecorded) is reconciled from the chain instead of failing forever.
   */
  function claim(agreementId: string, options: { release: boolean }): Promise<ClaimResult> {
    const previous = claiming.get(agreementId) ?? Promise.resolve(undefined)
    const next = previous.catch(() => undefined).then(() => claimNow(agreementId, options.release))
    claiming.set(agreementId, next)
    void next.finally(() => {
      if (claiming.get(agreementId) === next) claiming.delete(agreementId)
    }).catch(() => undefined)
    return next
  }

  async function claimNow(agreementId: string, release: boolean): Promise<ClaimResult> {
    const record = store.agreements.get(agreementId)
    const requestor = (record?.document as Agreement | undefined)?.terms.requestor as Address | undefined
    if (requestor === undefined) return { claimTx: null, paidWei: 0n, refundedWei: 0n }
    const latest = store.vouchers.latest(agreementId)
    if (latest === undefined || latest.claimedTx !== null) {
      if (!release) return { claimTx: null, paidWei: 0n, refundedWei: 0n }
      const escrow = await getEscrow(payment, { requestorAddress: requestor, agreementId: agreementId as Hex })
      if (escrow === undefined || escrow.closed) return { claimTx: null, paidWei: 0n, refundedWei: 0n }
      const outcome = await releaseEscrow(payment, { requestorAddress: requestor, agreementId: agreementId as Hex })
      return { claimTx: outcome.hash, paidWei: 0n, refundedWei: outcome.refundedWei }
    }
    const voucher = voucherFromJson(latest.document)
    const attempts = (store.claims.get(agreementId)?.attempts ?? 0) + 1
    saveClaim(agreementId, { state: 'pending', cumulativeWei: voucher.cumulativeWei, release, attempts, txHash: null, blockNumber: null })
    try {
      const outcome = await claimVoucher(payment, { voucher, release })
      store.vouchers.markClaimed(agreementId, voucher.cumulativeWei, outcome.hash)
      const receipt = await payment.client.publicClient.getTransactionReceipt({ hash: outcome.hash }).catch(() => undefined)
      const blockNumber = receipt === undefined ? null : Number(receipt.blockNumber)
      saveClaim(agreementId, { state: policy.confirmations <= 1 ? 'confirmed' : 'sent', txHash: outcome.hash, blockNumber, lastError: null, nextAttemptAtMs: 0 })
      // A claim that released the rest closed the escrow: the agreement is over, however the claim came about.
      if (release) store.agreements.setState(agreementId, 'terminated')
      return { claimTx: outcome.hash, paidWei: outcome.paidWei, refundedWei: outcome.refundedWei }
    } catch (error) {
      return await claimFailed(agreementId, requestor, voucher, release, attempts, error)
    }
  }

  async function claimFailed(agreementId: string, requestor: Address, voucher: Voucher, release: boolean, attempts: number, error: unknown): Promise<ClaimResult> {
    const failure = toHearthError(error)
    // Whatever the error, the chain says whether this voucher (or a later one) was paid after all.
    const escrow = await getEscrow(payment, { requestorAddress: requestor, agreementId: agreementId as Hex }).catch(() => undefined)
    if (escrow !== undefined && escrow.claimedWei >= voucher.cumulativeWei) {
      store.vouchers.markClaimed(agreementId, voucher.cumulativeWei, 'reconciled-from-chain')
      saveClaim(agreementId, { state: 'confirmed', lastError: null, nextAttemptAtMs: 0 })
      log(`agreement ${agreementId}: the claim of ${voucher.cumulativeWei} wei had already landed on chain; recorded now`)
      if (release && !escrow.closed) {
        const outcome = await releaseEscrow(payment, { requestorAddress: requestor, agreementId: agreementId as Hex }).catch(() => undefined)
        return { claimTx: outcome?.hash ?? null, paidWei: 0n, refundedWei: outcome?.refundedWei ?? 0n }
      }
      return { claimTx: null, paidWei: 0n, refundedWei: 0n }
    }
    const final = escrow?.closed === true
    const retryMs = Math.min(policy.maxRetryMs, policy.firstRetryMs * 2 ** Math.min(attempts - 1, 20))
    saveClaim(agreementId, {
      state: 'failed',
      lastError: final ? `the escrow was closed before this claim (${failure.shortMessage})` : failure.shortMessage,
      nextAttemptAtMs: final ? Number.MAX_SAFE_INTEGER : now() + retryMs,
    })
    log(`agreement ${agreementId}: claim of ${voucher.cumulativeWei} wei failed (attempt ${attempts}): ${failure.shortMessage}${final ? '; the escrow is closed, nothing more can be claimed' : `; retrying in ${Math.round(retryMs / 1000)} s`}`)
    throw failure
  }

  /** Claims sent but not yet deep enough: confirmed when they are, sent again when the chain lost them. */
  async function confirmClaims(): Promise<void> {
    if (policy.confirmations <= 1) return
    const sent = store.claims.list({ state: 'sent' })
    if (sent.length === 0) return
    const head = Number(await payment.client.publicClient.getBlockNumber({ cacheTime: 0 }))
    for (const record of sent) {
      const receipt = record.txHash === null ? undefined : await payment.client.publicClient.getTransactionReceipt({ hash: record.txHash as Hex }).catch(() => undefined)
      if (receipt === undefined) {
        // Dropped by a reorganisation: the voucher is unclaimed again and goes out once more (with the nonce the
        // dropped transaction had, which is free again).
        store.vouchers.unmarkClaimed(record.agreementId, record.txHash!)
        payment.client.forgetNonce()
        saveClaim(record.agreementId, { state: 'failed', lastError: `claim ${record.txHash} is no longer on chain (reorganised away)`, nextAttemptAtMs: 0 })
        log(`agreement ${record.agreementId}: claim ${record.txHash} vanished from the chain; sending it again`)
        continue
      }
      if (head - Number(receipt.blockNumber) + 1 >= policy.confirmations) saveClaim(record.agreementId, { state: 'confirmed', blockNumber: Number(receipt.blockNumber) })
    }
  }

  /** Moves the node's earnings to the payout address once no claim is still short of its confirmations. */
  async function sweep(): Promise<void> {
    const to = init.payoutAddress
    if (to === undefined || to.toLowerCase() === init.address.toLowerCase()) return
    if (store.claims.list({ state: 'sent' }).length > 0 || store.claims.list({ state: 'pending' }).length > 0) return
    const balanceWei = await tokenBalanceOf(payment, init.address)
    if (balanceWei === 0n) return
    const outcome = await transferTokens(payment, { toAddress: to, amountWei: balanceWei })
    log(`moved ${balanceWei} wei of earnings to the payout address ${to} (${outcome.hash})`)
  }

  async function tick(): Promise<void> {
    await confirmClaims().catch((error: unknown) => log(`confirming claims failed: ${toHearthError(error).shortMessage}`))
    await sweep().catch((error: unknown) => log(`moving earnings to the payout address failed: ${toHearthError(error).shortMessage}`))
    // Failed claims whose backoff has passed.
    for (const record of store.claims.list({ state: 'failed' })) {
      if (record.nextAttemptAtMs > now()) continue
      await claim(record.agreementId, { release: record.release }).catch(() => undefined)
    }
    const chainNow = await chainTimeSec(payment).then(Number).catch(() => undefined)
    for (const record of store.agreements.list()) {
      if (record.role !== 'provider' || !['approved', 'terminated', 'expired'].includes(record.state)) continue
      const agreement = record.document as Agreement | undefined
      if (agreement?.terms === undefined) continue
      const ledger = ledgerOf(record.id, agreement.terms.requestor as Address)
      if (record.state === 'approved') {
        try {
          ensureNotOverdue(ledger)
        } catch {
          // Ended: reported above.
        }
      }
      // Whatever is unclaimed is claimed before the escrow expires: after expiry plus the grace the requestor may refund.
      const unclaimed = store.vouchers.latest(record.id)
      if (unclaimed !== undefined && unclaimed.claimedTx === null && chainNow !== undefined && store.claims.get(record.id)?.state !== 'failed') {
        const expiresAtSec = ledger.escrow?.state?.expiresAtSec ?? BigInt(agreement.terms.expiresAtSec + escrowExpiryMarginSec)
        if (Number(expiresAtSec) - chainNow <= policy.beforeExpirySec) await claim(record.id, { release: false }).catch(() => undefined)
      }
      // Owed and not vouchered: the requestor may have signed vouchers while this provider was away.
      if (init.askOwed !== undefined && owedMayArrive(ledger) && ledger.running === 0) await collectOwed(ledger)
    }
  }

  /** Asks the requestor of every agreement with delivered work not covered by a voucher for what it signed. */
  async function collectAllOwed(): Promise<void> {
    const asks: Promise<void>[] = []
    for (const record of store.agreements.list()) {
      if (record.role !== 'provider' || !['approved', 'terminated', 'expired'].includes(record.state)) continue
      const requestor = (record.document as Agreement | undefined)?.terms?.requestor as Address | undefined
      if (requestor === undefined) continue
      const ledger = ledgerOf(record.id, requestor)
      if (owedMayArrive(ledger)) asks.push(collectOwed(ledger))
    }
    await Promise.allSettled(asks)
  }

  /** Delivered work no voucher covers, under an escrow that is not settled: a voucher for it may still come. */
  function owedMayArrive(ledger: Ledger): boolean {
    return exposureOf(ledger).unpaidWei > 0n && store.claims.get(ledger.agreementId)?.release !== true && ledger.escrow?.state?.closed !== true
  }

  async function collectOwed(ledger: Ledger): Promise<void> {
    try {
      const voucher = await init.askOwed!(ledger.agreementId, ledger.requestor)
      if (voucher !== null && BigInt(voucher.cumulativeWei) > (store.vouchers.latest(ledger.agreementId)?.cumulativeWei ?? 0n)) await ledger.account.acceptVoucher(voucher)
    } catch {
      // The requestor is away; the next round asks again.
    }
  }

  async function claimOutstanding(options: { release?: boolean } = {}): Promise<{ agreementId: string; txHash: string; paidWei: bigint }[]> {
    const claimed: { agreementId: string; txHash: string; paidWei: bigint }[] = []
    for (const voucher of store.vouchers.unclaimed()) {
      try {
        const outcome = await claim(voucher.agreementId, { release: options.release === true })
        if (outcome.claimTx !== null) claimed.push({ agreementId: voucher.agreementId, txHash: outcome.claimTx, paidWei: outcome.paidWei })
      } catch (error) {
        // One agreement's failed claim must not stop the others; it is recorded and retried.
        if (!isHearthError(error)) throw error
      }
    }
    return claimed
  }

  return {
    account(agreementId, requestor) {
      return ledgerOf(agreementId, requestor).account
    },

    async start() {
      const graceSec = await escrowClaimGraceSec(payment)
      if (graceSec < BigInt(limits.minClaimGraceSec)) {
        throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the escrow contract ${payment.escrowAddress} gives providers ${graceSec} s after expiry to claim, less than this provider's minimum of ${limits.minClaimGraceSec} s`, {
          hint: 'use a deployment whose escrow has a longer claim grace (hearth deploy --claim-grace-sec), or lower minClaimGraceSec knowingly',
          details: { claimGraceSec: graceSec.toString(), minClaimGraceSec: limits.minClaimGraceSec },
        })
      }
      // Claims left pending or sent by an earlier run: the chain says whether they landed.
      for (const record of store.claims.list()) {
        if (record.state === 'pending') saveClaim(record.agreementId, { state: 'failed', lastError: 'the provider stopped while the claim was being sent', nextAttemptAtMs: 0 })
      }
      // Money owed from before a restart, first thing, in the background: vouchers the requestors signed while this
      // provider was away are collected, then everything held is claimed.
      void (async () => {
        if (init.askOwed !== undefined) await collectAllOwed()
        await claimOutstanding()
      })().catch(() => undefined)
      timer = setInterval(() => {
        ticking ??= tick()
          .catch((error: unknown) => log(`payment round failed: ${toHearthError(error).shortMessage}`))
          .finally(() => {
            ticking = undefined
          })
      }, policy.checkEveryMs)
      timer.unref()
    },

    async stop() {
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
      await ticking
      await Promise.allSettled(claiming.values())
    },

    async settle(agreementId, requestor, finalVoucher) {
      const ledger = ledgerOf(agreementId, requestor)
      if (finalVoucher !== null && finalVoucher !== undefined) {
        const voucher = voucherFromJson(finalVoucher)
        if (voucher.agreementId.toLowerCase() !== agreementId.toLowerCase()) throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'the final voucher is for another agreement')
        await ledger.account.acceptVoucher(finalVoucher)
      }
      // The invoice: all the work delivered, what it costs, and what the requestor's vouchers actually cover.
      const invoice = ledger.account.invoice()
      store.paymentDocuments.save({ agreementId, kind: 'invoice', seq: 1, document: invoice, createdAtMs: invoice.issuedAtMs })
      const outcome = await claim(agreementId, { release: true })
      store.agreements.setState(agreementId, 'terminated')
      ledger.unpaidNotes = []
      ledger.escrow = undefined
      return { invoice, ...outcome }
    },

    claimOutstanding,
    tick,
    sweep,

    running: () => [...ledgers.values()].reduce((sum, ledger) => sum + ledger.running, 0),

    money() {
      const rows: AgreementMoney[] = []
      for (const record of store.agreements.list()) {
        if (record.role !== 'provider' || !['approved', 'terminated', 'expired'].includes(record.state)) continue
        const agreement = record.document as Agreement | undefined
        if (agreement?.terms === undefined) continue
        const ledger = ledgerOf(record.id, agreement.terms.requestor as Address)
        const claimRecord = store.claims.get(record.id)
        const claimedWei = confirmedClaimWei(store, record.id)
        rows.push({
          agreementId: record.id,
          requestor: record.requestor,
          state: record.state,
          delivered: ledger.delivered,
          billedWei: costWei(agreement.terms.pricing, ledger.delivered),
          vouchedWei: store.vouchers.latest(record.id)?.cumulativeWei ?? 0n,
          claimedWei,
          exposure: exposureOf(ledger),
          unpaidNotes: ledger.unpaidNotes.length,
          claim: claimRecord,
        })
      }
      return rows
    },
  }

}

/**
 * What has been claimed under an agreement with the configured confirmations, by the store: the newest voucher marked
 * claimed, except those the claim in flight (being sent, or short of its confirmations) redeems.
 */
export function confirmedClaimWei(store: Store, agreementId: string): bigint {
  const claim = store.claims.get(agreementId)
  const inFlight = claim !== undefined && (claim.state === 'pending' || claim.state === 'sent')
  let confirmed = 0n
  for (const voucher of store.vouchers.listFor(agreementId)) {
    if (voucher.claimedTx === null) continue
    if (inFlight && (voucher.cumulativeWei >= claim.cumulativeWei || voucher.claimedTx === claim.txHash)) continue
    if (voucher.cumulativeWei > confirmed) confirmed = voucher.cumulativeWei
  }
  return confirmed
}

/**
 * Delivered work that `coveredWei` of vouchers does not pay for: in wei, and in tasks in proportion to the uncovered
 * share of the bill (exact for per-task prices, and never 0 while any delivered work is unpaid).
 */
export function uncoveredWork(pricing: Pricing, delivered: Usage, coveredWei: bigint, runningTasks = 0): { unpaidWei: bigint; unpaidTasks: number; runningTasks: number } {
  const billedWei = costWei(pricing, delivered)
  const unpaidWei = billedWei > coveredWei ? billedWei - coveredWei : 0n
  const unpaidDelivered = billedWei === 0n ? 0 : Number((BigInt(delivered.tasks) * unpaidWei + billedWei - 1n) / billedWei)
  return { unpaidWei, unpaidTasks: unpaidDelivered + runningTasks, runningTasks }
}
