/**
 * An in-process Ethereum chain on Hardhat's EDR engine, behind an EIP-1193 `request` function that viem's `custom`
 * transport accepts, plus `serveChainHttp` to share it with other processes over JSON-RPC.
 */
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  ContractDecoder,
  EdrContext,
  L1_CHAIN_TYPE,
  MineOrdering,
  PRAGUE,
  l1GenesisState,
  l1HardforkFromString,
  l1ProviderFactory,
} from '@nomicfoundation/edr'
import type { Provider } from '@nomicfoundation/edr'
import { BaseError, hexToBytes } from 'viem'
import type { Address, EIP1193RequestFn } from 'viem'
import { HearthError } from '../errors.ts'

/** The hardfork the chain runs; contracts are compiled for the same one (scripts/build-contracts.ts). */
export const embeddedChainHardfork = PRAGUE

export interface EmbeddedChainAccount {
  address: Address
  balanceWei: bigint
}

export interface EmbeddedChainOptions {
  /** Default 31337, the usual development chain id. */
  chainId?: number
  /** Accounts funded with native currency (for gas) at genesis. Keys stay with their owners: txs come signed. */
  accounts: EmbeddedChainAccount[]
  /** Mine a block for every transaction (default true); with false, call `mine()`. */
  autoMine?: boolean
}

export interface EmbeddedChain {
  readonly chainId: number
  /** EIP-1193: pass the chain itself to viem's `custom(chain)`. Throws {@link ChainRpcError}. */
  readonly request: EIP1193RequestFn
  /** Moves the chain clock forward and mines a block, so the next block's timestamp is later by `seconds`. */
  increaseTime(seconds: number): Promise<void>
  /**
   * Fixes the timestamp of the next block (later than the latest block's); calls estimated before it is mined see it
   * too. For tests at the exact second of a deadline, which increaseTime cannot hit while the wall clock runs on.
   */
  setNextBlockTimestamp(timestampSec: bigint | number): Promise<void>
  mine(): Promise<void>
  /** Refuses further requests; EDR frees the chain when it is garbage collected. */
  close(): Promise<void>
}

/**
 * A JSON-RPC error as EIP-1193 providers throw it: numeric `code` and `data`, which viem reads (a HearthError's string
 * code would hide the revert data from viem's decoder). Code 3 with hex `data` is a revert.
 * It extends viem's BaseError on purpose: viem wraps any other thrown value as UnknownRpcError (code -1), which it
 * retries three times with backoff, so every revert would cost ~1 s.
 */
export class ChainRpcError extends BaseError {
  override name = 'ChainRpcError'
  readonly code: number
  readonly data: unknown

  constructor(code: number, message: string, data?: unknown) {
    super(message, { name: 'ChainRpcError' })
    this.code = code
    this.data = data
  }
}

/** JSON-RPC code for "execution reverted" (EIP-1474 / geth); viem decodes custom errors from its hex data. */
const revertErrorCode = 3

const blockGasLimit = 30_000_000n

let sharedContext: Promise<EdrContext> | undefined

/** One EDR context per process: it holds the registered chain factories and is cheap to share. */
function edrContext(): Promise<EdrContext> {
  sharedContext ??= (async () => {
    const context = new EdrContext()
    await context.registerProviderFactory(L1_CHAIN_TYPE, l1ProviderFactory())
    return context
  })()
  return sharedContext
}

export async function createEmbeddedChain(options: EmbeddedChainOptions): Promise<EmbeddedChain> {
  const chainId = options.chainId ?? 31337
  let provider: Provider
  try {
    const context = await edrContext()
    provider = await context.createProvider(
      L1_CHAIN_TYPE,
      {
        // Many blocks may share a second: otherwise each block adds a second and chain time runs ahead of the wall.
        allowBlocksWithSameTimestamp: true,
        allowUnlimitedContractSize: false,
        // Reverted calls must come back as errors (with revert data), as on a real node.
        bailOnCallFailure: true,
        // A reverted tx is still mined and returns its hash, as on a real node; the receipt says it failed.
        bailOnTransactionFailure: false,
        chainId: BigInt(chainId),
        coinbase: new Uint8Array(20),
        defaultTransactionGasLimit: blockGasLimit,
        genesisState: [
          ...l1GenesisState(l1HardforkFromString(embeddedChainHardfork)),
          ...options.accounts.map((account) => ({ address: hexToBytes(account.address), balance: account.balanceWei })),
        ],
        hardfork: embeddedChainHardfork,
        initialBaseFeePerGas: 1_000_000_000n,
        minGasPrice: 0n,
        mining: { autoMine: options.autoMine ?? true, memPool: { order: MineOrdering.Priority } },
        network: { genesisBlockGasLimit: blockGasLimit },
        networkId: BigInt(chainId),
        observability: {},
        ownedAccounts: [],
        precompileOverrides: [],
      },
      { enable: false, decodeConsoleLogInputsCallback: () => [], printLineCallback: () => {} },
      { subscriptionCallback: () => {} },
      new ContractDecoder(),
    )
  } catch (error) {
    throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', 'could not start the embedded chain (EDR)', {
      cause: error,
      details: { chainId },
    })
  }

  let closed = false
  let nextId = 1

  const request = async ({ method, params }: { method: string; params?: unknown }): Promise<unknown> => {
    if (closed) throw new ChainRpcError(4900, 'the embedded chain is closed')
    const response = await provider.handleRequest(
      JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params: params ?? [] }),
    )
    const body = (typeof response.data === 'string' ? JSON.parse(response.data) : response.data) as {
      result?: unknown
      error?: { code: number; message: string; data?: unknown }
    }
    if (body.error !== undefined) throw toRpcError(body.error)
    return body.result
  }

  return {
    chainId,
    request: request as EIP1193RequestFn,
    async increaseTime(seconds) {
      await request({ method: 'evm_increaseTime', params: [seconds] })
      await request({ method: 'evm_mine', params: [] })
    },
    async setNextBlockTimestamp(timestampSec) {
      await request({ method: 'evm_setNextBlockTimestamp', params: [Number(timestampSec)] })
    },
    async mine() {
      await request({ method: 'evm_mine', params: [] })
    },
    async close() {
      closed = true
    },
  }
}

