/**
 * A provider's claims on chain are money: one that fails is recorded, logged and retried; one that landed but was
 * not recorded is reconciled from the chain; one counts only after the configured confirmations, and one that a
 * reorganisation drops is sent again; claimed earnings move to the payout address. Work billed by time alone goes
 * through the same accounts as tasks. Every amount is read from the chain.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { parseEther, type Address, type Hex } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { escrowClaimGraceSec, getEscrow, claimVoucher, refundEscrow } from '../src/payment/escrow.ts'
import { voucherFromJson } from '../src/payment/voucher.ts'
import { manualRequestor } from './support/manual-requestor.ts'

const perTaskWei = parseEther('0.001')
const pricing = () => ({ model: 'per-task' as const, perTaskWei: perTaskWei.toString() })
const linear = () => ({ model: 'linear' as const, startWei: '0', perCpuSecWei: '0', perDurationSecWei: parseEther('0.0001').toString() })

describe('claims', () => {
  it('a claim that landed on chain but was never recorded is reconciled from the chain, not retried forever', async () => {
    const devnet = await startDevnet({ providers: 1, nativePrograms: { sleep: '/usr/bin/sleep' }, providerPricing: pricing })
    after(() => devnet.stop())
    const provider = devnet.providers[0]!
    const hand = manualRequestor(devnet, () => provider)
    const agreement = await hand.agree()
    await hand.open(agreement)
    await hand.task(agreement)
    await hand.pay(agreement, perTaskWei)
    // The claim goes out (as from an earlier run that crashed before writing it down): the store still says unclaimed.
    const held = provider.store.vouchers.latest(agreement.id)!
    await claimVoucher(provider.payment, { voucher: voucherFromJson(held.document) })
    assert.equal(provider.store.vouchers.latest(agreement.id)!.claimedTx, null)
    const before = await devnet.balanceOf(provider.identity.address)

    assert.deepEqual(await provider.agent.claimOutstanding(), [])
    assert.notEqual(provider.store.vouchers.latest(agreement.id)!.claimedTx, null)
    assert.equal(provider.store.claims.get(agreement.id)?.state, 'confirmed')
    assert.deepEqual(provider.store.vouchers.unclaimed(), [])
    // Nothing was paid twice.
    assert.equal(await devnet.balanceOf(provider.identity.address), before)
    assert.equal((await getEscrow(provider.payment, { requestorAddress: devnet.requestor.identity.address as Address, agreementId: agreement.id as Hex }))?.claimedWei, perTaskWei)
  })

  it('a claim the chain refuses for good (the escrow was refunded first) is recorded with its reason, not dropped', async () => {
    const devnet = await startDevnet({ providers: 1, nativePrograms: { sleep: '/usr/bin/sleep' }, providerPricing: pricing, providerClaimPolicy: { beforeExpirySec: 1, checkEveryMs: 3_600_000 } })
    after(() => devnet.stop())
    const provider = devnet.providers[0]!
    const hand = manualRequestor(devnet, () => provider)
    const agreement = await hand.agree()
    await hand.open(agreement)
    await hand.task(agreement)
    await hand.pay(agreement, perTaskWei)
    // The provider stays away past the escrow's expiry and the whole claim grace; the requestor takes its money back.
    const grace = Number(await escrowClaimGraceSec(devnet.requestor.payment))
    await devnet.chain!.increaseTime(2 * 3600 + grace)
    await refundEscrow(devnet.requestor.payment, agreement.id as Hex)

    assert.deepEqual(await provider.agent.claimOutstanding(), [])
    const claim = provider.store.claims.get(agreement.id)!
    assert.equal(claim.state, 'failed')
    assert.match(claim.lastError ?? '', /escrow was closed before this claim/)
    assert.equal(claim.nextAttemptAtMs, Number.MAX_SAFE_INTEGER)
    assert.equal(claim.cumulativeWei, perTaskWei)
  })

  it('counts a claim only after its confirmations, and sends it again when a reorganisation drops it', async () => {
    const devnet = await startDevnet({ providers: 1, nativePrograms: { sleep: '/usr/bin/sleep' }, providerPricing: pricing, providerClaimPolicy: { confirmations: 3, checkEveryMs: 3_600_000 } })
    after(() => devnet.stop())
    const provider = devnet.providers[0]!
    const hand = manualRequestor(devnet, () => provider)
    const agreement = await hand.agree()
    await hand.open(agreement)
    await hand.task(agreement)
    await hand.pay(agreement, perTaskWei)
    const before = await devnet.balanceOf(provider.identity.address)
    const money = () => provider.agent.accounts.money().find((m) => m.agreementId === agreement.id)!

    // A snapshot of the chain before the claim: reverting to it is a reorganisation that drops the claim's block.
    const snapshot = await devnet.chain!.request({ method: 'evm_snapshot', params: [] })
    await provider.agent.claimOutstanding()
    const first = provider.store.claims.get(agreement.id)!
    assert.equal(first.state, 'sent')
    assert.equal(money().claimedWei, 0n, 'a claim short of its confirmations does not count yet')
    assert.equal(await devnet.balanceOf(provider.identity.address), before + perTaskWei)

    assert.equal(await devnet.chain!.request({ method: 'evm_revert', params: [snapshot] }), true)
    assert.equal(await devnet.balanceOf(provider.identity.address), before)
    // The provider notices the claim is gone and sends it again (the same signed transaction: same nonce, same call).
    await provider.agent.accounts.tick()
    const again = provider.store.claims.get(agreement.id)!
    assert.equal(again.state, 'sent')
    assert.equal(again.attempts, first.attempts + 1)
    assert.equal((await provider.payment.client.publicClient.getTransactionReceipt({ hash: again.txHash as Hex })).status, 'success')
    assert.equal(await devnet.balanceOf(provider.identity.address), before + perTaskWei)
    // Two more blocks: three confirmations, and the claim counts.
    await devnet.chain!.mine()
    await devnet.chain!.mine()
    await provider.agent.accounts.tick()
    assert.equal(provider.store.claims.get(agreement.id)?.state, 'confirmed')
    assert.equal(money().claimedWei, perTaskWei)
  })

  it('moves claimed earnings to the payout address, out of the node\'s hot key', async () => {
    const payout = generateIdentity().address as Address
    const devnet = await startDevnet({ providers: 1, nativePrograms: { sleep: '/usr/bin/sleep' }, providerPricing: pricing, providerPayoutAddress: () => payout, providerClaimPolicy: { checkEveryMs: 3_600_000 } })
    after(() => devnet.stop())
    const provider = devnet.providers[0]!
    const hand = manualRequestor(devnet, () => provider)
    const agreement = await hand.agree()
    await hand.open(agreement)
    await hand.task(agreement)
    await hand.task(agreement)
    await hand.pay(agreement, 2n * perTaskWei)
    const hot = await devnet.balanceOf(provider.identity.address)
    await provider.agent.claimOutstanding()
    await provider.agent.accounts.tick()
    assert.equal(await devnet.balanceOf(payout), hot + 2n * perTaskWei)
    assert.equal(await devnet.balanceOf(provider.identity.address), 0n)
  })
})

describe('work billed by time alone', () => {
  it('goes through the same accounts as tasks: the provider bills time, the requestor pays what it verified', async () => {
    const devnet = await startDevnet({ providers: 1, nativePrograms: { sleep: '/usr/bin/sleep' }, providerPricing: linear })
    after(() => devnet.stop())
    const provider = devnet.providers[0]!
    const hand = manualRequestor(devnet, () => provider)
    const agreement = await hand.agree({ debitNoteIntervalSec: 1 })
    await hand.open(agreement)
    const requestorAddress = devnet.requestor.identity.address as Address
    const account = provider.agent.accounts.account(agreement.id, requestorAddress)
    // A minute of a service's time, no task: a debit note for it goes to the requestor.
    const note = account.meter({ tasks: 0, cpuMs: 0, durationMs: 60_000 })
    assert.ok(note !== undefined)
    const minuteWei = 60n * parseEther('0.0001')
    assert.equal(note.amountDueWei, minuteWei.toString())
    // The requestor has verified none of it yet: it pays nothing.
    const requestorAccount = devnet.requestor.agent.accounts.account(agreement.id)
    assert.equal(await requestorAccount.answer(note), null)
    // Once it has (a service's health checks saw it up for that minute), the same note is paid in full.
    requestorAccount.acceptUsage({ tasks: 0, cpuMs: 0, durationMs: 60_000 })
    await requestorAccount.answer(note)
    await requestorAccount.sent()
    assert.equal(provider.store.vouchers.latest(agreement.id)?.cumulativeWei, minuteWei)
    // Settling pays it on chain.
    const before = await devnet.balanceOf(provider.identity.address)
    const settled = await requestorAccount.settle()
    assert.equal(settled.paidWei, minuteWei)
    assert.equal(await devnet.balanceOf(provider.identity.address), before + minuteWei)
  })
})
