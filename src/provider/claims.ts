/**
 * Claims on chain: the newest voucher of an agreement claimed (one claim at a time per agreement), failures recorded,
 * logged and retried with backoff, claims that already landed reconciled from the chain, claims counted only after
 * the configured confirmations (and sent again when a reorganisation drops them), and earnings moved to the payout
 * address once no claim is in flight.
 */
import type { Address, Hex } from 'viem'
import { isHearthError, toHearthError } from '../errors.ts'
import type { Agreement } from '../market/agreement.ts'
import { claimVoucher, getEscrow, releaseEscrow, tokenBalanceOf, transferTokens, type EscrowContext } from '../payment/escrow.ts'
import { voucherFromJson, type Voucher } from '../payment/voucher.ts'
import type { ClaimRecord } from '../store/repositories.ts'
import type { Store } from '../store/store.ts'
import type { ClaimPolicy } from './account-types.ts'

export interface ClaimsInit {
  /** This provider's address, whose earnings a sweep moves. */
  address: Address
  store: Store
  payment: EscrowContext
  policy: ClaimPolicy
  log(message: string): void
  now(): number
  /** Where earnings go once claims count as paid (none: they stay). */
  payoutAddress: Address | undefined
}

export interface ClaimResult {
  claimTx: Hex | null
  paidWei: bigint
  refundedWei: bigint
}

export interface Claims {
  /**
   * Claims the newest voucher (with `release`, also gives the rest of the deposit back and closes the escrow, by
   * `release` alone when there is nothing to claim). A failure is recorded, logged, retried with backoff, and thrown.
   */
  claim(agreementId: string, options: { release: boolean }): Promise<ClaimResult>
  /** Claims the newest unclaimed voucher of every agreement; one agreement's failure does not stop the others. */
  claimOutstanding(options?: { release?: boolean }): Promise<{ agreementId: string; txHash: string; paidWei: bigint }[]>
  /** Claims sent but not yet deep enough: confirmed when they are, sent again when the chain lost them. */
  confirmClaims(): Promise<void>
  /** Moves the node's earnings to the payout address once no claim is still short of its confirmations. */
  sweep(): Promise<void>
  /** Claims an earlier run left being sent are marked failed, to be tried again (the chain says whether they landed). */
  recoverInterrupted(): void
  /** Settles once the claims in flight now have. */
  settled(): Promise<unknown>
}

