/**
 * `hearth wallet`: this node's address (from its key file), its native and token balances on a chain, and on
 * development chains test tokens from the faucet. `hearth wallet send` moves tokens from the node's key (or another
 * key file) to an address, e.g. earnings to a cold wallet.
 */
import { join } from 'node:path'
import type { Command } from 'commander'
import { InvalidArgumentError } from 'commander'
import { formatEther, getAddress, isAddress, numberToHex, parseEther } from 'viem'
import type { Address } from 'viem'
import { HearthError } from '../errors.ts'
import { keyFileName, loadOrCreateIdentity, readKeyFile } from '../identity/node-identity.ts'
import { createChainClient, rpcChainId, toChainError } from '../payment/chain-client.ts'
import { hearthTokenAbi } from '../payment/contracts.ts'
import { readDeploymentFile } from '../payment/deploy.ts'
import type { DeploymentRecord } from '../payment/deploy.ts'
import { mintTokens, tokenBalanceOf, transferTokens } from '../payment/escrow.ts'
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
      throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', '--faucet needs a chain: pass --rpc URL and --deployment FILE', {
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
      throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', '--faucet needs --deployment FILE: it names the token to mint')
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

export interface WalletSendOptions {
  /** Where the tokens go: a 0x-prefixed address (a mixed-case one must carry a valid checksum). */
  to: string
  /** How much, in HTT as a decimal string (`"1.5"`): at most 18 decimals, more than 0. */
  amount: string
  /** Send from this data directory's `node.key` (default `.hearth`)... */
  dataDir?: string
  /** ...or from this key file (mode 0600); not both. */
  keyFile?: string
  rpc?: string
  /** The deployment file naming the token. */
  deployment?: string
  json?: boolean
}

export interface WalletSendReport {
  from: Address
  to: Address
  amountWei: string
  txHash: string
  gasUsed: string
  chainId: number
  token: Address
  /** Both balances after the transfer, read from the chain. */
  fromBalanceWei: string
  toBalanceWei: string
}

/** A 0x address, 40 hex digits; a mixed-case one must carry its checksum (EIP-55), so a mistyped digit is caught. */
export function parseAddress(value: string, flag = '--to'): Address {
  if (!/^0x[0-9a-fA-F]{40}$/.test(value)) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `${flag}: expected a 0x-prefixed address of 40 hex digits, got ${JSON.stringify(value)}`)
  }
  if (!isAddress(value, { strict: true })) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `${flag}: ${value} fails its checksum (a digit may be mistyped)`, {
      hint: 'copy the address again, or write it all in lower case to skip the checksum',
    })
  }
  if (/^0x0{40}$/.test(value)) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `${flag}: the zero address burns what it is sent`)
  return getAddress(value)
}

/** A positive decimal amount of HTT with at most 18 decimals, in wei. */
export function parseHtt(value: string, flag = '--amount'): bigint {
  if (!/^\d+(\.\d{1,18})?$/.test(value)) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `${flag}: expected a decimal number of HTT like 1.5 (at most 18 decimals), got ${JSON.stringify(value)}`)
  }
  const wei = parseEther(value)
  if (wei <= 0n) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `${flag}: expected more than 0 HTT, got ${value}`)
  return wei
}

