/**
 * Job kinds: a job file of each kind is checked field by field (a wrong field is named with what was expected, a
 * missing input is reported before anything runs), and the `map` and `render` plans run on this machine (wasi in this
 * process, POV-Ray under the native runtime where it is installed).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { isHearthError } from '../errors.ts'
import { createNativeRuntime } from '../exec/native-runtime.ts'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import { createLocalRunner } from '../requestor/local-runner.ts'
import { loadJobDefinition, parseJob, parseJobDefinition, type MapReduceJob } from './job-file.ts'
import { planJob, writeJobProduct } from './kinds.ts'
import { decodePng } from './png.ts'
import { ppmRaster, splitIntoBands } from './render-kind.ts'
import { renderLocally } from './render-tiles.ts'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const povrayPath = '/usr/bin/povray'
const dir = await mkdtemp(join(tmpdir(), 'hearth-kinds-'))
const runtime = createWasiRuntime({ maxWorkers: 2 })
after(async () => {
  await runtime.close()
  await rm(dir, { recursive: true, force: true })
})
await writeFile(join(dir, 'prog.wasm'), new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))
await mkdir(join(dir, 'texts', 'deep'), { recursive: true })
await writeFile(join(dir, 'texts', 'a.txt'), 'a')
await writeFile(join(dir, 'texts', 'deep', 'b.txt'), 'b')
await writeFile(join(dir, 'texts', 'deep', '.hidden.txt'), 'h')
await writeFile(join(dir, 'texts', 'c.md'), 'c')

const base = { name: 'x', runtime: 'wasi', package: './prog.wasm' }

function problemsOf(value: unknown): string {
  try {
    parseJobDefinition(value, dir)
  } catch (error) {
    assert.ok(isHearthError(error, 'HEARTH_ERR_JOB_INVALID'), String(error))
    return (error.details!.problems as string[]).join('\n')
  }
  assert.fail('expected the job to be refused')
}

function missingOf(value: unknown): string {
  try {
    parseJobDefinition(value, dir)
  } catch (error) {
    assert.ok(isHearthError(error, 'HEARTH_ERR_JOB_INPUT_MISSING'), String(error))
    return error.message
  }
  assert.fail('expected missing files to be reported')
}

test('an unknown kind is named with the kinds there are', () => {
  assert.match(problemsOf({ ...base, kind: 'hadoop', tasks: [{}] }), /^kind: expected "map", "mapreduce", "sweep" or "render"/m)
})

test('a map-reduce job names each wrong field and what was expected', () => {
  const text = problemsOf({ ...base, kind: 'mapreduce', inputs: [], chunkBytes: 10, reducers: 0, map: { args: 'x' }, output: '../out.tsv', tasks: [{}] })
  assert.match(text, /^inputs: expected at least one input file or glob/m)
  assert.match(text, /^chunkBytes: /m)
  assert.match(text, /^reducers: /m)
  assert.match(text, /^map\.args: /m)
  assert.match(text, /^output: expected a plain file name/m)
  assert.match(text, /^\(top level\): .*tasks/m)
  assert.match(problemsOf({ ...base, runtime: 'native', program: 'wc', package: undefined, kind: 'mapreduce', inputs: ['a'], map: { package: './prog.wasm' } }), /^map\.package: a step's own module is for runtime "wasi" only/m)
})

test('map-reduce inputs: paths and globs expand to sorted files; one that names nothing is reported before anything runs', () => {
  const job = parseJobDefinition({ ...base, kind: 'mapreduce', inputs: ['texts/**/*.txt', './texts/a.txt'] }, dir) as MapReduceJob
  // `**` spans folders, a repeat is dropped, and a dot file is matched only when the pattern names the dot.
  assert.deepEqual(job.inputFiles, [join(dir, 'texts', 'a.txt'), join(dir, 'texts', 'deep', 'b.txt')])
  assert.equal(job.inputBytes, 2)
  assert.equal(job.reducers, 4)
  const message = missingOf({ ...base, kind: 'mapreduce', inputs: ['texts/*.csv', './nope.txt', 'texts/c.md'], reduce: { package: './gone.wasm' } })
  assert.match(message, /inputs\[0\]: texts\/\*\.csv \(matches no file/)
  assert.match(message, /inputs\[1\]: \.\/nope\.txt \(looked for/)
  assert.doesNotMatch(message, /inputs\[2\]/)
  assert.match(message, /reduce\.package: \.\/gone\.wasm/)
})

