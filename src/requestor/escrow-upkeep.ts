/**
 * The upkeep of a requestor's escrows between and after jobs (requestor-account.ts runs it every few seconds): the
 * chain's word on an escrow kept in the store, the unclaimed rest of expired escrows taken back, vouchers the
 * providers have not acknowledged delivered again while their escrows last, and escrows kept ahead of the work
 * topped up as it goes.
 */
import type { Hex } from 'viem'
import { toHearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { Agreement } from '../market/agreement.ts'
import { topUpDueWei } from '../market/escrow-ahead.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import { chainTimeSec, getEscrow, refundEscrow, topUpEscrow, type EscrowContext } from '../payment/escrow.ts'
import { settleProtocol, voucherProtocol } from '../payment/payment-protocols.ts'
import type { VoucherJson } from '../payment/voucher.ts'
import type { Store } from '../store/store.ts'

/** What the requestor's accounts work with. */
export interface AccountsContext {
  identity: NodeIdentity
  host: Host
  store: Store
  payment: EscrowContext
  /** Where undelivered vouchers and refunds are reported. */
  log(message: string): void
}

/** The chain's word on an escrow, kept in the store: claimed, and refunded when closed. */
export async function refreshEscrow(ctx: AccountsContext, agreementId: string): Promise<{ claimedWei: bigint; refundedWei: bigint; closed: boolean } | undefined> {
  const { store, payment, identity } = ctx
  const escrow = await getEscrow(payment, { requestorAddress: identity.address, agreementId: agreementId as Hex })
  const kept = store.escrows.get(agreementId)
  if (escrow === undefined || kept === undefined) return undefined
  // Closed: whatever was not claimed went back to this requestor (a release or a refund), in the same transaction.
  const refundedWei = escrow.closed ? escrow.depositedWei - escrow.claimedWei : 0n
  store.escrows.save({ ...kept, claimedWei: escrow.claimedWei, refundedWei, closed: escrow.closed })
  return { claimedWei: escrow.claimedWei, refundedWei, closed: escrow.closed }
}

/** Takes back the unclaimed rest of every escrow past its expiry and claim grace (chain time). */
export async function refundExpired(ctx: AccountsContext): Promise<{ agreementId: string; txHash: string; refundedWei: bigint }[]> {
  const { store, payment, identity, log } = ctx
  const open = store.escrows.list().filter((record) => !record.closed)
  if (open.length === 0) return []
  const nowSec = await chainTimeSec(payment)
  const refunded: { agreementId: string; txHash: string; refundedWei: bigint }[] = []
  for (const record of open) {
    const escrow = await getEscrow(payment, { requestorAddress: identity.address, agreementId: record.agreementId as Hex })
    if (escrow === undefined) continue
    if (escrow.closed) {
      // Settled on chain after all (the provider claimed with release later): bring the record up to date.
      store.escrows.save({ ...record, claimedWei: escrow.claimedWei, refundedWei: escrow.depositedWei - escrow.claimedWei, closed: true })
      continue
    }
    // The provider may claim until expiry plus the contract's grace: only then is the rest this requestor's.
    if (escrow.refundableAtSec > nowSec) continue
    const outcome = await refundEscrow(payment, record.agreementId as Hex)
    store.escrows.save({ ...record, claimedWei: escrow.claimedWei, refundedWei: outcome.refundedWei, closed: true })
    store.agreements.setState(record.agreementId, 'expired')
    log(`agreement ${record.agreementId}: refunded ${outcome.refundedWei} wei after expiry (${outcome.hash})`)
    refunded.push({ agreementId: record.agreementId, txHash: outcome.hash, refundedWei: outcome.refundedWei })
  }
  return refunded
}

/**
 * One round of delivering vouchers the providers have not acknowledged. `accountOf` is the requestor's account of an
 * agreement, which says where its provider is (it throws for an agreement this requestor does not hold).
 */
export async function deliverOwed(ctx: AccountsContext, accountOf: (agreementId: string) => { target(): PeerTarget }): Promise<void> {
  const { store, payment, identity, host, log } = ctx
  const open = store.escrows.list().filter((record) => !record.closed)
  if (open.length === 0) return
  const nowSec = await chainTimeSec(payment).catch(() => undefined)
  for (const record of open) {
    const latest = store.vouchers.latest(record.agreementId)
    if (latest === undefined || (store.vouchers.latestDelivered(record.agreementId)?.cumulativeWei ?? -1n) >= latest.cumulativeWei) continue
    const agreement = store.agreements.get(record.agreementId)
    const terms = (agreement?.document as Agreement | undefined)?.terms
    if (agreement === undefined || terms === undefined) continue
    let account: { target(): PeerTarget }
    try {
      account = accountOf(record.agreementId)
    } catch {
      continue
    }
    // After the escrow expires the provider can still claim during the grace, but can no longer be told anything new.
    const escrow = await getEscrow(payment, { requestorAddress: identity.address, agreementId: record.agreementId as Hex }).catch(() => undefined)
    if (escrow === undefined || escrow.closed || (nowSec !== undefined && escrow.expiresAtSec <= nowSec)) continue
    try {
      if (agreement.state === 'terminated') {
        // The job is over: the settle request both delivers the final voucher and lets the provider close the escrow.
        await host.request(account.target(), settleProtocol, { agreementId: record.agreementId, voucher: latest.document as VoucherJson })
        store.vouchers.markDelivered(record.agreementId, latest.cumulativeWei)
        await refreshEscrow(ctx, record.agreementId)
      } else {
        const ack = await host.request(account.target(), voucherProtocol, latest.document as VoucherJson)
        store.vouchers.markDelivered(record.agreementId, BigInt(ack.acceptedWei))
      }
    } catch (error) {
      log(`agreement ${record.agreementId}: voucher for ${latest.cumulativeWei} wei not delivered yet (${toHearthError(error).shortMessage})`)
    }
  }
}

/**
 * Tops up the escrows of agreements that keep their escrow ahead of the work (escrowAheadWei, see
 * market/escrow-ahead.ts) once the work accepted has eaten into it; one transaction each, in turn. Only agreements
 * still working: an ended one needs no more. Resolves to the top-ups made.
 */
export async function topUpDue(ctx: AccountsContext, accountOf: (agreementId: string) => { owedWei(): bigint }): Promise<{ agreementId: string; amountWei: bigint }[]> {
  const { store, payment, log } = ctx
  const made: { agreementId: string; amountWei: bigint }[] = []
  for (const record of store.escrows.list()) {
    if (record.closed) continue
    const agreement = store.agreements.get(record.agreementId)
    const terms = (agreement?.document as Agreement | undefined)?.terms
    if (agreement?.state !== 'approved' || terms?.escrowAheadWei === undefined) continue
    let owedWei: bigint
    try {
      owedWei = accountOf(record.agreementId).owedWei()
    } catch {
      continue
    }
    const amountWei = topUpDueWei(terms, record.depositedWei, owedWei)
    if (amountWei === 0n) continue
    try {
      const outcome = await topUpEscrow(payment, { agreementId: record.agreementId as Hex, amountWei })
      // Read again: the record may have changed while the transaction was on its way (a claim, a refund).
      const now = store.escrows.get(record.agreementId) ?? record
      store.escrows.save({ ...now, depositedWei: now.depositedWei + amountWei })
      made.push({ agreementId: record.agreementId, amountWei })
      log(`agreement ${record.agreementId}: escrow topped up by ${amountWei} wei to ${now.depositedWei + amountWei} (${outcome.hash})`)
    } catch (error) {
      log(`agreement ${record.agreementId}: topping up the escrow by ${amountWei} wei failed (${toHearthError(error).shortMessage}); tried again shortly`)
    }
  }
  return made
}
