/**
 * `hearth chain`: a development chain that several processes share (the embedded EDR chain behind JSON-RPC on
 * 127.0.0.1, token and escrow deployed, dev accounts funded), and `hearth deploy`: the contracts onto any EVM chain by
 * JSON-RPC URL, recorded in a deployment file that nodes and `hearth wallet` read.
 */
import { isIP } from 'node:net'
import { InvalidArgumentError } from 'commander'
import type { Command } from 'commander'
import { formatEther, keccak256, parseEther, parseGwei, toHex } from 'viem'
import type { Address, Hex } from 'viem'
import { identityFromPrivateKey, readKeyFile } from '../identity/node-identity.ts'
import { createChainClient, rpcChainId } from '../payment/chain-client.ts'
import { defaultClaimGraceSec, deployHearth, maxClaimGraceSec, writeDeploymentFile } from '../payment/deploy.ts'
import type { DeploymentRecord } from '../payment/deploy.ts'
import { createEmbeddedChain, serveChainHttp } from '../payment/embedded-chain.ts'
import { mintTokens } from '../payment/escrow.ts'

export interface CommandIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
}

export interface ChainCommandOptions {
  /** Default 8545, the usual development port; 0 picks a free one. */
  port?: number
  /**
   * The address to serve JSON-RPC on (default 127.0.0.1: this machine only). Another host's nodes need one they can
   * reach; the deployment file then names it, so they find the chain from it.
   */
  host?: string
  /** Default 31337. */
  chainId?: number
  /** Funded development accounts; default 5. */
  accounts?: number
  /** Native currency per account, for gas; default 10 000 ETH. */
  nativeWei?: bigint
  /** Test tokens per account; default 1 000 000 HTT. */
  tokenWei?: bigint
  /** Also write the deployment (with the URL) here, for `hearth wallet --deployment` and other nodes. */
  deploymentOut?: string
  /** The escrow's claim grace after expiry, in seconds; default one day (see defaultClaimGraceSec). */
  claimGraceSec?: number
  json?: boolean
}

export interface DevAccount {
  address: Address
  /** Public on purpose: derived from a fixed phrase, so every run of `hearth chain` has the same accounts. */
  privateKey: Hex
  nativeWei: bigint
  tokenWei: bigint
}

export interface RunningChain {
  url: string
  chainId: number
  deployment: DeploymentRecord
  accounts: DevAccount[]
  close(): Promise<void>
}

/** The keys of `hearth chain`'s accounts: deterministic, so a restarted chain has the same addresses and contracts. */
export function devAccountKey(index: number): Hex {
  return keccak256(toHex(`hearth-dev-account-${index}`))
}

/** Starts the chain, deploys, funds the accounts, serves JSON-RPC and prints where; `close()` stops it all. */
export async function startChain(options: ChainCommandOptions, io: CommandIo): Promise<RunningChain> {
  const count = options.accounts ?? 5
  const nativeWei = options.nativeWei ?? parseEther('10000')
  const tokenWei = options.tokenWei ?? parseEther('1000000')
  const identities = Array.from({ length: count }, (_, i) => identityFromPrivateKey(devAccountKey(i)))
  // A deployer of its own, so the printed accounts hold exactly what is printed (no deploy gas spent from them).
  const deployerIdentity = identityFromPrivateKey(keccak256(toHex('hearth-dev-deployer')))
  const chain = await createEmbeddedChain({
    ...(options.chainId === undefined ? {} : { chainId: options.chainId }),
    accounts: [deployerIdentity, ...identities].map((identity) => ({ address: identity.address, balanceWei: nativeWei })),
  })
  try {
    const deployer = createChainClient({ transport: chain, privateKey: deployerIdentity.privateKey, chainId: chain.chainId })
    // A development chain: the faucet is on, so any node can mint for itself (`hearth wallet --faucet`).
    const record = await deployHearth(deployer, {
      faucet: true,
      ...(options.claimGraceSec === undefined ? {} : { claimGraceSec: options.claimGraceSec }),
    })
    const ctx = { client: deployer, tokenAddress: record.tokenAddress, escrowAddress: record.escrowAddress }
    await Promise.all(identities.map((identity) => mintTokens(ctx, { toAddress: identity.address, amountWei: tokenWei })))
    const server = await serveChainHttp(chain, { port: options.port ?? 8545, host: options.host ?? '127.0.0.1' })
    const deployment: DeploymentRecord = { ...record, rpcUrl: server.url }
    if (options.deploymentOut !== undefined) await writeDeploymentFile(options.deploymentOut, deployment)
    const accounts = identities.map((identity) => ({ address: identity.address, privateKey: identity.privateKey, nativeWei, tokenWei }))
    const running: RunningChain = {
      url: server.url,
      chainId: chain.chainId,
      deployment,
      accounts,
      async close() {
        await server.close()
        await chain.close()
      },
    }
    io.stdout.write(options.json === true ? `${JSON.stringify(chainReport(running, options.deploymentOut))}\n` : formatChain(running, options.deploymentOut))
    return running
  } catch (error) {
    await chain.close()
    throw error
  }
}

