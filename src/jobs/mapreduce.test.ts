/**
 * The map-reduce kind end to end in this process: a word count over up to 3 MB of real English text (the Markdown
 * files under node_modules) through the built-in wordcount's map and reduce modes, chunked, shuffled into 3 reducers
 * and merged, equals a plain single-process count.
 */
import assert from 'node:assert/strict'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import { createLocalRunner } from '../requestor/local-runner.ts'
import type { TaskOutcome } from '../requestor/task-runner.ts'
import { loadJobDefinition, parseJobDefinition, type MapReduceJob } from './job-file.ts'
import { planJob, type PlanProgress } from './kinds.ts'
import { mergeSortedOutputs, splitIntoChunks } from './mapreduce.ts'
import { outputOf } from './plan-support.ts'
import { markdownFiles, referenceCount } from './testdata/real-text.ts'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const dir = await mkdtemp(join(tmpdir(), 'hearth-mapreduce-'))
const runtime = createWasiRuntime({ maxWorkers: 2 })
after(async () => {
  await runtime.close()
  await rm(dir, { recursive: true, force: true })
})
const wordcount = await loadBuiltinWorkload('wordcount')
const runner = createLocalRunner({ runtime, package: wordcount, concurrency: 2 })



test('chunks are cut at whitespace, hold every byte of every file, and stay near the chunk size', () => {
  const text = Buffer.from('alpha beta\ngamma delta epsilon\nzeta eta theta iota kappa\nlambda')
  const long = Buffer.from(`${'x'.repeat(50)} tail`)
  const chunks = splitIntoChunks([text, Buffer.alloc(0), long, Buffer.from('end')], 16)
  const words = (buffers: readonly Uint8Array[]) => buffers.flatMap((b) => Buffer.from(b).toString('latin1').match(/[a-z]+/g) ?? [])
  assert.deepEqual(words(chunks), words([text, long, Buffer.from('end')]))
  for (const chunk of chunks.slice(0, -1)) assert.match(Buffer.from(chunk).toString('latin1'), /\s$/, 'a chunk ends at whitespace')
  for (const chunk of chunks) assert.ok(chunk.length <= 16 || Buffer.from(chunk).includes('x'.repeat(50)), `chunk of ${chunk.length} bytes`)
  // Lines shorter than half a chunk are never split.
  assert.ok(chunks.some((chunk) => Buffer.from(chunk).toString() === 'alpha beta\n'))
})

test('merging sorts reducers\' lines by key in byte order', () => {
  const merged = mergeSortedOutputs([Buffer.from('b\t1\nzz\t2\n'), Buffer.from('a\t3\nB\t9\nb2\t1\n')])
  assert.equal(Buffer.from(merged).toString(), 'B\t9\na\t3\nb\t1\nb2\t1\nzz\t2\n')
})

test('a word count over MBs of real text with 3 reducers equals a single-process count', async () => {
  const sources = markdownFiles(3 * 1024 * 1024)
  const texts = await Promise.all(sources.map((path) => readFile(path)))
  const total = texts.reduce((sum, text) => sum + text.length, 0)
  // All of it is about 2.6 MB with this repository's dependencies; a smaller tree would make the test pointless.
  assert.ok(total >= 2 * 1024 * 1024, `gathered ${total} bytes of Markdown`)
  // Copied under one folder, in subfolders, so that the job names them by a glob.
  for (const [index, path] of sources.entries()) {
    const target = join(dir, 'texts', String(index % 7), `${index}.md`)
    await mkdir(join(target, '..'), { recursive: true })
    await copyFile(path, target)
  }
  await writeFile(join(dir, 'job.json'), JSON.stringify({
    kind: 'mapreduce',
    name: 'wordcount',
    runtime: 'wasi',
    package: join(repoRoot, 'build', 'workloads', 'wordcount.wasm'),
    inputs: ['./texts/**/*.md'],
    chunkBytes: 128 * 1024,
    reducers: 3,
    output: 'counts.tsv',
  }))
  const job = loadJobDefinition(join(dir, 'job.json')) as MapReduceJob
  assert.equal(job.inputFiles.length, sources.length)
  const plan = planJob(job)
  const progress: PlanProgress[] = []
  const product = await plan.execute(runner, (p) => progress.push(p))

  assert.deepEqual(product.outputs.map((o) => o.path), ['counts.tsv'])
  const expected = referenceCount(texts)
  const got = Buffer.from(product.outputs[0]!.data).toString('latin1')
  assert.equal(got.length, expected.length)
  assert.ok(got === expected, 'the merged counts differ from the single-process count')
  assert.equal(product.summary.inputBytes, total)
  assert.equal(product.summary.reduceTasks, 3)
  // Chunks hold at most chunkBytes here (no word is that long), and most are near full.
  assert.ok((product.summary.mapTasks as number) >= Math.ceil(total / (128 * 1024)), `mapTasks ${String(product.summary.mapTasks)}`)
  assert.deepEqual(progress.map((p) => `${p.phase} ${p.state}`), ['map started', 'map finished', 'reduce started', 'reduce finished'])
  assert.equal(progress[0]!.tasks, product.summary.mapTasks)
})

