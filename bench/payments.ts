/**
 * `node --import tsx bench/payments.ts [--json] [--runs 5] [--vouchers 500]`: what the payment layer costs.
 *
 * 1. Gas of each escrow operation on the embedded chain (EDR, Prague), batched ones per agreement.
 * 2. On-chain transactions and gas per agreement for 1, 10, 100 and 1000 tasks: vouchers (open + one claim with
 *    release, however many tasks) against paying each task with its own ERC-20 transfer.
 * 3. Vouchers signed and verified per second in this process (median of several runs).
 *
 * Every recipient already holds tokens before it is measured, so no figure includes the one-off ~17k gas of a first
 * balance slot; the one-time approval is reported apart.
 */
import { parseArgs } from 'node:util'
import { keccak256, parseEther, toHex } from 'viem'
import type { Address, Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { buildContracts } from '../scripts/build-contracts.ts'
import { createChainClient } from '../src/payment/chain-client.ts'
import type { ChainClient } from '../src/payment/chain-client.ts'
import { hearthTokenAbi } from '../src/payment/contracts.ts'
import { deployHearthContracts } from '../src/payment/deploy.ts'
import { createEmbeddedChain } from '../src/payment/embedded-chain.ts'
import {
  approveEscrow,
  chainTimeSec,
  claimVoucher,
  claimVouchers,
  escrowClaimGraceSec,
  mintTokens,
  openEscrow,
  openEscrows,
  refundEscrow,
  releaseEscrow,
  topUpEscrow,
} from '../src/payment/escrow.ts'
import type { EscrowContext } from '../src/payment/escrow.ts'
import { signVoucher, verifyVoucher } from '../src/payment/voucher.ts'
import type { Voucher } from '../src/payment/voucher.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '5' },
    vouchers: { type: 'string', default: '500' },
  },
})
const runs = Number(values.runs)
const vouchersPerRun = Number(values.vouchers)
const log = (line: string): void => {
  if (!values.json) console.log(line)
}

await buildContracts()

const keys = {
  deployer: keccak256(toHex('bench-deployer')),
  requestor: keccak256(toHex('bench-requestor')),
  provider: keccak256(toHex('bench-provider')),
}
const addressOf = (key: Hex): Address => privateKeyToAccount(key).address
const chain = await createEmbeddedChain({
  accounts: Object.values(keys).map((key) => ({ address: addressOf(key), balanceWei: parseEther('1000000') })),
})
const clientOf = (privateKey: Hex): ChainClient => createChainClient({ transport: chain, privateKey, chainId: chain.chainId, pollingIntervalMs: 5 })
const deployment = await deployHearthContracts(clientOf(keys.deployer), { faucet: true })
const ctxOf = (key: Hex): EscrowContext => ({ client: clientOf(key), tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress })
const deployer = ctxOf(keys.deployer)
const requestor = ctxOf(keys.requestor)
const provider = ctxOf(keys.provider)
const providerAddress = provider.client.address
const requestorAddress = requestor.client.address

await mintTokens(deployer, { toAddress: requestorAddress, amountWei: parseEther('100000000') })
// Steady state: the provider and the requestor already hold tokens (no first-slot surcharge in any figure).
await mintTokens(deployer, { toAddress: providerAddress, amountWei: 1n })
const approveGas = (await approveEscrow(requestor)).gasUsed

let nextId = 0
const freshId = (): Hex => keccak256(toHex(`bench-agreement-${nextId++}`))
const expiry = async (inSec = 3600n): Promise<bigint> => (await chainTimeSec(requestor)) + inSec
const voucher = (agreementId: Hex, cumulativeWei: bigint): Promise<Voucher> =>
  signVoucher({ privateKey: keys.requestor, chainId: chain.chainId, escrowAddress: deployment.escrowAddress, agreementId, cumulativeWei })