test('a map-reduce template may use only its placeholders', () => {
  const job = parseJobDefinition({ ...base, kind: 'mapreduce', inputs: ['texts/a.txt'], reduce: { args: ['{inputs}', '--k', '{key}'] } }, dir)
  assert.throws(() => planJob(job), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && /reduce\.args: unknown placeholder \{key\}/.test(error.message))
})

test('a sweep job names a bad grid, metric or input', () => {
  const text = problemsOf({ ...base, kind: 'sweep', grid: { lr: [], 'bad name': [1], deep: [[1]] }, metric: { name: 'accuracy', goal: 'best' } })
  assert.match(text, /^grid\.lr: expected at least one value/m)
  assert.match(text, /^grid\.bad name: expected a parameter name/m)
  assert.match(text, /^grid\.deep\[0\]: expected a number, a string or a boolean/m)
  assert.match(text, /^metric\.goal: expected "max" \(higher is better\) or "min"/m)
  assert.match(problemsOf({ ...base, kind: 'sweep', grid: {}, metric: { name: 'a', goal: 'max' } }), /^grid: expected at least one parameter/m)
  assert.match(problemsOf({ ...base, kind: 'sweep', grid: { a: [1] } }), /^metric: /m)
  const big = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`p${i}`, Array.from({ length: 7 }, (_, j) => j)]))
  assert.match(problemsOf({ ...base, kind: 'sweep', grid: big, metric: { name: 'a', goal: 'max' } }), /^grid: expected at most 10000 settings/m)
  assert.match(problemsOf({ ...base, kind: 'sweep', grid: { a: [1] }, metric: { name: 'a', goal: 'max' }, inputs: { '/in/d.csv': 'dataset:mnist' } }), /^inputs\.\/in\/d\.csv: expected a local file or dataset:iris/m)
  assert.match(missingOf({ ...base, kind: 'sweep', grid: { a: [1] }, metric: { name: 'a', goal: 'max' }, inputs: { '/in/d.csv': './d.csv' } }), /inputs\.\/in\/d\.csv: \.\/d\.csv/)
  assert.match(problemsOf({ ...base, kind: 'sweep', grid: { a: [1] }, metric: { name: 'a', goal: 'max' }, inputs: { 'in/d.csv': './d.csv' } }), /^inputs\.in\/d\.csv: expected an absolute guest path/m)
  assert.match(problemsOf({ ...base, tasks: [{ env: { 'A-B': '1' } }] }), /^tasks\[0\]\.env\.A-B: expected an environment variable name/m)
  const job = parseJobDefinition({ ...base, kind: 'sweep', grid: { a: [1] }, args: ['--x', '{b}'], metric: { name: 'a', goal: 'max' } }, dir)
  assert.throws(() => planJob(job), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && /args: unknown placeholder \{b\}; expected \{a\}/.test(error.message))
})

test('a render job needs a size, and a native render needs POV-Ray and its scene', () => {
  assert.match(problemsOf({ ...base, kind: 'render', height: 0 }), /^width: [\s\S]*^height: /m)
  assert.match(problemsOf({ ...base, kind: 'render', width: 4, height: 4, tiles: 17 }), /^tiles: expected at most width × height \(16\) tiles/m)
  const native = { name: 'x', runtime: 'native', kind: 'render', width: 8, height: 8 }
  assert.match(problemsOf({ ...native, program: 'blender' }), /^program: expected "povray"/m)
  assert.match(problemsOf({ ...native, program: 'povray' }), /^scene: required for a native render/m)
  assert.match(missingOf({ ...native, program: 'povray', scene: './scene.pov' }), /scene: \.\/scene\.pov/)
})

test('parseJob takes task lists only, and says how to run the other kinds', () => {
  assert.equal(parseJob({ ...base, kind: 'map', tasks: [{}] }, dir).kind, 'map')
  assert.throws(() => parseJob({ ...base, kind: 'mapreduce', inputs: ['texts/a.txt'] }, dir), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && /kind: "mapreduce" is planned/.test(error.message))
})

test('a map job runs its task list; outputs, stdout and stderr land under the task index, exit codes are kept', async () => {
  const runner = createLocalRunner({ runtime, package: await loadBuiltinWorkload('wordcount'), concurrency: 2 })
  const job = loadJobDefinition(join(repoRoot, 'examples', 'wordcount', 'tasks.json'))
  const plan = planJob(job)
  assert.equal(plan.estimatedTasks, 4)
  const product = await plan.execute(runner)
  assert.deepEqual(product.summary, { kind: 'map', tasks: 4, succeeded: 4, exitCodes: [0, 0, 0, 0] })
  const files = new Map(product.outputs.map((file) => [file.path, Buffer.from(file.data).toString()]))
  assert.match(files.get('3/out/counts.tsv')!, /^hearth\t\d+$/m)
  assert.match(files.get('0/stdout')!, /^wordcount: 1 files, \d+ bytes/)
  assert.equal(files.get('0/stderr'), '')

  const failing = parseJobDefinition({ ...base, package: join(repoRoot, 'build', 'workloads', 'wordcount.wasm'), tasks: [{ args: ['--out'] }] }, dir)
  const failed = await planJob(failing).execute(runner)
  assert.deepEqual(failed.summary.exitCodes, [2])
})

