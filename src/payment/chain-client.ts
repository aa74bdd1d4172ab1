/**
 * One account on one chain: viem public + wallet clients, a nonce queue so concurrent sends never collide, receipts
 * awaited, and a ledger of every transaction sent (the demo reports tx count and gas from it).
 */
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  getAddress,
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

export interface ChainClientOptions {
  /** A viem transport (`http(url)`, `custom(...)`) or an EIP-1193 object such as an embedded chain. */
  transport: Transport | Eip1193Like
  privateKey: Hex
  chainId: number
  /** How often to poll for receipts when one is not there at once (default 100 ms: local chains are fast). */
  pollingIntervalMs?: number
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
}

export interface DeployContractRequest {
  label: string
  abi: Abi
  bytecode: Hex
  args?: readonly unknown[]
}

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
}

export function createChainClient(options: ChainClientOptions): ChainClient {
  const account = privateKeyToAccount(options.privateKey)
  const chain = defineChain({
    id: options.chainId,
    name: `hearth-${options.chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [] } },
  })
  const transport: Transport =
    typeof options.transport === 'function' ? options.transport : custom(options.transport as Eip1193Like)
  const pollingInterval = options.pollingIntervalMs ?? 100
  const publicClient = createPublicClient({ chain, transport, pollingInterval })
  const walletClient = createWalletClient({ account, chain, transport, pollingInterval })
  const ledger: LedgerEntry[] = []

  // Sends are serialised per account and numbered locally: two txs prepared at once would otherwise read the same
  // pending nonce and one would be dropped. Only the send is serialised; receipts are awaited concurrently.
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

  const settle = async (hash: Hex, label: string): Promise<TransactionReceipt> => {
    let receipt: TransactionReceipt
    try {
      receipt = await publicClient.waitForTransactionReceipt({ hash })
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
    async writeContract(request) {
      let hash: Hex
      try {
        hash = await sendInOrder((nonce) =>
          walletClient.writeContract({
            address: request.address,
            abi: request.abi,
            functionName: request.functionName,
            args: request.args ?? [],
            nonce,
          } as Parameters<typeof walletClient.writeContract>[0]),
        )
      } catch (error) {
        throw toChainError(error, request.label)
      }
      return settle(hash, request.label)
    },
    async deployContract(request) {
      let hash: Hex
      try {
        hash = await sendInOrder((nonce) =>
          walletClient.deployContract({
            abi: request.abi,
            bytecode: request.bytecode,
            args: request.args ?? [],
            nonce,
          } as Parameters<typeof walletClient.deployContract>[0]),
        )
      } catch (error) {
        throw toChainError(error, request.label)
      }
      const receipt = await settle(hash, request.label)
      if (receipt.contractAddress === null || receipt.contractAddress === undefined) {
        throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `${request.label}: receipt of ${hash} has no contract address`)
      }
      // Receipts carry lowercase addresses; hand out the checksummed form used everywhere else.
      return { address: getAddress(receipt.contractAddress), receipt }
    },
  }
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
  return new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `${action} failed: ${text}`, { cause: error, details: { action } })
}
