/**
 * devnet/ owns the embedded default: a whole Hearth network on this machine. One in-process chain (EDR) with the token
 * and escrow deployed, N providers and a requestor, each a real libp2p node on 127.0.0.1 with its own key file,
 * SQLite database and chain account. The demo, `hearth run` without a network, the tests and the benchmarks use it.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseEther, type Address, type Hex } from 'viem'
import { keyFileName, loadOrCreateIdentity, type NodeIdentity } from '../identity/node-identity.ts'
import { HearthError } from '../errors.ts'
import type { MarketNode } from '../market/market-node.ts'
import type { Pricing } from '../market/pricing.ts'
import { createHost, type Host, type PeerConnection } from '../net/host.ts'
import { createWasiRuntime, type WasiRuntime } from '../exec/wasi-runtime.ts'
import { createNativeRuntime } from '../exec/native-runtime.ts'
import { createDockerRuntime } from '../exec/docker-runtime.ts'
import { createChainClient, rpcChainId, type ChainClient, type LedgerEntry } from '../payment/chain-client.ts'
import { hearthTokenAbi } from '../payment/contracts.ts'
import { deployHearth, type DeploymentRecord } from '../payment/deploy.ts'
import { createEmbeddedChain, serveChainHttp, type EmbeddedChain } from '../payment/embedded-chain.ts'
import { mintTokens, tokenBalanceOf, type EscrowContext } from '../payment/escrow.ts'
import { createProviderAgent, type ProviderAgent, type ProviderAgentInit } from '../provider/provider-agent.ts'
import type { AccountLimits, ClaimPolicy } from '../provider/provider-account.ts'
import { createRequestor, type Requestor } from '../requestor/requestor.ts'
import { createReputationBook } from '../requestor/reputation.ts'
import { openStore, type Store } from '../store/store.ts'
import { seededRandom } from '../seeded-random.ts'

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

const embeddedChainId = 31337

/** Resolves once the node's offer book holds `count` offers; a node that misses some asks its peers again. */
async function waitForOffers(market: MarketNode, count: number, timeoutMs = 10_000): Promise<void> {
  const deadline = AbortSignal.timeout(timeoutMs)
  const retry = setInterval(() => void market.syncAll().catch(() => undefined), 100)
  try {
    await market.offerBook.waitFor(count, undefined, { signal: deadline })
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_MARKET_NO_OFFERS', `a devnet node saw ${market.offerBook.size()} of ${count} offers within ${timeoutMs} ms`, {
      cause,
      details: { stats: market.stats() },
    })
  } finally {
    clearInterval(retry)
  }
}