function chainReport(running: RunningChain, deploymentFile: string | undefined) {
  return {
    url: running.url,
    chainId: running.chainId,
    tokenAddress: running.deployment.tokenAddress,
    escrowAddress: running.deployment.escrowAddress,
    faucet: running.deployment.faucet,
    claimGraceSec: running.deployment.claimGraceSec,
    deploymentFile: deploymentFile ?? null,
    accounts: running.accounts.map((a) => ({ address: a.address, privateKey: a.privateKey, nativeWei: a.nativeWei.toString(), tokenWei: a.tokenWei.toString() })),
  }
}

function formatChain(running: RunningChain, deploymentFile: string | undefined): string {
  const lines = [
    'Hearth development chain (embedded EDR)',
    `  JSON-RPC    ${running.url}`,
    `  chain id    ${running.chainId}`,
    `  token       ${running.deployment.tokenAddress}  (HTT, faucet on)`,
    `  escrow      ${running.deployment.escrowAddress}`,
    `  grace       ${formatGrace(running.deployment.claimGraceSec)}`,
    ...(deploymentFile === undefined ? [] : [`  deployment  ${deploymentFile}`]),
    '',
    'Funded dev accounts. DEVELOPMENT ONLY: these keys are public; never send real funds to them.',
    ...running.accounts.map(
      (a, i) => `  #${i}  ${a.address}  key ${a.privateKey}  ${formatEther(a.nativeWei)} ETH  ${formatEther(a.tokenWei)} HTT`,
    ),
    '',
    'Press Ctrl+C to stop.',
    '',
  ]
  return lines.join('\n')
}

/** `86400 s (refund from expiry + 24 h; the provider can claim until then)`. */
function formatGrace(claimGraceSec: number): string {
  if (claimGraceSec === 0) return '0 s (refund from the second of expiry: a requestor can front-run the provider\'s last claim)'
  const readable = claimGraceSec % 3600 === 0 ? `${claimGraceSec / 3600} h` : `${claimGraceSec} s`
  return `${claimGraceSec} s (refund from expiry + ${readable}; the provider can claim until then)`
}

export interface DeployCommandOptions {
  rpc: string
  keyFile: string
  /** Where the deployment JSON goes; default `deployment.json`. */
  out?: string
  /** Open mint; default: on for development chain ids only. */
  faucet?: boolean
  /** Bind the escrow to this existing ERC-20 instead of deploying the test token. */
  token?: Address
  /** HTT minted to the deployer at construction, in wei. */
  initialSupplyWei?: bigint
  /** The escrow's claim grace after expiry, in seconds; default one day (see defaultClaimGraceSec). */
  claimGraceSec?: number
  maxFeePerGasWei?: bigint
  confirmations?: number
  json?: boolean
}

