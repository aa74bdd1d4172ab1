/**
 * A requestor node on its own, joining a network that already runs (`hearth run --bootstrap … --deployment …`): its
 * key and database in a data directory that outlives the process, so a job cut short can be resumed from there; a
 * libp2p host that joins through the given peers; a chain client for the deployment; the verification record
 * (reputation) of every provider it has worked with; and a wasi runtime for spot checks.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Address, Hex } from 'viem'
import { HearthError } from '../errors.ts'
import { loadOrCreateIdentity, type NodeIdentity } from '../identity/node-identity.ts'
import { createHost, type Host } from '../net/host.ts'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import { createChainClient, rpcChainId } from '../payment/chain-client.ts'
import { mintTokens, tokenBalanceOf, type EscrowContext } from '../payment/escrow.ts'
import { openStore, type Store } from '../store/store.ts'
import { createReputationBook } from './reputation.ts'
import { createRequestor, type Requestor } from './requestor.ts'

export interface RequestorNodeInit {
  /** Key (mode 0600) and database; reuse it to resume a job or to keep providers' records. */
  dataDir: string
  /** Peers to join through (multiaddrs ending in /p2p/<PeerId>). */
  bootstrap: string[]
  rpcUrl: string
  deployment: { chainId: number; tokenAddress: Address; escrowAddress: Address; faucet: boolean }
  /**
   * On a development chain: a key that pays this node's gas, and tokens from the faucet, when its balances are below
   * what is given here. Omit on a real chain, where the node's address must be funded beforehand.
   */
  fund?: { funderKey: Hex; gasWei: bigint; tokensWei: bigint }
  /** Addresses to listen on (default 127.0.0.1, any port: the requestor dials out, providers answer on its connections). */
  listen?: string[]
  /** Addresses others should dial this node at (see HostInit.announce). */
  announce?: string[]
}

export interface RequestorNode {
  identity: NodeIdentity
  host: Host
  store: Store
  payment: EscrowContext
  requestor: Requestor
  stop(): Promise<void>
}

export async function startRequestorNode(init: RequestorNodeInit): Promise<RequestorNode> {
  if (init.bootstrap.length === 0) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'a requestor joining a network needs at least one peer to join through', {
      hint: 'pass --bootstrap with a provider\'s multiaddr (hearth provider start prints it)',
    })
  }
  const served = await rpcChainId(init.rpcUrl)
  if (served !== init.deployment.chainId) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment is for chain ${init.deployment.chainId} but ${init.rpcUrl} serves chain ${served}`)
  }
  await mkdir(init.dataDir, { recursive: true, mode: 0o700 })
  const identity = await loadOrCreateIdentity(init.dataDir)
  const stops: (() => Promise<void> | void)[] = []
  const stop = async (): Promise<void> => {
    for (const step of stops.reverse()) await Promise.resolve(step()).catch(() => undefined)
    stops.length = 0
  }
  try {
    const store = openStore({ path: join(init.dataDir, 'node.db') })
    stops.push(() => store.close())
    const client = createChainClient({ transport: init.rpcUrl, privateKey: identity.privateKey, chainId: init.deployment.chainId })
    const payment: EscrowContext = { client, tokenAddress: init.deployment.tokenAddress, escrowAddress: init.deployment.escrowAddress }
    if (init.fund !== undefined) await topUp(init, payment, identity.address)
    const host = await createHost({ identity, bootstrap: init.bootstrap, ...(init.listen === undefined ? {} : { listen: init.listen }), ...(init.announce === undefined ? {} : { announce: init.announce }) })
    await host.start()
    stops.push(() => host.stop())
    const localRuntime = createWasiRuntime({ maxWorkers: 1 })
    stops.push(() => localRuntime.close())
    const requestor = createRequestor({ identity, host, store, payment, reputation: createReputationBook(store), localRuntime })
    await requestor.start()
    stops.push(() => requestor.stop())
    for (const address of init.bootstrap) await host.dial(address).catch(() => undefined)
    return { identity, host, store, payment, requestor, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

async function topUp(init: RequestorNodeInit, payment: EscrowContext, address: Address): Promise<void> {
  const fund = init.fund!
  const funder = createChainClient({ transport: init.rpcUrl, privateKey: fund.funderKey, chainId: init.deployment.chainId })
  const gas = await payment.client.publicClient.getBalance({ address })
  if (gas < fund.gasWei) {
    const hash = await funder.walletClient.sendTransaction({ to: address, value: fund.gasWei - gas })
    await funder.publicClient.waitForTransactionReceipt({ hash })
  }
  const tokens = await tokenBalanceOf(payment, address)
  if (tokens < fund.tokensWei) {
    if (!init.deployment.faucet) {
      throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `${address} holds ${tokens} wei of the token and this deployment has no faucet`, {
        hint: 'send tokens to the requestor address first',
      })
    }
    await mintTokens({ ...payment, client: funder }, { toAddress: address, amountWei: fund.tokensWei - tokens })
  }
}
