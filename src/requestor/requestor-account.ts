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
 */
import type { Address, Hex } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { escrowExpiryMarginSec, type Agreement, type AgreementTerms } from '../market/agreement.ts'
import type { Offer } from '../market/offer.ts'
import type { DebitNote, Invoice } from '../market/billing.ts'
import { addUsage, costWei, noUsage, type Usage } from '../market/pricing.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import type { ActivityUsage } from '../exec/exescript.ts'
import { approveEscrow, chainTimeSec, getEscrow, openEscrows, refundEscrow, type EscrowContext } from '../payment/escrow.ts'
import { debitNoteProtocol, owedProtocol, settleProtocol, voucherProtocol } from '../payment/payment-protocols.ts'
import { signVoucher, voucherToJson, type VoucherJson } from '../payment/voucher.ts'
import type { Store } from '../store/store.ts'

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
}

/** CPU an activity's runs may use beyond its life, per batch: one cgroup quota period (native and docker runs). */
const cpuSlackPerBatchMs = 100

/** An activity's usage as the provider bills it: one task, its CPU and its life in ms. */
export function billedUsage(usage: ActivityUsage): Usage {
  return { tasks: 1, cpuMs: Math.round(usage.cpuSec * 1000), durationMs: Math.round(usage.durationSec * 1000) }
}

/**
 * Reported usage held to what this requestor observed: `lifeMs` from sending the create request to receiving the
 * report, `batches` sent so far. The provider's clock counts whole milliseconds, hence one more.
 */
export function plausibleUsage(reported: ActivityUsage, observed: { lifeMs: number; batches: number }): ActivityUsage {
  const durationSec = Math.min(reported.durationSec, (Math.ceil(observed.lifeMs) + 1) / 1000)
  const cpuSec = Math.min(reported.cpuSec, durationSec + (observed.batches * cpuSlackPerBatchMs) / 1000)
  return { durationSec, cpuSec }
}

/**
 * The cumulative voucher a debit note earns: what it asks, capped by what is justified and by the deposit;
 * undefined when that is no more than the vouchers already signed.
 */
export function voucherAmountFor(note: Pick<DebitNote, 'amountDueWei'>, bill: { justifiedWei: bigint; voucheredWei: bigint; depositWei: bigint }): bigint | undefined {
  let amount = BigInt(note.amountDueWei)
  if (amount > bill.justifiedWei) amount = bill.justifiedWei
  if (amount > bill.depositWei) amount = bill.depositWei
  return amount > bill.voucheredWei ? amount : undefined
}

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
  money(): AgreementMoneyRecord[]
}

interface Tracked {
  observe(): { lifeMs: number; batches: number }
  terminate(): Promise<unknown>
}

