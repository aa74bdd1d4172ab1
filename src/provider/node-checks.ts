/**
 * What a provider node checks before it opens anything: that no other provider runs from its data directory (two
 * over one database and key would sign and claim against each other), and that its chain is configured and the RPC
 * endpoint serves the deployment's chain.
 */
import { HearthError } from '../errors.ts'
import { rpcChainId } from '../payment/chain-client.ts'
import { readDeploymentFile, type DeploymentRecord } from '../payment/deploy.ts'
import type { ProviderConfig } from './config.ts'
import { readApiInfo } from './local-api.ts'

/** Throws when a live provider process already runs from `dataDir`. */
export async function ensureSoleProvider(dataDir: string): Promise<void> {
  // Two providers over one database and key would sign and claim against each other.
  const previous = await readApiInfo(dataDir)
  if (previous !== undefined && previous.pid !== process.pid && processAlive(previous.pid)) {
    throw new HearthError('HEARTH_ERR_PROVIDER_ALREADY_RUNNING', `a provider (pid ${previous.pid}) is already running from ${dataDir}`, {
      hint: `stop it first: hearth provider stop --data-dir ${dataDir}`,
    })
  }
}

/** The deployment the provider is paid through and the RPC endpoint to reach it, checked to serve its chain. */
export async function chainOf(config: ProviderConfig): Promise<{ deployment: DeploymentRecord; rpcUrl: string }> {
  if (config.chain === undefined) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'provider config chain.deployment: expected a deployment file, got nothing; a provider is paid on chain', {
      hint: 'pass --deployment FILE (hearth chain --deployment-out FILE writes one for a development chain)',
    })
  }
  const deployment = await readDeploymentFile(config.chain.deployment)
  const rpcUrl = config.chain.rpcUrl ?? deployment.rpcUrl
  if (rpcUrl === undefined) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `provider config chain.rpcUrl: expected a JSON-RPC URL; ${config.chain.deployment} names none`, { hint: 'pass --rpc URL' })
  }
  const served = await rpcChainId(rpcUrl)
  if (served !== deployment.chainId) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment is for chain ${deployment.chainId} but ${rpcUrl} serves chain ${served}`)
  }
  return { deployment, rpcUrl }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: alive, but another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
