/**
 * The money and chain part of a job report, shared by demo and run. Every money figure is read from the chain by the
 * escrow audit (events, escrow state, token balances); the requestor's own records are only compared with it.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Address, Hex } from 'viem'
import { addressFromPeerId } from '../identity/node-identity.ts'
import type { ConnectionKind } from '../net/host.ts'
import type { JobOutcome } from '../requestor/requestor.ts'
import type { AgreementOutcome } from '../requestor/job-types.ts'
import type { LedgerEntry } from '../payment/chain-client.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import { auditEscrows, snapshotTokenBalances, type EscrowAudit, type TokenSnapshot } from '../payment/escrow-audit.ts'

/** What a report reads besides the job's outcome: the requestor and the providers known up front, and sent transactions. */
export interface SettlementSource {
  requestor: { identity: { address: Address }; payment: EscrowContext }
  providers: { identity: { address: Address } }[]
  transactions(): LedgerEntry[]
  /** The requestor's open connections: to whom, and whether direct or through a relay. */
  connections?(): { peerId: string; kind: ConnectionKind }[]
}

/** Escrows of the job besides the outcome's: a resumed job's earlier agreements, which it settles in this run. */
export interface EarlierEscrow {
  agreementId: string
  openTx: string | null
}

export interface ProviderReport {
  address: Address
  /** Accepted results, checks of other providers' results included: what it is paid for. */
  tasks: number
  /** Results verification rejected: not paid. */
  rejected: number
  /** Claimed from this job's escrows, read from the chain. */
  paidWei: string
  /** How much the provider's on-chain token balance moved during the job; null when its balance before is unknown. */
  balanceDeltaWei: string | null
  /** How the requestor reached it at the end of the job: its own connection, a relay, or none open any more. */
  connection: ConnectionKind | null
}

export interface AgreementReport {
  agreementId: string
  provider: string
  depositWei: string
  vouchers: number
  signedWei: string
  paidWei: string
  refundedWei: string
  lockedWei: string
  /** The round trip the requestor measured to the provider before choosing it, in ms; null where none answered. */
  latencyMs: number | null
  openTx: string
  /** The provider's claim (with release) or release; null when it did not settle. */
  settleTx: string | null
}

/** The chain audit of the job's escrows, as JSON: see payment/escrow-audit.ts. */
export interface AuditReport {
  /** deposited = paid + refunded + locked per escrow and in total, events agree with escrow state, and tokens moved
   * only between the requestor, its providers and the escrows, each by what the events say. */
  balanced: boolean
  escrowsBalanced: boolean
  tokensConserved: boolean
  /** The requestor's records (deposits, claims, refunds as it saw them at settlement) equal the chain's figures. */
  recordsMatchChain: boolean
  /** Events were read from `fromBlock`; escrows and balances at `blockNumber`; balances before at `sinceBlock`. */
  fromBlock: string
  blockNumber: string
  sinceBlock: string
  /** Every escrow audited: the job's, and a resumed job's earlier ones. */
  agreements: { agreementId: string; provider: string | null; depositedWei: string; paidWei: string; refundedWei: string; lockedWei: string; closed: boolean; balanced: boolean }[]
  totals: { depositedWei: string; paidWei: string; refundedWei: string; lockedWei: string }
  balances: { address: string; role: 'requestor' | 'provider'; beforeWei: string | null; afterWei: string; deltaWei: string | null; expectedDeltaWei: string; matches: boolean }[]
  /** requestor delta + provider deltas + change in what the escrows lock: "0" when tokens stayed between them. */
  netTokenFlowWei: string | null
  /** Each failed check, in words (the records' disagreements too). */
  problems: string[]
}

export interface SettlementReport {
  providers: ProviderReport[]
  /** Each agreement's money path: the deposit, the vouchers, the claim and what came back. */
  agreements: AgreementReport[]
  /** Read from the chain; deposited = paid + refunded + locked. `signedWei` is what the requestor's vouchers promise. */
  payments: { depositedWei: string; signedWei: string; paidWei: string; refundedWei: string; lockedWei: string }
  audit: AuditReport
  chain: { txs: number; gasUsed: string; transactions: { label: string; hash: string; gasUsed: string }[] }
  /** How results were checked: runs made, retries, checks by a second provider, rejections, spot checks. */
  verification: JobOutcome['figures']
}