const open = async (amountWei = parseEther('100')): Promise<{ agreementId: Hex; gasUsed: bigint }> => {
  const agreementId = freshId()
  const { gasUsed } = await openEscrow(requestor, { agreementId, providerAddress, amountWei, expiresAtSec: await expiry() })
  return { agreementId, gasUsed }
}

// 1. Gas per operation.
const gas: Record<string, bigint> = { 'approve (once per requestor)': approveGas }
{
  const a = await open()
  gas.open = a.gasUsed
  gas.topUp = (await topUpEscrow(requestor, { agreementId: a.agreementId, amountWei: parseEther('1') })).gasUsed
  gas['claim (first on an escrow)'] = (await claimVoucher(provider, { voucher: await voucher(a.agreementId, parseEther('1')) })).gasUsed
  gas['claim (later)'] = (await claimVoucher(provider, { voucher: await voucher(a.agreementId, parseEther('2')) })).gasUsed
  gas['claim+release (later)'] = (await claimVoucher(provider, { voucher: await voucher(a.agreementId, parseEther('3')), release: true })).gasUsed
  const b = await open()
  gas['claim+release (only claim: the usual settlement)'] = (await claimVoucher(provider, { voucher: await voucher(b.agreementId, parseEther('1')), release: true })).gasUsed
  const c = await open()
  gas.release = (await releaseEscrow(provider, { requestorAddress, agreementId: c.agreementId })).gasUsed
  const d = await open()
  // Refund works from expiry plus the contract's claim grace (a day by default), the provider's window to claim.
  await chain.increaseTime(3600 + Number(await escrowClaimGraceSec(requestor)))
  gas['refund (after expiry + claim grace)'] = (await refundEscrow(requestor, d.agreementId)).gasUsed

  const batch = Array.from({ length: 10 }, () => ({ agreementId: freshId(), providerAddress, amountWei: parseEther('10'), expiresAtSec: 0n }))
  const expiresAtSec = await expiry()
  const opened = await openEscrows(requestor, batch.map((r) => ({ ...r, expiresAtSec })))
  gas['openMany, per agreement (10 in one tx)'] = opened.gasUsed / 10n
  const claimedMany = await claimVouchers(provider, await Promise.all(batch.map(async (r) => ({ voucher: await voucher(r.agreementId, parseEther('4')) }))))
  gas['claimMany, per agreement (10 in one tx)'] = claimedMany.gasUsed / 10n
  const released = await claimVouchers(provider, await Promise.all(batch.map(async (r) => ({ voucher: await voucher(r.agreementId, parseEther('5')), release: true }))))
  gas['claimMany+release, per agreement (10 in one tx)'] = released.gasUsed / 10n
  const transfer = await requestor.client.writeContract({
    label: 'token.transfer',
    address: deployment.tokenAddress,
    abi: hearthTokenAbi(),
    functionName: 'transfer',
    args: [providerAddress, 1n],
  })
  gas['ERC-20 transfer (for comparison)'] = transfer.gasUsed
}

log('')
log('Gas per operation (embedded EDR chain, Prague, optimizer 200 runs):')
for (const [name, used] of Object.entries(gas)) log(`  ${name.padEnd(50)} ${String(used).padStart(8)}`)

