import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { keccak256, parseEther, parseEventLogs, toHex } from 'viem'
import type { AbiFunction, Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { isHearthError } from '../errors.ts'
import type { ErrorCode } from '../errors.ts'
import { createChainClient } from './chain-client.ts'
import { hearthEscrowAbi, hearthTokenAbi } from './contracts.ts'
import { defaultClaimGraceSec, deployHearthContracts } from './deploy.ts'
import { createEmbeddedChain } from './embedded-chain.ts'
import type { EmbeddedChain } from './embedded-chain.ts'
import {
  approveEscrow,
  chainTimeSec,
  claimVoucher,
  claimVouchers,
  escrowClaimGraceSec,
  escrowKey,
  getEscrow,
  mintTokens,
  openEscrow,
  openEscrows,
  refundEscrow,
  releaseEscrow,
  tokenBalanceOf,
  topUpEscrow,
} from './escrow.ts'
import type { EscrowContext, EscrowRef } from './escrow.ts'
import { signVoucher, verifyVoucher } from './voucher.ts'

const keys = {
  deployer: keccak256(toHex('hearth-test-deployer')),
  requestor: keccak256(toHex('hearth-test-requestor')),
  provider: keccak256(toHex('hearth-test-provider')),
  stranger: keccak256(toHex('hearth-test-stranger')),
  requestor2: keccak256(toHex('hearth-test-requestor-2')),
}
const addresses = {
  deployer: privateKeyToAccount(keys.deployer).address,
  requestor: privateKeyToAccount(keys.requestor).address,
  provider: privateKeyToAccount(keys.provider).address,
  stranger: privateKeyToAccount(keys.stranger).address,
  requestor2: privateKeyToAccount(keys.requestor2).address,
}

const depositWei = parseEther('100')

interface World {
  chain: EmbeddedChain
  chainId: number
  escrowAddress: Hex
  /** The escrow's claim grace after expiry (the deployment's; default one day). */
  claimGraceSec: number
  deployer: EscrowContext
  requestor: EscrowContext
  provider: EscrowContext
  stranger: EscrowContext
  requestor2: EscrowContext
  /** The requestor's escrow for an agreement id. */
  ref(agreementId: Hex): EscrowRef
  /** Opens a fresh escrow from requestor to provider, expiring in an hour of chain time. */
  open(label: string, amountWei?: bigint): Promise<Hex>
  voucher(agreementId: Hex, cumulativeWei: bigint, overrides?: Partial<Parameters<typeof signVoucher>[0]>): ReturnType<typeof signVoucher>
}

/**
 * A fresh chain per test: two contracts deployed (faucet on, the default claim grace unless given), both requestors and
 * the stranger funded with 1000 HTT and approved.
 */
async function world(chainId = 31337, options: { claimGraceSec?: number } = {}): Promise<World> {
  const chain = await createEmbeddedChain({
    chainId,
    accounts: Object.values(addresses).map((address) => ({ address, balanceWei: parseEther('100') })),
  })
  const clientOf = (privateKey: Hex) => createChainClient({ transport: chain, privateKey, chainId })
  const deployerClient = clientOf(keys.deployer)
  const { tokenAddress, escrowAddress, claimGraceSec } = await deployHearthContracts(deployerClient, { faucet: true, ...options })
  const deployment = { tokenAddress, escrowAddress }
  const ctx = (client: ReturnType<typeof clientOf>): EscrowContext => ({ client, ...deployment })
  const w: World = {
    chain,
    chainId,
    escrowAddress: deployment.escrowAddress,
    claimGraceSec,
    deployer: ctx(deployerClient),
    requestor: ctx(clientOf(keys.requestor)),
    provider: ctx(clientOf(keys.provider)),
    stranger: ctx(clientOf(keys.stranger)),
    requestor2: ctx(clientOf(keys.requestor2)),
    ref: (agreementId) => ({ requestorAddress: addresses.requestor, agreementId }),
    async open(label, amountWei = depositWei) {
      const agreementId = keccak256(toHex(label))
      const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
      await openEscrow(w.requestor, { agreementId, providerAddress: addresses.provider, amountWei, expiresAtSec })
      return agreementId
    },
    voucher(agreementId, cumulativeWei, overrides = {}) {
      return signVoucher({
        privateKey: keys.requestor,
        chainId,
        escrowAddress: deployment.escrowAddress,
        agreementId,
        cumulativeWei,
        ...overrides,
      })
    },
  }
  for (const who of ['requestor', 'requestor2', 'stranger'] as const) {
    await mintTokens(w.deployer, { toAddress: addresses[who], amountWei: parseEther('1000') })
    await approveEscrow(w[who])
  }
  return w
}

/** Asserts a HearthError with this code whose message names the contract's custom error. */
function fails(code: ErrorCode, errorName: string) {
  return (error: unknown) => {
    assert.ok(isHearthError(error, code), `expected ${code}, got ${String(error)}`)
    assert.match(error.message, new RegExp(`\\b${errorName}\\b`))
    return true
  }
}

before(() => buildContracts())

describe('escrow: the money path', () => {
  it('open, claim, claim a higher voucher, claim with release: balances move exactly', async (t) => {
    const w = await world()
    const gas: Record<string, bigint> = {}
    const balances = async () => ({
      requestor: await tokenBalanceOf(w.requestor, addresses.requestor),
      provider: await tokenBalanceOf(w.requestor, addresses.provider),
      escrow: await tokenBalanceOf(w.requestor, w.escrowAddress),
    })

    const agreementId = keccak256(toHex('job-1'))
    const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
    const start = await balances()
    assert.deepEqual(start, { requestor: parseEther('1000'), provider: 0n, escrow: 0n })

    gas.open = (await openEscrow(w.requestor, { agreementId, providerAddress: addresses.provider, amountWei: depositWei, expiresAtSec })).gasUsed
    assert.deepEqual(await balances(), { requestor: parseEther('900'), provider: 0n, escrow: depositWei })
    assert.deepEqual(await getEscrow(w.provider, w.ref(agreementId)), {
      agreementId,
      requestorAddress: addresses.requestor,
      providerAddress: addresses.provider,
      depositedWei: depositWei,
      claimedWei: 0n,
      expiresAtSec,
      refundableAtSec: expiresAtSec + BigInt(defaultClaimGraceSec),
      closed: false,
    })

    // The provider checks the voucher off-chain before trusting it, as it would on receipt over the network.
    const first = await w.voucher(agreementId, parseEther('30'))
    await verifyVoucher(first, {
      expectedSigner: addresses.requestor,
      chainId: w.chainId,
      escrowAddress: w.escrowAddress,
      agreementId,
      maxCumulativeWei: depositWei,
    })
    const claim1 = await claimVoucher(w.provider, { voucher: first })
    gas.claim = claim1.gasUsed
    assert.equal(claim1.paidWei, parseEther('30'))
    assert.deepEqual(await balances(), { requestor: parseEther('900'), provider: parseEther('30'), escrow: parseEther('70') })

    // The same voucher again pays nothing: the contract refuses it.
    await assert.rejects(claimVoucher(w.provider, { voucher: first }), fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'NothingToClaim'))

    // A higher cumulative voucher pays only the difference.
    const claim2 = await claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('45')) })
    assert.equal(claim2.paidWei, parseEther('15'))
    assert.deepEqual(await balances(), { requestor: parseEther('900'), provider: parseEther('45'), escrow: parseEther('55') })

    // An older, lower voucher is worthless once a higher one was claimed.
    await assert.rejects(claimVoucher(w.provider, { voucher: first }), fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'NothingToClaim'))

    // The job is done: the final voucher with release pays the provider and refunds the rest at once.
    const final = await claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('60')), release: true })
    gas.claimRelease = final.gasUsed
    assert.equal(final.paidWei, parseEther('15'))
    assert.equal(final.refundedWei, parseEther('40'))
    const end = await balances()
    assert.deepEqual(end, { requestor: parseEther('940'), provider: parseEther('60'), escrow: 0n })
    const state = await getEscrow(w.provider, w.ref(agreementId))
    assert.equal(state?.closed, true)
    assert.equal(state?.claimedWei, parseEther('60'))
    // deposited = claimed + refunded
    assert.equal(state.depositedWei, end.provider + (end.requestor - start.requestor + depositWei))

    // Closed: no further claims, no refund.
    await assert.rejects(
      claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('70')) }),
      fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowClosed'),
    )
    await assert.rejects(refundEscrow(w.requestor, agreementId), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowClosed'))

    // Refund after expiry and the claim grace, for the gas table.
    const other = await w.open('job-2')
    await claimVoucher(w.provider, { voucher: await w.voucher(other, parseEther('10')) })
    await w.chain.increaseTime(3600 + w.claimGraceSec)
    gas.refund = (await refundEscrow(w.requestor, other)).gasUsed

    // The usual settlement: one claim with release as the escrow's first and only claim.
    const oneShot = await w.open('job-3')
    gas.firstClaimRelease = (await claimVoucher(w.provider, { voucher: await w.voucher(oneShot, parseEther('10')), release: true })).gasUsed

    t.diagnostic(`gas: ${Object.entries(gas).map(([k, v]) => `${k}=${v}`).join(' ')}`)
    // Loose bounds so a gas regression is noticed; bench/payments.ts reports the exact figures.
    // (A claim paying a provider whose token balance was zero costs ~17k more: a fresh storage slot.)
    assert.ok(gas.open! < 150_000n, `open ${gas.open}`)
    assert.ok(gas.claim! < 90_000n, `claim ${gas.claim}`)
    assert.ok(gas.claimRelease! < 100_000n && gas.firstClaimRelease! < 100_000n, `claim+release ${gas.firstClaimRelease}`)
    assert.ok(gas.refund! < 60_000n, `refund ${gas.refund}`)
  })

  it('refund: refused before expiry and during the claim grace, works after increaseTime past both, returns exactly the unclaimed rest', async () => {
    const w = await world()
    const agreementId = await w.open('job-refund')
    await claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('25')) })
    await assert.rejects(refundEscrow(w.requestor, agreementId), fails('HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY', 'RefundTooEarly'))
    await w.chain.increaseTime(3600)
    await assert.rejects(refundEscrow(w.requestor, agreementId), fails('HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY', 'RefundTooEarly'))

    await w.chain.increaseTime(w.claimGraceSec)
    const before_ = await tokenBalanceOf(w.requestor, addresses.requestor)
    const { refundedWei } = await refundEscrow(w.requestor, agreementId)
    assert.equal(refundedWei, parseEther('75'))
    assert.equal(await tokenBalanceOf(w.requestor, addresses.requestor), before_ + parseEther('75'))
    assert.equal((await getEscrow(w.requestor, w.ref(agreementId)))?.closed, true)
    await assert.rejects(refundEscrow(w.requestor, agreementId), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowClosed'))
  })

  it('release: only the provider, returns the unclaimed rest at once, and closes the escrow', async () => {
    const w = await world()
    const agreementId = await w.open('job-release')
    await claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('30')) })
    await assert.rejects(releaseEscrow(w.requestor, w.ref(agreementId)), fails('HEARTH_ERR_PAYMENT_CHAIN', 'NotProvider'))
    const before_ = await tokenBalanceOf(w.requestor, addresses.requestor)
    const { refundedWei } = await releaseEscrow(w.provider, w.ref(agreementId))
    assert.equal(refundedWei, parseEther('70'))
    assert.equal(await tokenBalanceOf(w.requestor, addresses.requestor), before_ + parseEther('70'))
    const escrow = await getEscrow(w.requestor, w.ref(agreementId))
    assert.equal(escrow?.closed, true)
    assert.equal(escrow?.claimedWei, parseEther('30'))
    await assert.rejects(claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('40')) }), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowClosed'))
  })

  it('a provider may still claim after expiry and the claim grace, until the requestor refunds', async () => {
    const w = await world()
    const agreementId = await w.open('job-late')
    await w.chain.increaseTime(3600 + w.claimGraceSec + 3600)
    const { paidWei } = await claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('5')) })
    assert.equal(paidWei, parseEther('5'))
    assert.equal((await refundEscrow(w.requestor, agreementId)).refundedWei, parseEther('95'))
  })

  it('topUp raises the deposit, so a larger voucher becomes claimable', async () => {
    const w = await world()
    const agreementId = await w.open('job-topup', parseEther('10'))
    const voucher = await w.voucher(agreementId, parseEther('15'))
    await assert.rejects(claimVoucher(w.provider, { voucher }), fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'ClaimExceedsDeposit'))
    await topUpEscrow(w.requestor, { agreementId, amountWei: parseEther('5') })
    assert.equal((await getEscrow(w.requestor, w.ref(agreementId)))?.depositedWei, parseEther('15'))
    assert.equal((await claimVoucher(w.provider, { voucher })).paidWei, parseEther('15'))
  })

  it('getEscrow is undefined for an agreement never opened', async () => {
    const w = await world()
    assert.equal(await getEscrow(w.requestor, w.ref(keccak256(toHex('never')))), undefined)
  })
})

