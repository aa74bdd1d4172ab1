/**
 * Requestor and provider actions on the token and escrow contracts, over one chain client. Contract reverts come back
 * as HearthError naming the custom error (`escrow.claim reverted: NothingToClaim(5, 5)`).
 */
import { encodeAbiParameters, getAddress, keccak256, maxUint256, parseEventLogs } from 'viem'
import type { Abi, Address, Hex, TransactionReceipt } from 'viem'
import { HearthError } from '../errors.ts'
import type { ErrorCode } from '../errors.ts'
import { revertInfo, toChainError } from './chain-client.ts'
import type { ChainClient } from './chain-client.ts'
import { hearthEscrowAbi, hearthTokenAbi } from './contracts.ts'
import type { Voucher } from './voucher.ts'

/** A chain client plus the deployed contracts it talks to. */
export interface EscrowContext {
  client: ChainClient
  tokenAddress: Address
  escrowAddress: Address
}

export interface TxOutcome {
  hash: Hex
  gasUsed: bigint
}

/**
 * Names one escrow: the contract keys escrows by (requestor, agreement id), so an agreement id alone is not enough,
 * and someone who learns an id cannot open an escrow in the requestor's place.
 */
export interface EscrowRef {
  requestorAddress: Address
  agreementId: Hex
}

export interface EscrowState {
  agreementId: Hex
  requestorAddress: Address
  providerAddress: Address
  depositedWei: bigint
  claimedWei: bigint
  expiresAtSec: bigint
  /**
   * Chain time from which the requestor may refund: expiry plus the contract's claim grace. Until then (and after,
   * until the escrow is closed) the provider may claim.
   */
  refundableAtSec: bigint
  closed: boolean
}

/** Reverts that mean "this voucher is no good" rather than "the chain failed". */
const voucherErrors = new Set(['InvalidVoucherSignature', 'NothingToClaim', 'ClaimExceedsDeposit'])
const fundsErrors = new Set(['ERC20InsufficientBalance'])

/** The contract's storage key for an escrow: keccak256(abi.encode(requestor, agreementId)), as `escrowKey` computes. */
export function escrowKey(ref: EscrowRef): Hex {
  return keccak256(encodeAbiParameters([{ type: 'address' }, { type: 'bytes32' }], [ref.requestorAddress, ref.agreementId]))
}

/** Token faucet, development chains only: anyone may mint when the token was deployed with `faucet`. */
export async function mintTokens(ctx: EscrowContext, args: { toAddress: Address; amountWei: bigint }): Promise<TxOutcome> {
  const receipt = await write(ctx, 'token.mint', ctx.tokenAddress, tokenAbi(), 'mint', [args.toAddress, args.amountWei])
  return outcome(receipt)
}

/** Moves tokens from this client's account (a provider's earnings to its payout address, `hearth wallet send`). */
export async function transferTokens(ctx: EscrowContext, args: { toAddress: Address; amountWei: bigint }): Promise<TxOutcome> {
  if (args.amountWei <= 0n) throw new HearthError('HEARTH_ERR_API_MISUSE', `cannot send ${args.amountWei} wei`, { hint: 'send a positive amount' })
  const receipt = await write(ctx, 'token.transfer', ctx.tokenAddress, tokenAbi(), 'transfer', [args.toAddress, args.amountWei])
  return outcome(receipt)
}

/**
 * Lets the escrow pull the requestor's deposits. One large approval per requestor (default: unlimited, which
 * OpenZeppelin's ERC-20 never decrements), so each agreement costs a single `open` tx.
 */
export async function approveEscrow(ctx: EscrowContext, amountWei: bigint = maxUint256): Promise<TxOutcome> {
  const receipt = await write(ctx, 'token.approve', ctx.tokenAddress, tokenAbi(), 'approve', [ctx.escrowAddress, amountWei])
  return outcome(receipt)
}

export interface OpenEscrowArgs {
  agreementId: Hex
  providerAddress: Address
  amountWei: bigint
  /** Chain time at which the agreement ends; the requestor may refund from this plus the contract's claim grace. */
  expiresAtSec: bigint | number
}

/**
 * The requestor deposits `amountWei` for an agreement; refundable from `expiresAtSec` plus the claim grace (chain
 * time, see {@link escrowClaimGraceSec}).
 */