// 2. Per agreement: vouchers against one ERC-20 transfer per task.
interface TaskRow {
  tasks: number
  voucherTxs: number
  voucherGas: bigint
  voucherGasPerTask: bigint
  voucherOffChainMs: number
  transferTxs: number
  transferGas: bigint
  transferGasPerTask: bigint
}
const perTaskWei = parseEther('0.001')
const rows: TaskRow[] = []
for (const tasks of [1, 10, 100, 1000]) {
  // Vouchers: open, then one signed (requestor) and checked (provider) cumulative voucher per task, then one claim.
  const ledgerStart = requestor.client.ledger.length + provider.client.ledger.length
  const opened = await open(perTaskWei * BigInt(tasks))
  const started = performance.now()
  let latest: Voucher | undefined
  for (let i = 1; i <= tasks; i++) {
    latest = await voucher(opened.agreementId, perTaskWei * BigInt(i))
    await verifyVoucher(latest, { expectedSigner: requestorAddress, chainId: chain.chainId, escrowAddress: deployment.escrowAddress, agreementId: opened.agreementId })
  }
  const voucherOffChainMs = performance.now() - started
  const settled = await claimVoucher(provider, { voucher: latest!, release: true })
  // Counted from the ledgers, not assumed: every tx either side sent for this agreement.
  const voucherTxs = requestor.client.ledger.length + provider.client.ledger.length - ledgerStart
  const voucherGas = opened.gasUsed + settled.gasUsed

  // Direct: each task paid by its own transfer, all sent at once through the nonce queue.
  const before = requestor.client.ledger.length
  for (let sent = 0; sent < tasks; sent += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, tasks - sent) }, () =>
        requestor.client.writeContract({ label: 'token.transfer', address: deployment.tokenAddress, abi: hearthTokenAbi(), functionName: 'transfer', args: [providerAddress, perTaskWei] }),
      ),
    )
  }
  const transfers = requestor.client.ledger.slice(before)
  const transferGas = transfers.reduce((sum, e) => sum + e.gasUsed, 0n)
  rows.push({
    tasks,
    voucherTxs,
    voucherGas,
    voucherGasPerTask: voucherGas / BigInt(tasks),
    voucherOffChainMs,
    transferTxs: transfers.length,
    transferGas,
    transferGasPerTask: transferGas / BigInt(tasks),
  })
}

log('')
log('Per agreement: vouchers (open + one claim with release) vs one ERC-20 transfer per task:')
log('   tasks | voucher txs |  voucher gas | gas/task | off-chain ms | transfer txs | transfer gas | gas/task')
for (const r of rows) {
  log(
    `  ${String(r.tasks).padStart(6)} | ${String(r.voucherTxs).padStart(11)} | ${String(r.voucherGas).padStart(12)} | ${String(r.voucherGasPerTask).padStart(8)} | ` +
      `${r.voucherOffChainMs.toFixed(1).padStart(12)} | ${String(r.transferTxs).padStart(12)} | ${String(r.transferGas).padStart(12)} | ${String(r.transferGasPerTask).padStart(8)}`,
  )
}

// 3. Voucher throughput.
function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
const agreementId = freshId()
const signedPerSec: number[] = []
const verifiedPerSec: number[] = []
for (let run = 0; run < runs; run++) {
  const signed: Voucher[] = []
  let started = performance.now()
  for (let i = 1; i <= vouchersPerRun; i++) signed.push(await voucher(agreementId, BigInt(i)))
  signedPerSec.push(vouchersPerRun / ((performance.now() - started) / 1000))
  started = performance.now()
  for (const v of signed) {
    await verifyVoucher(v, { expectedSigner: requestorAddress, chainId: chain.chainId, escrowAddress: deployment.escrowAddress, agreementId })
  }
  verifiedPerSec.push(vouchersPerRun / ((performance.now() - started) / 1000))
}
const throughput = { signedPerSec: Math.round(median(signedPerSec)), verifiedPerSec: Math.round(median(verifiedPerSec)) }
log('')
log(`Vouchers per second, median of ${runs} runs of ${vouchersPerRun}: signed ${throughput.signedPerSec}, verified ${throughput.verifiedPerSec}`)
log('')

await chain.close()

if (values.json) {
  console.log(
    JSON.stringify({
      gas: Object.fromEntries(Object.entries(gas).map(([k, v]) => [k, v.toString()])),
      perAgreement: rows.map((r) => ({
        ...r,
        voucherGas: r.voucherGas.toString(),
        voucherGasPerTask: r.voucherGasPerTask.toString(),
        voucherOffChainMs: Math.round(r.voucherOffChainMs),
        transferGas: r.transferGas.toString(),
        transferGasPerTask: r.transferGasPerTask.toString(),
      })),
      vouchers: { runs, perRun: vouchersPerRun, ...throughput },
    }),
  )
}
