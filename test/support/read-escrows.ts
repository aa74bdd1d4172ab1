/**
 * The chain's escrow records of one requestor's agreements, read from a testbed host (where the chain is reachable):
 * `node --import tsx read-escrows.ts DEPLOYMENT-FILE REQUESTOR-ADDRESS AGREEMENT-ID…` prints one JSON object, agreement
 * id → {provider, depositedWei, claimedWei, closed} (amounts as decimal strings), or null where no escrow exists.
 */
import type { Address, Hex } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { createChainClient } from '../../src/payment/chain-client.ts'
import { readDeploymentFile } from '../../src/payment/deploy.ts'
import { getEscrow } from '../../src/payment/escrow.ts'

const [deploymentFile, requestor, ...agreements] = process.argv.slice(2)
const deployment = await readDeploymentFile(deploymentFile!)
// Reading needs no funds: any key will do.
const client = createChainClient({ transport: deployment.rpcUrl!, privateKey: generatePrivateKey(), chainId: deployment.chainId })
const ctx = { client, tokenAddress: deployment.tokenAddress as Address, escrowAddress: deployment.escrowAddress as Address }
const records: Record<string, unknown> = {}
for (const agreementId of agreements) {
  const escrow = await getEscrow(ctx, { requestorAddress: requestor as Address, agreementId: agreementId as Hex })
  records[agreementId] = escrow === undefined ? null : {
    provider: escrow.providerAddress.toLowerCase(),
    depositedWei: escrow.depositedWei.toString(),
    claimedWei: escrow.claimedWei.toString(),
    closed: escrow.closed,
  }
}
process.stdout.write(`${JSON.stringify(records)}\n`)
