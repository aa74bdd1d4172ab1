/**
 * The sweep kind in this process: the Iris example's ranking equals a ranking computed here by running each setting
 * of the built-in softmax workload directly in the wasi runtime, and the workload is deterministic.
 */
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import { createLocalRunner } from '../requestor/local-runner.ts'
import { loadJobDefinition, parseJobDefinition, type SweepJob } from './job-file.ts'
import { planJob } from './kinds.ts'
import { expandGrid, irisCsv, settingArgs, type Setting } from './sweep.ts'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const dir = await mkdtemp(join(tmpdir(), 'hearth-sweep-'))
const runtime = createWasiRuntime({ maxWorkers: 2 })
after(async () => {
  await runtime.close()
  await rm(dir, { recursive: true, force: true })
})
const softmax = await loadBuiltinWorkload('softmax')
const runner = createLocalRunner({ runtime, package: softmax, concurrency: 2 })

/** Runs the workload once, straight on the runtime, and returns what it printed. */
let runs = 0
async function runDirectly(args: string[]): Promise<string> {
  const taskDir = join(dir, `direct-${runs++}`)
  await mkdir(join(taskDir, 'root', 'in'), { recursive: true })
  await writeFile(join(taskDir, 'root', 'in', 'iris.csv'), await irisCsv())
  const result = await runtime.run({
    module: softmax,
    args: ['softmax', ...args],
    env: {},
    rootDir: join(taskDir, 'root'),
    stdoutPath: join(taskDir, 'stdout'),
    stderrPath: join(taskDir, 'stderr'),
    maxMemoryBytes: 64 * 1024 * 1024,
    timeoutMs: 60_000,
    maxOutputBytes: 1024 * 1024,
  })
  assert.equal(result.exitCode, 0, await readFile(join(taskDir, 'stderr'), 'utf8'))
  return readFile(join(taskDir, 'stdout'), 'utf8')
}

test('the grid expands to every combination, last parameter fastest, and fills placeholders', () => {
  assert.deepEqual(expandGrid({ a: [1, 2], b: ['x', 'y'] }), [{ a: 1, b: 'x' }, { a: 1, b: 'y' }, { a: 2, b: 'x' }, { a: 2, b: 'y' }])
  assert.deepEqual(settingArgs(['--rate={lr}', '--data', '/in/d.csv'], { lr: 0.5, epochs: 10 }), ['--rate=0.5', '--data', '/in/d.csv', '--epochs', '10'])
})

test('the Iris data set comes from the package as 150 rows of 4 measurements and 3 species', async () => {
  const lines = Buffer.from(await irisCsv()).toString().trim().split('\n')
  assert.equal(lines.length, 151)
  assert.equal(lines[0], 'sepal_length,sepal_width,petal_length,petal_width,species')
  assert.equal(lines[1], '5.1,3.5,1.4,0.2,setosa')
  assert.deepEqual(new Set(lines.slice(1).map((line) => line.split(',')[4])), new Set(['setosa', 'versicolor', 'virginica']))
})

test('the Iris sweep ranks its settings as running each setting here does', async () => {
  const job = loadJobDefinition(join(repoRoot, 'examples', 'sweep', 'job.json')) as SweepJob
  assert.equal(job.kind, 'sweep')
  const product = await planJob(job).execute(runner)
  const ranking = JSON.parse(Buffer.from(product.outputs.find((o) => o.path === 'ranking.json')!.data).toString()) as { rank: number; setting: Setting; metric: number }[]

  // The reference: each setting run directly, its accuracy read from stdout, sorted best first (ties in grid order).
  const settings = expandGrid(job.grid)
  const local: { setting: Setting; metric: number; index: number }[] = []
  for (const [index, setting] of settings.entries()) {
    const args = settingArgs(job.args, setting).map((arg) => (arg === '/out/metric.json' ? '/metric.json' : arg))
    local.push({ setting, metric: (JSON.parse((await runDirectly(args)).trim()) as { accuracy: number }).accuracy, index })
  }
  local.sort((a, b) => b.metric - a.metric || a.index - b.index)
  assert.deepEqual(ranking.map((entry) => ({ setting: entry.setting, metric: entry.metric })), local.map(({ setting, metric }) => ({ setting, metric })))
  assert.deepEqual(ranking.map((entry) => entry.rank), settings.map((_, i) => i + 1))
  // The settings really differ: a sweep where every setting scores alike would rank nothing.
  assert.ok(local[0]!.metric > 0.9 && local.at(-1)!.metric < local[0]!.metric, `accuracies ${local.map((l) => l.metric).join(' ')}`)
  const tsv = Buffer.from(product.outputs.find((o) => o.path === 'ranking.tsv')!.data).toString().split('\n')
  assert.equal(tsv[0], 'rank\taccuracy\tlr\tepochs\thidden')
  assert.deepEqual(product.summary.best, { setting: local[0]!.setting, accuracy: local[0]!.metric })
})

test('the softmax workload gives the same bytes for the same setting, and other bytes for another seed', async () => {
  const args = ['--data', '/in/iris.csv', '--hidden', '4', '--epochs', '30', '--lr', '0.3']
  const first = await runDirectly(args)
  assert.equal(await runDirectly(args), first)
  assert.notEqual(await runDirectly([...args, '--seed', '2']), first)
})

test('the metric can come from stdout, and a setting without it fails the sweep', async () => {
  const base = {
    kind: 'sweep',
    name: 'stdout',
    runtime: 'wasi',
    package: join(repoRoot, 'build', 'workloads', 'softmax.wasm'),
    inputs: { '/in/iris.csv': 'dataset:iris' },
    args: ['--data', '/in/iris.csv'],
    grid: { epochs: [1, 50] },
  }
  const product = await planJob(parseJobDefinition({ ...base, metric: { name: 'logLoss', goal: 'min' } }, dir)).execute(runner)
  const ranked = JSON.parse(Buffer.from(product.outputs[1]!.data).toString()) as { setting: Setting; metric: number }[]
  assert.deepEqual(ranked.map((entry) => entry.setting), [{ epochs: 50 }, { epochs: 1 }])
  assert.ok(ranked[0]!.metric < ranked[1]!.metric)
  await assert.rejects(
    planJob(parseJobDefinition({ ...base, metric: { name: 'f1', goal: 'max' } }, dir)).execute(runner),
    (error: Error) => /reported no number "f1"/.test(error.message),
  )
  await assert.rejects(
    planJob(parseJobDefinition({ ...base, grid: { folds: [1] }, metric: { name: 'accuracy', goal: 'max' } }, dir)).execute(runner),
    (error: Error) => /exited with code 2: softmax: --folds must be/.test(error.message),
  )
})