export interface SettlementSnapshot {
  tokens: TokenSnapshot
  txHashes: Set<string>
}

/** Balances (at one block) and ledger positions before a job, so the report shows only what the job did. */
export async function snapshotDevnet(source: SettlementSource): Promise<SettlementSnapshot> {
  const addresses = [source.requestor.identity.address, ...source.providers.map((p) => p.identity.address)]
  return { tokens: await snapshotTokenBalances(source.requestor.payment, { addresses }), txHashes: new Set(source.transactions().map((tx) => tx.hash)) }
}

/** The Ethereum address of a peer's key, lower case; undefined for a peer whose key has none. */
function addressOfPeer(peerId: string): string | undefined {
  try {
    return addressFromPeerId(peerIdFromString(peerId)).toLowerCase()
  } catch {
    return undefined
  }
}

/**
 * The job's settlement as the chain has it. `otherEscrows`: 'explained' where the requestor's node keeps agreements
 * besides the job's (storage, services) that move tokens while it runs (see AuditEscrowsParameters).
 */
export async function settlementReport(source: SettlementSource, before: SettlementSnapshot, outcome: JobOutcome, earlier: readonly EarlierEscrow[] = [], otherEscrows: 'unaudited' | 'explained' = 'unaudited'): Promise<SettlementReport> {
  const audit = await auditEscrows(source.requestor.payment, {
    requestorAddress: source.requestor.identity.address,
    agreementIds: [...outcome.agreements.map((a) => a.agreementId), ...earlier.map((e) => e.agreementId as Hex)],
    openTxHashes: [...outcome.agreements.map((a) => a.openTx), ...earlier.flatMap((e) => (e.openTx === null ? [] : [e.openTx as Hex]))],
    before: before.tokens,
    otherEscrows,
  })
  const onChain = new Map(audit.agreements.map((a) => [a.agreementId.toLowerCase(), a]))
  const chainOf = (agreementId: string) => onChain.get(agreementId.toLowerCase())!

  // A direct connection (opened by either side, or hole-punched) wins over a relayed one: that is the one libp2p uses.
  const connectionOf = new Map<string, ConnectionKind>()
  for (const connection of source.connections?.() ?? []) {
    const address = addressOfPeer(connection.peerId)
    if (address !== undefined && (connectionOf.get(address) ?? 'relayed') === 'relayed') connectionOf.set(address, connection.kind)
  }
  const providers: ProviderReport[] = []
  // Providers known up front, then any other that held an agreement (a network joined from outside).
  const addresses = [...source.providers.map((p) => p.identity.address)]
  for (const agreement of outcome.agreements) if (!addresses.some((a) => a.toLowerCase() === agreement.provider.toLowerCase())) addresses.push(agreement.provider)
  for (const address of addresses) {
    const agreements = outcome.agreements.filter((a) => a.provider.toLowerCase() === address.toLowerCase())
    const balance = audit.tokens?.balances.find((b) => b.address.toLowerCase() === address.toLowerCase())
    providers.push({
      address,
      tasks: agreements.reduce((n, a) => n + a.tasks, 0),
      rejected: agreements.reduce((n, a) => n + a.rejected, 0),
      paidWei: agreements.reduce((n, a) => n + chainOf(a.agreementId).paidWei, 0n).toString(),
      balanceDeltaWei: balance === undefined || balance.deltaWei === null ? null : balance.deltaWei.toString(),
      connection: connectionOf.get(address.toLowerCase()) ?? null,
    })
  }
  const sum = (pick: (a: EscrowAudit['agreements'][number]) => bigint): string => outcome.agreements.reduce((n, a) => n + pick(chainOf(a.agreementId)), 0n).toString()
  const transactions = source.transactions().filter((tx) => !before.txHashes.has(tx.hash))
  return {
    providers,
    agreements: outcome.agreements.map((a) => {
      const chain = chainOf(a.agreementId)
      return {
        agreementId: a.agreementId,
        provider: chain.provider ?? a.provider,
        depositWei: chain.depositedWei.toString(),
        vouchers: a.vouchers,
        signedWei: a.signedWei.toString(),
        paidWei: chain.paidWei.toString(),
        refundedWei: chain.refundedWei.toString(),
        lockedWei: chain.lockedWei.toString(),
        latencyMs: a.latencyMs === null ? null : Math.round(a.latencyMs * 10) / 10,
        // The record stands in only where the chain shows no open, which the audit reports as a problem.
        openTx: chain.openTx ?? a.openTx,
        settleTx: a.settleTx,
      }
    }),
    verification: outcome.figures,
    payments: {
      depositedWei: sum((a) => a.depositedWei),
      signedWei: outcome.agreements.reduce((n, a) => n + a.signedWei, 0n).toString(),
      paidWei: sum((a) => a.paidWei),
      refundedWei: sum((a) => a.refundedWei),
      lockedWei: sum((a) => a.lockedWei),
    },
    audit: auditReport(audit, recordProblems(outcome, chainOf)),
    chain: {
      txs: transactions.length,
      gasUsed: transactions.reduce((n, tx) => n + tx.gasUsed, 0n).toString(),
      transactions: transactions.map((tx) => ({ label: tx.label, hash: tx.hash, gasUsed: tx.gasUsed.toString() })),
    },
  }
}

