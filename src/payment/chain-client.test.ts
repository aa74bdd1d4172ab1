import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { before, describe, it } from 'node:test'
import { HttpRequestError, http, keccak256, parseEther, parseGwei, toHex } from 'viem'
import type { Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { isHearthError } from '../errors.ts'
import { createChainClient, isTransientRpcError, revertInfo, rpcChainId, toChainError } from './chain-client.ts'
import type { RetryInfo } from './chain-client.ts'
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
    args: [true, 0n],
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
      stranger.writeContract({ label: 'token.transfer', address: tokenAddress, abi, functionName: 'transfer', args: [owner, 1n] }),
      (error: unknown) => {
        assert.ok(isHearthError(error, 'HEARTH_ERR_PAYMENT_CHAIN'))
        assert.match(error.message, /token\.transfer reverted: ERC20InsufficientBalance\(0x/)
        assert.equal(error.details?.errorName, 'ERC20InsufficientBalance')
        assert.equal(revertInfo(error)?.errorName, 'ERC20InsufficientBalance')
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

  it('rpcChainId asks the node which chain it serves', async () => {
    const { chain } = await setup()
    const server = await serveChainHttp(chain, { port: 0 })
    try {
      assert.equal(await rpcChainId(server.url), 31337)
      assert.equal(await rpcChainId(chain), 31337)
    } finally {
      await server.close()
    }
  })
})

describe('createChainClient: EIP-1559 fees under a cap', () => {
  it('sends with maxFeePerGas at most the cap, and a tip', async () => {
    const { chain, tokenAddress, abi } = await setup()
    const capWei = parseGwei('3')
    const client = createChainClient({ transport: chain, privateKey: ownerKey, chainId: chain.chainId, maxFeePerGasWei: capWei })
    const receipt = await client.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 1n] })
    const tx = await client.publicClient.getTransaction({ hash: receipt.transactionHash })
    assert.equal(tx.type, 'eip1559')
    assert.ok(tx.maxFeePerGas! <= capWei, `maxFeePerGas ${tx.maxFeePerGas}`)
    assert.ok(tx.maxPriorityFeePerGas! > 0n)
    // Without a cap: twice the base fee plus the tip, well above what the block charges.
    const uncapped = await createChainClient({ transport: chain, privateKey: ownerKey, chainId: chain.chainId }).fees()
    assert.ok('maxFeePerGas' in uncapped && uncapped.maxFeePerGas > uncapped.maxPriorityFeePerGas)
  })

  it('refuses to send when the base fee plus tip is above the cap, naming both, and keeps the nonce', async () => {
    const { chain, client: ownerClient, tokenAddress, abi } = await setup()
    // The embedded chain's base fee is ~1 gwei and its suggested tip 1 gwei: 1.5 gwei cannot get a tx included.
    const capped = createChainClient({ transport: chain, privateKey: ownerKey, chainId: chain.chainId, maxFeePerGasWei: parseGwei('1.5') })
    const nonceBefore = await ownerClient.publicClient.getTransactionCount({ address: owner })
    await assert.rejects(
      capped.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 1n] }),
      (error: unknown) => {
        assert.ok(isHearthError(error, 'HEARTH_ERR_PAYMENT_FEE_TOO_HIGH'), String(error))
        assert.match(error.message, /above the cap of 1\.5 gwei: nothing was sent/)
        assert.equal(error.details?.capWei, parseGwei('1.5').toString())
        return true
      },
    )
    assert.equal(await ownerClient.publicClient.getTransactionCount({ address: owner }), nonceBefore)
    assert.equal(capped.ledger.length, 0)
    // A lower tip fits under the same cap.
    const lowTip = createChainClient({ transport: chain, privateKey: ownerKey, chainId: chain.chainId, maxFeePerGasWei: parseGwei('1.5'), maxPriorityFeePerGasWei: parseGwei('0.1') })
    await lowTip.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 1n] })
  })
})

