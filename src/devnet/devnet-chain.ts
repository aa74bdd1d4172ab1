/**
 * The devnet's chain: the embedded one (EDR) with the token and escrow deployed and the requestor's tokens minted, or
 * an existing EVM chain by JSON-RPC whose funded key pays every node's gas and the requestor's tokens.
 */
import { parseEther, type Address } from 'viem'
import { HearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { createChainClient, rpcChainId, type ChainClient } from '../payment/chain-client.ts'
import { hearthTokenAbi } from '../payment/contracts.ts'
import { deployHearth, type DeploymentRecord } from '../payment/deploy.ts'
import { createEmbeddedChain, serveChainHttp, type EmbeddedChain } from '../payment/embedded-chain.ts'
import { mintTokens, tokenBalanceOf } from '../payment/escrow.ts'
import type { DevnetInit, DevnetStop } from './devnet-types.ts'

const embeddedChainId = 31337

/** The chain the devnet's nodes settle on, with a client for each identity (the deployer's first, the requestor's second). */
export interface DevnetChain {
  /** Undefined on an external chain. */
  chain: EmbeddedChain | undefined
  chainId: number
  clients: ChainClient[]
  deployment: { tokenAddress: Address; escrowAddress: Address }
  /** What a joining node needs (contracts and JSON-RPC URL); only for an embedded chain served with `serveChain`. */
  joinable: DeploymentRecord | undefined
}

/** Starts or joins the devnet's chain and funds the requestor (identities[1]); what it starts goes onto `stops`. */
export async function startDevnetChain(init: Pick<DevnetInit, 'chain' | 'serveChain' | 'requestorFundsWei'>, identities: NodeIdentity[], stops: DevnetStop[]): Promise<DevnetChain> {
  return init.chain === undefined ? startEmbeddedChain(init, identities, stops) : joinExternalChain(init.chain, init.requestorFundsWei, identities)
}

async function startEmbeddedChain(init: Pick<DevnetInit, 'serveChain' | 'requestorFundsWei'>, identities: NodeIdentity[], stops: DevnetStop[]): Promise<DevnetChain> {
  const requestorFundsWei = init.requestorFundsWei ?? parseEther('1000')
  const chainId = embeddedChainId
  const embedded = await createEmbeddedChain({
    chainId,
    accounts: identities.map((identity) => ({ address: identity.address, balanceWei: parseEther('1000') })),
  })
  stops.push(() => embedded.close())
  const clients = identities.map((identity) => createChainClient({ transport: embedded, privateKey: identity.privateKey, chainId }))
  const record = await deployHearth(clients[0]!)
  let joinable: DeploymentRecord | undefined
  if (init.serveChain !== undefined) {
    const server = await serveChainHttp(embedded, init.serveChain)
    stops.push(() => server.close())
    joinable = { ...record, rpcUrl: server.url }
  }
  await mintTokens({ client: clients[0]!, ...record }, { toAddress: identities[1]!.address, amountWei: requestorFundsWei })
  return { chain: embedded, chainId, clients, deployment: record, joinable }
}

/**
 * Any EVM chain by JSON-RPC: the contracts are already deployed there, and a funded key pays every node's gas and the
 * requestor's tokens (from the faucet on a development deployment, else from its own balance).
 */
async function joinExternalChain(external: NonNullable<DevnetInit['chain']>, requestorFundsGiven: bigint | undefined, identities: NodeIdentity[]): Promise<DevnetChain> {
  const requestorFundsWei = requestorFundsGiven ?? parseEther('1000')
  const chainId = external.deployment.chainId
  const served = await rpcChainId(external.rpcUrl)
  if (served !== chainId) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment is for chain ${chainId} but ${external.rpcUrl} serves chain ${served}`)
  }
  const clients = identities.map((identity) => createChainClient({ transport: external.rpcUrl, privateKey: identity.privateKey, chainId }))
  const deployment = { tokenAddress: external.deployment.tokenAddress, escrowAddress: external.deployment.escrowAddress }
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
    const amountWei = requestorFundsGiven ?? (heldWei < requestorFundsWei ? heldWei : requestorFundsWei)
    if (amountWei === 0n || heldWei < amountWei) {
      throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `the funding key holds ${heldWei} wei of the token, too little to fund the requestor`, {
        hint: 'fund that account with the token, or deploy with a faucet on a development chain',
      })
    }
    await funder.writeContract({ label: 'token.transfer', address: deployment.tokenAddress, abi: hearthTokenAbi(), functionName: 'transfer', args: [identities[1]!.address, amountWei] })
  }
  return { chain: undefined, chainId, clients, deployment, joinable: undefined }
}
