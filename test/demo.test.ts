/**
 * The walking skeleton end to end: a real local network (EDR chain with the real contracts, libp2p nodes on
 * 127.0.0.1, WASI sandboxes) renders an image, and the money adds up on chain.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { runDemo } from '../src/devnet/demo.ts'
import { decodePng } from '../src/jobs/png.ts'
import type { JobEvent } from '../src/requestor/events.ts'

const outDir = await mkdtemp(join(tmpdir(), 'hearth-demo-test-'))
after(() => rm(outDir, { recursive: true, force: true }))

test('the demo renders a pixel-identical image across several providers and every token is accounted for', async () => {
  const events: JobEvent[] = []
  const report = await runDemo({ providers: 3, tasks: 9, width: 96, height: 72, outDir, onEvent: (e) => events.push(e) })

  assert.deepEqual(report.tasks, { total: 9, succeeded: 9 })
  assert.equal(report.image.identicalToLocalRender, true)
  const png = decodePng(await readFile(report.output!))
  assert.equal(png.width, 96)
  assert.equal(png.height, 72)

  const working = report.providers.filter((p) => p.tasks > 0)
  assert.ok(working.length >= 2, `tiles came from ${working.length} provider(s)`)
  // Every tile once, plus the runs that checked a new provider's tiles: all paid, none rejected.
  const { checks, stragglers } = report.verification
  const paidRuns = report.providers.reduce((n, p) => n + p.tasks, 0)
  assert.ok(paidRuns >= 9 + checks && paidRuns <= 9 + checks + stragglers, `${paidRuns} paid runs, ${checks} checks`)
  assert.equal(report.verification.rejected, 0)
  // The money as the chain tells it (escrow events, escrow state, token balances), not as the requestor recorded it.
  const { audit } = report
  assert.deepEqual(audit.problems, [])
  assert.equal(audit.balanced, true)
  for (const provider of report.providers) {
    // Each provider's on-chain balance rose by exactly what the escrow events say it was paid.
    assert.equal(provider.balanceDeltaWei, provider.paidWei, provider.address)
  }
  const { depositedWei, paidWei, refundedWei, lockedWei } = report.payments
  assert.deepEqual(audit.totals, { depositedWei, paidWei, refundedWei, lockedWei })
  for (const a of audit.agreements) assert.equal(BigInt(a.depositedWei), BigInt(a.paidWei) + BigInt(a.refundedWei) + BigInt(a.lockedWei), a.agreementId)
  assert.equal(BigInt(depositedWei), BigInt(paidWei) + BigInt(refundedWei) + BigInt(lockedWei))
  assert.equal(lockedWei, '0')
  assert.equal(BigInt(paidWei), report.providers.reduce((n, p) => n + BigInt(p.paidWei), 0n))
  assert.ok(BigInt(paidWei) > 0n)
  // Tokens left the requestor only into the escrow, and came out only to the providers and back to it.
  const requestor = audit.balances.find((b) => b.role === 'requestor')!
  assert.equal(BigInt(requestor.deltaWei!), BigInt(refundedWei) - BigInt(depositedWei))
  assert.equal(audit.netTokenFlowWei, '0')
  // The requestor's records of deposits, claims and refunds agree with the chain.
  assert.equal(audit.recordsMatchChain, true)

  // O(1) transactions per agreement: one approval, one open for all agreements, then one claim per agreement.
  const labels = report.chain.transactions.map((tx) => tx.label).sort()
  assert.deepEqual(labels, ['escrow.claim+release', 'escrow.claim+release', 'escrow.claim+release', 'escrow.openMany', 'token.approve'])
  assert.equal(report.chain.txs, 5)
  assert.ok(BigInt(report.chain.gasUsed) > 0n)

  assert.equal(events.filter((e) => e.type === 'task-done').length, 9)
  assert.equal(events.filter((e) => e.type === 'agreement').length, 3)
})