describe('createChainClient: confirmations', () => {
  it('waits until the tx has N blocks (its own included), mined here with evm_mine', async () => {
    const { chain, tokenAddress, abi } = await setup()
    const client = createChainClient({ transport: chain, privateKey: ownerKey, chainId: chain.chainId, confirmations: 3, pollingIntervalMs: 10 })
    let done = false
    const startBlock = await client.publicClient.getBlockNumber()
    const write = client.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 1n] }).then((receipt) => {
      done = true
      return receipt
    })
    const settleFor = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
    // The tx is mined into its own block once it is sent (automine): only then do further blocks confirm it.
    while ((await client.publicClient.getBlockNumber()) === startBlock) await settleFor(10)
    await settleFor(150)
    assert.equal(done, false, 'one block is not three confirmations')
    await chain.mine()
    await settleFor(150)
    assert.equal(done, false, 'two blocks are not three confirmations')
    await chain.mine()
    const receipt = await write
    assert.equal(await client.publicClient.getBlockNumber(), receipt.blockNumber + 2n)
    // A per-write override: one confirmation does not wait.
    await client.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 1n], confirmations: 1 })
  })
})

type Fault = 'http503' | 'http429' | 'rpc-32005' | 'drop' | 'forward-then-drop'

/**
 * An HTTP JSON-RPC proxy in front of a chain that injects faults: each queued fault applies to the next request
 * (of `method`, when given); everything else is forwarded untouched.
 */
async function flakyProxy(upstreamUrl: string) {
  const faults: { fault: Fault; method?: string }[] = []
  const seen: string[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks).toString('utf8')
        const { id, method } = JSON.parse(body) as { id: number; method: string }
        seen.push(method)
        const index = faults.findIndex((f) => f.method === undefined || f.method === method)
        const fault = index >= 0 ? faults.splice(index, 1)[0]!.fault : undefined
        if (fault === 'http503' || fault === 'http429') {
          res.writeHead(fault === 'http503' ? 503 : 429, { 'content-type': 'text/plain', ...(fault === 'http429' ? { 'retry-after': '0' } : {}) }).end('busy')
          return
        }
        if (fault === 'rpc-32005') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32005, message: 'rate limited' } }))
          return
        }
        if (fault === 'drop') {
          req.socket.destroy()
          return
        }
        const upstream = await fetch(upstreamUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
        const text = await upstream.text()
        // The node handled it, but the answer never arrives: the client cannot know whether its tx went out.
        if (fault === 'forward-then-drop') {
          req.socket.destroy()
          return
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(text)
      })()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    inject: (fault: Fault, method?: string) => faults.push({ fault, ...(method === undefined ? {} : { method }) }),
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

