/**
 * The requestor's money, one account per agreement, in one place: what it deposited, the work it accepted (task
 * results that passed verification, ExeScript activities as far as the provider's signed answers and this requestor's
 * own observation justify), what that work costs (owed), the vouchers it signed and which the provider acknowledged,
 * and what the chain says was claimed and refunded. Dispatch, activities, settlement, resuming and refunds all ask the
 * account; none keeps a copy of these figures.
 *
 * Vouchers for accepted work must reach the provider: one that was not acknowledged is delivered again, at the end
 * of a job (the settle request is retried while the provider is away), every few seconds while this requestor runs
 * and the escrow has not expired, and again when it next starts; a provider that was away may also ask for what it is
 * owed (/hearth/payment/owed/1). Debit notes that no answer carries (activities still running, services billed by
 * time, a provider at its cap of unpaid work) arrive on /hearth/payment/debit-note/1 and are paid like any other.
 *
 * One agreement's account is in agreement-account.ts, what work is worth in justified-usage.ts, and the upkeep of
 * the escrows (refunds after expiry, vouchers delivered again) in escrow-upkeep.ts.
 */
import type { Address, Hex } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { escrowExpiryMarginSec, type Agreement } from '../market/agreement.ts'
import { openingDepositWei } from '../market/escrow-ahead.ts'
import type { Offer } from '../market/offer.ts'
import type { Usage } from '../market/pricing.ts'
import type { Host } from '../net/host.ts'
import { approveEscrow, openEscrows, type EscrowContext } from '../payment/escrow.ts'
import { debitNoteProtocol, owedProtocol } from '../payment/payment-protocols.ts'
import type { VoucherJson } from '../payment/voucher.ts'
import type { Store } from '../store/store.ts'
import { createAccount, type AgreementAccountDeps, type RequestorAccount } from './agreement-account.ts'
import { deliverOwed, refundExpired, topUpDue } from './escrow-upkeep.ts'

export type { RequestorAccount, Settlement } from './agreement-account.ts'
export { billedUsage, plausibleUsage, voucherAmountFor } from './justified-usage.ts'

export interface RequestorAccountsInit {
  identity: NodeIdentity
  host: Host
  store: Store
  payment: EscrowContext
  /** Where undelivered vouchers and refunds are reported. */
  log?(message: string): void
  /** How often undelivered vouchers are sent again and expired escrows refunded (default 30 s). */
  deliverEveryMs?: number
  /** Tries of a settle request to a provider that is away, and the first pause between them (doubling). */
  settleTries?: number
  settleRetryMs?: number
  /** How often escrows kept ahead of the work are looked at for a top-up (default 5 s; the store alone says when one is due). */
  topUpEveryMs?: number
}

export interface AgreementMoneyRecord {
  agreementId: string
  provider: string
  state: string
  depositedWei: bigint
  accepted: Usage
  owedWei: bigint
  signedWei: bigint
  deliveredWei: bigint
  claimedWei: bigint
  refundedWei: bigint
  closed: boolean
}

export interface RequestorAccounts {
  /**
   * Deposits for newly signed agreements, in one transaction: each escrow holds the agreed deposit and expires the
   * agreed margin after its agreement (escrowExpiryMarginSec), so the provider's last claims land before any refund.
   */
  open(agreements: readonly { agreement: Agreement; offer: Offer }[]): Promise<{ txHash: Hex; accounts: RequestorAccount[] }>
  /** The account of an agreement this requestor signed (from the store on first use); throws when there is none. */
  account(agreementId: string): RequestorAccount
  /** Serves the owed and debit-note protocols; refunds expired escrows and delivers undelivered vouchers, then every few seconds. */
  start(): Promise<void>
  stop(): Promise<void>
  /** Takes back the unclaimed rest of every escrow past its expiry and claim grace (chain time). */
  refundExpired(): Promise<{ agreementId: string; txHash: string; refundedWei: bigint }[]>
  /** One round of delivering vouchers the providers have not acknowledged. */
  deliverOwed(): Promise<void>
  /** Tops up the escrows kept ahead of the work where the work accepted has eaten into them (see market/escrow-ahead.ts). */
  topUpDue(): Promise<{ agreementId: string; amountWei: bigint }[]>
  money(): AgreementMoneyRecord[]
}

