/**
 * Job kinds on the network, against the same plan run in this process: a map-reduce word count over a few MB of real
 * English text (the Markdown under node_modules) counts exactly as one process does, and a sweep ranks its settings
 * as a local run does. Both plans run on one job's agreements (map and reduce phases share them).
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseEther } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { parseJobDefinition } from '../src/jobs/job-file.ts'
import { planJob } from '../src/jobs/kinds.ts'
import { createLocalRunner } from '../src/requestor/local-runner.ts'
import type { JobSpec } from '../src/requestor/requestor.ts'
import { markdownFiles, referenceCount } from '../src/jobs/testdata/real-text.ts'

const repoRoot = fileURLToPath(new URL('../', import.meta.url))
const dir = await mkdtemp(join(tmpdir(), 'hearth-kinds-net-'))
after(() => rm(dir, { recursive: true, force: true }))



const base = (name: string, plannedTasks: number): JobSpec => ({
  name,
  runtime: 'wasi',
  tasks: [],
  plannedTasks,
  providers: 3,
  maxPricePerTaskWei: parseEther('0.01'),
  timeoutMs: 60_000,
  maxMemoryBytes: 256 << 20,
  maxOutputBytes: 64 << 20,
})

test('map-reduce word count over a few MB of real text on 3 providers equals a single-process count', async () => {
  const files = markdownFiles(2_500_000)
  const texts = await Promise.all(files.map((file) => readFile(file)))
  const bytes = texts.reduce((n, t) => n + t.length, 0)
  assert.ok(bytes >= 2_000_000, `only ${bytes} bytes of Markdown found`)
  const wordcount = await loadBuiltinWorkload('wordcount')
  const job = parseJobDefinition(
    {
      kind: 'mapreduce',
      name: 'wordcount-net',
      runtime: 'wasi',
      package: fileURLToPath(new URL('../build/workloads/wordcount.wasm', import.meta.url)),
      inputs: files,
      chunkBytes: 512 * 1024,
      reducers: 3,
      map: { args: ['--partitions', '{partitions}', '--out-prefix', '{out}', '{input}'] },
      reduce: { args: ['--reduce', '--out', '{out}', '{inputs}'] },
      output: 'counts.tsv',
    },
    dir,
  )
  const plan = planJob(job)
  const devnet = await startDevnet({ providers: 3 })
  after(() => devnet.stop())
  await using session = await devnet.requestor.agent.openJob({ ...base('wordcount-net', plan.estimatedTasks), package: wordcount })
  const product = await plan.execute(session)
  const counts = product.outputs.find((o) => o.path === 'counts.tsv')!
  assert.equal(Buffer.from(counts.data).toString('latin1'), referenceCount(texts))
  const figures = session.figures()
  assert.ok(figures.accepted >= 5 + 3, JSON.stringify(figures)) // several mappers and the 3 reducers
  assert.equal(figures.rejected, 0)
})

test('a sweep on the network ranks its settings as a local run of the same plan does', async () => {
  const source = JSON.parse(await readFile(join(repoRoot, 'examples', 'sweep', 'job.json'), 'utf8')) as Record<string, unknown>
  const jobFile = join(repoRoot, 'examples', 'sweep', 'job.json')
  const job = parseJobDefinition(source, join(repoRoot, 'examples', 'sweep'), jobFile)
  const plan = planJob(job)
  const softmax = await readFile(fileURLToPath(new URL('../build/workloads/softmax.wasm', import.meta.url)))

  const runtime = createWasiRuntime({ maxWorkers: 2 })
  after(() => runtime.close())
  const local = await plan.execute(createLocalRunner({ runtime, package: softmax, concurrency: 2 }))

  const devnet = await startDevnet({ providers: 3 })
  after(() => devnet.stop())
  await using session = await devnet.requestor.agent.openJob({ ...base('sweep-net', plan.estimatedTasks), package: softmax })
  const remote = await plan.execute(session)
  const ranking = (product: typeof local): string => Buffer.from(product.outputs.find((o) => o.path === 'ranking.tsv')!.data).toString('utf8')
  assert.equal(ranking(remote), ranking(local))
  assert.ok(ranking(local).split('\n').length > 10)
})
