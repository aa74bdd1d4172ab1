/**
 * `hearth wallet`: this node's address (from its key file), its native and token balances on a chain, and on
 * development chains test tokens from the faucet.
 */
import type { Command } from 'commander'
import { InvalidArgumentError } from 'commander'
import { formatEther, numberToHex, parseEther } from 'viem'
import type { Address } from 'viem'
import { HearthError } from '../errors.ts'
import { loadOrCreateIdentity } from '../identity/node-identity.ts'
import { createChainClient, rpcChainId, toChainError } from '../payment/chain-client.ts'
import { hearthTokenAbi } from '../payment/contracts.ts'
import { readDeploymentFile } from '../payment/deploy.ts'
import type { DeploymentRecord } from '../payment/deploy.ts'
import { mintTokens, tokenBalanceOf } from '../payment/escrow.ts'
import type { CommandIo } from './chain-command.ts'

export interface WalletCommandOptions {
  /** The node's data directory (its `node.key` is created there on first use); default `.hearth`. */
  dataDir?: string
  /** JSON-RPC URL; default: the one recorded in the deployment file. */
  rpc?: string
  /** A deployment file (`hearth deploy --out`, `hearth chain --deployment-out`): where the token and escrow are. */
  deployment?: string
  /** Mint test tokens to this node (development chains only), and give it gas if it has none. */
  faucet?: boolean
  /** How much the faucet mints; default 1000 HTT. */
  faucetWei?: bigint
  json?: boolean
}

export interface WalletReport {
  address: Address
  peerId: string
  dataDir: string
  chain: {
    rpcUrl: string
    chainId: number
    nativeWei: string
    token: { address: Address; escrowAddress: Address; balanceWei: string; faucet: boolean } | null
  } | null
  faucet: { mintedWei: string; txHash: string; gasFundedWei: string } | null
}

/** Enough native currency for a few hundred payment txs on a development chain. */
const devGasWei = parseEther('10')
/** Below this the faucet tops up gas first: a mint costs ~50k gas. */
const minGasWei = parseEther('0.01')

export async function runWalletCommand(options: WalletCommandOptions, io: CommandIo): Promise<WalletReport> {
  const dataDir = options.dataDir ?? '.hearth'
  const identity = await loadOrCreateIdentity(dataDir)
  const deployment = options.deployment === undefined ? undefined : await readDeploymentFile(options.deployment)
  const rpcUrl = options.rpc ?? deployment?.rpcUrl
  const report: WalletReport = { address: identity.address, peerId: identity.peerId.toString(), dataDir, chain: null, faucet: null }
  if (rpcUrl === undefined) {
    if (options.faucet === true) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', '--faucet needs a chain: pass --rpc URL and --deployment FILE', {
        hint: 'hearth chain --deployment-out FILE starts a development chain and writes such a file',
      })
    }
    print(report, options, io)
    return report
  }

  const chainId = await rpcChainId(rpcUrl)
  if (deployment !== undefined && deployment.chainId !== chainId) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment is for chain ${deployment.chainId}, but ${rpcUrl} serves chain ${chainId}`, {
      hint: 'pass the RPC URL of the chain the deployment file names',
    })
  }
  const client = createChainClient({ transport: rpcUrl, privateKey: identity.privateKey, chainId })
  const ctx = deployment === undefined ? undefined : { client, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress }
  const faucetOpen = deployment === undefined ? false : await tokenHasFaucet(client, deployment)

  if (options.faucet === true) {
    if (ctx === undefined) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', '--faucet needs --deployment FILE: it names the token to mint')
    }
    if (!faucetOpen) {
      throw new HearthError('HEARTH_ERR_PAYMENT_FAUCET_DISABLED', `the token ${deployment!.tokenAddress} on chain ${chainId} has no faucet`, {
        hint: 'faucets exist on development chains only; on this chain, get tokens from their holder',
      })
    }
    // A fresh node has no gas. On a development chain (the faucet says it is one) the node's own balance can be set.
    let gasFundedWei = 0n
    if ((await client.publicClient.getBalance({ address: identity.address })) < minGasWei) {
      try {
        await client.publicClient.request({ method: 'hardhat_setBalance', params: [identity.address, numberToHex(devGasWei)] } as never)
      } catch (error) {
        throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `this node has no gas, and the chain refused hardhat_setBalance`, {
          cause: toChainError(error, 'hardhat_setBalance'),
          hint: `send some native currency to ${identity.address} (e.g. from a dev account that \`hearth chain\` printed)`,
        })
      }
      gasFundedWei = devGasWei
    }
    const amountWei = options.faucetWei ?? parseEther('1000')
    const minted = await mintTokens(ctx, { toAddress: identity.address, amountWei })
    report.faucet = { mintedWei: amountWei.toString(), txHash: minted.hash, gasFundedWei: gasFundedWei.toString() }
  }

  let nativeWei: bigint
  try {
    nativeWei = await client.publicClient.getBalance({ address: identity.address })
  } catch (error) {
    throw toChainError(error, 'eth_getBalance')
  }
  report.chain = {
    rpcUrl,
    chainId,
    nativeWei: nativeWei.toString(),
    token:
      ctx === undefined
        ? null
        : {
            address: ctx.tokenAddress,
            escrowAddress: ctx.escrowAddress,
            balanceWei: (await tokenBalanceOf(ctx, identity.address)).toString(),
            faucet: faucetOpen,
          },
  }
  print(report, options, io)
  return report
}

