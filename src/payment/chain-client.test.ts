import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { http, keccak256, parseEther, toHex } from 'viem'
import type { Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { isHearthError } from '../errors.ts'
import { createChainClient, revertInfo, toChainError } from './chain-client.ts'
import { loadContracts } from './contracts.ts'
import { createEmbeddedChain, serveChainHttp } from './embedded-chain.ts'

const ownerKey = keccak256(toHex('hearth-test-owner'))
const otherKey = keccak256(toHex('hearth-test-other'))
const owner = privateKeyToAccount(ownerKey).address
const other = privateKeyToAccount(otherKey).address

async function setup() {
  const chain = await createEmbeddedChain({
    accounts: [owner, other].map((address) => ({ address, balanceWei: parseEther('10') })),
  })
  const client = createChainClient({ transport: chain, privateKey: ownerKey, chainId: chain.chainId })
  const { HearthToken } = loadContracts()
  const { address: tokenAddress } = await client.deployContract({
    label: 'deploy.HearthToken',
    abi: HearthToken.abi,
    bytecode: HearthToken.bytecode,
  })
  const balanceOf = async (address: Hex) =>
    (await client.publicClient.readContract({ address: tokenAddress, abi: HearthToken.abi, functionName: 'balanceOf', args: [address] })) as bigint
  return { chain, client, tokenAddress, abi: HearthToken.abi, balanceOf }
}

before(() => buildContracts())

describe('createChainClient', () => {
  it('deploys and writes for one account, recording every tx in the ledger', async () => {
    const { client, tokenAddress, abi, balanceOf } = await setup()
    assert.equal(client.address, owner)
    const receipt = await client.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 5n] })
    assert.equal(receipt.status, 'success')
    assert.equal(await balanceOf(other), 5n)
    assert.deepEqual(
      client.ledger.map(({ label, from, status }) => ({ label, from, status })),
      [
        { label: 'deploy.HearthToken', from: owner, status: 'success' },
        { label: 'token.mint', from: owner, status: 'success' },
      ],
    )
    assert.equal(client.ledger[1]?.hash, receipt.transactionHash)
    assert.equal(client.ledger[1]?.gasUsed, receipt.gasUsed)
    assert.ok(client.ledger.every((entry) => entry.gasUsed > 21_000n))
  })

  it('sends 20 txs at once from one account without nonce collisions', async () => {
    const { client, tokenAddress, abi, balanceOf } = await setup()
    const receipts = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        client.writeContract({ label: `mint-${i}`, address: tokenAddress, abi, functionName: 'mint', args: [other, BigInt(i + 1)] }),
      ),
    )
    assert.ok(receipts.every((r) => r.status === 'success'))
    assert.equal(await balanceOf(other), 210n)
    const nonces = await Promise.all(
      receipts.map(async (r) => (await client.publicClient.getTransaction({ hash: r.transactionHash })).nonce),
    )
    assert.deepEqual(nonces.sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1))
    assert.equal(client.ledger.length, 21)
  })

  it('names the custom error of a revert, keeps viem error as cause, and sends nothing', async () => {
    const { chain, tokenAddress, abi } = await setup()
    const stranger = createChainClient({ transport: chain, privateKey: otherKey, chainId: chain.chainId })
    await assert.rejects(
      stranger.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 1n] }),
      (error: unknown) => {
        assert.ok(isHearthError(error, 'HEARTH_ERR_PAYMENT_CHAIN'))
        assert.match(error.message, /token\.mint reverted: OwnableUnauthorizedAccount\(0x/)
        assert.equal(error.details?.errorName, 'OwnableUnauthorizedAccount')
        assert.equal(revertInfo(error)?.errorName, 'OwnableUnauthorizedAccount')
        assert.ok(error.cause instanceof Error)
        return true
      },
    )
    assert.equal(stranger.ledger.length, 0)
    // The failed send did not burn or skip a nonce: the next one lands.
    const { HearthToken } = loadContracts()
    await stranger.writeContract({ label: 'token.approve', address: tokenAddress, abi: HearthToken.abi, functionName: 'approve', args: [owner, 1n] })
    assert.equal(stranger.ledger.length, 1)
  })

  it('works over an http transport too (another process would use this)', async () => {
    const { chain, tokenAddress, abi, balanceOf } = await setup()
    const server = await serveChainHttp(chain, { port: 0 })
    try {
      const remote = createChainClient({ transport: http(server.url, { retryCount: 0 }), privateKey: ownerKey, chainId: chain.chainId })
      await remote.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 9n] })
      assert.equal(await balanceOf(other), 9n)
      await assert.rejects(
        remote.writeContract({ label: 'token.transfer', address: tokenAddress, abi, functionName: 'transfer', args: [other, 10n ** 30n] }),
        /token\.transfer reverted: ERC20InsufficientBalance/,
      )
    } finally {
      await server.close()
    }
  })

  it('toChainError describes non-revert failures too', () => {
    const error = toChainError(new Error('socket hang up'), 'eth_call')
    assert.ok(isHearthError(error, 'HEARTH_ERR_PAYMENT_CHAIN'))
    assert.match(error.message, /eth_call failed: socket hang up/)
    assert.equal(revertInfo(error), undefined)
  })
})
