/**
 * Paying for ExeScript activities on the devnet: debit notes handed over on the provider's answers are paid with
 * cumulative vouchers, never above what its signed answers justify, and settling the agreement pays on chain exactly
 * what the provider metered. A lying provider (a real peer serving the activity protocols with made-up answers) gets
 * only what its signed answers justify, and nothing for answers signed by someone else.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { parseEther, type Address, type Hex } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { activityCreateProtocol, activityDestroyProtocol } from '../src/exec/exescript-protocols.ts'
import type { ActivityUsage } from '../src/exec/exescript.ts'
import { exeScriptGuest } from '../src/exec/testdata/exescript-guest.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { proposeTerms, type Agreement } from '../src/market/agreement.ts'
import { costWei, type Pricing, type Usage } from '../src/market/pricing.ts'
import { createHost, type Host } from '../src/net/host.ts'
import { approveEscrow, getEscrow } from '../src/payment/escrow.ts'
import { voucherProtocol } from '../src/payment/payment-protocols.ts'
import { billedUsage, plausibleUsage, voucherAmountFor } from '../src/requestor/requestor-account.ts'
import { createActivity, type ActivityAgreement } from '../src/requestor/activity-client.ts'
import { negotiateMany, offerTarget } from '../src/requestor/negotiator.ts'

const linear: Pricing = { model: 'linear', startWei: parseEther('0.0001').toString(), perCpuSecWei: parseEther('0.01').toString(), perDurationSecWei: parseEther('0.005').toString() }

describe('voucher amounts for activity debit notes', () => {
  it('pay what a note asks, capped by what is justified and by the deposit, and only when it is more than signed so far', () => {
    const bill = { justifiedWei: 1000n, voucheredWei: 200n, depositWei: 5000n }
    assert.equal(voucherAmountFor({ amountDueWei: '700' }, bill), 700n)
    // An inflated note: only the justified amount.
    assert.equal(voucherAmountFor({ amountDueWei: parseEther('5').toString() }, bill), 1000n)
    assert.equal(voucherAmountFor({ amountDueWei: '9000' }, { ...bill, justifiedWei: 8000n }), 5000n)
    assert.equal(voucherAmountFor({ amountDueWei: '150' }, bill), undefined)
    assert.equal(voucherAmountFor({ amountDueWei: '9000' }, { ...bill, voucheredWei: 1000n }), undefined)
  })

  it('reported usage is held to the activity\'s observed life, and its CPU to that life plus one quota period per batch', () => {
    assert.deepEqual(plausibleUsage({ durationSec: 2, cpuSec: 1 }, { lifeMs: 2500, batches: 1 }), { durationSec: 2, cpuSec: 1 })
    assert.deepEqual(plausibleUsage({ durationSec: 3600, cpuSec: 3600 }, { lifeMs: 2499.2, batches: 2 }), { durationSec: 2.501, cpuSec: 2.701 })
    assert.deepEqual(billedUsage({ durationSec: 2.501, cpuSec: 0.0004 }), { tasks: 1, cpuMs: 0, durationMs: 2501 })
  })
})

describe('paying for ExeScript activities on the devnet', () => {
  let devnet: Devnet
  let guest: Uint8Array

  before(async () => {
    guest = await exeScriptGuest()
    devnet = await startDevnet({ providers: 1, providerPricing: () => linear })
    await approveEscrow(devnet.requestor.payment)
  })
  after(async () => {
    await devnet?.stop()
  })

  const deps = () => ({ host: devnet.requestor.host, identity: devnet.requestor.identity, store: devnet.requestor.store, accounts: devnet.requestor.agent.accounts, blobs: devnet.requestor.agent.blobs })
  const chainEscrow = (agreementId: string) => getEscrow(devnet.requestor.payment, { requestorAddress: devnet.requestor.payment.client.address, agreementId: agreementId as Hex })

  /** A wasi agreement with the devnet's provider (a debit note at every metering), its escrow open on chain. */
  async function agreementFor(): Promise<ActivityAgreement> {
    const { requestor } = devnet
    const negotiated = await negotiateMany({ host: requestor.host, identity: requestor.identity, store: requestor.store }, [devnet.providers[0]!.agent.currentOffer()!], {
      need: 1,
      termsFor: (offer) => proposeTerms({ offer, requestor: requestor.identity.address, runtime: 'wasi', maxTasks: 4, taskTimeoutMs: 30_000, jobName: 'billed activities', debitNoteIntervalSec: 0 }),
      limits: { maxPerTaskWei: parseEther('1'), minDurationSec: 600, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 },
    })
    const [{ agreement, offer }] = negotiated.agreements as [(typeof negotiated.agreements)[0]]
    await requestor.agent.accounts.open([{ agreement, offer }])
    return { id: agreement.id, provider: offer.provider as Address, target: offerTarget(offer) }
  }

  it('two activities under one agreement: each debit note is paid as it comes, and settling pays exactly the metered cost', async () => {
    const agreement = await agreementFor()
    const provider = devnet.providers[0]!.store
    const delivered = (): Usage => provider.paymentDocuments.list({ agreementId: agreement.id, kind: 'usage' })[0]!.document as Usage

    // The first ends by `await using` (the destroy answer carries the debit note).
    {
      await using first = await createActivity(deps(), agreement)
      const packageId = first.provide(guest)
      const outcome = await first.exec([{ deploy: { packageId } }, { start: {} }, { run: { args: ['lines', '3', '20000'] } }]).result
      assert.deepEqual(outcome.results.map((r) => r.ok), [true, true, true])
    }
    // The note was answered before terminate returned: the provider holds a voucher for exactly the work so far.
    const firstCost = costWei(linear, delivered())
    assert.ok(firstCost > BigInt(linear.startWei), `${firstCost}`)
    assert.equal(provider.vouchers.latest(agreement.id)?.cumulativeWei, firstCost)

    // The second ends by its own terminate command (the batch's signed result carries the note).
    {
      await using second = await createActivity(deps(), agreement)
      const packageId = second.provide(guest)
      const outcome = await second.exec([{ deploy: { packageId } }, { start: {} }, { run: { args: ['lines', '2', '20000'] } }, { terminate: {} }]).result
      assert.equal(outcome.state, 'Terminated')
      assert.ok(outcome.debitNote !== undefined && outcome.debitNote.agreementId === agreement.id, JSON.stringify(outcome.debitNote))
      assert.equal(outcome.debitNote.amountDueWei, costWei(linear, delivered()).toString())
    }
    // Ending activities does not end the agreement: nothing is claimed yet.
    const open = await chainEscrow(agreement.id)
    assert.equal(open?.claimedWei, 0n)
    assert.equal(open?.closed, false)

    const owed = costWei(linear, delivered())
    assert.equal(delivered().tasks, 2)
    assert.ok(owed > firstCost)
    const account = devnet.requestor.agent.accounts.account(agreement.id)
    const settled = await account.settle()
    assert.deepEqual(account.accepted(), delivered())
    assert.equal(settled.finalWei, owed)
    assert.equal(settled.invoice?.amountDueWei, owed.toString())
    // The chain says the provider got exactly the metered cost and the rest came back.
    const closed = await chainEscrow(agreement.id)
    assert.equal(closed?.claimedWei, owed)
    assert.equal(closed?.closed, true)
    assert.equal(settled.paidWei, owed)
    assert.equal(settled.refundedWei, account.depositWei - owed)
    // No voucher the requestor signed promised more.
    const signed = devnet.requestor.store.vouchers.listFor(agreement.id)
    assert.ok(signed.length >= 2, `${signed.length} vouchers`)
    for (const voucher of signed) assert.ok(voucher.cumulativeWei <= owed, `${voucher.cumulativeWei} > ${owed}`)
    assert.deepEqual(devnet.requestor.store.paymentDocuments.list({ agreementId: agreement.id, kind: 'debit-note' }).map((d) => d.seq), [1, 2])
  })

  describe('a provider that asks more than its signed answers justify', () => {
    let liar: Host
    const liarIdentity = generateIdentity()
    /** What the liar's destroy answers report next. */
    let reported: ActivityUsage = { durationSec: 0, cpuSec: 0 }
    const vouchers: { agreementId: string; cumulativeWei: string }[] = []
    let seq = 0

    before(async () => {
      liar = await createHost({ identity: liarIdentity })
      await liar.start()
      await liar.handle(activityCreateProtocol, ({ agreementId, activityId }) => ({ agreementId, activityId, state: 'New' as const }))
      // Every destroy answer bills an hour of work at 5 tokens, whatever the usage it signs.
      await liar.handle(activityDestroyProtocol, ({ agreementId, activityId }) => ({
        activityId,
        state: 'Terminated' as const,
        usage: reported,
        debitNote: { agreementId, seq: ++seq, usage: { tasks: 1, cpuMs: 3_600_000, durationMs: 3_600_000 }, amountDueWei: parseEther('5').toString(), issuedAtMs: Date.now() },
      }))
      await liar.handle(voucherProtocol, (voucher) => {
        vouchers.push({ agreementId: voucher.agreementId, cumulativeWei: voucher.cumulativeWei })
        return { agreementId: voucher.agreementId, acceptedWei: voucher.cumulativeWei }
      })
    })
    after(async () => {
      await liar?.stop()
    })

    /** An agreement with the liar as this requestor's store keeps it (no escrow: these vouchers are never claimed). */
    const liarAgreement = (provider: Address): ActivityAgreement => {
      const id = `0x${randomBytes(32).toString('hex')}`
      const nowMs = Date.now()
      const offer = devnet.providers[0]!.agent.currentOffer()!.payload
      const terms = { ...proposeTerms({ offer, requestor: devnet.requestor.identity.address, runtime: 'wasi', maxTasks: 4, taskTimeoutMs: 30_000, jobName: 'liar' }), provider, pricing: linear, depositWei: parseEther('10').toString() }
      const document: Agreement = { id, terms, requestorSignature: '0x00', providerSignature: '0x00' }
      devnet.requestor.store.agreements.save({ id, role: 'requestor', requestor: devnet.requestor.identity.address, provider, state: 'approved', document, createdAtMs: nowMs, updatedAtMs: nowMs })
      devnet.requestor.store.peers.remember({ address: provider, peerId: liar.peerId.toString(), multiaddrs: liar.multiaddrs().map((a) => a.split('/p2p/')[0]!), updatedAtMs: nowMs })
      return { id, provider, target: liar.multiaddrs()[0]! }
    }
    const kept = (activityId: string) => devnet.requestor.store.activities.get('requestor', activityId)!.usage!

    it('is paid the cost of the usage it signed, not what its note asks, and inflated usage is held to what was observed', async () => {
      const agreement = liarAgreement(liarIdentity.address)
      // Plausible usage, an inflated note.
      reported = { durationSec: 0.001, cpuSec: 0.001 }
      const first = await createActivity(deps(), agreement)
      assert.deepEqual(await first.terminate(), reported)
      assert.equal(vouchers.length, 1)
      const justified = costWei(linear, { tasks: 1, cpuMs: 1, durationMs: 1 })
      assert.equal(vouchers[0]!.cumulativeWei, justified.toString())
      assert.ok(justified < parseEther('5'))

      // Signed, and implausible: an hour of work in a few milliseconds.
      reported = { durationSec: 3600, cpuSec: 3600 }
      const startedAt = performance.now()
      const second = await createActivity(deps(), agreement)
      await second.terminate()
      const observedMs = performance.now() - startedAt
      const usage = kept(second.id)
      assert.ok(Math.round(usage.durationSec * 1000) <= Math.ceil(observedMs) + 1, `${usage.durationSec} s kept in ${observedMs} ms`)
      assert.ok(usage.cpuSec <= usage.durationSec + 0.1 + 1e-9, JSON.stringify(usage))
      assert.equal(vouchers.length, 2)
      const total = costWei(linear, { tasks: 2, cpuMs: 1 + Math.round(usage.cpuSec * 1000), durationMs: 1 + Math.round(usage.durationSec * 1000) })
      assert.equal(vouchers[1]!.cumulativeWei, total.toString())
      assert.ok(total < costWei(linear, { tasks: 2, cpuMs: 3_600_001, durationMs: 3_600_001 }))
      assert.deepEqual(devnet.requestor.store.vouchers.listFor(agreement.id).map((v) => v.cumulativeWei), [justified, total])
    })

    it('answers signed by a peer other than the agreement\'s provider justify nothing', async () => {
      const before = vouchers.length
      const agreement = liarAgreement(generateIdentity().address)
      reported = { durationSec: 0.001, cpuSec: 0.001 }
      const activity = await createActivity(deps(), agreement)
      assert.deepEqual(await activity.terminate(), reported)
      assert.equal(vouchers.length, before)
      assert.equal(devnet.requestor.store.activities.get('requestor', activity.id)?.usage, null)
      // The note is kept as evidence all the same.
      assert.equal(devnet.requestor.store.paymentDocuments.list({ agreementId: agreement.id, kind: 'debit-note' }).length, 1)
    })
  })
})

