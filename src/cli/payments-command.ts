/**
 * `hearth payments --data-dir D`: a node's money, from its own database: agreements, escrows, debit notes, vouchers,
 * invoices, claims and refunds, with the transaction hashes that put them on chain.
 *
 * `hearth payments refund --data-dir D --deployment F`: a requestor takes back the unclaimed rest of every escrow
 * whose expiry plus the contract's claim grace has passed (chain time), and learns when the next one will be
 * refundable. The requestor's accounts do the work, as they do at every requestor start; no network is started.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Command } from 'commander'
import { formatEther, type Address, type Hex } from 'viem'
import { HearthError } from '../errors.ts'
import { keyFileName, readKeyFile } from '../identity/node-identity.ts'
import { createHost } from '../net/host.ts'
import { createChainClient, rpcChainId } from '../payment/chain-client.ts'
import { readDeploymentFile } from '../payment/deploy.ts'
import { chainTimeSec, getEscrow, type EscrowContext } from '../payment/escrow.ts'
import { paymentsOf, type PaymentsReport } from '../payment/payments-view.ts'
import { createRequestorAccounts } from '../requestor/requestor-account.ts'
import { openStore } from '../store/store.ts'
import type { CommandIo } from './chain-command.ts'

export type { PaymentsReport } from '../payment/payments-view.ts'

/** The node database of a data folder; throws naming the folder when there is none. */
function nodeDatabase(dataDir: string): string {
  const path = join(dataDir, 'node.db')
  if (!existsSync(path)) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `no node database at ${path}`, {
      hint: 'point --data-dir at a node\'s data folder, e.g. one kept by hearth demo --data-dir DIR (DIR/requestor, DIR/provider-1)',
    })
  }
  return path
}

export function readPayments(dataDir: string): PaymentsReport {
  const store = openStore({ path: nodeDatabase(dataDir) })
  try {
    return { dataDir, agreements: paymentsOf(store) }
  } finally {
    store.close()
  }
}

/**
 * The payments report of the node running from `dataDir`, asked over its local API (a requestor node or a provider);
 * undefined when none runs there, and the database is read instead.
 */
async function runningNodePayments(dataDir: string): Promise<PaymentsReport | undefined> {
  const [{ callApi, processAlive, readApiRecord }, { requestorApi }, { providerApi }] = await Promise.all([
    import('../net/local-api-server.ts'),
    import('../requestor/requestor-api.ts'),
    import('../provider/local-api.ts'),
  ])
  for (const kind of [requestorApi, providerApi]) {
    const record = await readApiRecord(dataDir, kind).catch(() => undefined)
    if (record !== undefined && processAlive(record.pid)) return (await callApi(dataDir, kind, 'payments', undefined, { timeoutMs: 30_000 })) as PaymentsReport
  }
  return undefined
}

export function formatPayments(report: PaymentsReport): string {
  const lines = [`${report.agreements.length} agreements in ${report.dataDir}:`]
  for (const a of report.agreements) {
    lines.push(`  ${a.id}  ${a.role} with ${a.counterparty}  ${a.state}`)
    if (a.escrow !== null) {
      lines.push(`    escrow: deposited ${a.escrow.depositedWei} wei, claimed ${a.escrow.claimedWei}, refunded ${a.escrow.refundedWei}${a.escrow.closed ? ', closed' : ''}  (open ${a.escrow.openTx ?? '-'})`)
    }
    lines.push(`    debit notes: ${a.debitNotes.length}   vouchers: ${a.vouchers.map((v) => v.cumulativeWei).join(', ') || 'none'}`)
    for (const v of a.vouchers.filter((v) => v.claimedTx !== null)) lines.push(`    claimed ${v.cumulativeWei} wei in ${v.claimedTx}`)
    if (a.invoice !== null) {
      const invoice = a.invoice as { amountDueWei: string; paidWei: string }
      lines.push(`    invoice: due ${invoice.amountDueWei} wei, covered ${invoice.paidWei} wei`)
    }
  }
  return `${lines.join('\n')}\n`
}