describe('createChainClient: retries of transient RPC failures', () => {
  it('retries network errors, HTTP 503 and 429, and JSON-RPC -32005 with backoff, then succeeds', async () => {
    const { chain, tokenAddress, abi, balanceOf } = await setup()
    const server = await serveChainHttp(chain, { port: 0 })
    const proxy = await flakyProxy(server.url)
    try {
      const retries: RetryInfo[] = []
      const client = createChainClient({
        transport: proxy.url,
        privateKey: ownerKey,
        chainId: chain.chainId,
        retryBaseDelayMs: 5,
        onRetry: (info) => retries.push(info),
      })
      proxy.inject('http503')
      proxy.inject('http429')
      proxy.inject('rpc-32005', 'eth_estimateGas')
      proxy.inject('drop', 'eth_sendRawTransaction')
      await client.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 3n] })
      assert.equal(await balanceOf(other), 3n)
      // The 503 and the 429 hit the same first request (its first and second retry).
      assert.equal(retries.length, 4)
      assert.deepEqual(retries.map((r) => r.attempt), [1, 2, 1, 1])
      assert.ok(retries.some((r) => r.method === 'eth_sendRawTransaction'))
      // Backoff grows: a request that keeps failing waits longer each time.
      retries.length = 0
      for (let i = 0; i < 3; i++) proxy.inject('http503', 'eth_blockNumber')
      await client.publicClient.getBlockNumber({ cacheTime: 0 })
      assert.deepEqual(retries.map((r) => r.attempt), [1, 2, 3])
      assert.ok(retries[2]!.delayMs >= retries[0]!.delayMs)
    } finally {
      await proxy.close()
      await server.close()
    }
  })

  it('gives up after the retry budget, and never retries a revert', async () => {
    const { chain, tokenAddress, abi } = await setup()
    const server = await serveChainHttp(chain, { port: 0 })
    const proxy = await flakyProxy(server.url)
    try {
      const retries: RetryInfo[] = []
      const client = createChainClient({ transport: proxy.url, privateKey: otherKey, chainId: chain.chainId, retries: 2, retryBaseDelayMs: 1, onRetry: (info) => retries.push(info) })
      for (let i = 0; i < 3; i++) proxy.inject('http503', 'eth_blockNumber')
      await assert.rejects(client.publicClient.getBlockNumber({ cacheTime: 0 }), (error: unknown) => error instanceof HttpRequestError && error.status === 503)
      assert.equal(retries.length, 2)
      retries.length = 0
      await assert.rejects(
        client.writeContract({ label: 'token.transfer', address: tokenAddress, abi, functionName: 'transfer', args: [owner, 1n] }),
        /ERC20InsufficientBalance/,
      )
      assert.equal(retries.length, 0)
    } finally {
      await proxy.close()
      await server.close()
    }
  })

  it('a raw tx whose answer was lost is sent exactly once: the retry sees it is known and takes its hash', async () => {
    const { chain, tokenAddress, abi, balanceOf } = await setup()
    const server = await serveChainHttp(chain, { port: 0 })
    const proxy = await flakyProxy(server.url)
    try {
      const client = createChainClient({ transport: proxy.url, privateKey: ownerKey, chainId: chain.chainId, retryBaseDelayMs: 1 })
      const nonceBefore = await client.publicClient.getTransactionCount({ address: owner })
      proxy.inject('forward-then-drop', 'eth_sendRawTransaction')
      const receipt = await client.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 4n] })
      assert.equal(receipt.status, 'success')
      assert.equal(await balanceOf(other), 4n)
      assert.equal(await client.publicClient.getTransactionCount({ address: owner }), nonceBefore + 1)
      assert.equal(proxy.seen.filter((m) => m === 'eth_sendRawTransaction').length, 2)
      // The queue goes on with the next nonce.
      await client.writeContract({ label: 'token.mint', address: tokenAddress, abi, functionName: 'mint', args: [other, 1n] })
      assert.equal(await balanceOf(other), 5n)
    } finally {
      await proxy.close()
      await server.close()
    }
  })

  it('isTransientRpcError: network, 429, 5xx, -32005 and timeouts yes; reverts, 4xx and bad params no', () => {
    const http = (status?: number) => new HttpRequestError({ url: 'http://x', ...(status === undefined ? {} : { status }) })
    assert.equal(isTransientRpcError(http()), true)
    assert.equal(isTransientRpcError(http(429)), true)
    assert.equal(isTransientRpcError(http(502)), true)
    assert.equal(isTransientRpcError(http(400)), false)
    assert.equal(isTransientRpcError(Object.assign(new Error('rate'), { code: -32005 })), true)
    assert.equal(isTransientRpcError(Object.assign(new Error('reverted'), { code: 3 })), false)
    assert.equal(isTransientRpcError(Object.assign(new Error('bad'), { code: -32602 })), false)
    assert.equal(isTransientRpcError(new Error('wrapped', { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) })), true)
    assert.equal(isTransientRpcError(new TypeError('fetch failed')), true)
  })
})

describe('createChainClient: concurrency over HTTP', () => {
  it('50 txs sent at once from one account over HTTP all land, with nonces 1..50 and no gaps', async () => {
    const { chain, tokenAddress, abi, balanceOf } = await setup()
    const server = await serveChainHttp(chain, { port: 0 })
    try {
      const client = createChainClient({ transport: server.url, privateKey: ownerKey, chainId: chain.chainId, pollingIntervalMs: 20 })
      const receipts = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          client.writeContract({ label: `mint-${i}`, address: tokenAddress, abi, functionName: 'mint', args: [other, BigInt(i + 1)] }),
        ),
      )
      assert.ok(receipts.every((r) => r.status === 'success'))
      assert.equal(await balanceOf(other), (50n * 51n) / 2n)
      const nonces = await Promise.all(receipts.map(async (r) => (await client.publicClient.getTransaction({ hash: r.transactionHash })).nonce))
      assert.deepEqual(nonces.sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1))
      assert.equal(client.ledger.length, 50)
    } finally {
      await server.close()
    }
  })
})
