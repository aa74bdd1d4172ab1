/**
 * The money part of the human summaries of `hearth demo` and `hearth run`: providers, verification, agreements, the
 * escrow and the chain audit, in HTT.
 */
import type { SettlementReport } from '../devnet/report.ts'

function eth(wei: string): string {
  const value = BigInt(wei)
  const whole = value / 10n ** 18n
  const frac = (value % 10n ** 18n).toString().padStart(18, '0').slice(0, 6)
  return `${whole}.${frac} HTT`
}

export function formatPaymentLines(report: SettlementReport): string[] {
  const lines = ['', 'providers:']
  for (const p of report.providers) {
    const rejected = p.rejected > 0 ? `  rejected ${p.rejected} (unpaid)` : ''
    const delta = p.balanceDeltaWei === null ? '' : `  balance ${BigInt(p.balanceDeltaWei) < 0n ? `-${eth((-BigInt(p.balanceDeltaWei)).toString())}` : `+${eth(p.balanceDeltaWei)}`}`
    const relayed = p.connection === 'relayed' ? '  (reached through a relay)' : p.connection === 'hole-punched' ? '  (direct, hole-punched through both NATs)' : ''
    lines.push(`  ${p.address}  tasks ${String(p.tasks).padStart(4)}  paid ${eth(p.paidWei)}${delta}${rejected}${relayed}`)
  }
  const v = report.verification
  lines.push(
    '',
    `verification: ${v.attempts} runs for the tasks: ${v.checks} checks by a second provider, ${v.retries} retries, ${v.stragglers} stragglers rerun, ` +
      `${v.rejected} results rejected${v.spotChecks > 0 ? `, ${v.spotChecks} spot checks (${v.spotRejected} failed)` : ''}${v.resumed > 0 ? `, ${v.resumed} tasks done before resuming` : ''}`,
  )
  lines.push('', 'agreements (each backed by its own escrow):')
  for (const a of report.agreements) {
    lines.push(
      `  ${a.agreementId.slice(0, 18)}…  ${a.provider.slice(0, 10)}…  deposit ${eth(a.depositWei)}  ${a.vouchers} vouchers for ${eth(a.signedWei)}` +
        `  claimed ${eth(a.paidWei)}  refunded ${eth(a.refundedWei)}`,
      `      open ${a.openTx}`,
      `      ${a.settleTx === null ? 'not settled: the provider did not answer (it may claim later; the rest is refundable after expiry)' : `claim ${a.settleTx}`}`,
    )
  }
  // The figures and the verdict are the chain audit's (events, escrow state, balances), not the requestor's records.
  const { depositedWei, paidWei, refundedWei, lockedWei } = report.payments
  const { audit } = report
  lines.push(
    '',
    `escrow:   deposited ${eth(depositedWei)} = paid ${eth(paidWei)} + refunded ${eth(refundedWei)}` +
      (BigInt(lockedWei) > 0n ? ` + still in escrow ${eth(lockedWei)}` : '') +
      (audit.balanced ? '  (balanced)' : '  (NOT BALANCED)'),
    `audit:    read from the chain at block ${audit.blockNumber}: ${audit.agreements.length} escrows ${audit.escrowsBalanced ? 'balance' : 'DO NOT balance'}, ` +
      `tokens ${audit.tokensConserved ? 'moved only between requestor, providers and escrow' : 'DID NOT stay between requestor, providers and escrow'}; ` +
      `the requestor's records ${audit.recordsMatchChain ? 'agree' : 'DISAGREE'}`,
    ...audit.problems.map((problem) => `  ${problem}`),
    `chain:    ${report.chain.txs} transactions, ${report.chain.gasUsed} gas`,
  )
  for (const tx of report.chain.transactions) lines.push(`  ${tx.label.padEnd(20)} ${tx.hash}  gas ${tx.gasUsed}`)
  return lines
}