/** Whether the token's mint is open; an existing token the escrow was bound to (`--token`) is not ours to mint. */
async function tokenHasFaucet(client: ReturnType<typeof createChainClient>, deployment: DeploymentRecord): Promise<boolean> {
  if (!deployment.tokenDeployed) return false
  try {
    return (await client.publicClient.readContract({ address: deployment.tokenAddress, abi: hearthTokenAbi(), functionName: 'faucet' })) === true
  } catch (error) {
    throw toChainError(error, 'token.faucet')
  }
}

function print(report: WalletReport, options: WalletCommandOptions, io: CommandIo): void {
  if (options.json === true) {
    io.stdout.write(`${JSON.stringify(report)}\n`)
    return
  }
  const lines = [`address   ${report.address}`, `peer id   ${report.peerId}`, `key       ${report.dataDir}/node.key`]
  if (report.chain === null) {
    lines.push('chain     not connected (pass --rpc URL, or --deployment FILE that records one)')
  } else {
    lines.push(`chain     ${report.chain.chainId} at ${report.chain.rpcUrl}`, `native    ${formatEther(BigInt(report.chain.nativeWei))} ETH`)
    if (report.chain.token !== null) {
      lines.push(`token     ${formatEther(BigInt(report.chain.token.balanceWei))} HTT  (${report.chain.token.address}${report.chain.token.faucet ? ', faucet on' : ''})`)
    }
  }
  if (report.faucet !== null) {
    lines.push(`faucet    minted ${formatEther(BigInt(report.faucet.mintedWei))} HTT in ${report.faucet.txHash}`)
    if (report.faucet.gasFundedWei !== '0') lines.push(`          and set ${formatEther(BigInt(report.faucet.gasFundedWei))} ETH for gas`)
  }
  io.stdout.write(`${lines.join('\n')}\n`)
}

function amountOption(value: string): bigint {
  try {
    const amount = parseEther(value)
    if (amount <= 0n) throw new Error('not positive')
    return amount
  } catch {
    throw new InvalidArgumentError('--faucet-amount must be a positive decimal number of HTT')
  }
}

/** Registers `hearth wallet`. */
export function registerWalletCommand(program: Command, io: CommandIo): void {
  program
    .command('wallet')
    .description("show this node's address and balances; on development chains, mint test tokens")
    .option('--data-dir <dir>', 'the node data directory holding node.key (created on first use)', '.hearth')
    .option('--rpc <url>', 'JSON-RPC URL (default: the one in the deployment file)')
    .option('--deployment <file>', 'deployment JSON naming the token and escrow')
    .option('--faucet', 'mint test tokens to this node (development chains only)')
    .option('--faucet-amount <htt>', 'how much to mint', amountOption)
    .option('--json', 'print one JSON object instead of a summary')
    .action(async (opts: { dataDir: string; rpc?: string; deployment?: string; faucet?: boolean; faucetAmount?: bigint; json?: boolean }) => {
      await runWalletCommand(
        {
          dataDir: opts.dataDir,
          json: opts.json === true,
          faucet: opts.faucet === true,
          ...(opts.rpc === undefined ? {} : { rpc: opts.rpc }),
          ...(opts.deployment === undefined ? {} : { deployment: opts.deployment }),
          ...(opts.faucetAmount === undefined ? {} : { faucetWei: opts.faucetAmount }),
        },
        io,
      )
    })
}
