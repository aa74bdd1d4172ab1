/**
 * Deploys the Hearth token and escrow, and reads and writes the deployment file that tells other nodes (and
 * `hearth wallet`) where they are.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { getAddress, isAddress } from 'viem'
import type { Address } from 'viem'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import type { ChainClient } from './chain-client.ts'
import { loadContracts } from './contracts.ts'
import { escrowClaimGraceSec } from './escrow.ts'

export interface HearthDeployment {
  tokenAddress: Address
  escrowAddress: Address
}

/**
 * The escrow's default claim grace: one day after an agreement's expiry in which its provider can still claim and its
 * requestor cannot yet refund. Long enough for a provider that was down or partitioned at expiry (a restart, a night
 * offline, a congested chain) to come back and claim the vouchers it holds, which it does at start; short enough that
 * a requestor whose provider vanished gets its unclaimed rest back a day later. Filecoin's payment channels wait 12
 * hours (their settling delay) and Raiden's a settlement timeout of hundreds of blocks, for the same reason; a day
 * also covers a provider that claims on a daily timer.
 */
export const defaultClaimGraceSec = 86_400

/**
 * The longest grace `deployHearth` accepts (30 days): a longer one would lock each requestor's unclaimed deposits that
 * long after every expiry, and a provider that has not claimed within a month is not coming back.
 */
export const maxClaimGraceSec = 30 * 86_400

export interface DeployOptions {
  /**
   * Deploy the token with an open mint (development chains only). Default: on for the usual development chain ids
   * (31337, 1337), off elsewhere. Refused on well-known public chains.
   */
  faucet?: boolean
  /** Settle in an existing ERC-20 instead of deploying HearthToken: only the escrow is deployed. */
  tokenAddress?: Address
  /** Minted to the deployer at construction: on a chain without faucet, the only HTT there will ever be. */
  initialSupplyWei?: bigint
  /**
   * Seconds after an escrow's expiry in which only its provider may act (claim); the requestor refunds from expiry plus
   * this. Fixed in the contract for good. Default {@link defaultClaimGraceSec} (one day); 0 gives the requestor refund
   * from the second of expiry, which lets it front-run the provider's last claim: for tests only.
   */
  claimGraceSec?: number
}

/** What a deployment file holds: enough for another node to find and trust the contracts. */
export interface DeploymentRecord extends HearthDeployment {
  chainId: number
  /** Whether the token's mint is open (development chains); false for a token we did not deploy. */
  faucet: boolean
  /** False when the escrow was bound to an existing token. */
  tokenDeployed: boolean
  /**
   * The escrow's claim grace as read back from the contract after deployment. For people and tools that read the file;
   * code that acts on it asks the contract (`escrowClaimGraceSec`), which is the truth.
   */
  claimGraceSec: number
  deployer: Address
  /** The block of the escrow's deployment: where to start reading its events. */
  blockNumber: string
  deployedAtMs: number
  /** The RPC URL the deployment was made through, when it was a URL; `hearth wallet` uses it by default. */
  rpcUrl?: string
  transactions: { label: string; hash: string; gasUsed: string }[]
}

/** Development chain ids that get a faucet by default. */
export const developmentChainIds: ReadonlySet<number> = new Set([31337, 1337])

/**
 * Well-known public chains (mainnets and their main testnets) on which a faucet token is refused: a faucet there
 * would mint "payments" out of thin air for anyone who trusted the deployment.
 */
const publicChainIds: ReadonlySet<number> = new Set([
  1, 10, 56, 100, 137, 250, 324, 1101, 5000, 8453, 42161, 42170, 42220, 43114, 59144, 81457, 534352,
])

export async function deployHearthContracts(
  client: ChainClient,
  options: DeployOptions = {},
): Promise<HearthDeployment & { faucet: boolean; claimGraceSec: number }> {
  const record = await deployHearth(client, options)
  return { tokenAddress: record.tokenAddress, escrowAddress: record.escrowAddress, faucet: record.faucet, claimGraceSec: record.claimGraceSec }
}