test('the wordcount example counts the words of its text files', async () => {
  const example = join(repoRoot, 'examples', 'wordcount')
  const job = loadJobDefinition(join(example, 'job.json'))
  assert.equal(job.kind, 'mapreduce')
  const product = await planJob(job).execute(runner)
  const texts = await Promise.all((job as MapReduceJob).inputFiles.map((path) => readFile(path)))
  assert.ok(texts.length >= 3)
  assert.equal(Buffer.from(product.outputs[0]!.data).toString('latin1'), referenceCount(texts))
})

test('the wordcount workload counts any bytes as the reference does, and its reducer sums tables and refuses malformed ones', async () => {
  // Every byte value, long and short words, mixed case, digits, no trailing newline.
  let seed = 7
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  const alphabet = Buffer.from('aAbBzZ09 \t\n\r.-\xe9\xff\x00', 'latin1')
  const noise = Buffer.from(Array.from({ length: 200_000 }, () => alphabet[Math.floor(random() * alphabet.length)]!))
  const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256))
  const texts = [noise, bytes, Buffer.from(`${'Q'.repeat(70_000)} q Q`)]
  const inputs = texts.map((data, i) => ({ path: `/in/${i}.txt`, data }))
  const [whole] = await runner.run([{ args: ['--out', '/out/c.tsv', ...inputs.map((i) => i.path)], env: {}, inputs, outputs: ['/out/c.tsv'] }])
  assert.equal(whole!.exitCode, 0)
  assert.ok(Buffer.from(outputOf(whole!, '/out/c.tsv')).toString('latin1') === referenceCount(texts), 'one wordcount task differs from the reference')

  const parts = ['/out/p0', '/out/p1', '/out/p2']
  const mapped = await runner.run(texts.map((data) => ({ args: ['--partitions', '3', '--out-prefix', '/out/p', '/in/t'], env: {}, inputs: [{ path: '/in/t', data }], outputs: parts })))
  const reduced = await runner.run(parts.map((part) => {
    const tables = mapped.map((outcome, m) => ({ path: `/in/${m}`, data: outputOf(outcome, part) }))
    return { args: ['--reduce', '--out', '/out/r', ...tables.map((t) => t.path)], env: {}, inputs: tables, outputs: ['/out/r'] }
  }))
  const merged = mergeSortedOutputs(reduced.map((outcome) => outputOf(outcome, '/out/r')))
  assert.ok(Buffer.from(merged).toString('latin1') === referenceCount(texts), 'map, shuffle and reduce differ from the reference')

  const reduce = async (table: string): Promise<TaskOutcome> =>
    (await runner.run([{ args: ['--reduce', '--out', '/out/r', '/in/t'], env: {}, inputs: [{ path: '/in/t', data: Buffer.from(table, 'latin1') }], outputs: ['/out/r'] }]))[0]!
  const summed = await reduce('zz\t3\naa\t4\n\nzz\t1\nab\t10')
  assert.equal(Buffer.from(outputOf(summed, '/out/r')).toString(), 'aa\t4\nab\t10\nzz\t4\n')
  for (const malformed of ['a\n', '\t1\n', 'a\t\n', 'a\t1\r\n', 'a\t1\tb\n', 'a\t-1\n']) {
    const outcome = await reduce(malformed)
    assert.equal(outcome.exitCode, 1, JSON.stringify(malformed))
    assert.match(Buffer.from(outcome.stderr).toString(), /is not a table of word<TAB>count lines/)
  }
})

test('a mapper that fails stops the job with its stderr', async () => {
  await writeFile(join(dir, 'small.txt'), 'one two three\n')
  const job = parseJobDefinition({
    kind: 'mapreduce',
    name: 'broken',
    runtime: 'wasi',
    package: join(repoRoot, 'build', 'workloads', 'wordcount.wasm'),
    inputs: ['./small.txt'],
    map: { args: ['--partitions', '0', '--out-prefix', '{out}', '{input}'] },
  }, dir)
  await assert.rejects(planJob(job).execute(runner), (error: Error) => /mapper 0 exited with code 2.*--partitions must be/s.test(error.message))
})