/** The timestamp of the block that mined `hash`: the chain time the contract judged the call by. */
async function minedAtSec(w: World, hash: Hex): Promise<bigint> {
  const { blockNumber } = await w.requestor.client.publicClient.getTransactionReceipt({ hash })
  return (await w.requestor.client.publicClient.getBlock({ blockNumber })).timestamp
}

/** Asserts RefundTooEarly, judged at chain time `nowSec`, naming `refundableAtSec`. */
function tooEarly(refundableAtSec: bigint, nowSec: bigint) {
  return (error: unknown) => {
    assert.ok(isHearthError(error, 'HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY'), `expected REFUND_TOO_EARLY, got ${String(error)}`)
    assert.match(error.message, /\bRefundTooEarly\b/)
    assert.deepEqual([error.details?.refundableAtSec, error.details?.nowSec], [refundableAtSec.toString(), nowSec.toString()])
    return true
  }
}

describe('escrow: the claim grace after expiry (no refund race)', () => {
  it('is fixed at deployment: read back from the chain it equals the constructor argument, and no function can change it', async () => {
    const w = await world()
    assert.equal(w.claimGraceSec, defaultClaimGraceSec)
    assert.equal(await escrowClaimGraceSec(w.requestor), BigInt(defaultClaimGraceSec))
    for (const claimGraceSec of [0, 1, 3600, 1234567]) {
      const deployed = await deployHearthContracts(w.deployer.client, { faucet: true, claimGraceSec })
      assert.equal(deployed.claimGraceSec, claimGraceSec)
      assert.equal(await escrowClaimGraceSec({ client: w.stranger.client, escrowAddress: deployed.escrowAddress }), BigInt(claimGraceSec))
    }
    // Immutable: a view without inputs, and the only state-changing functions are the escrow's own actions.
    const functions = hearthEscrowAbi().filter((item): item is AbiFunction => item.type === 'function')
    const grace = functions.find((f) => f.name === 'claimGraceSec')
    assert.deepEqual([grace?.stateMutability, grace?.inputs.length, grace?.outputs.map((o) => o.type)], ['view', 0, ['uint64']])
    assert.deepEqual(
      functions.filter((f) => f.stateMutability !== 'view' && f.stateMutability !== 'pure').map((f) => f.name).sort(),
      ['claim', 'claimMany', 'open', 'openMany', 'refund', 'release', 'topUp'],
    )
    // Still the same after the escrow was used.
    const agreementId = await w.open('used')
    await claimVoucher(w.provider, { voucher: await w.voucher(agreementId, 1n), release: true })
    assert.equal(await escrowClaimGraceSec(w.requestor), BigInt(defaultClaimGraceSec))
  })

  it('refund fails at the second of expiry; the provider claims during the grace, even its last second; refund works from expiry + grace and returns only the unclaimed rest', async () => {
    const w = await world()
    const agreementId = await w.open('grace')
    const { expiresAtSec, refundableAtSec } = (await getEscrow(w.requestor, w.ref(agreementId)))!
    assert.equal(refundableAtSec, expiresAtSec + BigInt(w.claimGraceSec))
    const requestorBefore = await tokenBalanceOf(w.requestor, addresses.requestor)

    await w.chain.setNextBlockTimestamp(expiresAtSec)
    await assert.rejects(refundEscrow(w.requestor, agreementId), tooEarly(refundableAtSec, expiresAtSec))
    const first = await claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('30')) })
    assert.equal(await minedAtSec(w, first.hash), expiresAtSec)
    assert.equal(first.paidWei, parseEther('30'))

    await w.chain.setNextBlockTimestamp(refundableAtSec - 1n)
    await assert.rejects(refundEscrow(w.requestor, agreementId), tooEarly(refundableAtSec, refundableAtSec - 1n))
    const last = await claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('60')) })
    assert.equal(await minedAtSec(w, last.hash), refundableAtSec - 1n)
    assert.equal(last.paidWei, parseEther('30'))

    await w.chain.setNextBlockTimestamp(refundableAtSec)
    const refund = await refundEscrow(w.requestor, agreementId)
    assert.equal(await minedAtSec(w, refund.hash), refundableAtSec)
    assert.equal(refund.refundedWei, parseEther('40'))
    assert.equal(await tokenBalanceOf(w.requestor, addresses.provider), parseEther('60'))
    assert.equal(await tokenBalanceOf(w.requestor, addresses.requestor), requestorBefore + parseEther('40'))
    assert.equal(await tokenBalanceOf(w.requestor, w.escrowAddress), 0n)
    await assert.rejects(
      claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('70')) }),
      fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowClosed'),
    )
  })

  it('front-running: a requestor holding back vouchers cannot refund at the second of expiry; the provider claims what it holds; the requestor gets only the rest', async () => {
    const w = await world()
    const agreementId = await w.open('front-run')
    const { expiresAtSec, refundableAtSec } = (await getEscrow(w.requestor, w.ref(agreementId)))!
    // The provider claimed 20 on its timer and holds an unclaimed voucher for 80; the requestor sends no more (it holds
    // back what a settlement would sign) and tries to close the escrow at the very second of expiry.
    await claimVoucher(w.provider, { voucher: await w.voucher(agreementId, parseEther('20')) })
    const held = await w.voucher(agreementId, parseEther('80'))
    await w.chain.setNextBlockTimestamp(expiresAtSec)
    await assert.rejects(refundEscrow(w.requestor, agreementId), tooEarly(refundableAtSec, expiresAtSec))
    assert.equal((await getEscrow(w.requestor, w.ref(agreementId)))?.closed, false)

    // The provider's timer fires an hour into the grace: it is still paid in full for what it holds.
    await w.chain.increaseTime(3600)
    assert.equal((await claimVoucher(w.provider, { voucher: held })).paidWei, parseEther('60'))
    await w.chain.increaseTime(w.claimGraceSec)
    assert.equal((await refundEscrow(w.requestor, agreementId)).refundedWei, parseEther('20'))
    assert.equal(await tokenBalanceOf(w.requestor, addresses.provider), parseEther('80'))
  })

  it('with a grace of 0 (tests only) refund works from the second of expiry, as before the grace, and the held voucher is lost', async () => {
    const w = await world(31337, { claimGraceSec: 0 })
    assert.equal(await escrowClaimGraceSec(w.requestor), 0n)
    const agreementId = await w.open('no-grace')
    const { expiresAtSec, refundableAtSec } = (await getEscrow(w.requestor, w.ref(agreementId)))!
    assert.equal(refundableAtSec, expiresAtSec)
    const held = await w.voucher(agreementId, parseEther('50'))
    await w.chain.setNextBlockTimestamp(expiresAtSec - 1n)
    await assert.rejects(refundEscrow(w.requestor, agreementId), tooEarly(expiresAtSec, expiresAtSec - 1n))
    await w.chain.setNextBlockTimestamp(expiresAtSec)
    const refund = await refundEscrow(w.requestor, agreementId)
    assert.equal(await minedAtSec(w, refund.hash), expiresAtSec)
    assert.equal(refund.refundedWei, depositWei)
    await assert.rejects(claimVoucher(w.provider, { voucher: held }), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowClosed'))
  })

  it('claimMany during the grace pays every voucher in one tx; the refund of the rest waits for the grace to end', async () => {
    const w = await world()
    const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
    const ids = ['many-0', 'many-1', 'many-2'].map((label) => keccak256(toHex(label)))
    await openEscrows(w.requestor, ids.map((agreementId) => ({ agreementId, providerAddress: addresses.provider, amountWei: parseEther('10'), expiresAtSec })))
    const refundableAtSec = expiresAtSec + BigInt(w.claimGraceSec)

    await w.chain.setNextBlockTimestamp(expiresAtSec + BigInt(w.claimGraceSec / 2))
    const batch = await claimVouchers(w.provider, [
      { voucher: await w.voucher(ids[0]!, parseEther('4')) },
      { voucher: await w.voucher(ids[1]!, parseEther('6')), release: true },
    ])
    const claimedAtSec = await minedAtSec(w, batch.hash)
    assert.ok(claimedAtSec > expiresAtSec && claimedAtSec < refundableAtSec, `claimed at ${claimedAtSec}, grace ${expiresAtSec}..${refundableAtSec}`)
    assert.deepEqual([batch.paidWei, batch.refundedWei], [parseEther('10'), parseEther('4')])
    await assert.rejects(refundEscrow(w.requestor, ids[2]!), fails('HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY', 'RefundTooEarly'))
    await assert.rejects(refundEscrow(w.requestor, ids[0]!), fails('HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY', 'RefundTooEarly'))

    await w.chain.setNextBlockTimestamp(refundableAtSec)
    assert.equal((await refundEscrow(w.requestor, ids[0]!)).refundedWei, parseEther('6'))
    assert.equal((await refundEscrow(w.requestor, ids[2]!)).refundedWei, parseEther('10'))
    await assert.rejects(refundEscrow(w.requestor, ids[1]!), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowClosed'))
    assert.equal(await tokenBalanceOf(w.requestor, w.escrowAddress), 0n)
  })
})