export async function openEscrow(ctx: EscrowContext, args: OpenEscrowArgs): Promise<TxOutcome> {
  const receipt = await write(ctx, 'escrow.open', ctx.escrowAddress, escrowAbi(), 'open', [
    args.agreementId,
    args.providerAddress,
    args.amountWei,
    BigInt(args.expiresAtSec),
  ])
  return outcome(receipt)
}

/**
 * Opens several escrows in one transaction with one token transfer for their total (a job across many providers).
 * All or nothing: if one request is refused (a reused id, a past expiry), none is opened.
 */
export async function openEscrows(ctx: EscrowContext, requests: readonly OpenEscrowArgs[]): Promise<TxOutcome & { depositedWei: bigint }> {
  const receipt = await write(ctx, 'escrow.openMany', ctx.escrowAddress, escrowAbi(), 'openMany', [
    requests.map((r) => ({
      agreementId: r.agreementId,
      provider: r.providerAddress,
      amount: r.amountWei,
      expiresAt: BigInt(r.expiresAtSec),
    })),
  ])
  let depositedWei = 0n
  for (const log of escrowLogs(ctx, receipt)) {
    if (log.eventName === 'EscrowOpened') depositedWei += log.args.amount as bigint
  }
  return { ...outcome(receipt), depositedWei }
}

/** The requestor adds to an open escrow's deposit. */
export async function topUpEscrow(ctx: EscrowContext, args: { agreementId: Hex; amountWei: bigint }): Promise<TxOutcome> {
  const receipt = await write(ctx, 'escrow.topUp', ctx.escrowAddress, escrowAbi(), 'topUp', [args.agreementId, args.amountWei])
  return outcome(receipt)
}

export interface ClaimArgs {
  voucher: Voucher
  /** Also return the unclaimed rest to the requestor and close the escrow. */
  release?: boolean
  /** The escrow's requestor; default: the voucher's signer (verifyVoucher checks that field against the signature). */
  requestorAddress?: Address
}

export interface ClaimOutcome extends TxOutcome {
  paidWei: bigint
  refundedWei: bigint
}

/**
 * The provider redeems a voucher: receives what it adds over earlier claims. With `release`, the rest of the deposit
 * goes back to the requestor and the escrow closes (a finished job settles at once).
 */
export async function claimVoucher(ctx: EscrowContext, args: ClaimArgs): Promise<ClaimOutcome> {
  const { voucher } = args
  const receipt = await write(ctx, args.release === true ? 'escrow.claim+release' : 'escrow.claim', ctx.escrowAddress, escrowAbi(), 'claim', [
    args.requestorAddress ?? voucher.signer,
    voucher.agreementId,
    voucher.cumulativeWei,
    voucher.signature,
    args.release === true,
  ])
  return { ...outcome(receipt), ...claimTotals(ctx, receipt) }
}

/**
 * Redeems several vouchers in one transaction, paid as one token transfer. All or nothing: one bad voucher (already
 * claimed, wrong signer) reverts the batch, naming the reason; claim it alone to find which.
 */
export async function claimVouchers(
  ctx: EscrowContext,
  claims: readonly ClaimArgs[],
): Promise<ClaimOutcome & { perAgreement: { agreementId: Hex; requestorAddress: Address; paidWei: bigint }[] }> {
  const receipt = await write(ctx, 'escrow.claimMany', ctx.escrowAddress, escrowAbi(), 'claimMany', [
    claims.map((c) => ({
      requestor: c.requestorAddress ?? c.voucher.signer,
      agreementId: c.voucher.agreementId,
      cumulativeAmount: c.voucher.cumulativeWei,
      signature: c.voucher.signature,
      releaseRest: c.release === true,
    })),
  ])
  const perAgreement = escrowLogs(ctx, receipt)
    .filter((log) => log.eventName === 'VoucherClaimed')
    .map((log) => ({
      agreementId: log.args.agreementId as Hex,
      requestorAddress: getAddress(log.args.requestor as Address),
      paidWei: log.args.paid as bigint,
    }))
  return { ...outcome(receipt), ...claimTotals(ctx, receipt), perAgreement }
}

function claimTotals(ctx: EscrowContext, receipt: TransactionReceipt): { paidWei: bigint; refundedWei: bigint } {
  let paidWei = 0n
  let refundedWei = 0n
  for (const log of escrowLogs(ctx, receipt)) {
    if (log.eventName === 'VoucherClaimed') paidWei += log.args.paid as bigint
    if (log.eventName === 'EscrowReleased') refundedWei += log.args.refunded as bigint
  }
  return { paidWei, refundedWei }
}