describe('activities count as tasks and are billed while they run', () => {
  let devnet: Devnet
  let guest: Uint8Array

  before(async () => {
    guest = await exeScriptGuest()
    // Running activities are metered every 200 ms (default 10 s), so that a short test sees notes while a batch runs.
    devnet = await startDevnet({ providers: 1, providerPricing: () => linear, providerActivityMeterEveryMs: 200 })
  })
  after(async () => {
    await devnet?.stop()
  })

  const deps = () => ({ host: devnet.requestor.host, identity: devnet.requestor.identity, store: devnet.requestor.store, accounts: devnet.requestor.agent.accounts, blobs: devnet.requestor.agent.blobs })

  async function agreementFor(terms: { maxTasks: number; debitNoteIntervalSec: number; taskTimeoutMs?: number }): Promise<ActivityAgreement> {
    const { requestor } = devnet
    const negotiated = await negotiateMany({ host: requestor.host, identity: requestor.identity, store: requestor.store }, [devnet.providers[0]!.agent.currentOffer()!], {
      need: 1,
      termsFor: (offer) => proposeTerms({ offer, requestor: requestor.identity.address, runtime: 'wasi', taskTimeoutMs: terms.taskTimeoutMs ?? 30_000, jobName: 'metered activities', maxTasks: terms.maxTasks, debitNoteIntervalSec: terms.debitNoteIntervalSec }),
      limits: { maxPerTaskWei: parseEther('1'), minDurationSec: 600, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 },
    })
    const [{ agreement, offer }] = negotiated.agreements as [(typeof negotiated.agreements)[0]]
    await requestor.agent.accounts.open([{ agreement, offer }])
    return { id: agreement.id, provider: offer.provider as Address, target: offerTarget(offer) }
  }

  it('an agreement for one task runs one activity, not three', async () => {
    const agreement = await agreementFor({ maxTasks: 1, debitNoteIntervalSec: 60 })
    const first = await createActivity(deps(), agreement)
    await assert.rejects(createActivity(deps(), agreement), /already had its 1 tasks/)
    // Ended, it still counts: the agreement's one task is spent.
    await first.terminate()
    await assert.rejects(createActivity(deps(), agreement), /already had its 1 tasks/)
  })

  it('a long CPU-bound batch is billed while it runs: debit notes go out and vouchers come back before it ends', async () => {
    const agreement = await agreementFor({ maxTasks: 4, debitNoteIntervalSec: 1, taskTimeoutMs: 4_000 })
    const provider = devnet.providers[0]!.store
    await using activity = await createActivity(deps(), agreement)
    const packageId = activity.provide(guest)
    // `stream` prints a line and then computes without end; the run stops at the agreement's 4 s task deadline.
    const outcome = await activity.exec([{ deploy: { packageId } }, { start: {} }, { run: { args: ['stream', 'busy'] } }]).result
    const batchEndedAtMs = Date.now()
    assert.equal(outcome.results[2]?.ok, false)
    const notes = provider.paymentDocuments.list({ agreementId: agreement.id, kind: 'debit-note' })
    const duringBatch = notes.filter((record) => (record.document as { issuedAtMs: number }).issuedAtMs < batchEndedAtMs)
    assert.ok(duringBatch.length >= 2, `${duringBatch.length} debit notes during the batch`)
    const vouchers = provider.vouchers.listFor(agreement.id).filter((voucher) => voucher.receivedAtMs < batchEndedAtMs)
    assert.ok(vouchers.length >= 1, 'no voucher arrived while the batch ran')
    // What the running activity was paid is no more than its observed life justifies.
    const paid = vouchers.at(-1)!.cumulativeWei
    assert.ok(paid > BigInt(linear.startWei), `${paid}`)
    assert.ok(paid <= costWei(linear, { tasks: 1, cpuMs: 60_000, durationMs: 60_000 }))
  })
})