type RecordedMoney = Pick<AgreementOutcome, 'agreementId' | 'settled' | 'depositWei' | 'signedWei' | 'paidWei' | 'refundedWei' | 'lockedWei'>

/**
 * Where the requestor's records of an agreement's money differ from the chain: a wrong record, or one gone stale. An
 * agreement whose provider did not settle may still be claimed after the records were taken (the provider, back,
 * claims its vouchers): there the chain may show more paid and as much less locked, up to what the requestor signed.
 */
export function recordProblems(outcome: { agreements: RecordedMoney[] }, chainOf: (agreementId: string) => Pick<EscrowAudit['agreements'][number], 'depositedWei' | 'paidWei' | 'refundedWei' | 'lockedWei'>): string[] {
  const problems: string[] = []
  for (const record of outcome.agreements) {
    const chain = chainOf(record.agreementId)
    const claimedSince = record.settled ? 0n : chain.paidWei - record.paidWei
    const beyondSigned = claimedSince > 0n && chain.paidWei > record.signedWei
    if (claimedSince < 0n || beyondSigned) {
      problems.push(`agreement ${record.agreementId}: the chain says ${chain.paidWei} wei paid, the requestor's records ${record.paidWei} and ${record.signedWei} signed`)
      continue
    }
    const pairs: [string, bigint, bigint][] = [
      ['deposit', record.depositWei, chain.depositedWei],
      ['paid', record.paidWei + claimedSince, chain.paidWei],
      ['refunded', record.refundedWei, chain.refundedWei],
      ['locked', record.lockedWei - claimedSince, chain.lockedWei],
    ]
    for (const [what, recorded, read] of pairs) {
      if (recorded !== read) problems.push(`agreement ${record.agreementId}: the requestor's records say ${what} ${recorded} wei, the chain ${read}`)
    }
  }
  return problems
}

function auditReport(audit: EscrowAudit, recordProblems: string[]): AuditReport {
  const tokens = audit.tokens!
  return {
    balanced: audit.balanced,
    escrowsBalanced: audit.escrowsBalanced,
    tokensConserved: tokens.conserved,
    recordsMatchChain: recordProblems.length === 0,
    fromBlock: audit.fromBlock.toString(),
    blockNumber: audit.blockNumber.toString(),
    sinceBlock: tokens.sinceBlock.toString(),
    agreements: audit.agreements.map((a) => ({
      agreementId: a.agreementId,
      provider: a.provider,
      depositedWei: a.depositedWei.toString(),
      paidWei: a.paidWei.toString(),
      refundedWei: a.refundedWei.toString(),
      lockedWei: a.lockedWei.toString(),
      closed: a.closed,
      balanced: a.balanced,
    })),
    totals: {
      depositedWei: audit.totals.depositedWei.toString(),
      paidWei: audit.totals.paidWei.toString(),
      refundedWei: audit.totals.refundedWei.toString(),
      lockedWei: audit.totals.lockedWei.toString(),
    },
    balances: tokens.balances.map((b) => ({
      address: b.address,
      role: b.role,
      beforeWei: b.beforeWei === null ? null : b.beforeWei.toString(),
      afterWei: b.afterWei.toString(),
      deltaWei: b.deltaWei === null ? null : b.deltaWei.toString(),
      expectedDeltaWei: b.expectedDeltaWei.toString(),
      matches: b.matches,
    })),
    netTokenFlowWei: tokens.netWei === null ? null : tokens.netWei.toString(),
    problems: [...audit.problems, ...recordProblems],
  }
}
