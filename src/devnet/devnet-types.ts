/**
 * The shapes of the embedded network: what startDevnet is asked for (DevnetInit) and what it hands over (Devnet, its
 * nodes). devnet.ts re-exports them, so importers keep using that path; its parts (devnet-chain.ts, devnet-nodes.ts)
 * import them from here.
 */
import type { Address, Hex } from 'viem'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { Pricing } from '../market/pricing.ts'
import type { Host, PeerConnection } from '../net/host.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import type { LedgerEntry } from '../payment/chain-client.ts'
import type { DeploymentRecord } from '../payment/deploy.ts'
import type { EmbeddedChain } from '../payment/embedded-chain.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import type { ProviderAgent, ProviderAgentInit } from '../provider/provider-agent.ts'
import type { AccountLimits, ClaimPolicy } from '../provider/provider-account.ts'
import type { Requestor } from '../requestor/requestor.ts'
import type { Store } from '../store/store.ts'

export interface DevnetInit {
  providers: number
  /** The IP address every node listens on (default 127.0.0.1; an address others reach for nodes on other hosts). */
  listenHost?: string
  /**
   * Serve the embedded chain by JSON-RPC on this address and port, so that nodes in other processes and on other
   * hosts can join (see Devnet.deployment). Default: the chain stays inside this process.
   */
  serveChain?: { host: string; port: number }
  /** Where the nodes keep their keys, databases and work folders; a fresh temporary folder when absent. */
  dataDir?: string
  /** Price of the first provider; each next one asks 10% more, so the market has a spread. */
  basePerTaskWei?: bigint
  threadsPerProvider?: number
  /** Tokens the requestor starts with. */
  requestorFundsWei?: bigint
  /** The last K providers never answer proposals: an unresponsive part of the market, for tests and benchmarks. */
  silentProviders?: number
  /**
   * The first K providers return wrong results: with probability `badProviderRate` each completed task's outputs are
   * changed before the result is signed (see provider/wrong-results.ts). The first are the cheapest, so a price-led
   * requestor meets them first, as it would meet a cheater undercutting the market.
   */
  badProviders?: number
  /**
   * Default 0.5: often enough that a few tasks show rejections, seldom enough that some of a cheater's results pass
   * their checks, as an intermittent cheater's do (a verifier that trusts one passed check is caught out).
   */
  badProviderRate?: number
  /** Extra offer properties for provider i (0-based): location, GPUs, disk. */
  providerProperties?: (index: number) => Record<string, string | number | boolean | string[]>
  /** Provider i's conditions on demands, in the constraint language. */
  providerConstraints?: (index: number) => string
  /** Provider i's prices (default: per task, the first at basePerTaskWei and each next 10% dearer). */
  providerPricing?: (index: number) => Pricing
  /**
   * Settle on an existing EVM chain instead of the embedded one: its JSON-RPC URL, the token and escrow deployed there
   * (hearth deploy writes the record), and a key holding gas (and tokens, when the token has no faucet) to fund the
   * nodes' accounts. Default: the embedded chain.
   */
  chain?: { rpcUrl: string; deployment: { chainId: number; tokenAddress: Address; escrowAddress: Address; faucet: boolean }; funderKey: Hex; gasFundsWei?: bigint }
  /** Native programs the providers offer (name → absolute path), run under bubblewrap when it is available. */
  nativePrograms?: Record<string, string>
  /** A Docker Engine API socket (Docker, or podman's service) the providers run containers through. */
  dockerSocket?: string
  /**
   * The requestor accepts every signed result as it is, with no verification and no reputation: only for tests that
   * show what verification is for. Default false.
   */
  trustAllResults?: boolean
  /** The runtime the requestor recomputes spot-checked tasks with (default: a wasi runtime of its own). */
  requestorLocalRuntime?: WasiRuntime
  /** How much unpaid work providers risk per agreement, and how they check escrows (see provider-account.ts). */
  providerAccountLimits?: Partial<AccountLimits>
  /** How often providers bill running ExeScript activities (default 10 s). */
  providerActivityMeterEveryMs?: number
  /** Providers host services (replicas started by the ExeScript `serve` command); off by default, as for an owner. */
  providerServices?: boolean
  /** Disk provider `index` lends for storage (see ProviderAgentInit.storage; the folder is its own), or none. */
  providerStorage?: (index: number) => { offeredGib: number; perGibHourWei: string; graceSec?: number } | undefined
  /** Other ways a provider misbehaves, for tests of hostile providers (see ProviderAgentInit.misbehave). */
  providerMisbehave?: (index: number) => ProviderAgentInit['misbehave'] | undefined
  /** Where providers move their claimed earnings (see ProviderAgentInit.payoutAddress). */
  providerPayoutAddress?: (index: number) => Address | undefined
  /** Seeds the requestor's verification choices (which results are checked), for reproducible runs. */
  verificationSeed?: number
  /** The requestor leaves debit notes unanswered: a requestor that does not pay, for tests. */
  requestorIgnoresDebitNotes?: boolean
  /** When providers claim their vouchers besides at the end (see ProviderAgentInit.claimPolicy). */
  providerClaimPolicy?: Partial<ClaimPolicy>
}

export interface DevnetNode {
  name: string
  identity: NodeIdentity
  host: Host
  store: Store
  payment: EscrowContext
}

export interface DevnetProvider extends DevnetNode {
  agent: ProviderAgent
  runtime: WasiRuntime
}

export interface Devnet {
  /** The embedded chain; undefined when the devnet settles on an external chain by JSON-RPC. */
  chain: EmbeddedChain | undefined
  /** What a joining node needs to settle here (the contracts and the JSON-RPC URL); only with `serveChain`. */
  deployment: DeploymentRecord | undefined
  /** With `serveChain`: the deployer's key file (mode 0600), whose gas and faucet a joining node may be funded from. */
  funderKeyFile: string | undefined
  chainId: number
  tokenAddress: Address
  escrowAddress: Address
  requestor: DevnetNode & { agent: Requestor }
  providers: DevnetProvider[]
  /** Token balance of an address, in wei. */
  balanceOf(address: Address): Promise<bigint>
  /** Every transaction the network's nodes sent (deployer included), in order. */
  transactions(): LedgerEntry[]
  /** The requestor's open connections: to whom, and whether direct or relayed. */
  connections(): PeerConnection[]
  stop(): Promise<void>
}

/** Undoes one step of starting a devnet; a devnet stops by running its stops in reverse. */
export type DevnetStop = () => Promise<void> | void
