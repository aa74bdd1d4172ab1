import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  createPublicClient,
  createWalletClient,
  custom,
  http,
  keccak256,
  parseEther,
  toHex,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { ChainRpcError, createEmbeddedChain, serveChainHttp } from './embedded-chain.ts'
import type { EmbeddedChain } from './embedded-chain.ts'

const alice = privateKeyToAccount(keccak256(toHex('hearth-test-alice')))
const bob = privateKeyToAccount(keccak256(toHex('hearth-test-bob')))

/** Init code whose constructor reverts with the 4 bytes 0xdeadbeef, to see how reverts come back. */
const revertingInitCode = '0x63deadbeef60e01b60005260046000fd'

describe('createEmbeddedChain', () => {
  let chain: EmbeddedChain
  before(async () => {
    chain = await createEmbeddedChain({ chainId: 4242, accounts: [{ address: alice.address, balanceWei: parseEther('10') }] })
  })
  after(() => chain.close())

  it('answers EIP-1193 requests with the configured chain id and funded accounts', async () => {
    assert.equal(chain.chainId, 4242)
    assert.equal(await chain.request({ method: 'eth_chainId' }), '0x1092')
    const client = createPublicClient({ transport: custom(chain) })
    assert.equal(await client.getBalance({ address: alice.address }), parseEther('10'))
    assert.equal(await client.getBalance({ address: bob.address }), 0n)
  })

  it('defaults to chain id 31337', async () => {
    const other = await createEmbeddedChain({ accounts: [] })
    assert.equal(other.chainId, 31337)
    assert.equal(await other.request({ method: 'eth_chainId' }), '0x7a69')
    await other.close()
  })

  it('mines signed transactions at once (auto-mine)', async () => {
    const wallet = createWalletClient({ account: alice, transport: custom(chain) })
    const publicClient = createPublicClient({ transport: custom(chain) })
    const hash = await wallet.sendTransaction({ to: bob.address, value: 123n, chain: null })
    const receipt = await publicClient.getTransactionReceipt({ hash })
    assert.equal(receipt.status, 'success')
    assert.equal(await publicClient.getBalance({ address: bob.address }), 123n)
  })

  it('returns reverts as JSON-RPC code 3 with the revert bytes as hex data', async () => {
    await assert.rejects(
      chain.request({ method: 'eth_call', params: [{ data: revertingInitCode }, 'latest'] } as never),
      (error: unknown) => {
        assert.ok(error instanceof ChainRpcError)
        assert.equal(error.code, 3)
        assert.equal(error.data, '0xdeadbeef')
        return true
      },
    )
  })

  it('keeps other JSON-RPC errors with their own code', async () => {
    await assert.rejects(chain.request({ method: 'hearth_nope' } as never), (error: unknown) => {
      assert.ok(error instanceof ChainRpcError)
      assert.notEqual(error.code, 3)
      return true
    })
  })

  it('increaseTime moves the next block timestamp forward', async () => {
    const client = createPublicClient({ transport: custom(chain) })
    const before_ = (await client.getBlock()).timestamp
    await chain.increaseTime(3600)
    const after_ = (await client.getBlock()).timestamp
    assert.ok(after_ - before_ >= 3600n, `expected +3600 s, got ${after_ - before_}`)
    assert.ok(after_ - before_ < 3700n)
  })

  it('setNextBlockTimestamp fixes the next block\'s timestamp to the second', async () => {
    const client = createPublicClient({ transport: custom(chain) })
    const target = (await client.getBlock()).timestamp + 1000n
    await chain.setNextBlockTimestamp(target)
    await chain.mine()
    assert.equal((await client.getBlock()).timestamp, target)
  })

  it('refuses requests once closed', async () => {
    const other = await createEmbeddedChain({ accounts: [] })
    await other.close()
    await assert.rejects(other.request({ method: 'eth_chainId' }), (error: unknown) => {
      assert.ok(error instanceof ChainRpcError)
      assert.equal(error.code, 4900)
      return true
    })
  })
})

describe('serveChainHttp', () => {
  it('serves the same chain to a viem http client, reads, writes and reverts included', async () => {
    const chain = await createEmbeddedChain({ accounts: [{ address: alice.address, balanceWei: parseEther('5') }] })
    const server = await serveChainHttp(chain, { port: 0, host: '127.0.0.1' })
    try {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)
      const overHttp = createPublicClient({ transport: http(server.url, { retryCount: 0 }) })
      const inProcess = createPublicClient({ transport: custom(chain) })
      assert.equal(await overHttp.getChainId(), 31337)
      assert.equal(await overHttp.getBalance({ address: alice.address }), parseEther('5'))

      const wallet = createWalletClient({ account: alice, transport: http(server.url, { retryCount: 0 }) })
      const hash = await wallet.sendTransaction({ to: bob.address, value: 7n, chain: null })
      assert.equal((await overHttp.getTransactionReceipt({ hash })).status, 'success')
      // Written over HTTP, seen in-process: one chain.
      assert.equal(await inProcess.getBalance({ address: bob.address }), 7n)
      assert.equal(await overHttp.getBlockNumber(), await inProcess.getBlockNumber())

      const reply = await fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify([
          { jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] },
          { jsonrpc: '2.0', id: 2, method: 'eth_call', params: [{ data: revertingInitCode }, 'latest'] },
        ]),
      })
      const batch = (await reply.json()) as { id: number; result?: string; error?: { code: number; data?: string } }[]
      assert.deepEqual(batch[0], { jsonrpc: '2.0', id: 1, result: '0x7a69' })
      assert.equal(batch[1]?.error?.code, 3)
      assert.equal(batch[1]?.error?.data, '0xdeadbeef')
    } finally {
      await server.close()
      await chain.close()
    }
  })
})