function saveClaim(init: ClaimsInit, agreementId: string, update: Partial<ClaimRecord> & Pick<ClaimRecord, 'state'>): void {
  const { store, now } = init
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

async function claimNow(init: ClaimsInit, agreementId: string, release: boolean): Promise<ClaimResult> {
  const { store, payment, policy } = init
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
  saveClaim(init, agreementId, { state: 'pending', cumulativeWei: voucher.cumulativeWei, release, attempts, txHash: null, blockNumber: null })
  try {
    const outcome = await claimVoucher(payment, { voucher, release })
    store.vouchers.markClaimed(agreementId, voucher.cumulativeWei, outcome.hash)
    const receipt = await payment.client.publicClient.getTransactionReceipt({ hash: outcome.hash }).catch(() => undefined)
    const blockNumber = receipt === undefined ? null : Number(receipt.blockNumber)
    saveClaim(init, agreementId, { state: policy.confirmations <= 1 ? 'confirmed' : 'sent', txHash: outcome.hash, blockNumber, lastError: null, nextAttemptAtMs: 0 })
    // A claim that released the rest closed the escrow: the agreement is over, however the claim came about.
    if (release) store.agreements.setState(agreementId, 'terminated')
    return { claimTx: outcome.hash, paidWei: outcome.paidWei, refundedWei: outcome.refundedWei }
  } catch (error) {
    return await claimFailed(init, agreementId, requestor, voucher, release, attempts, error)
  }
}

async function claimFailed(init: ClaimsInit, agreementId: string, requestor: Address, voucher: Voucher, release: boolean, attempts: number, error: unknown): Promise<ClaimResult> {
  const { store, payment, policy, log, now } = init
  const failure = toHearthError(error)
  // Whatever the error, the chain says whether this voucher (or a later one) was paid after all.
  const escrow = await getEscrow(payment, { requestorAddress: requestor, agreementId: agreementId as Hex }).catch(() => undefined)
  if (escrow !== undefined && escrow.claimedWei >= voucher.cumulativeWei) {
    store.vouchers.markClaimed(agreementId, voucher.cumulativeWei, 'reconciled-from-chain')
    saveClaim(init, agreementId, { state: 'confirmed', lastError: null, nextAttemptAtMs: 0 })
    log(`agreement ${agreementId}: the claim of ${voucher.cumulativeWei} wei had already landed on chain; recorded now`)
    if (release && !escrow.closed) {
      const outcome = await releaseEscrow(payment, { requestorAddress: requestor, agreementId: agreementId as Hex }).catch(() => undefined)
      return { claimTx: outcome?.hash ?? null, paidWei: 0n, refundedWei: outcome?.refundedWei ?? 0n }
    }
    return { claimTx: null, paidWei: 0n, refundedWei: 0n }
  }
  const final = escrow?.closed === true
  const retryMs = Math.min(policy.maxRetryMs, policy.firstRetryMs * 2 ** Math.min(attempts - 1, 20))
  saveClaim(init, agreementId, {
    state: 'failed',
    lastError: final ? `the escrow was closed before this claim (${failure.shortMessage})` : failure.shortMessage,
    nextAttemptAtMs: final ? Number.MAX_SAFE_INTEGER : now() + retryMs,
  })
  log(`agreement ${agreementId}: claim of ${voucher.cumulativeWei} wei failed (attempt ${attempts}): ${failure.shortMessage}${final ? '; the escrow is closed, nothing more can be claimed' : `; retrying in ${Math.round(retryMs / 1000)} s`}`)
  throw failure
}

/** Claims sent but not yet deep enough: confirmed when they are, sent again when the chain lost them. */
async function confirmClaims(init: ClaimsInit): Promise<void> {
  const { store, payment, policy, log } = init
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
      saveClaim(init, record.agreementId, { state: 'failed', lastError: `claim ${record.txHash} is no longer on chain (reorganised away)`, nextAttemptAtMs: 0 })
      log(`agreement ${record.agreementId}: claim ${record.txHash} vanished from the chain; sending it again`)
      continue
    }
    if (head - Number(receipt.blockNumber) + 1 >= policy.confirmations) saveClaim(init, record.agreementId, { state: 'confirmed', blockNumber: Number(receipt.blockNumber) })
  }
}

/** Moves the node's earnings to the payout address once no claim is still short of its confirmations. */
async function sweep(init: ClaimsInit): Promise<void> {
  const { store, payment, log } = init
  const to = init.payoutAddress
  if (to === undefined || to.toLowerCase() === init.address.toLowerCase()) return
  if (store.claims.list({ state: 'sent' }).length > 0 || store.claims.list({ state: 'pending' }).length > 0) return
  const balanceWei = await tokenBalanceOf(payment, init.address)
  if (balanceWei === 0n) return
  const outcome = await transferTokens(payment, { toAddress: to, amountWei: balanceWei })
  log(`moved ${balanceWei} wei of earnings to the payout address ${to} (${outcome.hash})`)
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

export function createClaims(init: ClaimsInit): Claims {
  const { store } = init
  /** One claim at a time per agreement: two in flight would claim the same voucher and the second would revert. */
  const claiming = new Map<string, Promise<ClaimResult>>()

  /**
   * Claims the newest voucher (with `release`, also gives the rest of the deposit back and closes the escrow, by
   * `release` alone when there is nothing to claim). A failure is recorded, logged and retried with backoff; a claim
   * that already landed (an earlier run's, unrecorded) is reconciled from the chain instead of failing forever.
   */
  function claim(agreementId: string, options: { release: boolean }): Promise<ClaimResult> {
    const previous = claiming.get(agreementId) ?? Promise.resolve(undefined)
    const next = previous.catch(() => undefined).then(() => claimNow(init, agreementId, options.release))
    claiming.set(agreementId, next)
    void next.finally(() => {
      if (claiming.get(agreementId) === next) claiming.delete(agreementId)
    }).catch(() => undefined)
    return next
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
    claim,
    claimOutstanding,
    confirmClaims: () => confirmClaims(init),
    sweep: () => sweep(init),
    recoverInterrupted() {
      // Claims left pending or sent by an earlier run: the chain says whether they landed.
      for (const record of init.store.claims.list()) {
        if (record.state === 'pending') saveClaim(init, record.agreementId, { state: 'failed', lastError: 'the provider stopped while the claim was being sent', nextAttemptAtMs: 0 })
      }
    },
    settled: () => Promise.allSettled(claiming.values()),
  }
}
