/**
 * The money invariant, read from the chain alone. For a requestor's escrows: what they took in (EscrowOpened,
 * EscrowToppedUp), paid out (VoucherClaimed), gave back (EscrowReleased, EscrowRefunded) and still hold (the `escrows`
 * view), whether `deposited = paid + refunded + locked` holds per escrow and in total, and whether the events agree
 * with the escrow's stored state. Given balances from before a job, it also checks that tokens moved only between the
 * requestor, its providers and the escrows, each by what the events say. Nobody's own records are read here, so a
 * report built on this can disagree with them, and a wrong record or a leak shows.
 */
import { encodeEventTopics, formatLog, getAddress, parseEventLogs, toEventSelector, toHex } from 'viem'
import type { Abi, AbiEvent, Address, Hex, RpcLog } from 'viem'
import { HearthError } from '../errors.ts'
import { toChainError } from './chain-client.ts'
import { hearthEscrowAbi, hearthTokenAbi } from './contracts.ts'
import type { EscrowContext } from './escrow.ts'

/** Token balances at one block: what a job's token movements are measured from. */
export interface TokenSnapshot {
  /** The block the balances were read at; escrow events after it count as the job's. */
  blockNumber: bigint
  /** By checksummed address. */
  balancesWei: ReadonlyMap<Address, bigint>
}

export interface SnapshotTokenBalancesParameters {
  addresses: readonly Address[]
  /** Default: the latest block. */
  blockNumber?: bigint
}

export interface AuditEscrowsParameters {
  requestorAddress: Address
  /** The escrows to audit: keyed on chain by (requestor, agreement id). */
  agreementIds: readonly Hex[]
  /**
   * The first block whose events are read. Default: the earliest block of `openTxHashes`, else block 0 (fine on the
   * embedded chain; on a real chain give one or the other rather than scan from genesis).
   */
  fromBlock?: bigint
  /** Transactions that opened the escrows (a job's `openMany`): where their events start. */
  openTxHashes?: readonly Hex[]
  /**
   * Balances of the requestor and its providers before the job, from {@link snapshotTokenBalances}. With them the audit
   * also checks where the tokens went; a provider of an audited escrow missing here is read at the snapshot's block.
   */
  before?: TokenSnapshot
  /** The block everything is read at (default: the latest), so events, escrow state and balances agree. */
  blockNumber?: bigint
  /** The widest block range asked of one eth_getLogs (default 10 000: public RPC nodes refuse wider ones). */
  maxLogBlockRange?: bigint
  /**
   * With `before`: what other escrows of this requestor that moved tokens since the snapshot mean. 'unaudited'
   * (default): a problem, for a run that opened no escrow but the audited ones. 'explained': a node that keeps other
   * agreements while the job runs (storage, services) pays and tops them up meanwhile; their events then account for
   * the tokens they moved, and the balances must still match to the wei.
   */
  otherEscrows?: 'unaudited' | 'explained'
}

export interface AgreementAudit {
  agreementId: Hex
  /** The escrow's provider; null when the chain holds no escrow for this requestor and agreement. */
  provider: Address | null
  /** EscrowOpened plus EscrowToppedUp amounts. */
  depositedWei: bigint
  /** VoucherClaimed `paid`. */
  paidWei: bigint
  /** EscrowReleased and EscrowRefunded `refunded`. */
  refundedWei: bigint
  /** From the `escrows` view: deposited − claimed while open, 0 once closed. */
  lockedWei: bigint
  closed: boolean
  /** The transaction of its EscrowOpened event. */
  openTx: Hex | null
  /** The transactions of its VoucherClaimed events: the provider's claims. */
  claimTxs: Hex[]
  /** The transaction that closed it (EscrowReleased or EscrowRefunded); null while open. */
  closeTx: Hex | null
  /** deposited = paid + refunded + locked, and the events agree with the stored deposit, claims, provider and state. */
  balanced: boolean
}

export interface BalanceAudit {
  address: Address
  role: 'requestor' | 'provider'
  /** Null when it could not be read (a provider learnt after the job, on a node that keeps no old state). */
  beforeWei: bigint | null
  afterWei: bigint
  deltaWei: bigint | null
  /** What the audited escrows' events since the snapshot move it by: −deposits + refunds (requestor), claims (provider). */
  expectedDeltaWei: bigint
  matches: boolean
}

