/**
 * One account on one chain: viem public + wallet clients, a nonce queue so concurrent sends never collide, EIP-1559
 * fees under an optional cap, retries of transient RPC failures, receipts awaited to N confirmations, and a ledger of
 * every transaction sent (the demo reports tx count and gas from it).
 */
import {
  BaseError,
  ContractFunctionRevertedError,
  HttpRequestError,
  TimeoutError,
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  formatGwei,
  getAddress,
  http,
  keccak256,
} from 'viem'
import type {
  Abi,
  Address,
  Chain,
  Hex,
  PrivateKeyAccount,
  PublicClient,
  TransactionReceipt,
  Transport,
  WalletClient,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { HearthError } from '../errors.ts'

/** Anything with an EIP-1193 `request` (an embedded chain, a browser wallet). */
export interface Eip1193Like {
  request(args: { method: string; params?: unknown }): Promise<unknown>
}

/** A JSON-RPC URL, a viem transport (`http(url)`, `custom(...)`), or an EIP-1193 object such as an embedded chain. */
export type ChainTransport = string | Transport | Eip1193Like

export interface RetryOptions {
  /** Retries of a transient failure (network error, HTTP 429/5xx, JSON-RPC -32005, timeout); default 4. */
  retries?: number
  /** First backoff; doubles each retry (with jitter), at most `maxRetryDelayMs`. Default 200 ms. */
  retryBaseDelayMs?: number
  /** Default 5000 ms; also caps a server's Retry-After. */
  maxRetryDelayMs?: number
  /** Called before each retry; for logs and tests. */
  onRetry?: (info: RetryInfo) => void
  /** Per HTTP request, when the transport is a URL; default 10 000 ms. */
  httpTimeoutMs?: number
}

export interface RetryInfo {
  method: string
  /** 1 for the first retry. */
  attempt: number
  delayMs: number
  error: unknown
}

export interface ChainClientOptions extends RetryOptions {
  transport: ChainTransport
  privateKey: Hex
  chainId: number
  /** How often to poll for receipts and blocks (default 100 ms: local chains are fast). */
  pollingIntervalMs?: number
  /**
   * The most this client pays per gas. A send is refused (HEARTH_ERR_PAYMENT_FEE_TOO_HIGH, nothing sent) when the
   * current base fee plus the tip is above it; otherwise maxFeePerGas is capped at it.
   */
  maxFeePerGasWei?: bigint
  /** The tip per gas; default: what the node suggests (eth_maxPriorityFeePerGas). */
  maxPriorityFeePerGasWei?: bigint
  /** Blocks a tx must have (its own included) before a write counts as done; default 1. */
  confirmations?: number
  /** How long to wait for a receipt and its confirmations; default 180 000 ms. */
  receiptTimeoutMs?: number
}

export interface LedgerEntry {
  hash: Hex
  /** What the tx did, e.g. `escrow.open`; chosen by the caller. */
  label: string
  gasUsed: bigint
  from: Address
  status: 'success' | 'reverted'
}

export interface WriteContractRequest {
  label: string
  address: Address
  abi: Abi
  functionName: string
  args?: readonly unknown[]
  /** Overrides the client's `confirmations` for this tx. */
  confirmations?: number
}

export interface DeployContractRequest {
  label: string
  abi: Abi
  bytecode: Hex
  args?: readonly unknown[]
  confirmations?: number
}

/** The fee fields a send uses: EIP-1559 where the chain has a base fee, a legacy gas price where it has none. */
export type FeeFields = { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint } | { gasPrice: bigint }

export interface ChainClient {
  readonly address: Address
  readonly chainId: number
  readonly chain: Chain
  readonly publicClient: PublicClient<Transport, Chain>
  readonly walletClient: WalletClient<Transport, Chain, PrivateKeyAccount>
  /** Every tx this client sent and saw mined (reverted ones too), appended as receipts arrive. */
  readonly ledger: LedgerEntry[]
  /** Sends a contract call and waits for its receipt; throws HEARTH_ERR_PAYMENT_CHAIN if it reverts. */
  writeContract(request: WriteContractRequest): Promise<TransactionReceipt>
  /** Deploys and waits; returns the new contract's address. */
  deployContract(request: DeployContractRequest): Promise<{ address: Address; receipt: TransactionReceipt }>
  /** The fees the next send would use; throws HEARTH_ERR_PAYMENT_FEE_TOO_HIGH above the cap. */
  fees(): Promise<FeeFields>
  /**
   * Forgets the locally counted nonce, so the next send asks the node: after a reorganisation dropped one of this
   * account's transactions its nonce is free again, and the local count would be ahead of the chain.
   */
  forgetNonce(): void
}

export function createChainClient(options: ChainClientOptions): ChainClient {
  const account = privateKeyToAccount(options.privateKey)
  const chain = chainFor(options.chainId)
  const transport = retryingTransport(options.transport, options)
  const pollingInterval = options.pollingIntervalMs ?? 100
  const publicClient = createPublicClient({ chain, transport, pollingInterval })
  const walletClient = createWalletClient({ account, chain, transport, pollingInterval })
  const ledger: LedgerEntry[] = []
  const defaultConfirmations = options.confirmations ?? 1

  // Sends are serialised per account and numbered locally: two txs prepared at once would otherwise read the same
  // pending nonce and one would be dropped. Only the send is serialised; fees and receipts are fetched concurrently.
  let nextNonce: number | undefined
  let queue: Promise<unknown> = Promise.resolve()
  const sendInOrder = (send: (nonce: number) => Promise<Hex>): Promise<Hex> => {
    const run = queue.then(async () => {
      nextNonce ??= await publicClient.getTransactionCount({ address: account.address, blockTag: 'pending' })
      try {
        const hash = await send(nextNonce)
        nextNonce += 1
        return hash
      } catch (error) {
        // The node may or may not have taken the tx: ask it again next time rather than guess.
        nextNonce = undefined
        throw error
      }
    })
    queue = run.catch(() => undefined)
    return run
  }

  // Concurrent sends share one fee lookup instead of asking the node twice per tx.
  let feesInFlight: Promise<FeeFields> | undefined
  const fees = (): Promise<FeeFields> => {
    feesInFlight ??= currentFees(publicClient, options).finally(() => {
      feesInFlight = undefined
    })
    return feesInFlight
  }

  const settle = async (hash: Hex, label: string, confirmations: number): Promise<TransactionReceipt> => {
    let receipt: TransactionReceipt
    try {
      receipt = await publicClient.waitForTransactionReceipt({
        hash,
        confirmations,
        pollingInterval,
        timeout: options.receiptTimeoutMs ?? 180_000,
      })
    } catch (error) {
      throw toChainError(error, `${label}: no receipt for ${hash}`)
    }
    ledger.push({ hash, label, gasUsed: receipt.gasUsed, from: account.address, status: receipt.status })
    if (receipt.status !== 'success') {
      throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `${label}: transaction ${hash} reverted`, {
        details: { hash, label, gasUsed: receipt.gasUsed.toString() },
      })
    }
    return receipt
  }

  return {
    address: account.address,
    chainId: options.chainId,
    chain,
    publicClient: publicClient as PublicClient<Transport, Chain>,
    walletClient,
    ledger,
    fees,
    forgetNonce() {
      // Queued behind any send in progress, so that one's nonce is not reused.
      queue = queue.then(() => {
        nextNonce = undefined
      })
    },
    async writeContract(request) {
      let hash: Hex
      try {
        const feeFields = await fees()
        hash = await sendInOrder((nonce) =>
          walletClient.writeContract({
            address: request.address,
            abi: request.abi,
            functionName: request.functionName,
            args: request.args ?? [],
            nonce,
            ...feeFields,
          } as Parameters<typeof walletClient.writeContract>[0]),
        )
      } catch (error) {
        throw toChainError(error, request.label)
      }
      return settle(hash, request.label, request.confirmations ?? defaultConfirmations)
    },
    async deployContract(request) {
      let hash: Hex
      try {
        const feeFields = await fees()
        hash = await sendInOrder((nonce) =>
          walletClient.deployContract({
            abi: request.abi,
            bytecode: request.bytecode,
            args: request.args ?? [],
            nonce,
            ...feeFields,
          } as Parameters<typeof walletClient.deployContract>[0]),
        )
      } catch (error) {
        throw toChainError(error, request.label)
      }
      const receipt = await settle(hash, request.label, request.confirmations ?? defaultConfirmations)
      if (receipt.contractAddress === null || receipt.contractAddress === undefined) {
        throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `${request.label}: receipt of ${hash} has no contract address`)
      }
      // Receipts carry lowercase addresses; hand out the checksummed form used everywhere else.
      return { address: getAddress(receipt.contractAddress), receipt }
    },
  }
}

