/** Deploys the Hearth token and escrow (two txs); the deployer owns the token's mint faucet. */
import type { Address } from 'viem'
import type { ChainClient } from './chain-client.ts'
import { loadContracts } from './contracts.ts'

export interface HearthDeployment {
  tokenAddress: Address
  escrowAddress: Address
}

export async function deployHearthContracts(client: ChainClient): Promise<HearthDeployment> {
  const { HearthToken, HearthEscrow } = loadContracts()
  const token = await client.deployContract({ label: 'deploy.HearthToken', abi: HearthToken.abi, bytecode: HearthToken.bytecode })
  const escrow = await client.deployContract({
    label: 'deploy.HearthEscrow',
    abi: HearthEscrow.abi,
    bytecode: HearthEscrow.bytecode,
    args: [token.address],
  })
  return { tokenAddress: token.address, escrowAddress: escrow.address }
}