export interface RefundCommandOptions {
  /** The requestor's data folder: its `node.key` (whose account opened the escrows) and `node.db`. */
  dataDir: string
  /** A deployment file (`hearth chain --deployment-out`, `hearth deploy --out`): the escrow the deposits are in. */
  deployment?: string
  /** JSON-RPC URL; default: the one recorded in the deployment file. */
  rpc?: string
  json?: boolean
}

export interface RefundReport {
  dataDir: string
  requestor: Address
  chainId: number
  /** The chain time the refunds were judged by (the latest block's timestamp), in seconds. */
  chainTimeSec: string
  refunded: { agreementId: string; provider: Address | null; txHash: string; refundedWei: string }[]
  refundedWei: string
  /** Escrows still open: their provider may claim until `refundableAtSec` (expiry plus the contract's claim grace). */
  waiting: { agreementId: string; provider: Address; depositedWei: string; claimedWei: string; expiresAtSec: string; refundableAtSec: string }[]
  /** When the first of `waiting` becomes refundable (chain time, seconds); null when none is open. */
  nextRefundableAtSec: string | null
}

/** `hearth payments refund`: refunds what the chain lets this requestor refund now, and says when the rest will be. */
export async function runPaymentsRefund(options: RefundCommandOptions, io: CommandIo): Promise<RefundReport> {
  const dbPath = nodeDatabase(options.dataDir)
  if (options.deployment === undefined) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', 'refunding needs --deployment FILE: it names the escrow contract the deposits are in', {
      hint: 'pass the deployment file the requestor ran its jobs with (hearth chain --deployment-out, hearth deploy --out)',
    })
  }
  // The requestor's own key: only the account that opened an escrow can refund it. Never created here.
  const identity = await readKeyFile(join(options.dataDir, keyFileName), 'node key file')
  const deployment = await readDeploymentFile(options.deployment)
  const rpcUrl = options.rpc ?? deployment.rpcUrl
  if (rpcUrl === undefined) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `--rpc is needed: ${options.deployment} names no JSON-RPC URL`, { hint: 'pass --rpc URL' })
  const chainId = await rpcChainId(rpcUrl)
  if (chainId !== deployment.chainId) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment is for chain ${deployment.chainId}, but ${rpcUrl} serves chain ${chainId}`, {
      hint: 'pass the RPC URL of the chain the deployment file names',
    })
  }
  const client = createChainClient({ transport: rpcUrl, privateKey: identity.privateKey, chainId })
  const payment: EscrowContext = { client, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress }
  const store = openStore({ path: dbPath })
  // The accounts want a host for delivering vouchers; refunding talks only to the chain, so it is never started.
  const host = await createHost({ identity })
  try {
    const accounts = createRequestorAccounts({ identity, host, store, payment, log: (line) => void io.stderr.write(`${line}\n`) })
    const providers = new Map(store.agreements.list().map((record) => [record.id, record.provider as Address]))
    const refunded = await accounts.refundExpired()
    const nowSec = await chainTimeSec(payment)
    const waiting: RefundReport['waiting'] = []
    for (const record of store.escrows.list().filter((escrow) => !escrow.closed)) {
      const escrow = await getEscrow(payment, { requestorAddress: identity.address, agreementId: record.agreementId as Hex })
      if (escrow === undefined || escrow.closed) continue
      waiting.push({
        agreementId: record.agreementId,
        provider: escrow.providerAddress,
        depositedWei: escrow.depositedWei.toString(),
        claimedWei: escrow.claimedWei.toString(),
        expiresAtSec: escrow.expiresAtSec.toString(),
        refundableAtSec: escrow.refundableAtSec.toString(),
      })
    }
    waiting.sort((a, b) => (BigInt(a.refundableAtSec) < BigInt(b.refundableAtSec) ? -1 : 1))
    const report: RefundReport = {
      dataDir: options.dataDir,
      requestor: identity.address,
      chainId,
      chainTimeSec: nowSec.toString(),
      refunded: refunded.map((r) => ({ agreementId: r.agreementId, provider: providers.get(r.agreementId) ?? null, txHash: r.txHash, refundedWei: r.refundedWei.toString() })),
      refundedWei: refunded.reduce((sum, r) => sum + r.refundedWei, 0n).toString(),
      waiting,
      nextRefundableAtSec: waiting[0]?.refundableAtSec ?? null,
    }
    io.stdout.write(options.json === true ? `${JSON.stringify(report)}\n` : formatRefund(report))
    return report
  } finally {
    await host.stop().catch(() => undefined)
    store.close()
  }
}

/** `86400` → `1 d 0 h`; `125` → `2 min 5 s`. */
function formatDuration(seconds: bigint): string {
  const s = seconds < 0n ? 0n : seconds
  if (s >= 86_400n) return `${s / 86_400n} d ${(s % 86_400n) / 3600n} h`
  if (s >= 3600n) return `${s / 3600n} h ${(s % 3600n) / 60n} min`
  if (s >= 60n) return `${s / 60n} min ${s % 60n} s`
  return `${s} s`
}

export function formatRefund(report: RefundReport): string {
  const lines: string[] = []
  if (report.refunded.length === 0) {
    lines.push(`Nothing refunded for ${report.requestor} on chain ${report.chainId}.`)
  } else {
    lines.push(`Refunded ${formatEther(BigInt(report.refundedWei))} HTT from ${report.refunded.length} expired escrow${report.refunded.length === 1 ? '' : 's'} to ${report.requestor}:`)
    for (const r of report.refunded) lines.push(`  ${r.agreementId}  ${formatEther(BigInt(r.refundedWei))} HTT  (provider ${r.provider ?? 'unknown'})  in ${r.txHash}`)
  }
  if (report.nextRefundableAtSec === null) {
    lines.push('No escrow of this requestor is still open.')
  } else {
    const next = report.waiting[0]!
    const inSec = BigInt(next.refundableAtSec) - BigInt(report.chainTimeSec)
    lines.push(
      `${report.waiting.length} escrow${report.waiting.length === 1 ? ' is' : 's are'} still open; the next becomes refundable at chain time ${next.refundableAtSec} ` +
        `(in ${formatDuration(inSec)}, now ${report.chainTimeSec}): its expiry plus the escrow's claim grace, while its provider may still claim.`,
    )
    for (const w of report.waiting) {
      const rest = BigInt(w.depositedWei) - BigInt(w.claimedWei)
      lines.push(`  ${w.agreementId}  ${formatEther(rest)} HTT unclaimed of ${formatEther(BigInt(w.depositedWei))}  (provider ${w.provider})  refundable from ${w.refundableAtSec}`)
    }
  }
  return `${lines.join('\n')}\n`
}