export function createRequestorAccounts(init: RequestorAccountsInit): RequestorAccounts {
  const { identity, host, store, payment } = init
  const log = init.log ?? (() => undefined)
  const accounts = new Map<string, RequestorAccount>()
  let timer: NodeJS.Timeout | undefined
  let round: Promise<void> | undefined

  function accountOf(agreementId: string): RequestorAccount {
    const known = accounts.get(agreementId)
    if (known !== undefined) return known
    const record = store.agreements.get(agreementId)
    const agreement = record?.document as Agreement | undefined
    if (record === undefined || record.role !== 'requestor' || agreement?.terms === undefined) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `this requestor holds no agreement ${agreementId}`, { hint: 'negotiate the agreement with this store' })
    }
    const account = createAccount(agreementId, agreement.terms)
    accounts.set(agreementId, account)
    return account
  }

  function createAccount(agreementId: string, terms: AgreementTerms): RequestorAccount {
    const provider = terms.provider as Address
    const depositWei = BigInt(terms.depositWei)
    let taskUsage = (store.paymentDocuments.list({ agreementId, kind: 'usage' })[0]?.document as Usage | undefined) ?? noUsage
    const activityUsage = new Map<string, ActivityUsage>()
    for (const activity of store.activities.list('requestor', { agreementId })) {
      if (activity.usage !== null) activityUsage.set(activity.id, activity.usage)
    }
    const running = new Map<string, Tracked>()
    /** Voucher work in order: vouchers are cumulative, so they are signed and sent one at a time. */
    let queue: Promise<void> = Promise.resolve()
    let lastNoteWei = store.paymentDocuments.list({ agreementId, kind: 'debit-note' }).reduce((max, record) => {
      const due = BigInt((record.document as DebitNote).amountDueWei)
      return due > max ? due : max
    }, -1n)

    const accepted = (): Usage => {
      let total = taskUsage
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
    const owedWei = (): bigint => {
      const cost = costWei(terms.pricing, accepted())
      return cost < depositWei ? cost : depositWei
    }
    const signedWei = (): bigint => store.vouchers.latest(agreementId)?.cumulativeWei ?? 0n
    const target = (): PeerTarget => {
      const known = store.peers.get(provider)
      if (known === undefined) throw new HearthError('HEARTH_ERR_NET_DIAL', `this requestor does not know where provider ${provider} is`)
      if (host.peers().some((peer) => peer.toString() === known.peerId)) return known.peerId
      const address = known.multiaddrs.find((a) => !a.includes('/p2p-circuit')) ?? known.multiaddrs[0]
      if (address === undefined) return known.peerId
      return address.includes('/p2p/') ? address : `${address}/p2p/${known.peerId}`
    }

    async function sign(cumulativeWei: bigint): Promise<VoucherJson> {
      const voucher = await signVoucher({ privateKey: identity.privateKey, chainId: payment.client.chainId, escrowAddress: payment.escrowAddress, agreementId: agreementId as Hex, cumulativeWei })
      store.vouchers.save({ agreementId, cumulativeWei, document: voucherToJson(voucher), receivedAtMs: Date.now() })
      return voucherToJson(voucher)
    }

    function send(voucher: VoucherJson, onDelivered?: (acceptedWei: bigint) => void): void {
      queue = queue.then(async () => {
        try {
          const ack = await host.request(target(), voucherProtocol, voucher)
          const acceptedWei = BigInt(ack.acceptedWei)
          store.vouchers.markDelivered(agreementId, acceptedWei < BigInt(voucher.cumulativeWei) ? acceptedWei : BigInt(voucher.cumulativeWei))
          onDelivered?.(acceptedWei)
        } catch {
          // A lost voucher costs the provider nothing: the next (cumulative) one, or a later delivery, covers it.
        }
      })
    }

    const account: RequestorAccount = {
      agreementId,
      terms,
      provider,
      depositWei,
      target,
      acceptTask(usage) {
        account.acceptUsage({ tasks: 1, cpuMs: usage.cpuMs, durationMs: usage.durationMs })
      },
      acceptUsage(usage) {
        taskUsage = addUsage(taskUsage, usage)
        store.paymentDocuments.save({ agreementId, kind: 'usage', seq: 0, document: taskUsage, createdAtMs: Date.now() })
      },
      reportActivity(activityId, signer, reported, observed) {
        if (signer.toLowerCase() !== provider.toLowerCase()) return undefined
        const kept = plausibleUsage(reported, observed)
        activityUsage.set(activityId, kept)
        store.activities.setUsage('requestor', activityId, kept)
        return kept
      },
      trackActivity: (activityId, observe, terminate) => void running.set(activityId, { observe, terminate }),
      untrackActivity: (activityId) => void running.delete(activityId),
      accepted,
      owedWei,
      signedWei,
      deliveredWei: () => store.vouchers.latestDelivered(agreementId)?.cumulativeWei ?? 0n,
      vouchers: () => store.vouchers.listFor(agreementId).length,
      sent: () => queue,

      async answer(note, options = {}) {
        if (note.agreementId.toLowerCase() !== agreementId.toLowerCase()) return null
        // Kept as evidence when it asks for more than the last one did (notes are cumulative; a repeat adds nothing).
        if (BigInt(note.amountDueWei) > lastNoteWei) {
          lastNoteWei = BigInt(note.amountDueWei)
          store.paymentDocuments.save({ agreementId, kind: 'debit-note', seq: note.seq, document: note, createdAtMs: Date.now() })
        }
        let signed: VoucherJson | null = null
        const next = queue.then(async () => {
          const amount = voucherAmountFor(note, { justifiedWei: owedWei(), voucheredWei: signedWei(), depositWei })
          if (amount !== undefined) signed = await sign(amount)
        })
        queue = next.catch(() => undefined)
        await next
        if (signed !== null && options.send !== false) send(signed, options.onDelivered)
        return signed
      },

      async settle() {
        // The provider meters an activity as it ends: end them first, so the final voucher covers their work.
        await Promise.allSettled([...running.values()].map((activity) => activity.terminate()))
        await queue
        const finalWei = owedWei()
        const latest = store.vouchers.latest(agreementId)
        // A new voucher only when accepted work outgrew the last one; otherwise the last one, as signed, is final.
        const voucher = finalWei > (latest?.cumulativeWei ?? 0n) ? await sign(finalWei) : ((latest?.document ?? null) as VoucherJson | null)
        let invoice: Invoice | undefined
        let settleTx: Hex | null = null
        let failure: string | undefined
        const tries = init.settleTries ?? 4
        for (let attempt = 1; attempt <= tries; attempt++) {
          try {
            const answer = await host.request(target(), settleProtocol, { agreementId, voucher })
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
            await new Promise((resolve) => setTimeout(resolve, (init.settleRetryMs ?? 500) * 2 ** (attempt - 1)))
          }
        }
        if (failure !== undefined) log(`agreement ${agreementId}: provider ${provider} did not settle (${failure}); its voucher for ${finalWei} wei is delivered again while the escrow lasts`)
        store.agreements.setState(agreementId, 'terminated')
        const chain = await refreshEscrow(agreementId)
        return { agreementId, finalWei, invoice, settleTx, paidWei: chain?.claimedWei ?? 0n, refundedWei: chain?.refundedWei ?? 0n, closed: chain?.closed ?? false, ...(failure === undefined ? {} : { failure }) }
      },
    }
    return account
  }

  /** The chain's word on an escrow, kept in the store: claimed, and refunded when closed. */
  async function refreshEscrow(agreementId: string): Promise<{ claimedWei: bigint; refundedWei: bigint; closed: boolean } | undefined> {
    const escrow = await getEscrow(payment, { requestorAddress: identity.address, agreementId: agreementId as Hex })
    const kept = store.escrows.get(agreementId)
    if (escrow === undefined || kept === undefined) return undefined
    // Closed: whatever was not claimed went back to this requestor (a release or a refund), in the same transaction.
    const refundedWei = escrow.closed ? escrow.depositedWei - escrow.claimedWei : 0n
    store.escrows.save({ ...kept, claimedWei: escrow.claimedWei, refundedWei, closed: escrow.closed })
    return { claimedWei: escrow.claimedWei, refundedWei, closed: escrow.closed }
  }

  async function refundExpired(): Promise<{ agreementId: string; txHash: string; refundedWei: bigint }[]> {
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

  async function deliverOwed(): Promise<void> {
    const open = store.escrows.list().filter((record) => !record.closed)
    if (open.length === 0) return
    const nowSec = await chainTimeSec(payment).catch(() => undefined)
    for (const record of open) {
      const latest = store.vouchers.latest(record.agreementId)
      if (latest === undefined || (store.vouchers.latestDelivered(record.agreementId)?.cumulativeWei ?? -1n) >= latest.cumulativeWei) continue
      const agreement = store.agreements.get(record.agreementId)
      const terms = (agreement?.document as Agreement | undefined)?.terms
      if (agreement === undefined || terms === undefined) continue
      let account: RequestorAccount
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
          await refreshEscrow(record.agreementId)
        } else {
          const ack = await host.request(account.target(), voucherProtocol, latest.document as VoucherJson)
          store.vouchers.markDelivered(record.agreementId, BigInt(ack.acceptedWei))
        }
      } catch (error) {
        log(`agreement ${record.agreementId}: voucher for ${latest.cumulativeWei} wei not delivered yet (${toHearthError(error).shortMessage})`)
      }
    }
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
      await refundExpired().catch((error: unknown) => log(`refunding expired escrows failed: ${toHearthError(error).shortMessage}`))
      await deliverOwed().catch((error: unknown) => log(`delivering vouchers failed: ${toHearthError(error).shortMessage}`))
    })().finally(() => {
      round = undefined
    })
  }

  let approved = false

  /** Where a provider can be reached again (debit notes, vouchers delivered later, a restart of either side). */
  function rememberProvider(offer: Offer): void {
    const withPeer = offer.multiaddrs.find((address) => address.includes('/p2p/'))
    const peerId = withPeer?.split('/p2p/').at(-1) ?? offer.peerId
    store.peers.remember({ address: offer.provider, peerId, multiaddrs: offer.multiaddrs.map((address) => address.split('/p2p/')[0]!), updatedAtMs: Date.now() })
  }

  return {
    account: accountOf,
    refundExpired,

    async open(agreements) {
      if (!approved) {
        await approveEscrow(payment)
        approved = true
      }
      // All deposits in one transaction: the chain cost of a job does not grow with its number of providers.
      const opened = await openEscrows(
        payment,
        agreements.map(({ agreement, offer }) => ({
          agreementId: agreement.id as Hex,
          providerAddress: offer.provider as Address,
          amountWei: BigInt(agreement.terms.depositWei),
          expiresAtSec: agreement.terms.expiresAtSec + escrowExpiryMarginSec,
        })),
      )
      const opening = agreements.map(({ agreement, offer }) => {
        store.escrows.save({ agreementId: agreement.id, depositedWei: BigInt(agreement.terms.depositWei), openTx: opened.hash, claimedWei: 0n, refundedWei: 0n, closed: false })
        rememberProvider(offer)
        return accountOf(agreement.id)
      })
      return { txHash: opened.hash, accounts: opening }
    },
    deliverOwed,

    async start() {
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
      runRound()
      timer = setInterval(runRound, init.deliverEveryMs ?? 30_000)
      timer.unref()
    },

    async stop() {
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
      await round
      await host.unhandle(owedProtocol).catch(() => undefined)
      await host.unhandle(debitNoteProtocol).catch(() => undefined)
    },

    money() {
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
    },
  }
}
