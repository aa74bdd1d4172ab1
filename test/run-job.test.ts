/**
 * `hearth run` end to end: a job file of several tasks with inputs runs on the embedded network and every output comes
 * back; hostile programs end with clear errors, are not paid, and leave the providers serving.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runJobFile, type RunReport } from '../src/cli/run-job.ts'
import { compileAssemblyScript } from '../src/exec/assemblyscript-compiler.ts'
import { referenceCounts, wordcountTexts } from './support/wordcount.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-run-test-'))
after(() => rm(dir, { recursive: true, force: true }))
const example = fileURLToPath(new URL('../examples/wordcount/', import.meta.url))

/** The money of a run as the chain audit read it: balanced, tokens conserved, and the requestor's records agreeing. */
function assertMoneyBalancesOnChain(report: RunReport): void {
  const { audit, payments } = report
  assert.deepEqual(audit.problems, [])
  assert.equal(audit.balanced, true)
  assert.equal(audit.recordsMatchChain, true)
  assert.equal(audit.netTokenFlowWei, '0')
  for (const a of audit.agreements) assert.equal(BigInt(a.depositedWei), BigInt(a.paidWei) + BigInt(a.refundedWei) + BigInt(a.lockedWei), a.agreementId)
  assert.equal(BigInt(payments.depositedWei), BigInt(payments.paidWei) + BigInt(payments.refundedWei) + BigInt(payments.lockedWei))
  assert.deepEqual(audit.totals, { depositedWei: payments.depositedWei, paidWei: payments.paidWei, refundedWei: payments.refundedWei, lockedWei: payments.lockedWei })
  for (const provider of report.providers) assert.equal(provider.balanceDeltaWei, provider.paidWei, provider.address)
}

test('the word count example (a map-reduce over the example\'s text files) counts exactly as one process does', async () => {
  const out = join(dir, 'wordcount')
  const report = await runJobFile({ jobFile: join(example, 'job.json'), outDir: out, providers: 3 })
  assert.equal(report.kind, 'mapreduce')
  assert.deepEqual(report.failures, [])
  assert.equal(await readFile(join(out, 'counts.tsv'), 'utf8'), referenceCounts(...(await wordcountTexts())))
  // mappers for several chunks, then one reducer per partition, all on the network
  assert.ok(report.tasks.total > 3, JSON.stringify(report.summary))
  assertMoneyBalancesOnChain(report)
})

test('a task list job brings back every task\'s output, stdout and stderr, and they are right', async () => {
  const out = join(dir, 'wordcount-tasks')
  const report = await runJobFile({ jobFile: join(example, 'tasks.json'), outDir: out, providers: 3 })
  assert.deepEqual(report.tasks, { total: 4, succeeded: 4 })
  assert.deepEqual(report.failures, [])
  const texts = await wordcountTexts()
  const expected = [referenceCounts(texts[0]!), referenceCounts(texts[1]!), referenceCounts(texts[2]!), referenceCounts(...texts)]
  for (let i = 0; i < 4; i++) {
    assert.equal(await readFile(join(out, String(i), 'out', 'counts.tsv'), 'utf8'), expected[i], `task ${i}`)
    assert.match(await readFile(join(out, String(i), 'stdout'), 'utf8'), /^wordcount: \d+ files, \d+ bytes, \d+ words/)
    assert.equal(await readFile(join(out, String(i), 'stderr'), 'utf8'), '')
  }
})

test('hostile programs end with clear errors, only good results are paid, and providers keep serving', async () => {
  const source = await readFile(fileURLToPath(new URL('../src/exec/testdata/hostile.asc', import.meta.url)), 'utf8')
  await writeFile(join(dir, 'hostile.wasm'), await compileAssemblyScript({ files: { 'hostile.ts': source }, entry: 'hostile.ts' }))
  const job = {
    name: 'hostile',
    runtime: 'wasi',
    package: './hostile.wasm',
    timeoutMs: 10_000,
    maxMemoryMib: 16,
    maxOutputMib: 1,
    tasks: [
      { args: ['loop'] },
      { args: ['spam'] },
      { args: ['grow'] },
      { args: ['open', '/../../etc/passwd'] },
      { args: ['ok', '0', 'after', 'the', 'storm'] },
      { args: ['ok', '3'] },
    ],
  }
  await writeFile(join(dir, 'hostile.json'), JSON.stringify(job))
  const report = await runJobFile({ jobFile: join(dir, 'hostile.json'), outDir: join(dir, 'hostile-out'), providers: 2 })

  const failure = (index: number) => report.failures.find((f) => f.taskIndex === index)?.message ?? ''
  assert.match(failure(0), /deadline|did not finish|timed? ?out/i)
  assert.match(failure(1), /output/i)
  assert.match(failure(2), /memory/i)
  // The guest cannot see the provider's files: the open fails inside the sandbox, and that is a result.
  const open = report.results.find((r) => r.taskIndex === 3)
  assert.ok(open !== undefined)
  assert.match(await readFile(join(dir, 'hostile-out', '3', 'stdout'), 'utf8'), /^errno \d+/)
  assert.equal(await readFile(join(dir, 'hostile-out', '4', 'stdout'), 'utf8'), 'ok program ok 0 after the storm\n')
  // A non-zero exit code is the program's answer, reported as such.
  assert.equal(report.results.find((r) => r.taskIndex === 5)?.exitCode, 3)

  // Paid: the three tasks that gave results (and the runs that checked them), nothing for the hostile ones.
  const paid = report.providers.reduce((n, p) => n + p.tasks, 0)
  const { checks, stragglers } = report.verification
  assert.ok(paid >= 3 + checks && paid <= 3 + checks + stragglers, `paid ${paid}, checks ${checks}, stragglers ${stragglers}`)
  assertMoneyBalancesOnChain(report)
})
