import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { loadJobFile, parseJob, parseJobDefinition } from './job-file.ts'

const dir = mkdtempSync(join(tmpdir(), 'hearth-job-'))
after(() => rmSync(dir, { recursive: true, force: true }))
writeFileSync(join(dir, 'prog.wasm'), new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))
writeFileSync(join(dir, 'data.txt'), 'hello')

const good = {
  name: 'count',
  runtime: 'wasi',
  package: './prog.wasm',
  tasks: [{ args: ['a'], env: { K: 'V' }, inputs: { '/in/data.txt': './data.txt' }, outputs: ['/out/result.txt'] }, {}],
}

test('a valid job resolves local paths against its folder and fills defaults', () => {
  const job = parseJob(good, dir)
  assert.equal(job.packagePath, join(dir, 'prog.wasm'))
  assert.equal(job.tasks[0]!.inputPaths['/in/data.txt'], join(dir, 'data.txt'))
  assert.deepEqual(job.tasks[1], { args: [], env: {}, inputs: {}, outputs: [], inputPaths: {} })
  assert.equal(job.timeoutMs, 60_000)
})

function problemsOf(value: unknown): string[] {
  try {
    parseJob(value, dir)
  } catch (error) {
    assert.ok(isHearthError(error, 'HEARTH_ERR_JOB_INVALID'), String(error))
    return error.details!.problems as string[]
  }
  assert.fail('expected the job to be refused')
}

test('every wrong field is named with what was expected', () => {
  const problems = problemsOf({
    name: 'x',
    runtime: 'kubernetes',
    package: './prog.wasm',
    tasks: [{ args: 'not-a-list', outputs: ['relative/out.txt', '/out/../../etc/passwd'], extra: 1 }],
    timeoutMs: -5,
  })
  const text = problems.join('\n')
  assert.match(text, /^runtime: expected "wasi", "native" or "docker"/m)
  assert.match(text, /^tasks\[0\]\.args: /m)
  assert.match(text, /^tasks\[0\]\.outputs\[0\]: expected an absolute guest path/m)
  assert.match(text, /^tasks\[0\]\.outputs\[1\]: expected an absolute guest path/m)
  assert.match(text, /^tasks\[0\]: .*extra/m)
  assert.match(text, /^timeoutMs: /m)
})

test('a job with no tasks, or missing its name, is refused', () => {
  assert.match(problemsOf({ runtime: 'wasi', package: 'p', tasks: [] }).join('\n'), /name: .*\n.*tasks: expected at least one task/)
})

test('missing local files are all listed before anything runs', () => {
  try {
    parseJob({ ...good, package: './nope.wasm', tasks: [{ inputs: { '/in/a': './missing.txt' } }] }, dir)
    assert.fail('expected a refusal')
  } catch (error) {
    assert.ok(isHearthError(error, 'HEARTH_ERR_JOB_INPUT_MISSING'))
    assert.match(error.message, /package: \.\/nope\.wasm/)
    assert.match(error.message, /tasks\[0\]\.inputs\.\/in\/a: \.\/missing\.txt/)
  }
})

test('a job file that is not JSON says so', () => {
  const path = join(dir, 'bad.json')
  writeFileSync(path, '{"name": ')
  assert.throws(() => loadJobFile(path), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && /not valid JSON/.test(error.message))
})

test('constraints must parse, and the error points at the position', () => {
  const problems = problemsOf({ ...good, constraints: '(&(golem.inf.mem.gib>=2)(golem.runtime.name=wasi)' })
  assert.equal(problems.length, 1)
  assert.match(problems[0]!, /^constraints: /)
  const job = parseJob({ ...good, constraints: '(golem.inf.mem.gib>=2)', sla: { countries: ['PL'], maxLatencyMs: 50 } }, dir)
  assert.equal(job.constraints, '(golem.inf.mem.gib>=2)')
  assert.match(problemsOf({ ...good, sla: { countries: ['Poland'] } }).join('\n'), /^sla\.countries\[0\]: expected a two-letter country code/m)
})