/** A read-only client over the same retrying transport, for balances and views without a key. */
export function createReadClient(options: RetryOptions & { transport: ChainTransport; chainId: number; pollingIntervalMs?: number }): PublicClient<Transport, Chain> {
  return createPublicClient({
    chain: chainFor(options.chainId),
    transport: retryingTransport(options.transport, options),
    pollingInterval: options.pollingIntervalMs ?? 100,
  }) as PublicClient<Transport, Chain>
}

/** Asks a node which chain it serves (eth_chainId), with the same retries as every other request. */
export async function rpcChainId(transport: ChainTransport, options: RetryOptions = {}): Promise<number> {
  const request = retryingRequest(baseRequest(transport, options), options)
  let reply: unknown
  try {
    reply = await request({ method: 'eth_chainId' })
  } catch (error) {
    throw toChainError(error, 'eth_chainId')
  }
  const chainId = typeof reply === 'string' ? Number.parseInt(reply, 16) : Number.NaN
  if (!Number.isSafeInteger(chainId) || chainId <= 0) {
    throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `eth_chainId answered ${JSON.stringify(reply)}, not a chain id`)
  }
  return chainId
}

function chainFor(chainId: number): Chain {
  return defineChain({
    id: chainId,
    name: `hearth-${chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [] } },
  })
}

/**
 * The fees for a send now. maxFeePerGas is twice the base fee plus the tip, which survives six full blocks of
 * +12.5% base fee each, so a tx is not stranded by a short spike; the cap lowers it, and refuses outright when
 * even the current base fee plus the tip is above it (the tx could not be included now).
 */
async function currentFees(
  publicClient: PublicClient,
  options: Pick<ChainClientOptions, 'maxFeePerGasWei' | 'maxPriorityFeePerGasWei'>,
): Promise<FeeFields> {
  const capWei = options.maxFeePerGasWei
  const tooHigh = (neededWei: bigint, what: string): HearthError =>
    new HearthError(
      'HEARTH_ERR_PAYMENT_FEE_TOO_HIGH',
      `${what} is ${formatGwei(neededWei)} gwei per gas, above the cap of ${formatGwei(capWei!)} gwei: nothing was sent`,
      {
        hint: 'wait for fees to fall, or raise maxFeePerGas (--max-fee-gwei)',
        details: { neededWei: neededWei.toString(), capWei: capWei!.toString() },
      },
    )
  try {
    const block = await publicClient.getBlock({ blockTag: 'latest' })
    if (block.baseFeePerGas === null || block.baseFeePerGas === undefined) {
      // A chain without EIP-1559: one legacy gas price, under the same cap.
      const gasPrice = await publicClient.getGasPrice()
      if (capWei !== undefined && gasPrice > capWei) throw tooHigh(gasPrice, 'the gas price')
      return { gasPrice }
    }
    const baseFeeWei = block.baseFeePerGas
    const tipWei = options.maxPriorityFeePerGasWei ?? (await publicClient.estimateMaxPriorityFeePerGas())
    if (capWei !== undefined && baseFeeWei + tipWei > capWei) throw tooHigh(baseFeeWei + tipWei, 'the base fee plus tip')
    let maxFeeWei = baseFeeWei * 2n + tipWei
    if (capWei !== undefined && maxFeeWei > capWei) maxFeeWei = capWei
    return { maxFeePerGas: maxFeeWei, maxPriorityFeePerGas: tipWei }
  } catch (error) {
    throw toChainError(error, 'fee estimate')
  }
}

type RequestFn = (args: { method: string; params?: unknown }) => Promise<unknown>

/** The transport's own request function, with viem's retries off: ours wrap it. */
function baseRequest(transport: ChainTransport, options: RetryOptions): RequestFn {
  if (typeof transport === 'string') {
    const { request } = http(transport, { retryCount: 0, timeout: options.httpTimeoutMs ?? 10_000 })({ retryCount: 0 })
    return request as RequestFn
  }
  if (typeof transport === 'function') {
    const { request } = transport({ retryCount: 0 })
    return request as RequestFn
  }
  return (args) => transport.request(args)
}

function retryingTransport(transport: ChainTransport, options: RetryOptions): Transport {
  return custom({ request: retryingRequest(baseRequest(transport, options), options) }, { retryCount: 0 })
}

/** Wraps a request function with retries of transient failures, backing off exponentially with jitter. */
export function retryingRequest(request: RequestFn, options: RetryOptions = {}): RequestFn {
  const retries = options.retries ?? 4
  const baseDelayMs = options.retryBaseDelayMs ?? 200
  const maxDelayMs = options.maxRetryDelayMs ?? 5000
  return async (args) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await request(args)
      } catch (error) {
        // A raw tx whose first send reached the node but whose answer was lost: the node now refuses it as known.
        // It is the same signed tx, so its hash is ours; it was sent exactly once.
        if (attempt > 0 && args.method === 'eth_sendRawTransaction') {
          const known = await alreadySent(request, args.params, error)
          if (known !== undefined) return known
        }
        if (attempt >= retries || !isTransientRpcError(error)) throw error
        const backoffMs = Math.min(maxDelayMs, baseDelayMs * 2 ** attempt)
        // Half fixed, half random: clients that failed together do not all come back at the same instant.
        let delayMs = Math.round(backoffMs / 2 + (Math.random() * backoffMs) / 2)
        const retryAfterMs = retryAfterOf(error)
        if (retryAfterMs !== undefined) delayMs = Math.min(maxDelayMs, Math.max(delayMs, retryAfterMs))
        options.onRetry?.({ method: args.method, attempt: attempt + 1, delayMs, error })
        await new Promise((resolve) => setTimeout(resolve, delayMs))
      }
    }
  }
}

async function alreadySent(request: RequestFn, params: unknown, error: unknown): Promise<Hex | undefined> {
  const raw = Array.isArray(params) ? (params[0] as unknown) : undefined
  if (typeof raw !== 'string' || !raw.startsWith('0x')) return undefined
  const text = errorText(error)
  if (!/already known|known transaction|nonce too low|already imported/i.test(text)) return undefined
  const hash = keccak256(raw as Hex)
  // "nonce too low" may also mean another tx took the nonce: only a node that holds this very tx proves it was ours.
  try {
    return (await request({ method: 'eth_getTransactionByHash', params: [hash] })) === null ? undefined : hash
  } catch {
    return undefined
  }
}

const transientSocketCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
])

/**
 * True for failures that may pass if asked again: the network (no HTTP status at all), HTTP 429 and 5xx, JSON-RPC
 * -32005 (limit exceeded: rate limits), and timeouts. Reverts, bad params and 4xx are answers, not failures.
 */
export function isTransientRpcError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (e instanceof HttpRequestError) return e.status === undefined || e.status === 429 || e.status >= 500
    if (e instanceof TimeoutError) return true
    const code = (e as { code?: unknown }).code
    if (code === -32005 || code === 429) return true
    if (typeof code === 'string' && transientSocketCodes.has(code)) return true
    if (e instanceof TypeError && e.message === 'fetch failed') return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

function retryAfterOf(error: unknown): number | undefined {
  const header = error instanceof HttpRequestError ? error.headers?.get('retry-after') : undefined
  if (header === undefined || header === null) return undefined
  const seconds = Number(header)
  if (Number.isFinite(seconds)) return seconds * 1000
  const at = Date.parse(header)
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now())
}

function errorText(error: unknown): string {
  const parts: string[] = []
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (e instanceof Error) parts.push(e.message)
    const details = (e as { details?: unknown }).details
    if (typeof details === 'string') parts.push(details)
    e = (e as { cause?: unknown }).cause
  }
  return parts.join(' | ')
}

export interface RevertInfo {
  /** The custom error's name, e.g. `NothingToClaim`, when the ABI knows it. */
  errorName: string | undefined
  args: readonly unknown[] | undefined
}

/** Finds a decoded contract revert in a viem error chain; undefined when the failure was not a revert. */
export function revertInfo(error: unknown): RevertInfo | undefined {
  // Look through our own wrapping (toChainError keeps the viem error as cause).
  while (error instanceof HearthError && error.cause !== undefined) error = error.cause
  if (!(error instanceof BaseError)) return undefined
  const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError)
  if (!(reverted instanceof ContractFunctionRevertedError)) return undefined
  return {
    errorName: reverted.data?.errorName ?? (reverted.reason === undefined ? undefined : 'Error'),
    args: reverted.data?.args ?? (reverted.reason === undefined ? undefined : [reverted.reason]),
  }
}

/**
 * Wraps a viem failure as HEARTH_ERR_PAYMENT_CHAIN, naming the custom error when it was a revert
 * (`escrow.claim reverted: NothingToClaim(5, 5)`); the viem error stays as `cause`.
 */
export function toChainError(error: unknown, action: string): HearthError {
  if (error instanceof HearthError) return error
  const revert = revertInfo(error)
  if (revert !== undefined) {
    const name = revert.errorName ?? 'unknown error'
    const args = (revert.args ?? []).map(String).join(', ')
    return new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `${action} reverted: ${name}(${args})`, {
      cause: error,
      details: { action, errorName: revert.errorName, args: revert.args?.map(String) },
    })
  }
  const text = error instanceof BaseError ? error.shortMessage : error instanceof Error ? error.message : String(error)
  // viem's short message is sometimes generic ("Missing or invalid parameters"); the node's own words are in details.
  const reason = error instanceof BaseError && error.details !== undefined && error.details !== '' && !text.includes(error.details) ? ` (${error.details})` : ''
  return new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `${action} failed: ${text}${reason}`, { cause: error, details: { action } })
}