test('a render on the built-in tracer merges into the image one process renders', async () => {
  const runner = createLocalRunner({ runtime, package: await loadBuiltinWorkload('render'), concurrency: 2 })
  const job = parseJobDefinition({ kind: 'render', name: 'r', runtime: 'wasi', package: join(repoRoot, 'build', 'workloads', 'render.wasm'), width: 48, height: 32, tiles: 5 }, dir)
  const product = await planJob(job).execute(runner)
  assert.equal(product.outputs[0]!.path, 'render.png')
  const image = decodePng(product.outputs[0]!.data)
  assert.deepEqual([image.width, image.height], [48, 32])
  const reference = await renderLocally({ runtime, width: 48, height: 32 })
  assert.ok(Buffer.from(image.rgb).equals(Buffer.from(reference)), 'the merged tiles differ from a one-process render')
  const example = planJob(loadJobDefinition(join(repoRoot, 'examples', 'render', 'job.json')))
  assert.deepEqual([example.kind, example.estimatedTasks], ['render', 8])
})

test('POV-Ray bands cover every row once, and a PPM raster is read past its header', () => {
  assert.deepEqual(splitIntoBands(10, 3), [{ first: 1, last: 3 }, { first: 4, last: 6 }, { first: 7, last: 10 }])
  assert.deepEqual(splitIntoBands(2, 5), [{ first: 1, last: 1 }, { first: 2, last: 2 }])
  const ppm = Buffer.concat([Buffer.from('P6\n# made by a test\n2 1\n255\n'), Buffer.from([1, 2, 3, 4, 5, 6])])
  const raster = ppmRaster(ppm)
  assert.deepEqual([raster.width, raster.height, [...raster.rgb]], [2, 1, [1, 2, 3, 4, 5, 6]])
  assert.throws(() => ppmRaster(Buffer.from('P3\n2 1\n255\n')), (error) => isHearthError(error, 'HEARTH_ERR_JOB_TASK_FAILED'))
})

test('a native POV-Ray render in bands merges into the frame one POV-Ray run renders', async (t) => {
  if (!existsSync(povrayPath)) return t.skip(`${povrayPath} is not installed`)
  const native = createNativeRuntime({ programs: [povrayPath] })
  after(() => native.close())
  const availability = await native.available()
  if (!availability.ok) return t.skip(`the native runtime is unavailable here: ${availability.reason}`)
  const example = join(repoRoot, 'examples', 'povray')
  const job = loadJobDefinition(join(example, 'render.json'))
  const runner = createLocalRunner({ runtime: { native, program: povrayPath }, concurrency: 2, workDir: dir })
  const product = await planJob(job).execute(runner)
  const image = decodePng(product.outputs[0]!.data)

  const whole = join(dir, 'whole.ppm')
  const run = spawnSync(povrayPath, [`+I${join(example, 'scene.pov')}`, `+O${whole}`, '+FP', '+W192', '+H144', '-D', '-P'], { encoding: 'utf8' })
  assert.equal(run.status, 0, run.stderr)
  const expected = ppmRaster(await readFile(whole))
  assert.deepEqual([image.width, image.height], [expected.width, expected.height])
  assert.ok(Buffer.from(image.rgb).equals(Buffer.from(expected.rgb)), 'the stitched bands differ from the whole frame')
})

test('a product is written under the output folder, and a path leaving it is refused', async () => {
  const out = join(dir, 'product')
  const written = await writeJobProduct({ outputs: [{ path: 'counts.tsv', data: Buffer.from('a\t1\n') }, { path: '0/out/x.txt', data: Buffer.from('x') }], summary: {} }, out)
  assert.deepEqual(written, [join(out, 'counts.tsv'), join(out, '0', 'out', 'x.txt')])
  assert.equal(await readFile(join(out, '0', 'out', 'x.txt'), 'utf8'), 'x')
  await assert.rejects(writeJobProduct({ outputs: [{ path: '../escape', data: Buffer.from('x') }], summary: {} }, out), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
})