describe('escrow: what the contract refuses', () => {
  it('a voucher signed by the wrong key', async () => {
    const w = await world()
    const agreementId = await w.open('job')
    const voucher = await w.voucher(agreementId, parseEther('1'), { privateKey: keys.stranger })
    // The provider names the agreement's requestor; taken from the voucher's signer, it finds no escrow at all.
    await assert.rejects(
      claimVoucher(w.provider, { voucher, requestorAddress: addresses.requestor }),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'InvalidVoucherSignature'),
    )
    await assert.rejects(claimVoucher(w.provider, { voucher }), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowNotFound'))
  })

  it('a voucher signed for another agreement', async () => {
    const w = await world()
    const agreementId = await w.open('job-a')
    await w.open('job-b')
    const forB = await w.voucher(keccak256(toHex('job-b')), parseEther('1'))
    // Relabelled as a voucher for job-a: the signature covers the agreement id, so it no longer matches.
    await assert.rejects(
      claimVoucher(w.provider, { voucher: { ...forB, agreementId } }),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'InvalidVoucherSignature'),
    )
  })

  it('a voucher signed for another chain id', async () => {
    const w = await world()
    const agreementId = await w.open('job')
    const voucher = await w.voucher(agreementId, parseEther('1'), { chainId: 1 })
    await assert.rejects(
      verifyVoucher(voucher, { expectedSigner: addresses.requestor, chainId: w.chainId, escrowAddress: w.escrowAddress, agreementId }),
      (e: unknown) => isHearthError(e, 'HEARTH_ERR_PAYMENT_VOUCHER_INVALID') && e.details?.check === 'chainId',
    )
    await assert.rejects(
      claimVoucher(w.provider, { voucher }),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'InvalidVoucherSignature'),
    )
  })

  it('a voucher signed for another escrow contract (same chain, same agreement id)', async () => {
    const w = await world()
    const agreementId = await w.open('job')
    // A second deployment: a voucher for it must not redeem on the first.
    const second = await deployHearthContracts(w.deployer.client)
    const voucher = await w.voucher(agreementId, parseEther('1'), { escrowAddress: second.escrowAddress })
    await assert.rejects(
      verifyVoucher(voucher, { expectedSigner: addresses.requestor, chainId: w.chainId, escrowAddress: w.escrowAddress, agreementId }),
      (e: unknown) => isHearthError(e, 'HEARTH_ERR_PAYMENT_VOUCHER_INVALID') && e.details?.check === 'escrowAddress',
    )
    await assert.rejects(
      claimVoucher(w.provider, { voucher }),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'InvalidVoucherSignature'),
    )
  })

  it('the same voucher on another chain with an identical deployment', async () => {
    // Same deployer, same nonces: the contracts land at the same address on both chains, so only the chain id
    // in the EIP-712 domain tells the vouchers apart.
    const a = await world(31337)
    const b = await world(31338)
    assert.equal(a.escrowAddress, b.escrowAddress)
    const agreementId = await a.open('job')
    await b.open('job')
    const voucherForA = await a.voucher(agreementId, parseEther('1'))
    await assert.rejects(
      claimVoucher(b.provider, { voucher: voucherForA }),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'InvalidVoucherSignature'),
    )
    assert.equal((await claimVoucher(a.provider, { voucher: voucherForA })).paidWei, parseEther('1'))
  })

  it('a claim above the deposit', async () => {
    const w = await world()
    const agreementId = await w.open('job')
    await assert.rejects(
      claimVoucher(w.provider, { voucher: await w.voucher(agreementId, depositWei + 1n) }),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'ClaimExceedsDeposit'),
    )
  })

  it('a claim by anyone but the provider, even with a valid voucher', async () => {
    const w = await world()
    const agreementId = await w.open('job')
    const voucher = await w.voucher(agreementId, parseEther('1'))
    await assert.rejects(claimVoucher(w.stranger, { voucher }), fails('HEARTH_ERR_PAYMENT_CHAIN', 'NotProvider'))
    await assert.rejects(claimVoucher(w.requestor, { voucher }), fails('HEARTH_ERR_PAYMENT_CHAIN', 'NotProvider'))
  })

  it('a refund by anyone but the requestor: the caller has no escrow under that id', async () => {
    const w = await world()
    const agreementId = await w.open('job')
    await w.chain.increaseTime(3600 + w.claimGraceSec)
    // The key is (msg.sender, agreement id): the provider's refund looks up an escrow that does not exist.
    await assert.rejects(refundEscrow(w.provider, agreementId), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowNotFound'))
    await assert.rejects(topUpEscrow(w.stranger, { agreementId, amountWei: 1n }), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowNotFound'))
    assert.equal((await getEscrow(w.requestor, w.ref(agreementId)))?.closed, false)
  })

  it('an early refund: refused until expiry plus the claim grace, naming the second from which it works', async () => {
    const w = await world()
    const agreementId = keccak256(toHex('job-early'))
    const expiresAtSec = (await chainTimeSec(w.requestor)) + 100n
    await openEscrow(w.requestor, { agreementId, providerAddress: addresses.provider, amountWei: depositWei, expiresAtSec })
    const refundableAtSec = expiresAtSec + BigInt(w.claimGraceSec)
    await assert.rejects(refundEscrow(w.requestor, agreementId), (error: unknown) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY'), String(error))
      assert.match(error.message, new RegExp(`works from chain time ${refundableAtSec}\\b`))
      assert.equal(error.details?.refundableAtSec, refundableAtSec.toString())
      assert.match(error.hint ?? '', /provider may still claim/)
      return true
    })
    await w.chain.increaseTime(50)
    await assert.rejects(refundEscrow(w.requestor, agreementId), fails('HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY', 'RefundTooEarly'))
    await w.chain.increaseTime(50 + w.claimGraceSec)
    assert.equal((await refundEscrow(w.requestor, agreementId)).refundedWei, depositWei)
  })

  it('a double claim: the same voucher twice, and a lower one after a higher', async () => {
    const w = await world()
    const agreementId = await w.open('job-double')
    const five = await w.voucher(agreementId, parseEther('5'))
    const nine = await w.voucher(agreementId, parseEther('9'))
    // Two claims of one voucher sent together: the nonce queue orders them, the contract pays once.
    const both = await Promise.allSettled([claimVoucher(w.provider, { voucher: nine }), claimVoucher(w.provider, { voucher: nine })])
    assert.deepEqual(both.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
    await assert.rejects(claimVoucher(w.provider, { voucher: five }), fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'NothingToClaim'))
    assert.equal(await tokenBalanceOf(w.provider, addresses.provider), parseEther('9'))
    assert.equal((await getEscrow(w.provider, w.ref(agreementId)))?.claimedWei, parseEther('9'))
  })

  it('a reused agreement id', async () => {
    const w = await world()
    await w.open('job')
    await assert.rejects(w.open('job'), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowAlreadyExists'))
  })

  it('bad open arguments: zero provider, zero amount, past expiry', async () => {
    const w = await world()
    const now = await chainTimeSec(w.requestor)
    const base = { agreementId: keccak256(toHex('job')), providerAddress: addresses.provider, amountWei: 1n, expiresAtSec: now + 60n }
    const zero = '0x0000000000000000000000000000000000000000'
    await assert.rejects(openEscrow(w.requestor, { ...base, providerAddress: zero }), fails('HEARTH_ERR_PAYMENT_CHAIN', 'ZeroProvider'))
    await assert.rejects(openEscrow(w.requestor, { ...base, amountWei: 0n }), fails('HEARTH_ERR_PAYMENT_CHAIN', 'ZeroAmount'))
    await assert.rejects(openEscrow(w.requestor, { ...base, expiresAtSec: now }), fails('HEARTH_ERR_PAYMENT_CHAIN', 'ExpiryInPast'))
  })

  it('a deposit larger than the wallet holds is INSUFFICIENT_FUNDS', async () => {
    const w = await world()
    await assert.rejects(w.open('job', parseEther('1001')), fails('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', 'ERC20InsufficientBalance'))
  })

  it('mint on a token deployed without a faucet is FAUCET_DISABLED', async () => {
    const w = await world()
    const real = await deployHearthContracts(w.deployer.client, { faucet: false, initialSupplyWei: parseEther('5') })
    const ctx = { ...w.stranger, tokenAddress: real.tokenAddress, escrowAddress: real.escrowAddress }
    await assert.rejects(
      mintTokens(ctx, { toAddress: addresses.stranger, amountWei: 1n }),
      fails('HEARTH_ERR_PAYMENT_FAUCET_DISABLED', 'FaucetDisabled'),
    )
    await assert.rejects(
      mintTokens({ ...ctx, client: w.deployer.client }, { toAddress: addresses.deployer, amountWei: 1n }),
      fails('HEARTH_ERR_PAYMENT_FAUCET_DISABLED', 'FaucetDisabled'),
    )
    // The initial supply is all there is, and it went to the deployer.
    assert.equal(await tokenBalanceOf(ctx, addresses.deployer), parseEther('5'))
  })
})