/** The provider closes the escrow without claiming more; the unclaimed rest goes back to the requestor at once. */
export async function releaseEscrow(ctx: EscrowContext, ref: EscrowRef): Promise<TxOutcome & { refundedWei: bigint }> {
  return closeEscrow(ctx, 'release', [ref.requestorAddress, ref.agreementId], 'EscrowReleased')
}

/**
 * The requestor (this client's account) takes back the unclaimed deposit and closes the escrow. Works from expiry plus
 * the contract's claim grace; earlier it fails with HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY, naming the chain time from
 * which it works (nothing is sent: the revert shows when the transaction is estimated).
 */
export async function refundEscrow(ctx: EscrowContext, agreementId: Hex): Promise<TxOutcome & { refundedWei: bigint }> {
  return closeEscrow(ctx, 'refund', [agreementId], 'EscrowRefunded')
}

/** Both ways of closing send the unclaimed rest to the requestor; the event says how much. */
async function closeEscrow(
  ctx: EscrowContext,
  functionName: 'release' | 'refund',
  args: readonly unknown[],
  eventName: 'EscrowReleased' | 'EscrowRefunded',
): Promise<TxOutcome & { refundedWei: bigint }> {
  const receipt = await write(ctx, `escrow.${functionName}`, ctx.escrowAddress, escrowAbi(), functionName, args)
  let refundedWei = 0n
  for (const log of escrowLogs(ctx, receipt)) {
    if (log.eventName === eventName) refundedWei += log.args.refunded as bigint
  }
  return { ...outcome(receipt), refundedWei }
}

/**
 * The escrow contract's claim grace, read from the chain (the contract is the truth, not a deployment file): seconds
 * after an escrow's expiry during which its provider may still claim and its requestor cannot yet refund.
 */
export async function escrowClaimGraceSec(ctx: Pick<EscrowContext, 'client' | 'escrowAddress'>): Promise<bigint> {
  // Immutable in the contract: read once per client and contract, not at every escrow read.
  let byContract = claimGraces.get(ctx.client)
  if (byContract === undefined) {
    byContract = new Map()
    claimGraces.set(ctx.client, byContract)
  }
  const known = byContract.get(ctx.escrowAddress.toLowerCase())
  if (known !== undefined) return known
  const grace = (await read(ctx, 'escrow.claimGraceSec', ctx.escrowAddress, escrowAbi(), 'claimGraceSec', [])) as bigint
  byContract.set(ctx.escrowAddress.toLowerCase(), grace)
  return grace
}
const claimGraces = new WeakMap<object, Map<string, bigint>>()

/** The escrow `requestorAddress` opened for an agreement, or undefined when it opened none. */
export async function getEscrow(ctx: EscrowContext, ref: EscrowRef): Promise<EscrowState | undefined> {
  const [[providerAddress, depositedWei, claimedWei, expiresAtSec, closed], claimGraceSec] = await Promise.all([
    read(ctx, 'escrow.escrows', ctx.escrowAddress, escrowAbi(), 'escrows', [ref.requestorAddress, ref.agreementId]) as Promise<
      [Address, bigint, bigint, bigint, boolean]
    >,
    escrowClaimGraceSec(ctx),
  ])
  // Every escrow ever opened names a provider (the contract refuses zero), so zero means none.
  if (/^0x0{40}$/.test(providerAddress)) return undefined
  return {
    agreementId: ref.agreementId,
    requestorAddress: getAddress(ref.requestorAddress),
    providerAddress,
    depositedWei,
    claimedWei,
    expiresAtSec,
    refundableAtSec: expiresAtSec + claimGraceSec,
    closed,
  }
}

export async function tokenBalanceOf(ctx: EscrowContext, address: Address): Promise<bigint> {
  return (await read(ctx, 'token.balanceOf', ctx.tokenAddress, tokenAbi(), 'balanceOf', [address])) as bigint
}

/** The latest block's timestamp: expiries are judged by chain time, which `increaseTime` moves ahead of the wall. */
export async function chainTimeSec(ctx: Pick<EscrowContext, 'client'>): Promise<bigint> {
  try {
    return (await ctx.client.publicClient.getBlock({ blockTag: 'latest' })).timestamp
  } catch (error) {
    throw toChainError(error, 'eth_getBlockByNumber')
  }
}

