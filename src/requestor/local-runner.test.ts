/**
 * The local runner runs wasi tasks in this process as a provider would: inputs in place, outputs' folders made, every
 * named output brought back (or reported missing), outcomes in task order, a batch's own module, and a task stopped
 * by a limit rejecting the batch with the task's index.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { isHearthError } from '../errors.ts'
import { compileAssemblyScript } from '../exec/assemblyscript-compiler.ts'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import { createLocalRunner, localProvider } from './local-runner.ts'

const workDir = await mkdtemp(join(tmpdir(), 'hearth-local-runner-'))
const runtime = createWasiRuntime({ maxWorkers: 2 })
after(async () => {
  await runtime.close()
  await rm(workDir, { recursive: true, force: true })
})
const wordcount = await loadBuiltinWorkload('wordcount')

test('tasks get their inputs, bring back their outputs in order, and report missing outputs', async () => {
  const runner = createLocalRunner({ runtime, package: wordcount, concurrency: 3, workDir })
  const texts = ['one two two', 'Three three THREE', 'four', 'five five', 'six']
  const outcomes = await runner.run(texts.map((text) => ({
    args: ['--out', '/out/deep/counts.tsv', '/in/sub/text.txt'],
    env: {},
    inputs: [{ path: '/in/sub/text.txt', data: Buffer.from(text) }],
    outputs: ['/out/deep/counts.tsv', '/out/never.txt'],
  })), { phase: 'count' })
  assert.deepEqual(outcomes.map((o) => o.taskIndex), [0, 1, 2, 3, 4])
  assert.deepEqual(outcomes.map((o) => Buffer.from(o.outputs[0]!.data).toString()), ['one\t1\ntwo\t2\n', 'three\t3\n', 'four\t1\n', 'five\t2\n', 'six\t1\n'])
  for (const outcome of outcomes) {
    assert.equal(outcome.exitCode, 0)
    assert.deepEqual(outcome.missingOutputs, ['/out/never.txt'])
    assert.equal(outcome.provider, localProvider)
    assert.match(Buffer.from(outcome.stdout).toString(), /^wordcount: 1 files/)
  }
  // Task directories are gone afterwards.
  assert.deepEqual(await readdir(workDir), [])
})

test('a non-zero exit is an outcome; a batch may bring its own module', async () => {
  const runner = createLocalRunner({ runtime, concurrency: 1, workDir })
  await assert.rejects(runner.run([{ args: [], env: {}, inputs: [], outputs: [] }]), (error) => isHearthError(error, 'HEARTH_ERR_API_MISUSE'))
  const [outcome] = await runner.run([{ args: ['--bogus'], env: {}, inputs: [], outputs: [] }], { phase: 'map', package: wordcount })
  assert.equal(outcome!.exitCode, 2)
  assert.match(Buffer.from(outcome!.stderr).toString(), /--out is required|name at least one input/)
})

test('a task stopped by a limit rejects the batch, naming the task; a path outside the task directory is refused', async () => {
  const source = await readFile(fileURLToPath(new URL('../exec/testdata/hostile.asc', import.meta.url)), 'utf8')
  const hostile = await compileAssemblyScript({ files: { 'hostile.ts': source }, entry: 'hostile.ts' })
  const runner = createLocalRunner({ runtime, package: hostile, timeoutMs: 10_000, concurrency: 2, workDir })
  await assert.rejects(
    runner.run([{ args: ['ok', '0'], env: {}, inputs: [], outputs: [] }, { args: ['loop'], env: {}, inputs: [], outputs: [] }], { phase: 'sweep' }),
    (error) => isHearthError(error, 'HEARTH_ERR_JOB_TASK_FAILED') && /^task 1 of sweep failed in this process: /.test(error.shortMessage) && isHearthError(error.cause, 'HEARTH_ERR_EXEC_TIMEOUT'),
  )
  await assert.rejects(
    runner.run([{ args: ['ok', '0'], env: {}, inputs: [{ path: '/../escape.txt', data: Buffer.from('x') }], outputs: [] }]),
    (error) => isHearthError(error, 'HEARTH_ERR_JOB_TASK_FAILED') && /not a guest path inside the task directory/.test(error.message) && isHearthError(error.cause, 'HEARTH_ERR_EXEC_PATH_INVALID'),
  )
  assert.deepEqual(await readdir(workDir), [])
})