export interface TokenAudit {
  /** The snapshot's block: events after it are the job's. */
  sinceBlock: bigint
  balances: BalanceAudit[]
  /**
   * What the audited escrows hold now (the view) less what they held at the snapshot (their events up to it); with
   * other escrows explained, plus what their events since moved in and out.
   */
  lockedChangeWei: bigint
  /**
   * requestor delta + Σ provider deltas + lockedChange: zero when tokens moved only between these accounts and the
   * escrows; null when a balance before is unknown.
   */
  netWei: bigint | null
  /** Net zero, and every account moved by exactly what the events say. */
  conserved: boolean
}

export interface EscrowAudit {
  requestorAddress: Address
  fromBlock: bigint
  /** The block everything was read at. */
  blockNumber: bigint
  agreements: AgreementAudit[]
  totals: { depositedWei: bigint; paidWei: bigint; refundedWei: bigint; lockedWei: bigint }
  /** Every audited escrow balances, the totals do, and the escrow contract holds at least what they lock. */
  escrowsBalanced: boolean
  /** Present when balances before were given. */
  tokens: TokenAudit | undefined
  /** escrowsBalanced, and tokens conserved when they were checked. */
  balanced: boolean
  /** Each failed check, in words; empty when balanced. */
  problems: string[]
}

const escrowEvents = ['EscrowOpened', 'EscrowToppedUp', 'VoucherClaimed', 'EscrowReleased', 'EscrowRefunded'] as const
type EscrowEventName = (typeof escrowEvents)[number]

/** One escrow event, decoded; every one carries the agreement id and the requestor as indexed topics 1 and 2. */
interface EscrowEvent {
  eventName: EscrowEventName
  args: { agreementId: Hex; requestor: Address; provider?: Address; amount?: bigint; paid?: bigint; refunded?: bigint }
  blockNumber: bigint
  logIndex: number
  transactionHash: Hex
}

/** Agreement ids per eth_getLogs: nodes cap how many alternatives one topic may list. */
const idsPerQuery = 50

/** Reads the token balances of `addresses` at one block (the latest by default). */
export async function snapshotTokenBalances(ctx: EscrowContext, params: SnapshotTokenBalancesParameters): Promise<TokenSnapshot> {
  const blockNumber = params.blockNumber ?? (await latestBlock(ctx))
  const unique = [...new Set(params.addresses.map((a) => getAddress(a)))]
  const balances = await Promise.all(unique.map((address) => balanceAt(ctx, address, blockNumber)))
  return { blockNumber, balancesWei: new Map(unique.map((address, i) => [address, balances[i]!])) }
}

/** Audits a requestor's escrows from the chain: see the file comment. Throws HEARTH_ERR_PAYMENT_CHAIN when a read fails. */
export async function auditEscrows(ctx: EscrowContext, params: AuditEscrowsParameters): Promise<EscrowAudit> {
  const requestor = getAddress(params.requestorAddress)
  const ids = [...new Set(params.agreementIds.map((id) => id.toLowerCase() as Hex))]
  const blockNumber = params.blockNumber ?? (await latestBlock(ctx))
  const problems: string[] = []
  const fromBlock = params.fromBlock ?? (await earliestBlock(ctx, params.openTxHashes ?? [], problems))
  const range = params.maxLogBlockRange ?? 10_000n

  const [events, views, escrowHoldsWei] = await Promise.all([
    escrowEventsOf(ctx, { requestor, ids, fromBlock, toBlock: blockNumber, range }),
    Promise.all(ids.map((id) => escrowAt(ctx, requestor, id, blockNumber))),
    balanceAt(ctx, ctx.escrowAddress, blockNumber),
  ])

  const agreements = ids.map((id, i) => auditOne(id, views[i]!, events.filter((e) => e.args.agreementId.toLowerCase() === id), problems))
  const totals = { depositedWei: 0n, paidWei: 0n, refundedWei: 0n, lockedWei: 0n }
  for (const a of agreements) {
    totals.depositedWei += a.depositedWei
    totals.paidWei += a.paidWei
    totals.refundedWei += a.refundedWei
    totals.lockedWei += a.lockedWei
  }
  const totalsBalance = totals.depositedWei === totals.paidWei + totals.refundedWei + totals.lockedWei
  if (!totalsBalance) problems.push(`in total, deposited ${totals.depositedWei} ≠ paid ${totals.paidWei} + refunded ${totals.refundedWei} + locked ${totals.lockedWei}`)
  // The contract must hold what these escrows still lock (and other escrows' money besides): less means tokens left it.
  if (escrowHoldsWei < totals.lockedWei) problems.push(`the escrow contract holds ${escrowHoldsWei} wei, less than the ${totals.lockedWei} wei these escrows lock`)
  const escrowsBalanced = agreements.every((a) => a.balanced) && totalsBalance && escrowHoldsWei >= totals.lockedWei

  const tokens = params.before === undefined ? undefined : await auditTokens(ctx, { requestor, ids, before: params.before, blockNumber, range, events, agreements, problems, others: params.otherEscrows ?? 'unaudited' })
  return {
    requestorAddress: requestor,
    fromBlock,
    blockNumber,
    agreements,
    totals,
    escrowsBalanced,
    tokens,
    balanced: escrowsBalanced && (tokens === undefined || tokens.conserved),
    problems,
  }
}