/** Registers `hearth payments` and `hearth payments refund`. */
export function registerPaymentsCommand(program: Command, io: CommandIo): void {
  const payments = program
    .command('payments')
    .description('a node\'s agreements, escrows, debit notes, vouchers, invoices, claims and refunds: from the node when it runs, else from its database')
    // Declared here only: commander hands a parent's options to it even when they follow a subcommand's name.
    .requiredOption('--data-dir <dir>', 'the node\'s data folder (holding node.db)')
    .option('--json', 'print one JSON object')
    .action(async (options: { dataDir: string; json?: boolean }) => {
      const report = (await runningNodePayments(options.dataDir)) ?? readPayments(options.dataDir)
      io.stdout.write(options.json === true ? `${JSON.stringify(report)}\n` : formatPayments(report))
    })
  payments
    .command('refund')
    .description('a requestor takes back the unclaimed rest of its escrows past expiry plus the claim grace (chain time)')
    .option('--deployment <file>', 'deployment JSON naming the escrow (hearth chain --deployment-out, hearth deploy --out)')
    .option('--rpc <url>', 'JSON-RPC URL (default: the one in the deployment file)')
    .configureHelp({ showGlobalOptions: true })
    .action(async (_options: unknown, command: Command) => {
      const options = command.optsWithGlobals<{ dataDir: string; deployment?: string; rpc?: string; json?: boolean }>()
      await runPaymentsRefund(
        {
          dataDir: options.dataDir,
          json: options.json === true,
          ...(options.deployment === undefined ? {} : { deployment: options.deployment }),
          ...(options.rpc === undefined ? {} : { rpc: options.rpc }),
        },
        io,
      )
    })
}