/** Deploys (one or two txs) and returns the full record to write with {@link writeDeploymentFile}. */
export async function deployHearth(client: ChainClient, options: DeployOptions = {}): Promise<DeploymentRecord> {
  const faucet = options.tokenAddress === undefined && (options.faucet ?? developmentChainIds.has(client.chainId))
  if (faucet && publicChainIds.has(client.chainId)) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `refusing to deploy a faucet token on public chain ${client.chainId}`, {
      hint: 'deploy without --faucet (an initial supply goes to the deployer), or bind the escrow to an existing token with --token',
    })
  }
  const claimGraceSec = options.claimGraceSec ?? defaultClaimGraceSec
  if (!Number.isSafeInteger(claimGraceSec) || claimGraceSec < 0 || claimGraceSec > maxClaimGraceSec) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `the claim grace must be a whole number of seconds from 0 to ${maxClaimGraceSec}, not ${claimGraceSec}`, {
      hint: `the default, ${defaultClaimGraceSec} s (one day), gives a provider that was down at expiry time to claim`,
    })
  }
  const { HearthToken, HearthEscrow } = loadContracts()
  const ledgerStart = client.ledger.length
  let tokenAddress: Address
  if (options.tokenAddress === undefined) {
    const token = await client.deployContract({
      label: 'deploy.HearthToken',
      abi: HearthToken.abi,
      bytecode: HearthToken.bytecode,
      args: [faucet, options.initialSupplyWei ?? 0n],
    })
    tokenAddress = token.address
  } else {
    tokenAddress = await existingToken(client, options.tokenAddress)
  }
  const escrow = await client.deployContract({
    label: 'deploy.HearthEscrow',
    abi: HearthEscrow.abi,
    bytecode: HearthEscrow.bytecode,
    args: [tokenAddress, BigInt(claimGraceSec)],
  })
  // Recorded as the contract reports it, not as asked: the file then says what the chain enforces.
  const graceOnChain = await escrowClaimGraceSec({ client, escrowAddress: escrow.address })
  return {
    chainId: client.chainId,
    tokenAddress,
    escrowAddress: escrow.address,
    faucet,
    tokenDeployed: options.tokenAddress === undefined,
    claimGraceSec: Number(graceOnChain),
    deployer: client.address,
    blockNumber: escrow.receipt.blockNumber.toString(),
    deployedAtMs: Date.now(),
    transactions: client.ledger.slice(ledgerStart).map((entry) => ({ label: entry.label, hash: entry.hash, gasUsed: entry.gasUsed.toString() })),
  }
}

/** An escrow bound to an address with no code would take deposits into nothing: check there is a contract. */
async function existingToken(client: ChainClient, address: Address): Promise<Address> {
  if (!isAddress(address, { strict: false })) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `--token ${String(address)} is not an address`)
  }
  const code = await client.publicClient.getCode({ address }).catch(() => undefined)
  if (code === undefined || code === '0x') {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `no contract at ${address} on chain ${client.chainId}`, {
      hint: 'pass the address of the ERC-20 token on this chain',
    })
  }
  return getAddress(address)
}

const addressSchema = z.string().refine((s) => isAddress(s, { strict: false }), 'expected an address')
const deploymentSchema = z.object({
  chainId: z.number().int().positive(),
  tokenAddress: addressSchema,
  escrowAddress: addressSchema,
  faucet: z.boolean(),
  tokenDeployed: z.boolean(),
  claimGraceSec: z.number().int().min(0),
  deployer: addressSchema,
  blockNumber: z.string().regex(/^[0-9]+$/),
  deployedAtMs: z.number(),
  rpcUrl: z.string().optional(),
  transactions: z.array(z.object({ label: z.string(), hash: z.string(), gasUsed: z.string() })),
})

/** Writes the record as JSON, aside then renamed, so a reader never sees half a file. */
export async function writeDeploymentFile(path: string, record: DeploymentRecord): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const partial = `${path}.${process.pid}.tmp`
  await writeFile(partial, `${JSON.stringify(record, null, 2)}\n`)
  await rename(partial, path)
}

export async function readDeploymentFile(path: string): Promise<DeploymentRecord> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `cannot read the deployment file ${path}`, {
      cause,
      hint: 'write one with `hearth deploy --out FILE` or `hearth chain --deployment-out FILE`',
    })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment file ${path} is not valid JSON`, { cause })
  }
  const parsed = deploymentSchema.safeParse(json)
  if (!parsed.success) {
    const fields = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')
    // A file without the grace was written for an escrow from before it, whose refund races the provider's claim.
    const graceMissing = typeof json === 'object' && json !== null && !('claimGraceSec' in json)
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment file ${path} is malformed (${fields})`, {
      ...(graceMissing ? { hint: 'it predates the escrow\'s claim grace: deploy again with `hearth deploy` (or restart `hearth chain`) and use the new file' } : {}),
    })
  }
  const record = parsed.data
  return {
    ...record,
    tokenAddress: getAddress(record.tokenAddress),
    escrowAddress: getAddress(record.escrowAddress),
    deployer: getAddress(record.deployer),
  } as DeploymentRecord
}