interface EscrowView {
  provider: Address
  depositedWei: bigint
  claimedWei: bigint
  closed: boolean
}

function auditOne(agreementId: Hex, view: EscrowView, events: EscrowEvent[], problems: string[]): AgreementAudit {
  const own: string[] = []
  const exists = !/^0x0{40}$/.test(view.provider)
  const opened = events.filter((e) => e.eventName === 'EscrowOpened')
  const sum = (names: EscrowEventName[], pick: (e: EscrowEvent) => bigint | undefined): bigint =>
    events.filter((e) => names.includes(e.eventName)).reduce((n, e) => n + (pick(e) ?? 0n), 0n)
  const depositedWei = sum(['EscrowOpened'], (e) => e.args.amount) + sum(['EscrowToppedUp'], (e) => e.args.amount)
  const paidWei = sum(['VoucherClaimed'], (e) => e.args.paid)
  const refundedWei = sum(['EscrowReleased', 'EscrowRefunded'], (e) => e.args.refunded)
  const closes = events.filter((e) => e.eventName === 'EscrowReleased' || e.eventName === 'EscrowRefunded').length
  const lockedWei = exists && !view.closed ? view.depositedWei - view.claimedWei : 0n

  if (!exists) own.push('the chain holds no escrow for it')
  if (opened.length !== 1) own.push(`${opened.length} EscrowOpened events in the blocks read (one expected)`)
  if (exists && view.depositedWei !== depositedWei) own.push(`the escrow stores a deposit of ${view.depositedWei} wei, its events add up to ${depositedWei}`)
  if (exists && view.claimedWei !== paidWei) own.push(`the escrow stores ${view.claimedWei} wei claimed, its VoucherClaimed events add up to ${paidWei}`)
  if (exists && (closes > 1 || view.closed !== (closes === 1))) own.push(`the escrow is ${view.closed ? 'closed' : 'open'} but ${closes} release or refund events were read`)
  const provider = exists ? getAddress(view.provider) : null
  const strangers = events.filter((e) => e.args.provider !== undefined && provider !== null && getAddress(e.args.provider) !== provider)
  if (strangers.length > 0) own.push(`${strangers.length} events name a provider other than the escrow's ${provider}`)
  if (depositedWei !== paidWei + refundedWei + lockedWei) own.push(`deposited ${depositedWei} ≠ paid ${paidWei} + refunded ${refundedWei} + locked ${lockedWei}`)
  for (const problem of own) problems.push(`agreement ${agreementId}: ${problem}`)
  return {
    agreementId,
    provider,
    depositedWei,
    paidWei,
    refundedWei,
    lockedWei,
    closed: exists && view.closed,
    openTx: opened[0]?.transactionHash ?? null,
    claimTxs: events.filter((e) => e.eventName === 'VoucherClaimed').map((e) => e.transactionHash),
    closeTx: events.find((e) => e.eventName === 'EscrowReleased' || e.eventName === 'EscrowRefunded')?.transactionHash ?? null,
    balanced: own.length === 0,
  }
}