/** EDR reports a revert as -32000 with `data.data` = revert bytes; viem wants code 3 and the bytes as `data`. */
function toRpcError(error: { code: number; message: string; data?: unknown }): ChainRpcError {
  const data = error.data
  if (typeof data === 'object' && data !== null && 'data' in data && typeof data.data === 'string' && data.data.startsWith('0x')) {
    return new ChainRpcError(revertErrorCode, error.message, data.data)
  }
  return new ChainRpcError(error.code, error.message, data)
}

export interface ChainHttpServer {
  /** e.g. http://127.0.0.1:54321 */
  readonly url: string
  close(): Promise<void>
}

/** Anything with an EIP-1193 `request`, such as an {@link EmbeddedChain}. */
export interface Eip1193Provider {
  request(args: { method: string; params?: unknown }): Promise<unknown>
}

/** Largest JSON-RPC body accepted; a deploy of the escrow is ~11 KB of hex. */
const maxBodyBytes = 8 * 1024 * 1024

/** Serves the chain as JSON-RPC over HTTP (single and batch requests), so several processes share one chain. */
export async function serveChainHttp(
  chain: Eip1193Provider,
  options: { port?: number; host?: string } = {},
): Promise<ChainHttpServer> {
  const host = options.host ?? '127.0.0.1'
  const server = createServer((req, res) => {
    handleHttp(chain, req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' })
      res.end(error instanceof Error ? error.message : 'internal error')
    })
  })
  try {
    await new Promise<void>((resolveListen, rejectListen) => {
      server.once('error', rejectListen)
      server.listen(options.port ?? 0, host, () => {
        server.off('error', rejectListen)
        resolveListen()
      })
    })
  } catch (error) {
    throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `could not serve the chain on ${host}:${options.port ?? 0}`, {
      cause: error,
      hint: 'choose another port, or port 0 for any free one',
    })
  }
  const { port } = server.address() as AddressInfo
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () =>
      new Promise<void>((resolveClose) => {
        server.close(() => resolveClose())
        // Keep-alive connections from viem's fetch would hold close() open otherwise.
        server.closeAllConnections()
      }),
  }
}

interface JsonRpcRequest {
  jsonrpc?: string
  id?: string | number | null
  method?: unknown
  params?: unknown
}

async function handleHttp(chain: Eip1193Provider, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end()
    return
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > maxBodyBytes) {
      res.writeHead(413).end()
      return
    }
    chunks.push(chunk)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    sendJson(res, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'parse error' } })
    return
  }
  const reply = Array.isArray(parsed)
    ? await Promise.all(parsed.map((one) => answer(chain, one as JsonRpcRequest)))
    : await answer(chain, parsed as JsonRpcRequest)
  sendJson(res, reply)
}

async function answer(chain: Eip1193Provider, message: JsonRpcRequest): Promise<object> {
  const id = message?.id ?? null
  if (typeof message !== 'object' || message === null || typeof message.method !== 'string') {
    return { jsonrpc: '2.0', id, error: { code: -32600, message: 'invalid request' } }
  }
  try {
    const result = await chain.request({ method: message.method, params: message.params ?? [] })
    return { jsonrpc: '2.0', id, result: result ?? null }
  } catch (error) {
    const code = typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : -32603
    const text = error instanceof BaseError ? error.shortMessage : error instanceof Error ? error.message : String(error)
    const data = (error as { data?: unknown }).data
    return { jsonrpc: '2.0', id, error: { code, message: text, ...(data === undefined ? {} : { data }) } }
  }
}

function sendJson(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}