export function createRequestorAccounts(init: RequestorAccountsInit): RequestorAccounts {
  const { host, store, payment } = init
  const deps: AgreementAccountDeps = { ...init, log: init.log ?? (() => undefined) }
  const { log } = deps
  const accounts = new Map<string, RequestorAccount>()
  let timer: NodeJS.Timeout | undefined
  let topUpTimer: NodeJS.Timeout | undefined
  let round: Promise<void> | undefined
  let topping: Promise<unknown> | undefined
  let approved = false

  function accountOf(agreementId: string): RequestorAccount {
    const known = accounts.get(agreementId)
    if (known !== undefined) return known
    const record = store.agreements.get(agreementId)
    const agreement = record?.document as Agreement | undefined
    if (record === undefined || record.role !== 'requestor' || agreement?.terms === undefined) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `this requestor holds no agreement ${agreementId}`, { hint: 'negotiate the agreement with this store' })
    }
    const account = createAccount(deps, agreementId, agreement.terms)
    accounts.set(agreementId, account)
    return account
  }

  /** The agreement `id` names, if it is this requestor's and `remote` is its provider. */
  function ownedBy(agreementId: string, remote: Address): RequestorAccount {
    const account = accountOf(agreementId)
    if (account.provider.toLowerCase() !== remote.toLowerCase()) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${agreementId} is not yours`, { hint: 'ask only about your own agreements' })
    }
    return account
  }

  function runRound(): void {
    round ??= (async () => {
      await refundExpired(deps).catch((error: unknown) => log(`refunding expired escrows failed: ${toHearthError(error).shortMessage}`))
      await deliverOwed(deps, accountOf).catch((error: unknown) => log(`delivering vouchers failed: ${toHearthError(error).shortMessage}`))
    })().finally(() => {
      round = undefined
    })
  }

  /** Top-ups one round at a time: a second round while one is on its way would top the same escrow up twice. */
  function topUps(): Promise<{ agreementId: string; amountWei: bigint }[]> {
    const next = (topping ?? Promise.resolve()).then(() => topUpDue(deps, accountOf))
    topping = next.catch(() => undefined)
    return next
  }

  return {
    account: accountOf,
    refundExpired: () => refundExpired(deps),
    topUpDue: topUps,

    async open(agreements) {
      if (!approved) {
        await approveEscrow(payment)
        approved = true
      }
      return openAccounts(store, payment, agreements, accountOf)
    },
    deliverOwed: () => deliverOwed(deps, accountOf),

    async start() {
      await serve(host, store, ownedBy)
      runRound()
      timer = setInterval(runRound, init.deliverEveryMs ?? 30_000)
      timer.unref()
      topUpTimer = setInterval(() => void topUps().catch(() => undefined), init.topUpEveryMs ?? 5_000)
      topUpTimer.unref()
    },

    async stop() {
      if (timer !== undefined) clearInterval(timer)
      if (topUpTimer !== undefined) clearInterval(topUpTimer)
      timer = undefined
      topUpTimer = undefined
      await round
      await topping
      await host.unhandle(owedProtocol).catch(() => undefined)
      await host.unhandle(debitNoteProtocol).catch(() => undefined)
    },

    money: () => money(store, accountOf),
  }
}

/** Deposits for newly signed agreements, in one transaction, and their accounts. */
async function openAccounts(
  store: Store,
  payment: EscrowContext,
  agreements: readonly { agreement: Agreement; offer: Offer }[],
  accountOf: (agreementId: string) => RequestorAccount,
): Promise<{ txHash: Hex; accounts: RequestorAccount[] }> {
  // All deposits in one transaction: the chain cost of a job does not grow with its number of providers.
  const opened = await openEscrows(
    payment,
    agreements.map(({ agreement, offer }) => ({
      agreementId: agreement.id as Hex,
      providerAddress: offer.provider as Address,
      amountWei: openingDepositWei(agreement.terms),
      expiresAtSec: agreement.terms.expiresAtSec + escrowExpiryMarginSec,
    })),
  )
  const opening = agreements.map(({ agreement, offer }) => {
    store.escrows.save({ agreementId: agreement.id, depositedWei: openingDepositWei(agreement.terms), openTx: opened.hash, claimedWei: 0n, refundedWei: 0n, closed: false })
    rememberProvider(store, offer)
    return accountOf(agreement.id)
  })
  return { txHash: opened.hash, accounts: opening }
}

/** Where a provider can be reached again (debit notes, vouchers delivered later, a restart of either side). */
function rememberProvider(store: Store, offer: Offer): void {
  const withPeer = offer.multiaddrs.find((address) => address.includes('/p2p/'))
  const peerId = withPeer?.split('/p2p/').at(-1) ?? offer.peerId
  store.peers.remember({ address: offer.provider, peerId, multiaddrs: offer.multiaddrs.map((address) => address.split('/p2p/')[0]!), updatedAtMs: Date.now() })
}

/** Serves the owed and debit-note protocols to the providers of this requestor's agreements. */
async function serve(host: Host, store: Store, ownedBy: (agreementId: string, remote: Address) => RequestorAccount): Promise<void> {
  await host.handle(owedProtocol, ({ agreementId }, ctx) => {
    ownedBy(agreementId, ctx.remoteAddress)
    const latest = store.vouchers.latest(agreementId)
    return { voucher: (latest?.document ?? null) as VoucherJson | null }
  })
  await host.handle(debitNoteProtocol, async (note, ctx) => {
    const account = ownedBy(note.agreementId, ctx.remoteAddress)
    // Answered here, in the response: no second message for the voucher.
    const voucher = await account.answer(note, { send: false })
    if (voucher !== null) store.vouchers.markDelivered(account.agreementId, BigInt(voucher.cumulativeWei))
    return { voucher: voucher ?? ((store.vouchers.latest(account.agreementId)?.document ?? null) as VoucherJson | null) }
  })
}

/** Every escrow this requestor opened, with its account's figures. */
function money(store: Store, accountOf: (agreementId: string) => RequestorAccount): AgreementMoneyRecord[] {
  const rows: AgreementMoneyRecord[] = []
  for (const escrow of store.escrows.list()) {
    let account: RequestorAccount
    try {
      account = accountOf(escrow.agreementId)
    } catch {
      continue
    }
    rows.push({
      agreementId: escrow.agreementId,
      provider: account.provider,
      state: store.agreements.get(escrow.agreementId)?.state ?? 'unknown',
      depositedWei: escrow.depositedWei,
      accepted: account.accepted(),
      owedWei: account.owedWei(),
      signedWei: account.signedWei(),
      deliveredWei: account.deliveredWei(),
      claimedWei: escrow.claimedWei,
      refundedWei: escrow.refundedWei,
      closed: escrow.closed,
    })
  }
  return rows
}