/** Token movements since the snapshot: each account by what the events say, and nothing gained or lost overall. */
async function auditTokens(
  ctx: EscrowContext,
  args: { requestor: Address; ids: Hex[]; before: TokenSnapshot; blockNumber: bigint; range: bigint; events: EscrowEvent[]; agreements: AgreementAudit[]; problems: string[]; others: 'unaudited' | 'explained' },
): Promise<TokenAudit> {
  const { requestor, before, blockNumber, problems } = args
  const since = before.blockNumber
  const expected = new Map<Address, bigint>()
  const add = (address: Address, wei: bigint): void => void expected.set(address, (expected.get(address) ?? 0n) + wei)
  /** What the event moves into (+) or out of (−) its escrow. */
  const locked = (e: EscrowEvent): bigint => {
    const wei = e.args.amount ?? e.args.paid ?? e.args.refunded ?? 0n
    return e.eventName === 'EscrowOpened' || e.eventName === 'EscrowToppedUp' ? wei : -wei
  }
  /** As `locked`, the requestor or provider it charges or pays told to `add`. */
  const account = (e: EscrowEvent): bigint => {
    const wei = locked(e)
    if (e.eventName === 'VoucherClaimed') {
      if (e.args.provider !== undefined) add(getAddress(e.args.provider), -wei)
    } else {
      add(requestor, -wei)
    }
    return wei
  }
  let lockedBeforeWei = 0n
  for (const e of args.events) {
    if (e.blockNumber <= since) lockedBeforeWei += locked(e)
    else account(e)
  }
  let lockedChangeWei = args.agreements.reduce((n, a) => n + a.lockedWei, 0n) - lockedBeforeWei

  // Escrows of this requestor that moved tokens since the snapshot but were not asked about: unexplained, unless the
  // caller says the node keeps other agreements, whose events then account for what they moved.
  const audited = new Set(args.ids)
  const others = (await escrowEventsOf(ctx, { requestor, ids: undefined, fromBlock: since + 1n, toBlock: blockNumber, range: args.range })).filter((e) => !audited.has(e.args.agreementId.toLowerCase() as Hex))
  if (args.others === 'explained') for (const e of others) lockedChangeWei += account(e)
  else for (const id of new Set(others.map((e) => e.args.agreementId))) problems.push(`escrow ${id} of this requestor moved tokens after block ${since} but is not audited`)

  const parties = new Set<Address>([requestor, ...before.balancesWei.keys(), ...expected.keys()])
  for (const a of args.agreements) if (a.provider !== null) parties.add(a.provider)
  const balances: BalanceAudit[] = await Promise.all(
    [...parties].map(async (address) => {
      let beforeWei = before.balancesWei.get(address) ?? null
      // A provider learnt only after the job: its balance then, if the node still keeps that block's state.
      if (beforeWei === null) beforeWei = await balanceAt(ctx, address, since).catch(() => null)
      const afterWei = await balanceAt(ctx, address, blockNumber)
      const deltaWei = beforeWei === null ? null : afterWei - beforeWei
      const expectedDeltaWei = expected.get(address) ?? 0n
      return { address, role: address === requestor ? 'requestor' : 'provider', beforeWei, afterWei, deltaWei, expectedDeltaWei, matches: deltaWei === expectedDeltaWei } as const
    }),
  )
  for (const b of balances) {
    if (b.deltaWei === null) problems.push(`the ${b.role} ${b.address}'s balance at block ${since} could not be read`)
    else if (!b.matches) problems.push(`the ${b.role} ${b.address}'s balance moved by ${b.deltaWei} wei; the escrows' events account for ${b.expectedDeltaWei}`)
  }
  const known = balances.every((b) => b.deltaWei !== null)
  const netWei = known ? balances.reduce((n, b) => n + b.deltaWei!, 0n) + lockedChangeWei : null
  if (netWei !== null && netWei !== 0n) problems.push(`tokens did not stay between the requestor, its providers and the escrows: ${netWei > 0n ? `${netWei} wei appeared` : `${-netWei} wei went elsewhere`}`)
  return { sinceBlock: since, balances, lockedChangeWei, netWei, conserved: netWei === 0n && balances.every((b) => b.matches) && (args.others === 'explained' || others.length === 0) }
}

