/**
 * The escrow bound to a hostile token (contracts/test/ReentrantToken.sol) that calls back into the escrow whenever the
 * escrow moves its tokens. The token acts as the escrow's provider or requestor, so its re-entrant calls pass every
 * caller check: only the reentrancy guard stands in the way, and these tests show it does on every entry point.
 */
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { encodeFunctionData, keccak256, maxUint256, parseEther, slice, toHex } from 'viem'
import type { Abi, Address, Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { isHearthError } from '../errors.ts'
import { createChainClient } from './chain-client.ts'
import type { ChainClient } from './chain-client.ts'
import { hearthEscrowAbi, loadContracts, loadTestContract } from './contracts.ts'
import { createEmbeddedChain } from './embedded-chain.ts'
import type { EmbeddedChain } from './embedded-chain.ts'
import { chainTimeSec } from './escrow.ts'
import { signVoucher } from './voucher.ts'

const deployerKey = keccak256(toHex('hearth-reentrancy-deployer'))
const requestorKey = keccak256(toHex('hearth-reentrancy-requestor'))
const deployer = privateKeyToAccount(deployerKey).address
const requestor = privateKeyToAccount(requestorKey).address
const bystander = privateKeyToAccount(keccak256(toHex('hearth-reentrancy-bystander'))).address

const guardSelector = slice(keccak256(toHex('ReentrancyGuardReentrantCall()')), 0, 4)

/** The escrow's claim grace here: refunds work from expiry plus this. */
const claimGraceSec = 600

interface Setup {
  chain: EmbeddedChain
  chainId: number
  token: Address
  escrow: Address
  deployerClient: ChainClient
  requestorClient: ChainClient
  /** The token's ABI plus the escrow's errors, so a bubbled escrow revert decodes by name. */
  tokenAbi: Abi
  escrowAbi: Abi
}

async function setup(): Promise<Setup> {
  const chain = await createEmbeddedChain({
    accounts: [deployer, requestor].map((address) => ({ address, balanceWei: parseEther('100') })),
  })
  const deployerClient = createChainClient({ transport: chain, privateKey: deployerKey, chainId: chain.chainId })
  const requestorClient = createChainClient({ transport: chain, privateKey: requestorKey, chainId: chain.chainId })
  const hostile = loadTestContract('ReentrantToken')
  const { HearthEscrow } = loadContracts()
  const token = (await deployerClient.deployContract({ label: 'deploy.ReentrantToken', abi: hostile.abi, bytecode: hostile.bytecode })).address
  const escrow = (
    await deployerClient.deployContract({ label: 'deploy.HearthEscrow', abi: HearthEscrow.abi, bytecode: HearthEscrow.bytecode, args: [token, BigInt(claimGraceSec)] })
  ).address
  const escrowAbi = hearthEscrowAbi()
  const tokenAbi = [...hostile.abi, ...escrowAbi.filter((item) => item.type === 'error')]
  const s: Setup = { chain, chainId: chain.chainId, token, escrow, deployerClient, requestorClient, tokenAbi, escrowAbi }
  // The requestor and the token itself (as an account) hold tokens and let the escrow pull them.
  await tokenWrite(s, 'mint', [requestor, parseEther('1000')])
  await tokenWrite(s, 'mint', [token, parseEther('1000')])
  await requestorClient.writeContract({ label: 'approve', address: token, abi: tokenAbi, functionName: 'approve', args: [escrow, maxUint256] })
  await execute(s, token, encodeFunctionData({ abi: tokenAbi, functionName: 'approve', args: [escrow, maxUint256] }))
  return s
}

function tokenWrite(s: Setup, functionName: string, args: readonly unknown[]) {
  return s.deployerClient.writeContract({ label: `token.${functionName}`, address: s.token, abi: s.tokenAbi, functionName, args })
}

/** The token calls `to` with `data` as itself. */
function execute(s: Setup, to: Address, data: Hex) {
  return tokenWrite(s, 'execute', [to, data])
}

function escrowCall(s: Setup, functionName: string, args: readonly unknown[]): Hex {
  return encodeFunctionData({ abi: s.escrowAbi, functionName, args })
}

async function tokenRead<T>(s: Setup, functionName: string, args: readonly unknown[] = []): Promise<T> {
  return (await s.deployerClient.publicClient.readContract({ address: s.token, abi: s.tokenAbi, functionName, args })) as T
}

async function escrowState(s: Setup, requestorAddress: Address, agreementId: Hex) {
  const [provider, deposited, claimed, , closed] = (await s.deployerClient.publicClient.readContract({
    address: s.escrow,
    abi: s.escrowAbi,
    functionName: 'escrows',
    args: [requestorAddress, agreementId],
  })) as [Address, bigint, bigint, bigint, boolean]
  return { provider, deposited, claimed, closed }
}

const balanceOf = (s: Setup, address: Address) => tokenRead<bigint>(s, 'balanceOf', [address])

function voucher(s: Setup, agreementId: Hex, cumulativeWei: bigint) {
  return signVoucher({ privateKey: requestorKey, chainId: s.chainId, escrowAddress: s.escrow, agreementId, cumulativeWei })
}

/**
 * Arms the token to call `attack` during the next token movement the escrow makes, runs `outer`, and checks: with the
 * revert bubbling up the whole tx fails with the guard's error; with it swallowed the outer call completes and the
 * token saw exactly the guard's error.
 */
async function assertGuarded(s: Setup, attack: Hex, outer: () => Promise<unknown>): Promise<void> {
  await tokenWrite(s, 'arm', [s.escrow, attack, false])
  await assert.rejects(outer(), (error: unknown) => {
    assert.ok(isHearthError(error, 'HEARTH_ERR_PAYMENT_CHAIN'), String(error))
    assert.match(error.message, /ReentrancyGuardReentrantCall\(\)/)
    return true
  })
  const attemptsBefore = await tokenRead<bigint>(s, 'attempts')
  await tokenWrite(s, 'arm', [s.escrow, attack, true])
  await outer()
  assert.equal(await tokenRead<bigint>(s, 'attempts'), attemptsBefore + 1n, 'the token did try to re-enter')
  assert.equal(await tokenRead<bigint>(s, 'successes'), 0n)
  assert.equal(await tokenRead<Hex>(s, 'lastRevert'), guardSelector)
}

before(() => buildContracts())

describe('escrow with a re-entering token: the guard holds on every entry point', () => {
  it('claim re-entered with a higher voucher: paid once, the rest stays in escrow', async () => {
    const s = await setup()
    const agreementId = keccak256(toHex('claim'))
    const expiresAtSec = (await chainTimeSec({ client: s.deployerClient })) + 3600n
    // The token is the provider, so its nested claim would pass the NotProvider check.
    await s.requestorClient.writeContract({ label: 'open', address: s.escrow, abi: s.escrowAbi, functionName: 'open', args: [agreementId, s.token, parseEther('100'), expiresAtSec] })
    const v30 = await voucher(s, agreementId, parseEther('30'))
    const v60 = await voucher(s, agreementId, parseEther('60'))
    const tokenBefore = await balanceOf(s, s.token)
    await assertGuarded(s, escrowCall(s, 'claim', [requestor, agreementId, v60.cumulativeWei, v60.signature, false]), () =>
      execute(s, s.escrow, escrowCall(s, 'claim', [requestor, agreementId, v30.cumulativeWei, v30.signature, false])),
    )
    assert.equal(await balanceOf(s, s.token), tokenBefore + parseEther('30'))
    assert.deepEqual(await escrowState(s, requestor, agreementId), { provider: s.token, deposited: parseEther('100'), claimed: parseEther('30'), closed: false })
    assert.equal(await balanceOf(s, s.escrow), parseEther('70'))
    // The nested call was one the contract accepts on its own: only the guard refused it.
    await execute(s, s.escrow, escrowCall(s, 'claim', [requestor, agreementId, v60.cumulativeWei, v60.signature, false]))
    assert.equal(await balanceOf(s, s.token), tokenBefore + parseEther('60'))
  })

  it('claim with release re-entered with release, and claimMany re-entered with claimMany', async () => {
    const s = await setup()
    const expiresAtSec = (await chainTimeSec({ client: s.deployerClient })) + 3600n
    const [a, b] = [keccak256(toHex('a')), keccak256(toHex('b'))]
    for (const id of [a, b]) {
      await s.requestorClient.writeContract({ label: 'open', address: s.escrow, abi: s.escrowAbi, functionName: 'open', args: [id, s.token, parseEther('10'), expiresAtSec] })
    }
    const va = await voucher(s, a, parseEther('4'))
    const vb = await voucher(s, b, parseEther('6'))
    const requestorBefore = await balanceOf(s, requestor)
    await assertGuarded(s, escrowCall(s, 'release', [requestor, a]), () =>
      execute(s, s.escrow, escrowCall(s, 'claim', [requestor, a, va.cumulativeWei, va.signature, true])),
    )
    // Paid 4 and refunded 6 exactly once.
    assert.equal(await balanceOf(s, requestor), requestorBefore + parseEther('6'))
    assert.deepEqual(await escrowState(s, requestor, a), { provider: s.token, deposited: parseEther('10'), claimed: parseEther('4'), closed: true })

    const item = (v: typeof vb, id: Hex) => ({ requestor, agreementId: id, cumulativeAmount: v.cumulativeWei, signature: v.signature, releaseRest: false })
    const vbMore = await voucher(s, b, parseEther('9'))
    await assertGuarded(s, escrowCall(s, 'claimMany', [[item(vbMore, b)]]), () => execute(s, s.escrow, escrowCall(s, 'claimMany', [[item(vb, b)]])))
    assert.equal((await escrowState(s, requestor, b)).claimed, parseEther('6'))
  })

  it('open, openMany and topUp re-entered while the escrow pulls the deposit', async () => {
    const s = await setup()
    const expiresAtSec = (await chainTimeSec({ client: s.deployerClient })) + 3600n
    // The token is the requestor here: its nested open/topUp would be its own, and allowed but for the guard.
    const [first, nested, many] = ['first', 'nested', 'many'].map((label) => keccak256(toHex(label))) as [Hex, Hex, Hex]
    await assertGuarded(s, escrowCall(s, 'open', [nested, bystander, 1n, expiresAtSec]), () =>
      execute(s, s.escrow, escrowCall(s, 'open', [first, bystander, parseEther('5'), expiresAtSec])),
    )
    assert.equal((await escrowState(s, s.token, nested)).deposited, 0n, 'the nested open left nothing')
    assert.equal((await escrowState(s, s.token, first)).deposited, parseEther('5'))

    await assertGuarded(s, escrowCall(s, 'topUp', [first, parseEther('1')]), () =>
      execute(s, s.escrow, escrowCall(s, 'openMany', [[{ agreementId: many, provider: bystander, amount: parseEther('2'), expiresAt: expiresAtSec }]])),
    )
    await assertGuarded(s, escrowCall(s, 'openMany', [[{ agreementId: nested, provider: bystander, amount: 1n, expiresAt: expiresAtSec }]]), () =>
      execute(s, s.escrow, escrowCall(s, 'topUp', [first, parseEther('1')])),
    )
    assert.equal((await escrowState(s, s.token, first)).deposited, parseEther('6'))
    assert.equal((await escrowState(s, s.token, nested)).deposited, 0n)
    assert.equal(await balanceOf(s, s.escrow), parseEther('8'))
  })

  it('refund re-entered with refund: the deposit comes back once', async () => {
    const s = await setup()
    const agreementId = keccak256(toHex('refund'))
    const expiresAtSec = (await chainTimeSec({ client: s.deployerClient })) + 60n
    await execute(s, s.escrow, escrowCall(s, 'open', [agreementId, bystander, parseEther('50'), expiresAtSec]))
    await s.chain.increaseTime(61 + claimGraceSec)
    const before_ = await balanceOf(s, s.token)
    await assertGuarded(s, escrowCall(s, 'refund', [agreementId]), () => execute(s, s.escrow, escrowCall(s, 'refund', [agreementId])))
    assert.equal(await balanceOf(s, s.token), before_ + parseEther('50'))
    assert.equal(await balanceOf(s, s.escrow), 0n)
    assert.equal((await escrowState(s, s.token, agreementId)).closed, true)
  })
})
