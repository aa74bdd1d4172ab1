/**
 * A hostile requestor against a provider with default settings (but a small cap on unpaid work, so the tests stay
 * short): it asks for debit notes a day apart, never pays, opens escrows that expire before the agreement, runs
 * past the agreement's end, or stops in the middle of a job. Each attack gets no more unpaid work than the cap, and
 * what the provider was paid is read from the chain.
 *
 * The requestor here is the devnet's node driven by hand (test/support/manual-requestor.ts): it does only what the
 * attack needs, against the real provider, chain and contracts.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { parseEther, type Address, type Hex } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { isHearthError } from '../src/errors.ts'
import type { Agreement } from '../src/market/agreement.ts'
import type { Offer } from '../src/market/offer.ts'
import { chainTimeSec, getEscrow, openEscrow, topUpEscrow } from '../src/payment/escrow.ts'
import { proposeTerms } from '../src/market/agreement.ts'
import { negotiateMany } from '../src/requestor/negotiator.ts'
import { manualRequestor, remoteCode } from './support/manual-requestor.ts'

const perTaskWei = parseEther('0.001')
const maxUnpaidTasks = 4

describe('a hostile requestor gets no unpaid work beyond the provider\'s cap', () => {
  let devnet: Devnet

  before(async () => {
    devnet = await startDevnet({
      providers: 1,
      nativePrograms: { sleep: '/usr/bin/sleep' },
      providerPricing: () => ({ model: 'per-task', perTaskWei: perTaskWei.toString() }),
      // Escrows are read from the chain before every task here (by default a reading may be 5 s old), so that the
      // end of an agreement by chain time shows at once.
      providerAccountLimits: { maxUnpaidTasks, escrowMaxAgeMs: 0 },
      // The provider's timer runs often, so that claims before expiry need no waiting.
      providerClaimPolicy: { checkEveryMs: 200 },
    })
  })
  after(() => devnet?.stop())

  const provider = () => devnet.providers[0]!
  const offer = (): Offer => provider().agent.currentOffer()!.payload

  const hand = () => manualRequestor(devnet, provider)
  const agree = (overrides?: Parameters<ReturnType<typeof hand>['agree']>[0]) => hand().agree(overrides)
  const task = (agreement: Agreement) => hand().task(agreement)
  const runUntilRefused = (agreement: Agreement) => hand().runUntilRefused(agreement)
  const payFor = (agreement: Agreement, tasks: bigint) => hand().pay(agreement, tasks * perTaskWei)

  it('debit notes a day apart are countered down to the provider\'s maximum interval', async () => {
    const agreement = await agree({ debitNoteIntervalSec: 86_400 })
    assert.equal(agreement.terms.debitNoteIntervalSec, 300)
    const kept = provider().store.agreements.get(agreement.id)?.document as Agreement
    assert.equal(kept.terms.debitNoteIntervalSec, 300)
  })

  it('a requestor that never pays gets the cap of unpaid tasks, then nothing until a voucher covers some; an overdue note ends the agreement and what is held is claimed', async () => {
    // A payment timeout long enough that a slow machine runs both rounds of tasks below within it.
    const agreement = await agree({ debitNoteIntervalSec: 86_400, paymentTimeoutSec: 30 })
    await hand().open(agreement)
    const before = await devnet.balanceOf(provider().identity.address)

    const first = await runUntilRefused(agreement)
    assert.equal(first.ran, maxUnpaidTasks)
    assert.equal(remoteCode(first.refusal), 'HEARTH_ERR_PAYMENT_UNPAID')
    const account = provider().agent.accounts.account(agreement.id, devnet.requestor.identity.address as Address)
    assert.equal(account.delivered().tasks, maxUnpaidTasks)
    assert.equal(account.exposure().unpaidWei, BigInt(maxUnpaidTasks) * perTaskWei)
    // Debit notes went out although the agreed interval is 300 s: unpaid work reached half the cap.
    assert.ok(provider().store.paymentDocuments.list({ agreementId: agreement.id, kind: 'debit-note' }).length >= 1)

    // A voucher for two tasks buys two more, and no more.
    await payFor(agreement, 2n)
    const second = await runUntilRefused(agreement)
    assert.equal(second.ran, 2)
    assert.equal(remoteCode(second.refusal), 'HEARTH_ERR_PAYMENT_UNPAID')

    // The notes stay unpaid past the 30 s payment timeout: the provider ends the agreement (its timer notices, or the
    // next task does) and takes no more work under it. A task sent as the timer ends it hears that it has ended.
    const refusedCodes = ['HEARTH_ERR_PAYMENT_UNPAID', 'HEARTH_ERR_PAYMENT_OVERDUE', 'HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN']
    while (provider().store.agreements.get(agreement.id)?.state === 'approved') {
      await task(agreement).then(
        () => assert.fail('an unpaid agreement past its cap ran a task'),
        (error: unknown) => assert.ok(refusedCodes.includes(remoteCode(error)!), String(error)),
      )
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    assert.equal(provider().store.agreements.get(agreement.id)?.state, 'terminated')
    await assert.rejects(task(agreement), (error) => remoteCode(error) === 'HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN' && /terminated/.test(String((error as Error).message)))

    // Six tasks delivered, two paid: the provider claimed the two on chain, and was never owed more than the cap.
    while ((await devnet.balanceOf(provider().identity.address)) === before) await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(await devnet.balanceOf(provider().identity.address), before + 2n * perTaskWei)
    assert.equal(account.delivered().tasks, maxUnpaidTasks + 2)
    assert.equal(account.exposure().unpaidWei, BigInt(maxUnpaidTasks) * perTaskWei)
  })

  it('an escrow that expires before the agreement (plus the margin to claim) backs no work', async () => {
    const agreement = await agree()
    const { requestor } = devnet
    // It expires at the agreement's end: long enough to be opened on a slow machine, short of the margin to claim.
    await openEscrow(requestor.payment, { agreementId: agreement.id as Hex, providerAddress: offer().provider as Address, amountWei: BigInt(agreement.terms.depositWei), expiresAtSec: agreement.terms.expiresAtSec })
    await assert.rejects(task(agreement), (error) => remoteCode(error) === 'HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS' && /expires at .* before the agreement's end/.test(String((error as Error).message)))
    assert.equal(provider().agent.accounts.account(agreement.id, requestor.identity.address as Address).delivered().tasks, 0)
  })

  it('an escrow holding less than the agreed deposit backs no work', async () => {
    const agreement = await agree()
    const { requestor } = devnet
    await openEscrow(requestor.payment, { agreementId: agreement.id as Hex, providerAddress: offer().provider as Address, amountWei: BigInt(agreement.terms.depositWei) - 1n, expiresAtSec: agreement.terms.expiresAtSec + 3600 })
    await assert.rejects(task(agreement), (error) => remoteCode(error) === 'HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS' && /holds .* of the agreed/.test(String((error as Error).message)))
  })

  it('an escrow topped up as work goes backs work only while it stays ahead of it: a requestor that stops topping up gets no more', async () => {
    const agreement = await agree({ escrowAhead: true })
    // One task at its longest ahead: the escrow opens with two tasks' worth, not the hundred the agreement allows.
    assert.equal(agreement.terms.escrowAheadWei, perTaskWei.toString())
    await hand().open(agreement)
    const escrowOf = () => getEscrow(devnet.requestor.payment, { requestorAddress: devnet.requestor.identity.address as Address, agreementId: agreement.id as Hex })
    assert.equal((await escrowOf())?.depositedWei, 2n * perTaskWei)
    await task(agreement)
    await task(agreement)
    // Two delivered: a third would leave less than half a task ahead of the work.
    await assert.rejects(task(agreement), (error) => remoteCode(error) === 'HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS' && /was not topped up/.test(String((error as Error).message)))
    await topUpEscrow(devnet.requestor.payment, { agreementId: agreement.id as Hex, amountWei: perTaskWei })
    await task(agreement)
    assert.equal(provider().agent.accounts.account(agreement.id, devnet.requestor.identity.address as Address).delivered().tasks, 3)
  })

  it('work stops when the agreement ends by chain time, and what the vouchers cover is claimed before the escrow expires', async () => {
    const agreement = await agree()
    await hand().open(agreement)
    const before = await devnet.balanceOf(provider().identity.address)
    await task(agreement)
    await payFor(agreement, 1n)
    // Chain time, not the wall clock: the chain jumps past the agreement's end while the wall clock does not move.
    const nowSec = Number(await chainTimeSec(devnet.requestor.payment))
    await devnet.chain!.increaseTime(agreement.terms.expiresAtSec - nowSec + 1)
    // The provider's escrow reading may be a few seconds old: it is read again before work relies on it.
    while (true) {
      const refused = await task(agreement).then(() => undefined, (error: unknown) => error)
      if (refused !== undefined) {
        assert.equal(remoteCode(refused), 'HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN')
        assert.match(String((refused as Error).message), /has ended \(chain time/)
        break
      }
    }
    // The escrow expires within the claim window now: the provider's timer claims the voucher it holds.
    while ((await devnet.balanceOf(provider().identity.address)) === before) await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(await devnet.balanceOf(provider().identity.address), before + perTaskWei)
  })
})

describe('what a stranger can make a provider do without paying', () => {
  it('refused and countered proposals leave nothing in the provider\'s store, and programs run no more at once than the threads lent', async () => {
    const devnet = await startDevnet({ providers: 1, nativePrograms: { sleep: '/usr/bin/sleep' } })
    after(() => devnet.stop())
    const provider = devnet.providers[0]!
    const { requestor } = devnet
    const before = provider.store.agreements.list().length
    // Refused: a runtime it does not offer. Countered: debit notes rarer than it allows, and the counter never signed.
    for (const terms of [{ runtime: 'docker' }, { runtime: 'native', debitNoteIntervalSec: 86_400 }]) {
      const refused = await negotiateMany({ host: requestor.host, identity: requestor.identity, store: requestor.store }, [provider.agent.currentOffer()!], {
        need: 1,
        maxRounds: 1,
        termsFor: (o) => ({ ...proposeTerms({ offer: o, requestor: requestor.identity.address, runtime: 'native', maxTasks: 4, taskTimeoutMs: 30_000, jobName: 'stranger' }), ...terms }),
        limits: { maxPerTaskWei: parseEther('1'), minDurationSec: 600, maxDebitNoteIntervalSec: 86_400, minPaymentTimeoutSec: 1 },
      })
      assert.equal(refused.agreements.length, 0)
    }
    assert.equal(provider.store.agreements.list().length, before)

    // One thread lent: a second program at once waits for the first, whatever memory and disk allow.
    const hand = manualRequestor(devnet, () => provider)
    const agreement = await hand.agree()
    await hand.open(agreement)
    const outcomes = await Promise.allSettled([hand.task(agreement, '1'), hand.task(agreement, '1')])
    const busy = outcomes.filter((o) => o.status === 'rejected' && remoteCode(o.reason) === 'HEARTH_ERR_PROVIDER_BUSY')
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1)
    assert.equal(busy.length, 1)
    assert.match(String((busy[0] as PromiseRejectedResult).reason), /1 of its 1 threads run tasks/)
  })
})

describe('a provider refuses an escrow contract that gives it too little time to claim', () => {
  it('does not start when the contract\'s claim grace is below its minimum', async () => {
    // The devnet deploys with the default grace of a day; this provider wants two.
    await assert.rejects(
      startDevnet({ providers: 1, providerAccountLimits: { minClaimGraceSec: 2 * 86_400 } }),
      (error) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID') && /gives providers 86400 s after expiry to claim, less than this provider's minimum of 172800 s/.test(error.message),
    )
  })
})

describe('a requestor that stops in the middle of a job', () => {
  it('leaves each provider unpaid for at most the cap', async () => {
    const devnet = await startDevnet({ providers: 2, nativePrograms: { sleep: '/usr/bin/sleep' }, providerAccountLimits: { maxUnpaidTasks } })
    after(() => devnet.stop())
    let stopped: Promise<void> | undefined
    let done = 0
    // The requestor's node goes away once 12 results are in: no more vouchers, no settlement.
    await devnet.requestor.agent
      .runJob(
        {
          name: 'sleeps',
          runtime: 'native',
          program: 'sleep',
          tasks: Array.from({ length: 60 }, () => ({ args: ['0.05'], env: {}, inputs: [], outputs: [] })),
          providers: 2,
          maxPricePerTaskWei: parseEther('1'),
          timeoutMs: 30_000,
          maxMemoryBytes: 64 << 20,
          maxOutputBytes: 1 << 20,
          // A day between notes, if the providers allowed it: they do not, and the cap holds anyway.
          debitNoteIntervalSec: 86_400,
        },
        { onEvent: (event) => { if (event.type === 'task-done' && ++done === 12 && stopped === undefined) stopped = devnet.requestor.host.stop() } },
      )
      .catch(() => undefined)
    await stopped
    let delivered = 0
    for (const provider of devnet.providers) {
      // Whatever was still running when the requestor went away has ended by now.
      while (provider.agent.accounts.running() > 0) await new Promise((resolve) => setTimeout(resolve, 50))
      for (const money of provider.agent.accounts.money()) {
        assert.ok(money.exposure.unpaidTasks <= maxUnpaidTasks, `${money.exposure.unpaidTasks} unpaid tasks under ${money.agreementId}`)
        delivered += money.delivered.tasks
      }
    }
    // More work was done than the caps of both providers together: the bound held while being paid along the way.
    assert.ok(delivered > 2 * maxUnpaidTasks, `${delivered} tasks delivered`)
  })
})
