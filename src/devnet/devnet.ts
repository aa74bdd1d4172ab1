/**
 * devnet/ owns the embedded default: a whole Hearth network on this machine. One in-process chain (EDR) with the token
 * and escrow deployed, N providers and a requestor, each a real libp2p node on 127.0.0.1 with its own key file,
 * SQLite database and chain account. The demo, `hearth run` without a network, the tests and the benchmarks use it.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseEther } from 'viem'
import { keyFileName, loadOrCreateIdentity } from '../identity/node-identity.ts'
import { HearthError } from '../errors.ts'
import type { MarketNode } from '../market/market-node.ts'
import type { ChainClient } from '../payment/chain-client.ts'
import { tokenBalanceOf, type EscrowContext } from '../payment/escrow.ts'
import { startDevnetChain } from './devnet-chain.ts'
import { startDevnetNode, startDevnetProvider, startDevnetRequestor } from './devnet-nodes.ts'
import type { Devnet, DevnetInit, DevnetNode, DevnetProvider, DevnetStop } from './devnet-types.ts'

export type { Devnet, DevnetInit, DevnetNode, DevnetProvider } from './devnet-types.ts'

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
  const stops: DevnetStop[] = []
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch(() => undefined)
    if (ownsDataDir) await rm(dataDir, { recursive: true, force: true })
  }

  try {
    const names = ['deployer', 'requestor', ...Array.from({ length: init.providers }, (_, i) => `provider-${i + 1}`)]
    const identities = await Promise.all(names.map((name) => loadOrCreateIdentity(join(dataDir, name))))
    const { chain, chainId, clients, deployment, joinable } = await startDevnetChain(init, identities, stops)
    const context = (client: ChainClient): EscrowContext => ({ client, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress })
    const node = (index: number): Promise<DevnetNode> =>
      startDevnetNode({ name: names[index]!, identity: identities[index]!, payment: context(clients[index]!) }, { dataDir, listenHost: init.listenHost }, stops)

    // Providers join through the first one, as nodes join a network through a bootstrap peer; each connection
    // syncs offers both ways, so every node soon knows every offer.
    const providers: DevnetProvider[] = []
    const place = { threads: init.threadsPerProvider ?? 1, basePerTaskWei: init.basePerTaskWei ?? parseEther('0.001'), silentFrom: init.providers - (init.silentProviders ?? 0), badProviders, dataDir }
    for (let i = 0; i < init.providers; i++) {
      const provider = await startDevnetProvider(init, await node(i + 2), { ...place, index: i }, stops)
      providers.push(provider)
      if (i > 0) {
        // Join once the offer exists, and trade offers with the hub straight away (connect-time sync does the same,
        // but this way the hub is known to hold every offer before the next provider joins).
        const hub = providers[0]!.host.multiaddrs()[0]!
        await provider.host.dial(hub)
        await provider.agent.market.syncFrom(hub)
      }
    }
    // Every provider holds every offer before the network is handed over.
    await Promise.all(providers.map((p) => waitForOffers(p.agent.market, init.providers)))

    // The requestor joins through one provider and learns the rest of the market from it.
    const requestorNode = await node(1)
    const requestor = await startDevnetRequestor(init, requestorNode, stops)
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