/** This requestor's escrow events in [fromBlock, toBlock], for the given agreement ids (all of its escrows when undefined). */
async function escrowEventsOf(
  ctx: EscrowContext,
  args: { requestor: Address; ids: Hex[] | undefined; fromBlock: bigint; toBlock: bigint; range: bigint },
): Promise<EscrowEvent[]> {
  if (args.ids?.length === 0 || args.fromBlock > args.toBlock) return []
  const abi = hearthEscrowAbi()
  const selectors = escrowEvents.map((name) => toEventSelector(eventAbi(abi, name)))
  const requestorTopic = (encodeEventTopics({ abi, eventName: 'EscrowReleased', args: { requestor: args.requestor } }) as (Hex | Hex[] | null)[])[2]!
  const idChunks: (Hex[] | null)[] = args.ids === undefined ? [null] : chunk(args.ids, idsPerQuery)
  const logs: RpcLog[] = []
  for (const ids of idChunks) {
    for (let from = args.fromBlock; from <= args.toBlock; from += args.range) {
      const to = from + args.range - 1n < args.toBlock ? from + args.range - 1n : args.toBlock
      try {
        const page = await ctx.client.publicClient.request({
          method: 'eth_getLogs',
          params: [{ address: ctx.escrowAddress, topics: [selectors, ids, requestorTopic], fromBlock: toHex(from), toBlock: toHex(to) }],
        })
        logs.push(...(page as RpcLog[]))
      } catch (error) {
        throw toChainError(error, 'eth_getLogs')
      }
    }
  }
  const decoded = parseEventLogs({ abi, logs: logs.map((log) => formatLog(log)) }) as unknown as EscrowEvent[]
  return decoded
    .filter((e) => (escrowEvents as readonly string[]).includes(e.eventName))
    .sort((a, b) => (a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1))
}

/** The earliest block of the given transactions; 0 when none is given or found (each one not found is a problem). */
async function earliestBlock(ctx: EscrowContext, hashes: readonly Hex[], problems: string[]): Promise<bigint> {
  let earliest: bigint | undefined
  for (const hash of new Set(hashes.map((h) => h.toLowerCase() as Hex))) {
    const receipt = await ctx.client.publicClient.getTransactionReceipt({ hash }).catch(() => undefined)
    if (receipt === undefined) {
      problems.push(`the escrow-opening transaction ${hash} is not on the chain`)
      continue
    }
    if (earliest === undefined || receipt.blockNumber < earliest) earliest = receipt.blockNumber
  }
  return earliest ?? 0n
}

async function escrowAt(ctx: EscrowContext, requestor: Address, agreementId: Hex, blockNumber: bigint): Promise<EscrowView> {
  try {
    const [provider, depositedWei, claimedWei, , closed] = (await ctx.client.publicClient.readContract({
      address: ctx.escrowAddress,
      abi: hearthEscrowAbi(),
      functionName: 'escrows',
      args: [requestor, agreementId],
      blockNumber,
    })) as [Address, bigint, bigint, bigint, boolean]
    return { provider, depositedWei, claimedWei, closed }
  } catch (error) {
    throw toChainError(error, 'escrow.escrows')
  }
}

async function balanceAt(ctx: EscrowContext, address: Address, blockNumber: bigint): Promise<bigint> {
  try {
    return (await ctx.client.publicClient.readContract({ address: ctx.tokenAddress, abi: hearthTokenAbi(), functionName: 'balanceOf', args: [address], blockNumber })) as bigint
  } catch (error) {
    throw toChainError(error, 'token.balanceOf')
  }
}

async function latestBlock(ctx: EscrowContext): Promise<bigint> {
  try {
    return await ctx.client.publicClient.getBlockNumber({ cacheTime: 0 })
  } catch (error) {
    throw toChainError(error, 'eth_blockNumber')
  }
}

function eventAbi(abi: Abi, name: EscrowEventName): AbiEvent {
  const item = abi.find((entry) => entry.type === 'event' && entry.name === name)
  if (item === undefined) throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `the escrow ABI has no ${name} event`, { hint: 'run npm run build' })
  return item as AbiEvent
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = []
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size))
  return chunks
}
