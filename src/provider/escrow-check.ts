/**
 * Whether an agreement's escrow backs work: open, this requestor's, naming this provider, holding the agreed deposit
 * (or, for an escrow topped up as work goes, enough ahead of the work delivered: escrow-ahead.ts) and outliving the agreement by the agreed margin, with work stopping a while before it expires (by chain time). The
 * escrow is read again from the chain when the last read is older than a few seconds, so a closed escrow is noticed.
 */
import type { Address, Hex } from 'viem'
import { HearthError } from '../errors.ts'
import { escrowExpiryMarginSec } from '../market/agreement.ts'
import { backingNeededWei } from '../market/escrow-ahead.ts'
import { chainTimeSec, getEscrow, type EscrowContext, type EscrowState } from '../payment/escrow.ts'
import type { AccountLimits } from './account-types.ts'
import type { Ledger } from './ledger.ts'

export interface EscrowCheckInit {
  /** This provider's address: the escrow must name it. */
  address: Address
  payment: EscrowContext
  limits: Pick<AccountLimits, 'escrowMaxAgeMs' | 'stopBeforeEscrowExpirySec'>
  now(): number
}

export interface EscrowCheck {
  /** Throws a HearthError saying why the escrow does not back work (or that the agreement has ended). */
  ensureBacked(ledger: Ledger): Promise<void>
  /** Whether the escrow is open and names this provider; false when it cannot be read. */
  backed(ledger: Ledger): Promise<boolean>
}

export function createEscrowCheck(init: EscrowCheckInit): EscrowCheck {
  const { payment, limits, now } = init

  /** Reads of the chain in flight, by agreement: the tasks of a batch that find the escrow stale together share one. */
  const reading = new Map<string, Promise<void>>()

  async function readEscrow(ledger: Ledger): Promise<void> {
    const [state, chainSec] = await Promise.all([
      getEscrow(payment, { requestorAddress: ledger.requestor, agreementId: ledger.agreementId as Hex }),
      chainTimeSec(payment),
    ])
    ledger.escrow = { state, chainSec: Number(chainSec), readAtMs: now() }
  }

  /** The agreement's escrow (undefined when none was opened) and the chain's time now, read again when stale. */
  async function escrowOf(ledger: Ledger): Promise<{ state: EscrowState | undefined; chainNowSec: number }> {
    const cached = ledger.escrow
    if (cached === undefined || now() - cached.readAtMs > limits.escrowMaxAgeMs || cached.state === undefined || cached.state.closed) {
      let read = reading.get(ledger.agreementId)
      if (read === undefined) {
        read = readEscrow(ledger).finally(() => reading.delete(ledger.agreementId))
        reading.set(ledger.agreementId, read)
      }
      await read
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
    // The agreed deposit, or for an escrow topped up as work goes, the work delivered and half a step ahead of it.
    const neededWei = backingNeededWei(terms, ledger.delivered)
    if (escrow!.depositedWei < neededWei) {
      if (terms.escrowAheadWei === undefined) refuse(`its escrow holds ${escrow!.depositedWei} wei of the agreed ${terms.depositWei}`, 'top the escrow up to the agreed deposit')
      refuse(`its escrow holds ${escrow!.depositedWei} wei and was not topped up: the work delivered and half the agreed ${terms.escrowAheadWei} wei ahead of it need ${neededWei}`, 'top the escrow up (escrow.topUp) as the agreement\'s escrowAheadWei asks')
    }
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

  async function backed(ledger: Ledger): Promise<boolean> {
    const escrow = await escrowOf(ledger).catch(() => undefined)
    return escrow?.state !== undefined && !escrow.state.closed && escrow.state.providerAddress.toLowerCase() === init.address.toLowerCase()
  }

  return { ensureBacked, backed }
}