async function write(
  ctx: EscrowContext,
  label: string,
  address: Address,
  abi: Abi,
  functionName: string,
  args: readonly unknown[],
): Promise<TransactionReceipt> {
  try {
    return await ctx.client.writeContract({ label, address, abi, functionName, args })
  } catch (error) {
    throw classify(error, label)
  }
}

async function read(
  ctx: Pick<EscrowContext, 'client'>,
  label: string,
  address: Address,
  abi: Abi,
  functionName: string,
  args: readonly unknown[],
): Promise<unknown> {
  try {
    return await ctx.client.publicClient.readContract({ address, abi, functionName, args })
  } catch (error) {
    throw classify(error, label)
  }
}

/** Picks the error code a caller branches on: a bad voucher, too few tokens, or any other chain failure. */
function classify(error: unknown, label: string): HearthError {
  const chainError = toChainError(error, label)
  const name = revertInfo(error)?.errorName
  let code: ErrorCode = 'HEARTH_ERR_PAYMENT_CHAIN'
  let hint: string | undefined
  if (name !== undefined && voucherErrors.has(name)) code = 'HEARTH_ERR_PAYMENT_VOUCHER_INVALID'
  if (name !== undefined && fundsErrors.has(name)) {
    code = 'HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS'
    hint = 'mint or buy more tokens for this wallet, or lower the budget'
  }
  if (name === 'ERC20InsufficientAllowance') hint = 'call approveEscrow once for this requestor'
  if (name === 'FaucetDisabled') {
    code = 'HEARTH_ERR_PAYMENT_FAUCET_DISABLED'
    hint = 'this token was deployed for a real chain; get tokens from their holder instead'
  }
  if (name === 'RefundTooEarly') return refundTooEarly(error, chainError)
  if (code === chainError.code && hint === undefined) return chainError
  return new HearthError(code, chainError.shortMessage, {
    cause: error,
    ...(hint === undefined ? {} : { hint }),
    ...(chainError.details === undefined ? {} : { details: chainError.details }),
  })
}

/** Says from when a refund works, from the contract's own `RefundTooEarly(refundableAt, nowSec)`. */
function refundTooEarly(error: unknown, chainError: HearthError): HearthError {
  const [refundableAtSec, nowSec] = (revertInfo(error)?.args ?? []) as [bigint | undefined, bigint | undefined]
  const when =
    refundableAtSec === undefined || nowSec === undefined
      ? ''
      : `: it works from chain time ${refundableAtSec} (the expiry plus the escrow's claim grace), ${refundableAtSec - nowSec} s after the block it was tried in (${nowSec})`
  return new HearthError('HEARTH_ERR_PAYMENT_REFUND_TOO_EARLY', `${chainError.shortMessage}${when}`, {
    cause: error,
    hint: 'until then the provider may still claim its vouchers; refund again from that time (getEscrow says refundableAtSec)',
    details: {
      ...chainError.details,
      ...(refundableAtSec === undefined ? {} : { refundableAtSec: refundableAtSec.toString() }),
      ...(nowSec === undefined ? {} : { nowSec: nowSec.toString() }),
    },
  })
}

function outcome(receipt: TransactionReceipt): TxOutcome {
  return { hash: receipt.transactionHash, gasUsed: receipt.gasUsed }
}

function escrowLogs(ctx: EscrowContext, receipt: TransactionReceipt) {
  const own = receipt.logs.filter((log) => log.address.toLowerCase() === ctx.escrowAddress.toLowerCase())
  return parseEventLogs({ abi: escrowAbi(), logs: own }) as unknown as { eventName: string; args: Record<string, unknown> }[]
}

function tokenAbi(): Abi {
  return hearthTokenAbi()
}

let escrowAbiWithTokenErrors: Abi | undefined

/** The escrow's ABI plus the token's errors, so a failed transfer inside the escrow decodes by name too. */
function escrowAbi(): Abi {
  if (escrowAbiWithTokenErrors === undefined) {
    const escrow = hearthEscrowAbi()
    const known = new Set(escrow.filter((item) => item.type === 'error').map((item) => (item as { name: string }).name))
    const tokenErrors = hearthTokenAbi().filter(
      (item) => item.type === 'error' && !known.has((item as { name: string }).name),
    )
    escrowAbiWithTokenErrors = [...escrow, ...tokenErrors]
  }
  return escrowAbiWithTokenErrors
}