describe('escrow: keyed by (requestor, agreement id), so an id cannot be squatted', () => {
  it('a stranger who opens the agreement id first neither blocks nor touches the requestor\'s escrow', async () => {
    const w = await world()
    const agreementId = keccak256(toHex('leaked-id'))
    const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
    // The squatter front-runs with the same id and the same provider, and a tiny deposit.
    await openEscrow(w.stranger, { agreementId, providerAddress: addresses.provider, amountWei: 1n, expiresAtSec: expiresAtSec - 3000n })
    // Under the old key (agreement id alone) this reverted with EscrowAlreadyExists.
    await openEscrow(w.requestor, { agreementId, providerAddress: addresses.provider, amountWei: depositWei, expiresAtSec })

    const mine = await getEscrow(w.provider, w.ref(agreementId))
    const theirs = await getEscrow(w.provider, { requestorAddress: addresses.stranger, agreementId })
    assert.equal(mine?.depositedWei, depositWei)
    assert.equal(mine?.expiresAtSec, expiresAtSec)
    assert.equal(theirs?.depositedWei, 1n)
    assert.equal(await tokenBalanceOf(w.requestor, w.escrowAddress), depositWei + 1n)

    // The requestor's voucher pays from the requestor's escrow only, whichever escrow the provider points it at.
    const voucher = await w.voucher(agreementId, parseEther('10'))
    await assert.rejects(
      claimVoucher(w.provider, { voucher, requestorAddress: addresses.stranger }),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'InvalidVoucherSignature'),
    )
    assert.equal((await claimVoucher(w.provider, { voucher })).paidWei, parseEther('10'))
    // The squatter's own voucher cannot draw on the requestor's escrow either.
    const forged = await w.voucher(agreementId, parseEther('20'), { privateKey: keys.stranger })
    await assert.rejects(
      claimVoucher(w.provider, { voucher: forged, requestorAddress: addresses.requestor }),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'InvalidVoucherSignature'),
    )
    // The squatter's refund, after its own expiry and grace, returns its own wei and leaves the requestor's escrow open.
    await w.chain.increaseTime(700 + w.claimGraceSec)
    assert.equal((await refundEscrow(w.stranger, agreementId)).refundedWei, 1n)
    await assert.rejects(refundEscrow(w.requestor, agreementId), fails('HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY', 'RefundTooEarly'))
    assert.deepEqual(
      { closed: (await getEscrow(w.provider, w.ref(agreementId)))?.closed, claimed: (await getEscrow(w.provider, w.ref(agreementId)))?.claimedWei },
      { closed: false, claimed: parseEther('10') },
    )
  })

  it('two requestors with the same agreement id: a voucher from one does not redeem on the other\'s escrow', async () => {
    const w = await world()
    const agreementId = keccak256(toHex('shared-id'))
    const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
    for (const who of [w.requestor, w.requestor2]) {
      await openEscrow(who, { agreementId, providerAddress: addresses.provider, amountWei: depositWei, expiresAtSec })
    }
    const fromOne = await w.voucher(agreementId, parseEther('7'))
    await assert.rejects(
      claimVoucher(w.provider, { voucher: fromOne, requestorAddress: addresses.requestor2 }),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'InvalidVoucherSignature'),
    )
    await claimVoucher(w.provider, { voucher: fromOne })
    assert.equal((await getEscrow(w.provider, w.ref(agreementId)))?.claimedWei, parseEther('7'))
    assert.equal((await getEscrow(w.provider, { requestorAddress: addresses.requestor2, agreementId }))?.claimedWei, 0n)
    // Releasing one closes only that one.
    await releaseEscrow(w.provider, { requestorAddress: addresses.requestor2, agreementId })
    assert.equal((await getEscrow(w.provider, w.ref(agreementId)))?.closed, false)
    assert.equal(escrowKey(w.ref(agreementId)) === escrowKey({ requestorAddress: addresses.requestor2, agreementId }), false)
  })

  it('escrowKey matches the contract\'s', async () => {
    const w = await world()
    const ref = w.ref(keccak256(toHex('key')))
    const onChain = await w.requestor.client.publicClient.readContract({
      address: w.escrowAddress,
      abi: hearthEscrowAbi(),
      functionName: 'escrowKey',
      args: [ref.requestorAddress, ref.agreementId],
    })
    assert.equal(onChain, escrowKey(ref))
  })
})