export async function startDevnet(init: DevnetInit): Promise<Devnet> {
  const badProviders = init.badProviders ?? 0
  if (!Number.isInteger(badProviders) || badProviders < 0 || badProviders > init.providers) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `badProviders is ${badProviders}; it must be a whole number from 0 to the ${init.providers} providers`, {
      hint: 'ask for at most as many bad providers as providers',
    })
  }
  const ownsDataDir = init.dataDir === undefined
  const dataDir = init.dataDir ?? (await mkdtemp(join(tmpdir(), 'hearth-devnet-')))
  const threads = init.threadsPerProvider ?? 1
  const basePerTaskWei = init.basePerTaskWei ?? parseEther('0.001')
  const stops: (() => Promise<void> | void)[] = []
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch(() => undefined)
    if (ownsDataDir) await rm(dataDir, { recursive: true, force: true })
  }

  try {
    const names = ['deployer', 'requestor', ...Array.from({ length: init.providers }, (_, i) => `provider-${i + 1}`)]
    const identities = await Promise.all(names.map((name) => loadOrCreateIdentity(join(dataDir, name))))
    const requestorFundsWei = init.requestorFundsWei ?? parseEther('1000')
    let chain: EmbeddedChain | undefined
    let chainId: number
    let clients: ChainClient[]
    let deployment: { tokenAddress: Address; escrowAddress: Address }
    let joinable: DeploymentRecord | undefined
    if (init.chain === undefined) {
      chainId = embeddedChainId
      const embedded = await createEmbeddedChain({
        chainId,
        accounts: identities.map((identity) => ({ address: identity.address, balanceWei: parseEther('1000') })),
      })
      chain = embedded
      stops.push(() => embedded.close())
      clients = identities.map((identity) => createChainClient({ transport: embedded, privateKey: identity.privateKey, chainId }))
      const record = await deployHearth(clients[0]!)
      deployment = record
      if (init.serveChain !== undefined) {
        const server = await serveChainHttp(embedded, init.serveChain)
        stops.push(() => server.close())
        joinable = { ...record, rpcUrl: server.url }
      }
      await mintTokens({ client: clients[0]!, ...deployment }, { toAddress: identities[1]!.address, amountWei: requestorFundsWei })
    } else {
      // Any EVM chain by JSON-RPC: the contracts are already deployed there, and a funded key pays every node's gas
      // and the requestor's tokens (from the faucet on a development deployment, else from its own balance).
      const external = init.chain
      chainId = external.deployment.chainId
      const served = await rpcChainId(external.rpcUrl)
      if (served !== chainId) {
        throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment is for chain ${chainId} but ${external.rpcUrl} serves chain ${served}`)
      }
      clients = identities.map((identity) => createChainClient({ transport: external.rpcUrl, privateKey: identity.privateKey, chainId }))
      deployment = { tokenAddress: external.deployment.tokenAddress, escrowAddress: external.deployment.escrowAddress }
      const funder = createChainClient({ transport: external.rpcUrl, privateKey: external.funderKey, chainId })
      const gasWei = external.gasFundsWei ?? parseEther('1')
      for (const identity of identities.slice(1)) {
        const hash = await funder.walletClient.sendTransaction({ to: identity.address, value: gasWei })
        await funder.publicClient.waitForTransactionReceipt({ hash })
      }
      const funderContext = { client: funder, ...deployment }
      if (external.deployment.faucet) {
        await mintTokens(funderContext, { toAddress: identities[1]!.address, amountWei: requestorFundsWei })
      } else {
        // Without a faucet the requestor's tokens come out of the funder's own: at most what it holds.
        const heldWei = await tokenBalanceOf(funderContext, funder.address)
        const amountWei = init.requestorFundsWei ?? (heldWei < requestorFundsWei ? heldWei : requestorFundsWei)
        if (amountWei === 0n || heldWei < amountWei) {
          throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `the funding key holds ${heldWei} wei of the token, too little to fund the requestor`, {
            hint: 'fund that account with the token, or deploy with a faucet on a development chain',
          })
        }
        await funder.writeContract({ label: 'token.transfer', address: deployment.tokenAddress, abi: hearthTokenAbi(), functionName: 'transfer', args: [identities[1]!.address, amountWei] })
      }
    }
    const context = (client: ChainClient): EscrowContext => ({ client, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress })

    const node = async (index: number, bootstrap: string[] = []): Promise<DevnetNode> => {
      const name = names[index]!
      const identity = identities[index]!
      const store = openStore({ path: join(dataDir, name, 'node.db') })
      stops.push(() => store.close())
      const host = await createHost({ identity, bootstrap, listen: [`/ip4/${init.listenHost ?? '127.0.0.1'}/tcp/0`] })
      await host.start()
      stops.push(() => host.stop())
      return { name, identity, host, store, payment: context(clients[index]!) }
    }

    // Providers join through the first one, as nodes join a network through a bootstrap peer; each connection
    // syncs offers both ways, so every node soon knows every offer.
    const providers: DevnetProvider[] = []
    const silentFrom = init.providers - (init.silentProviders ?? 0)
    for (let i = 0; i < init.providers; i++) {
      const base = await node(i + 2)
      const runtime = createWasiRuntime({ maxWorkers: threads })
      stops.push(() => runtime.close())
      const programs = init.nativePrograms ?? {}
      const native = Object.keys(programs).length === 0 ? undefined : createNativeRuntime({ programs: Object.values(programs) })
      if (native !== undefined) stops.push(() => native.close())
      const docker = init.dockerSocket === undefined ? undefined : createDockerRuntime({ socketPath: init.dockerSocket })
      if (docker !== undefined) stops.push(() => docker.close())
      const agent = createProviderAgent({
        identity: base.identity,
        host: base.host,
        store: base.store,
        payment: base.payment,
        runtime,
        workDir: join(dataDir, base.name, 'work'),
        pricing: init.providerPricing?.(i) ?? { model: 'per-task', perTaskWei: ((basePerTaskWei * BigInt(10 + i)) / 10n).toString() },
        threads,
        memGib: 1,
        ...(init.providerProperties === undefined ? {} : { properties: init.providerProperties(i) }),
        ...(init.providerConstraints === undefined ? {} : { constraints: init.providerConstraints(i) }),
        ...(init.providerClaimPolicy === undefined ? {} : { claimPolicy: init.providerClaimPolicy }),
        ...(init.providerAccountLimits === undefined ? {} : { accountLimits: init.providerAccountLimits }),
        ...(init.providerActivityMeterEveryMs === undefined ? {} : { activityMeterEveryMs: init.providerActivityMeterEveryMs }),
        ...(init.providerPayoutAddress?.(i) === undefined ? {} : { payoutAddress: init.providerPayoutAddress(i)! }),
        runtimes: {
          ...(native === undefined ? {} : { native: { runtime: native, programs } }),
          ...(docker === undefined ? {} : { docker: { runtime: docker } }),
        },
        ...(i >= silentFrom || i < badProviders || init.providerMisbehave?.(i) !== undefined
          ? {
              misbehave: {
                ...(i >= silentFrom ? { silentNegotiation: true } : {}),
                // Seeded by position, so a devnet picks the same tasks to get wrong on every run.
                ...(i < badProviders ? { wrongResults: { rate: init.badProviderRate ?? 0.5, seed: i + 1 } } : {}),
                ...init.providerMisbehave?.(i),
              },
            }
          : {}),
      })
      await agent.start()
      stops.push(() => agent.stop())
      providers.push({ ...base, agent, runtime })
      if (i > 0) {
        // Join once the offer exists, and trade offers with the hub straight away (connect-time sync does the same,
        // but this way the hub is known to hold every offer before the next provider joins).
        const hub = providers[0]!.host.multiaddrs()[0]!
        await base.host.dial(hub)
        await agent.market.syncFrom(hub)
      }
    }
    // Every provider holds every offer before the network is handed over.
    await Promise.all(providers.map((p) => waitForOffers(p.agent.market, init.providers)))

    // The requestor joins through one provider and learns the rest of the market from it.
    const requestorNode = await node(1, [])
    // Spot checks recompute wasi tasks here; workers start only when a check runs.
    const requestorRuntime = init.requestorLocalRuntime ?? createWasiRuntime({ maxWorkers: 1 })
    if (init.requestorLocalRuntime === undefined) stops.push(() => requestorRuntime.close())
    const requestor = createRequestor({
      localRuntime: requestorRuntime,
      identity: requestorNode.identity,
      host: requestorNode.host,
      store: requestorNode.store,
      payment: requestorNode.payment,
      ...(init.requestorIgnoresDebitNotes === true ? { misbehave: { ignoreDebitNotes: true } } : {}),
      // Results are verified unless a test wants to see what unverified results look like.
      ...(init.trustAllResults === true ? {} : { reputation: createReputationBook(requestorNode.store, init.verificationSeed === undefined ? {} : { random: seededRandom(init.verificationSeed) }) }),
      ...(init.verificationSeed === undefined ? {} : { random: seededRandom(init.verificationSeed + 1) }),
    })
    await requestor.start()
    stops.push(() => requestor.stop())
    if (providers.length > 0) {
      await requestorNode.host.dial(providers[0]!.host.multiaddrs()[0]!)
      await waitForOffers(requestor.market, init.providers)
    }

    return {
      chain,
      deployment: joinable,
      funderKeyFile: joinable === undefined ? undefined : join(dataDir, 'deployer', keyFileName),
      chainId,
      tokenAddress: deployment.tokenAddress,
      escrowAddress: deployment.escrowAddress,
      requestor: { ...requestorNode, agent: requestor },
      providers,
      balanceOf: (address) => tokenBalanceOf(context(clients[0]!), address),
      transactions: () => clients.flatMap((client) => client.ledger),
      connections: () => requestorNode.host.connections(),
      stop: stopAll,
    }
  } catch (error) {
    await stopAll()
    throw error
  }
}
