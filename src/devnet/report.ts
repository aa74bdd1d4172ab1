/** The money and chain part of a job report, computed from the chain and the nodes' ledgers, shared by demo and run. */
import type { Address } from 'viem'
import type { JobOutcome } from '../requestor/requestor.ts'
import type { LedgerEntry } from '../payment/chain-client.ts'

/** What a report reads besides the job's outcome: the providers known up front, balances, and sent transactions. */
export interface SettlementSource {
  providers: { identity: { address: Address } }[]
  balanceOf(address: Address): Promise<bigint>
  transactions(): LedgerEntry[]
}

export interface ProviderReport {
  address: Address
  /** Accepted results, checks of other providers' results included: what it is paid for. */
  tasks: number
  /** Results verification rejected: not paid. */
  rejected: number
  paidWei: string
  /** How much the provider's on-chain token balance rose during the job; null when its balance before is unknown. */
  balanceDeltaWei: string | null
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
  openTx: string
  /** The provider's claim (with release) or release; null when it did not settle. */
  settleTx: string | null
}

export interface SettlementReport {
  providers: ProviderReport[]
  /** Each agreement's money path: the deposit, the vouchers, the claim and what came back. */
  agreements: AgreementReport[]
  /** deposited = paid + refunded + locked; `signedWei` is what the requestor's vouchers promise. */
  payments: { depositedWei: string; signedWei: string; paidWei: string; refundedWei: string; lockedWei: string }
  chain: { txs: number; gasUsed: string; transactions: { label: string; hash: string; gasUsed: string }[] }
  /** How results were checked: runs made, retries, checks by a second provider, rejections, spot checks. */
  verification: JobOutcome['figures']
}

/** Balances and ledger positions before a job, so the report shows only what the job did. */
export async function snapshotDevnet(devnet: SettlementSource): Promise<{ balances: Map<string, bigint>; txHashes: Set<string> }> {
  const balances = new Map<string, bigint>()
  for (const provider of devnet.providers) balances.set(provider.identity.address, await devnet.balanceOf(provider.identity.address))
  return { balances, txHashes: new Set(devnet.transactions().map((tx) => tx.hash)) }
}

export async function settlementReport(devnet: SettlementSource, before: Awaited<ReturnType<typeof snapshotDevnet>>, outcome: JobOutcome): Promise<SettlementReport> {
  const providers: ProviderReport[] = []
  // Providers known up front, then any other that held an agreement (a network joined from outside).
  const addresses = [...devnet.providers.map((p) => p.identity.address)]
  for (const agreement of outcome.agreements) if (!addresses.some((a) => a.toLowerCase() === agreement.provider.toLowerCase())) addresses.push(agreement.provider)
  for (const address of addresses) {
    const agreements = outcome.agreements.filter((a) => a.provider.toLowerCase() === address.toLowerCase())
    const after = await devnet.balanceOf(address)
    providers.push({
      address,
      tasks: agreements.reduce((n, a) => n + a.tasks, 0),
      rejected: agreements.reduce((n, a) => n + a.rejected, 0),
      paidWei: agreements.reduce((n, a) => n + a.paidWei, 0n).toString(),
      balanceDeltaWei: before.balances.has(address) ? (after - before.balances.get(address)!).toString() : null,
    })
  }
  const sum = (pick: (a: JobOutcome['agreements'][number]) => bigint): string => outcome.agreements.reduce((n, a) => n + pick(a), 0n).toString()
  const transactions = devnet.transactions().filter((tx) => !before.txHashes.has(tx.hash))
  return {
    providers,
    agreements: outcome.agreements.map((a) => ({
      agreementId: a.agreementId,
      provider: a.provider,
      depositWei: a.depositWei.toString(),
      vouchers: a.vouchers,
      signedWei: a.signedWei.toString(),
      paidWei: a.paidWei.toString(),
      refundedWei: a.refundedWei.toString(),
      lockedWei: a.lockedWei.toString(),
      openTx: a.openTx,
      settleTx: a.settleTx,
    })),
    verification: outcome.figures,
    payments: {
      depositedWei: sum((a) => a.depositWei),
      signedWei: sum((a) => a.signedWei),
      paidWei: sum((a) => a.paidWei),
      refundedWei: sum((a) => a.refundedWei),
      lockedWei: sum((a) => a.lockedWei),
    },
    chain: {
      txs: transactions.length,
      gasUsed: transactions.reduce((n, tx) => n + tx.gasUsed, 0n).toString(),
      transactions: transactions.map((tx) => ({ label: tx.label, hash: tx.hash, gasUsed: tx.gasUsed.toString() })),
    },
  }
}