test('weights say how offers are ranked; a negative or unknown weight is named', () => {
  assert.deepEqual(parseJob({ ...good, weights: { latency: 1, cpuScore: 0 } }, dir).weights, { latency: 1, cpuScore: 0 })
  assert.match(problemsOf({ ...good, weights: { latency: -1 } }).join('\n'), /^weights\.latency: /m)
  assert.match(problemsOf({ ...good, weights: { speed: 1 } }).join('\n'), /^weights: .*speed/m)
})

test('each runtime needs its own field and refuses the others\'', () => {
  assert.match(problemsOf({ name: 'x', runtime: 'native', tasks: [{}] }).join('\n'), /^program: required for runtime "native"/m)
  assert.match(problemsOf({ name: 'x', runtime: 'docker', package: './prog.wasm', tasks: [{}] }).join('\n'), /^image: required for runtime "docker"\n?[\s\S]*^package: not used by runtime "docker"/m)
  assert.match(problemsOf({ name: 'x', runtime: 'native', program: 'rm -rf /', tasks: [{}] }).join('\n'), /^program: expected a program name/m)
  const native = parseJob({ name: 'x', runtime: 'native', program: 'povray', tasks: [{}] }, dir)
  assert.equal(native.packagePath, undefined)
  assert.equal(parseJob({ name: 'x', runtime: 'docker', image: './data.txt', tasks: [{}] }, dir).packagePath, join(dir, 'data.txt'))
})

test('a job confined to its folder may not name a file outside it, by .., an absolute path or a glob', () => {
  const jobDir = join(dir, 'sent')
  mkdirSync(jobDir, { recursive: true })
  writeFileSync(join(jobDir, 'prog.wasm'), new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))
  writeFileSync(join(jobDir, 'a.txt'), 'inside')
  writeFileSync(join(jobDir, 'data.txt'), 'inside')
  assert.equal((parseJobDefinition(good, dir, 'job file', { confined: true }) as { packagePath: string }).packagePath, join(dir, 'prog.wasm'))
  const refusal = (value: unknown): string[] => {
    try {
      parseJobDefinition(value, jobDir, 'job file', { confined: true })
    } catch (error) {
      assert.ok(isHearthError(error, 'HEARTH_ERR_JOB_INVALID'), String(error))
      return error.details!.problems as string[]
    }
    return []
  }
  assert.deepEqual(refusal({ ...good, package: '../prog.wasm' }), ['package: ../prog.wasm is outside the job\'s folder'])
  assert.deepEqual(refusal({ ...good, package: join(dir, 'prog.wasm') }), [`package: ${join(dir, 'prog.wasm')} is outside the job's folder`])
  assert.deepEqual(refusal({ ...good, package: './prog.wasm', tasks: [{ inputs: { '/in/key': '../data.txt' } }] }), ['tasks[0].inputs./in/key: ../data.txt is outside the job\'s folder'])
  const mapreduce = { kind: 'mapreduce', name: 'wc', runtime: 'wasi', package: './prog.wasm', chunkBytes: 512, reducers: 1, map: { args: [] }, reduce: { args: [] }, output: 'counts.tsv' }
  assert.deepEqual(refusal({ ...mapreduce, inputs: ['../*.txt'] }), ['inputs[0]: ../*.txt is outside the job\'s folder'])
  assert.deepEqual(refusal({ ...mapreduce, inputs: ['*/../../*.txt'] }), ['inputs[0]: */../../*.txt is outside the job\'s folder'])
  assert.deepEqual(refusal({ ...mapreduce, inputs: ['./*.txt'] }), [])
  // Unconfined (hearth run on the owner's own job file), paths outside the folder are the owner's to name.
  assert.equal(parseJob({ ...good, package: '../prog.wasm' }, jobDir).packagePath, join(dir, 'prog.wasm'))
})