describe('escrow: batches', () => {
  it('openMany: ten agreements in one tx and one token transfer, events per agreement, cheaper per agreement', async (t) => {
    const w = await world()
    const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
    const single = await openEscrow(w.requestor, { agreementId: keccak256(toHex('single')), providerAddress: addresses.provider, amountWei: parseEther('1'), expiresAtSec })
    const requests = Array.from({ length: 10 }, (_, i) => ({
      agreementId: keccak256(toHex(`batch-${i}`)),
      providerAddress: i % 2 === 0 ? addresses.provider : addresses.stranger,
      amountWei: parseEther(String(i + 1)),
      expiresAtSec: expiresAtSec + BigInt(i),
    }))
    const before_ = await tokenBalanceOf(w.requestor, addresses.requestor)
    const batch = await openEscrows(w.requestor, requests)
    assert.equal(batch.depositedWei, parseEther('55'))
    assert.equal(await tokenBalanceOf(w.requestor, addresses.requestor), before_ - parseEther('55'))
    for (const r of requests) {
      const state = await getEscrow(w.provider, w.ref(r.agreementId))
      assert.deepEqual([state?.providerAddress, state?.depositedWei, state?.expiresAtSec], [r.providerAddress, r.amountWei, BigInt(r.expiresAtSec)])
    }
    const { tokenTransfers, escrowEvents } = await logsOf(w, batch.hash)
    assert.equal(tokenTransfers, 1)
    assert.equal(escrowEvents.filter((e) => e === 'EscrowOpened').length, 10)
    const perAgreement = batch.gasUsed / 10n
    t.diagnostic(`gas: open ${single.gasUsed}, openMany(10) ${batch.gasUsed} = ${perAgreement} per agreement`)
    assert.ok(perAgreement < single.gasUsed, `openMany per agreement ${perAgreement} vs open ${single.gasUsed}`)
  })

  it('openMany is all or nothing, and refuses an empty batch', async () => {
    const w = await world()
    const taken = await w.open('taken')
    const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
    const before_ = await tokenBalanceOf(w.requestor, addresses.requestor)
    const fresh = keccak256(toHex('fresh'))
    await assert.rejects(
      openEscrows(w.requestor, [
        { agreementId: fresh, providerAddress: addresses.provider, amountWei: 1n, expiresAtSec },
        { agreementId: taken, providerAddress: addresses.provider, amountWei: 1n, expiresAtSec },
      ]),
      fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowAlreadyExists'),
    )
    assert.equal(await getEscrow(w.requestor, w.ref(fresh)), undefined)
    assert.equal(await tokenBalanceOf(w.requestor, addresses.requestor), before_)
    await assert.rejects(openEscrows(w.requestor, []), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EmptyBatch'))
    // The same id twice in one batch is a reuse too.
    await assert.rejects(
      openEscrows(w.requestor, [
        { agreementId: fresh, providerAddress: addresses.provider, amountWei: 1n, expiresAtSec },
        { agreementId: fresh, providerAddress: addresses.provider, amountWei: 1n, expiresAtSec },
      ]),
      fails('HEARTH_ERR_PAYMENT_CHAIN', 'EscrowAlreadyExists'),
    )
  })

  it('claimMany: vouchers from two requestors in one tx, one payment, merged refunds, exact balances, cheaper per agreement', async (t) => {
    const w = await world()
    const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
    const ids = Array.from({ length: 10 }, (_, i) => keccak256(toHex(`claim-batch-${i}`)))
    // Agreements 0-5 from requestor, 6-9 from requestor2; each deposits 10 HTT.
    const owner = (i: number): 'requestor' | 'requestor2' => (i < 6 ? 'requestor' : 'requestor2')
    await openEscrows(w.requestor, ids.slice(0, 6).map((agreementId) => ({ agreementId, providerAddress: addresses.provider, amountWei: parseEther('10'), expiresAtSec })))
    await openEscrows(w.requestor2, ids.slice(6).map((agreementId) => ({ agreementId, providerAddress: addresses.provider, amountWei: parseEther('10'), expiresAtSec })))
    // A single claim first, for the gas comparison (the provider's balance is then non-zero for both).
    const warm = await w.open('warm')
    await claimVoucher(w.provider, { voucher: await w.voucher(warm, 1n) })
    const single = await claimVoucher(w.provider, { voucher: await w.voucher(warm, 2n) })

    const claims = await Promise.all(
      ids.map(async (agreementId, i) => ({
        voucher: await w.voucher(agreementId, parseEther(String(i + 1)), { privateKey: keys[owner(i)] }),
        // Every other agreement also releases its rest.
        release: i % 2 === 0,
      })),
    )
    const balance = async (who: keyof typeof addresses) => tokenBalanceOf(w.provider, addresses[who])
    const before_ = { provider: await balance('provider'), requestor: await balance('requestor'), requestor2: await balance('requestor2') }
    const batch = await claimVouchers(w.provider, claims)

    const paidWei = parseEther('55')
    // Released: i = 0,2,4 (requestor: 9+7+5 = 21) and 6,8 (requestor2: 3+1 = 4).
    assert.equal(batch.paidWei, paidWei)
    assert.equal(batch.refundedWei, parseEther('25'))
    assert.equal(await balance('provider'), before_.provider + paidWei)
    assert.equal(await balance('requestor'), before_.requestor + parseEther('21'))
    assert.equal(await balance('requestor2'), before_.requestor2 + parseEther('4'))
    assert.deepEqual(batch.perAgreement.map((c) => c.paidWei), ids.map((_, i) => parseEther(String(i + 1))))
    for (const [i, agreementId] of ids.entries()) {
      const state = await getEscrow(w.provider, { requestorAddress: addresses[owner(i)], agreementId })
      assert.deepEqual([state?.claimedWei, state?.closed], [parseEther(String(i + 1)), i % 2 === 0])
    }
    // One payment to the provider, one merged refund per run of one requestor's claims.
    const { tokenTransfers, escrowEvents } = await logsOf(w, batch.hash)
    assert.equal(tokenTransfers, 3)
    assert.equal(escrowEvents.filter((e) => e === 'VoucherClaimed').length, 10)
    assert.equal(escrowEvents.filter((e) => e === 'EscrowReleased').length, 5)
    const perAgreement = batch.gasUsed / 10n
    t.diagnostic(`gas: claim ${single.gasUsed}, claimMany(10) ${batch.gasUsed} = ${perAgreement} per agreement`)
    assert.ok(perAgreement < single.gasUsed, `claimMany per agreement ${perAgreement} vs claim ${single.gasUsed}`)
  })

  it('claimMany is all or nothing: one bad voucher (double claim, wrong signer, other provider) pays nothing', async () => {
    const w = await world()
    const a = await w.open('a')
    const b = await w.open('b')
    const good = await w.voucher(a, parseEther('3'))
    await claimVoucher(w.provider, { voucher: await w.voucher(b, parseEther('4')) })
    const before_ = await tokenBalanceOf(w.provider, addresses.provider)
    await assert.rejects(
      claimVouchers(w.provider, [{ voucher: good }, { voucher: await w.voucher(b, parseEther('4')) }]),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'NothingToClaim'),
    )
    await assert.rejects(
      claimVouchers(w.provider, [{ voucher: good }, { voucher: await w.voucher(b, parseEther('5'), { privateKey: keys.stranger }), requestorAddress: addresses.requestor }]),
      fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'InvalidVoucherSignature'),
    )
    // The same voucher twice in one batch: the second adds nothing.
    await assert.rejects(claimVouchers(w.provider, [{ voucher: good }, { voucher: good }]), fails('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'NothingToClaim'))
    // Someone else's escrow in the batch.
    const theirs = keccak256(toHex('theirs'))
    await openEscrow(w.requestor, { agreementId: theirs, providerAddress: addresses.stranger, amountWei: 5n, expiresAtSec: (await chainTimeSec(w.requestor)) + 60n })
    await assert.rejects(
      claimVouchers(w.provider, [{ voucher: good }, { voucher: await w.voucher(theirs, 1n) }]),
      fails('HEARTH_ERR_PAYMENT_CHAIN', 'NotProvider'),
    )
    await assert.rejects(claimVouchers(w.provider, []), fails('HEARTH_ERR_PAYMENT_CHAIN', 'EmptyBatch'))
    assert.equal(await tokenBalanceOf(w.provider, addresses.provider), before_)
    assert.equal((await claimVouchers(w.provider, [{ voucher: good }])).paidWei, parseEther('3'))
  })
})

/** Counts the token's Transfer logs and names the escrow's events in one tx. */
async function logsOf(w: World, hash: Hex): Promise<{ tokenTransfers: number; escrowEvents: string[] }> {
  const receipt = await w.requestor.client.publicClient.getTransactionReceipt({ hash })
  const token = receipt.logs.filter((log) => log.address.toLowerCase() === w.requestor.tokenAddress.toLowerCase())
  const escrow = receipt.logs.filter((log) => log.address.toLowerCase() === w.escrowAddress.toLowerCase())
  const tokenEvents = parseEventLogs({ abi: hearthTokenAbi(), logs: token }) as unknown as { eventName: string }[]
  const escrowEvents = parseEventLogs({ abi: hearthEscrowAbi(), logs: escrow }) as unknown as { eventName: string }[]
  return { tokenTransfers: tokenEvents.filter((e) => e.eventName === 'Transfer').length, escrowEvents: escrowEvents.map((e) => e.eventName) }
}

describe('escrow: concurrency', () => {
  it('10 opens sent in parallel from one account all land (nonce queue), one tx each', async () => {
    const w = await world()
    const sentBefore = w.requestor.client.ledger.length
    const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
    const ids = Array.from({ length: 10 }, (_, i) => keccak256(toHex(`parallel-${i}`)))
    const outcomes = await Promise.all(
      ids.map((agreementId) =>
        openEscrow(w.requestor, { agreementId, providerAddress: addresses.provider, amountWei: parseEther('1'), expiresAtSec }),
      ),
    )
    assert.equal(new Set(outcomes.map((o) => o.hash)).size, 10)
    for (const agreementId of ids) assert.equal((await getEscrow(w.requestor, w.ref(agreementId)))?.depositedWei, parseEther('1'))
    assert.equal(await tokenBalanceOf(w.requestor, w.escrowAddress), parseEther('10'))
    const ledger = w.requestor.client.ledger.slice(sentBefore)
    assert.equal(ledger.length, 10)
    assert.ok(ledger.every((entry) => entry.label === 'escrow.open' && entry.status === 'success'))

    // A failure inside the batch (a reused id) does not block or desynchronise the others.
    const mixed = await Promise.allSettled([
      w.open('parallel-x'),
      openEscrow(w.requestor, { agreementId: ids[0]!, providerAddress: addresses.provider, amountWei: 1n, expiresAtSec }),
      w.open('parallel-y'),
    ])
    assert.deepEqual(mixed.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'])
    await w.open('parallel-z')
  })
})