/** Deploys to the chain behind `rpc` with the key in `keyFile` and writes the deployment file. */
export async function runDeployCommand(options: DeployCommandOptions, io: CommandIo): Promise<DeploymentRecord> {
  const identity = await readKeyFile(options.keyFile, 'deployer key file')
  const chainId = await rpcChainId(options.rpc)
  const client = createChainClient({
    transport: options.rpc,
    privateKey: identity.privateKey,
    chainId,
    ...(options.maxFeePerGasWei === undefined ? {} : { maxFeePerGasWei: options.maxFeePerGasWei }),
    ...(options.confirmations === undefined ? {} : { confirmations: options.confirmations }),
  })
  const record: DeploymentRecord = {
    ...(await deployHearth(client, {
      ...(options.faucet === undefined ? {} : { faucet: options.faucet }),
      ...(options.token === undefined ? {} : { tokenAddress: options.token }),
      ...(options.initialSupplyWei === undefined ? {} : { initialSupplyWei: options.initialSupplyWei }),
      ...(options.claimGraceSec === undefined ? {} : { claimGraceSec: options.claimGraceSec }),
    })),
    rpcUrl: options.rpc,
  }
  const out = options.out ?? 'deployment.json'
  await writeDeploymentFile(out, record)
  if (options.json === true) {
    io.stdout.write(`${JSON.stringify({ ...record, deploymentFile: out })}\n`)
  } else {
    const gas = record.transactions.reduce((sum, t) => sum + BigInt(t.gasUsed), 0n)
    io.stdout.write(
      [
        `Deployed on chain ${record.chainId} by ${record.deployer}`,
        `  token       ${record.tokenAddress}${record.tokenDeployed ? ` (HTT, faucet ${record.faucet ? 'on' : 'off'})` : ' (existing)'}`,
        `  escrow      ${record.escrowAddress}`,
        `  grace       ${formatGrace(record.claimGraceSec)}`,
        `  gas         ${gas} in ${record.transactions.length} transactions`,
        `  written to  ${out}`,
        '',
      ].join('\n'),
    )
  }
  return record
}

function intOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`)
    return n
  }
}

function amountOption(name: string, parse: (value: string) => bigint) {
  return (value: string): bigint => {
    try {
      const amount = parse(value)
      if (amount < 0n) throw new Error('negative')
      return amount
    } catch {
      throw new InvalidArgumentError(`${name} must be a non-negative decimal number`)
    }
  }
}

function urlOption(value: string): string {
  if (!/^https?:\/\/\S+$/.test(value)) throw new InvalidArgumentError('--rpc must be an http(s) URL')
  return value
}

function hostOption(value: string): string {
  // A wildcard would put http://0.0.0.0 in the deployment file, which no other host can use.
  if (value === '0.0.0.0' || value === '::') throw new InvalidArgumentError('--host must be the address other hosts reach this one by, not a wildcard')
  if (!isIP(value)) throw new InvalidArgumentError('--host must be an IP address of this machine')
  return value
}

function addressOption(value: string): Address {
  if (!/^0x[0-9a-fA-F]{40}$/.test(value)) throw new InvalidArgumentError('--token must be a 0x-prefixed address')
  return value as Address
}

const claimGraceHelp =
  'seconds after an escrow\'s expiry in which its provider can still claim and its requestor cannot yet refund (fixed in the contract; 0 lets a requestor front-run the last claim)'

/**
 * Registers `hearth chain` and `hearth deploy`. `chain` runs until SIGINT/SIGTERM, or until `stopSignal` aborts
 * (tests).
 */
export function registerChainCommands(program: Command, io: CommandIo, options: { stopSignal?: AbortSignal } = {}): void {
  program
    .command('chain')
    .description('run a development chain on 127.0.0.1 (token + escrow deployed, dev accounts funded) that several processes share')
    .option('--port <port>', 'JSON-RPC port (0: any free port)', intOption('--port', 0, 65535), 8545)
    .option('--host <address>', 'serve JSON-RPC on this address, for nodes on other hosts (default: 127.0.0.1, this machine only)', hostOption)
    .option('--chain-id <id>', 'chain id', intOption('--chain-id', 1, 2 ** 32 - 1), 31337)
    .option('--accounts <n>', 'funded dev accounts', intOption('--accounts', 1, 100), 5)
    .option('--deployment-out <file>', 'also write the deployment JSON (with the URL) here')
    .option('--claim-grace-sec <n>', claimGraceHelp, intOption('--claim-grace-sec', 0, maxClaimGraceSec), defaultClaimGraceSec)
    .option('--json', 'print one JSON object instead of a summary')
    .action(async (opts: { port: number; host?: string; chainId: number; accounts: number; deploymentOut?: string; claimGraceSec: number; json?: boolean }) => {
      const running = await startChain(
        {
          port: opts.port,
          ...(opts.host === undefined ? {} : { host: opts.host }),
          chainId: opts.chainId,
          accounts: opts.accounts,
          claimGraceSec: opts.claimGraceSec,
          ...(opts.deploymentOut === undefined ? {} : { deploymentOut: opts.deploymentOut }),
          json: opts.json === true,
        },
        io,
      )
      await untilStopped(options.stopSignal)
      await running.close()
    })

  program
    .command('deploy')
    .description('deploy the token and escrow to any EVM chain by JSON-RPC URL, and write a deployment file')
    .requiredOption('--rpc <url>', 'JSON-RPC URL of the chain', urlOption)
    .requiredOption('--key-file <file>', 'file holding the deployer key (64 hex digits, mode 0600), e.g. a node.key')
    .option('--out <file>', 'deployment JSON to write', 'deployment.json')
    .option('--faucet', 'deploy the token with an open mint (development chains; default on for chain ids 31337 and 1337)')
    .option('--no-faucet', 'deploy the token without a mint, even on a development chain id')
    .option('--token <address>', 'settle in this existing ERC-20: deploy only the escrow', addressOption)
    .option('--initial-supply <htt>', 'HTT minted to the deployer at deploy', amountOption('--initial-supply', (v) => parseEther(v)))
    .option('--claim-grace-sec <n>', claimGraceHelp, intOption('--claim-grace-sec', 0, maxClaimGraceSec), defaultClaimGraceSec)
    .option('--max-fee-gwei <gwei>', 'refuse to pay more than this per gas', amountOption('--max-fee-gwei', (v) => parseGwei(v)))
    .option('--confirmations <n>', 'blocks each deploy tx must have before it counts', intOption('--confirmations', 1, 64), 1)
    .option('--json', 'print one JSON object instead of a summary')
    .action(
      async (opts: {
        rpc: string
        keyFile: string
        out: string
        faucet?: boolean
        token?: Address
        initialSupply?: bigint
        claimGraceSec: number
        maxFeeGwei?: bigint
        confirmations: number
        json?: boolean
      }) => {
        await runDeployCommand(
          {
            rpc: opts.rpc,
            keyFile: opts.keyFile,
            out: opts.out,
            confirmations: opts.confirmations,
            claimGraceSec: opts.claimGraceSec,
            json: opts.json === true,
            ...(opts.faucet === undefined ? {} : { faucet: opts.faucet }),
            ...(opts.token === undefined ? {} : { token: opts.token }),
            ...(opts.initialSupply === undefined ? {} : { initialSupplyWei: opts.initialSupply }),
            ...(opts.maxFeeGwei === undefined ? {} : { maxFeePerGasWei: opts.maxFeeGwei }),
          },
          io,
        )
      },
    )
}

/** Resolves on SIGINT or SIGTERM (or when `signal` aborts), removing its listeners either way. */
function untilStopped(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done)
      process.off('SIGTERM', done)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    if (signal?.aborted === true) return done()
    process.once('SIGINT', done)
    process.once('SIGTERM', done)
    signal?.addEventListener('abort', done, { once: true })
  })
}