/** `hearth wallet send`: moves tokens from a key's account; every input is checked before anything is sent. */
export async function runWalletSend(options: WalletSendOptions, io: CommandIo): Promise<WalletSendReport> {
  const to = parseAddress(options.to)
  const amountWei = parseHtt(options.amount)
  if (options.keyFile !== undefined && options.dataDir !== undefined) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', '--key-file and --data-dir both name a key to send from; pass one')
  }
  // An existing key only: a fresh one would hold nothing to send.
  const identity =
    options.keyFile !== undefined ? await readKeyFile(options.keyFile) : await readKeyFile(join(options.dataDir ?? '.hearth', keyFileName), 'node key file')
  if (options.deployment === undefined) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', 'sending needs --deployment FILE: it names the token', { hint: 'hearth chain --deployment-out FILE and hearth deploy --out FILE write one' })
  }
  const deployment = await readDeploymentFile(options.deployment)
  const rpcUrl = options.rpc ?? deployment.rpcUrl
  if (rpcUrl === undefined) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `--rpc is needed: ${options.deployment} names no JSON-RPC URL`, { hint: 'pass --rpc URL' })
  const chainId = await rpcChainId(rpcUrl)
  if (deployment.chainId !== chainId) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment is for chain ${deployment.chainId}, but ${rpcUrl} serves chain ${chainId}`, {
      hint: 'pass the RPC URL of the chain the deployment file names',
    })
  }
  const client = createChainClient({ transport: rpcUrl, privateKey: identity.privateKey, chainId })
  const ctx = { client, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress }
  const heldWei = await tokenBalanceOf(ctx, identity.address)
  if (heldWei < amountWei) {
    throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `${identity.address} holds ${formatEther(heldWei)} HTT, less than the ${formatEther(amountWei)} HTT to send; nothing was sent`, {
      hint: 'send less, or wait until claims have landed (hearth provider earnings shows them)',
    })
  }
  const sent = await transferTokens(ctx, { toAddress: to, amountWei })
  const report: WalletSendReport = {
    from: identity.address,
    to,
    amountWei: amountWei.toString(),
    txHash: sent.hash,
    gasUsed: sent.gasUsed.toString(),
    chainId,
    token: deployment.tokenAddress,
    fromBalanceWei: (await tokenBalanceOf(ctx, identity.address)).toString(),
    toBalanceWei: (await tokenBalanceOf(ctx, to)).toString(),
  }
  io.stdout.write(
    options.json === true
      ? `${JSON.stringify(report)}\n`
      : [
          `sent      ${formatEther(amountWei)} HTT from ${report.from} to ${report.to}`,
          `tx        ${report.txHash} (gas ${report.gasUsed}) on chain ${chainId}`,
          `balances  ${formatEther(BigInt(report.fromBalanceWei))} HTT left; the recipient holds ${formatEther(BigInt(report.toBalanceWei))} HTT`,
          '',
        ].join('\n'),
  )
  return report
}

/** Registers `hearth wallet` and `hearth wallet send`. */
export function registerWalletCommand(program: Command, io: CommandIo): void {
  const wallet = program
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
  // --data-dir, --rpc, --deployment and --json are the wallet's own options: commander hands a parent's options to
  // it wherever they stand, so `send` reads them from there (optsWithGlobals) rather than declaring them twice.
  wallet
    .command('send')
    .description('move tokens from this node\'s key (or --key-file) to an address')
    .requiredOption('--to <address>', 'the recipient (0x…; a mixed-case address must carry a valid checksum)')
    .requiredOption('--amount <htt>', 'how much, in HTT (e.g. 12.5)')
    .option('--key-file <file>', 'send from this key file (mode 0600) instead of DATA-DIR/node.key')
    .configureHelp({ showGlobalOptions: true })
    .action(async (_options: unknown, command: Command) => {
      const opts = command.optsWithGlobals<{ to: string; amount: string; keyFile?: string; dataDir: string; rpc?: string; deployment?: string; json?: boolean }>()
      const dataDirGiven = wallet.getOptionValueSource('dataDir') === 'cli'
      await runWalletSend(
        {
          to: opts.to,
          amount: opts.amount,
          json: opts.json === true,
          ...(opts.keyFile === undefined || dataDirGiven ? { dataDir: opts.dataDir } : {}),
          ...(opts.keyFile === undefined ? {} : { keyFile: opts.keyFile }),
          ...(opts.rpc === undefined ? {} : { rpc: opts.rpc }),
          ...(opts.deployment === undefined ? {} : { deployment: opts.deployment }),
        },
        io,
      )
    })
}
