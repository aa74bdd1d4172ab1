/**
 * The package as another project gets it: `npm pack` of this checkout, unpacked into a fresh project's
 * node_modules/hearth, imported by name with plain `node` (no tsx, no loader flags) and its `hearth` command run.
 * Its dependencies resolve through a link to this checkout's node_modules: no network install. The tarball holds the
 * emitted JavaScript, its declarations, the compiled contracts and workloads and the command, and no sources or tests.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { pickEntry, sourceFingerprint, stampPath } from '../bin/build-stamp.js'
import { buildJs } from '../scripts/build-js.ts'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))
const { version } = (await import('../package.json', { with: { type: 'json' } })).default

let work: string
let project: string
let packed: string[]

before(async () => {
  // Current after `npm ci` (its prepare script builds dist/); after an edit of src/ this compiles it again.
  buildJs()
  work = await mkdtemp(join(tmpdir(), 'hearth-package-'))
  // --ignore-scripts: the build above is what `prepare` would run.
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: repoRoot, encoding: 'utf8' })
  const [info] = JSON.parse(out) as { filename: string; files: { path: string }[] }[]
  packed = info!.files.map((file) => file.path)
  project = join(work, 'project')
  const installed = join(project, 'node_modules', 'hearth')
  await mkdir(installed, { recursive: true })
  execFileSync('tar', ['-xzf', join(work, info!.filename), '-C', installed, '--strip-components=1'])
  // The dependencies, where Node looks for them from inside the package.
  await symlink(join(repoRoot, 'node_modules'), join(installed, 'node_modules'), 'dir')
  await writeFile(join(project, 'package.json'), `${JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { hearth: version } })}\n`)
})

after(async () => {
  if (work !== undefined) await rm(work, { recursive: true, force: true })
})

/** Runs `args` with plain node in the temp project, with an environment that names no loader. */
function node(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const env = { ...process.env }
  delete env['NODE_OPTIONS']
  const run = spawnSync(process.execPath, args, { cwd: project, env, encoding: 'utf8', timeout: 120_000 })
  return { status: run.status, stdout: run.stdout, stderr: run.stderr }
}

test('the tarball holds the built package and no sources or tests', () => {
  for (const path of ['package.json', 'bin/hearth.js', 'bin/build-stamp.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/exec/wasi-worker.mjs', 'build/contracts.json', 'build/workloads/wordcount.wasm']) {
    assert.ok(packed.includes(path), `${path} is packed`)
  }
  const unwanted = packed.filter((path) => /(^|\/)(src|test|testdata|scripts|bench)\/|\.test\.|\.ts$/.test(path) && !path.endsWith('.d.ts'))
  assert.deepEqual(unwanted, [])
})

test("a plain Node project imports 'hearth': signs, parses a job, runs a built-in workload and deploys the contracts", async () => {
  await writeFile(
    join(project, 'use.mjs'),
    `import { createChainClient, createEmbeddedChain, createWasiRuntime, deployHearthContracts, generateIdentity, loadBuiltinWorkload, parseJob, signPayload, verifySigned } from 'hearth'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const identity = generateIdentity()
const signed = await signPayload(identity, { hello: 'hearth' })
const payload = await verifySigned(signed)
await writeFile('t.txt', 'one two two')
const job = parseJob({ name: 'j', runtime: 'wasi', package: './node_modules/hearth/build/workloads/wordcount.wasm',
  tasks: [{ args: ['--out', '/out/c.tsv', '/in/t.txt'], inputs: { '/in/t.txt': './t.txt' }, outputs: ['/out/c.tsv'] }] }, process.cwd())

// The module from build/workloads, run in a worker started from dist/exec/wasi-worker.mjs.
const runtime = createWasiRuntime({ maxWorkers: 1 })
const taskDir = await mkdtemp(join(tmpdir(), 'hearth-consumer-'))
const rootDir = join(taskDir, 'root')
await mkdir(join(rootDir, 'in'), { recursive: true })
await mkdir(join(rootDir, 'out'))
await writeFile(join(rootDir, 'in', 't.txt'), 'one two two')
const run = await runtime.run({ module: await loadBuiltinWorkload('wordcount'), args: ['wordcount', '--out', '/out/c.tsv', '/in/t.txt'], env: {}, rootDir,
  stdoutPath: join(taskDir, 'stdout'), stderrPath: join(taskDir, 'stderr'), maxMemoryBytes: 64 << 20, timeoutMs: 30_000, maxOutputBytes: 1 << 20 })
await runtime.close()

// The contracts from build/contracts.json, deployed on the embedded chain.
const chain = await createEmbeddedChain({ accounts: [{ address: identity.address, balanceWei: 10n ** 20n }] })
const client = createChainClient({ transport: chain, privateKey: identity.privateKey, chainId: chain.chainId })
const deployment = await deployHearthContracts(client)
await chain.close()
const counts = await readFile(join(rootDir, 'out', 'c.tsv'), 'utf8')
await rm(taskDir, { recursive: true, force: true })

console.log(JSON.stringify({ payload, signer: signed.signer === identity.address, tasks: job.tasks.length, exitCode: run.exitCode,
  counts, escrow: deployment.escrowAddress }))
`,
  )
  const run = node(['use.mjs'])
  assert.equal(run.status, 0, run.stderr)
  const result = JSON.parse(run.stdout) as Record<string, unknown>
  assert.deepEqual(result['payload'], { hello: 'hearth' })
  assert.equal(result['signer'], true)
  assert.equal(result['tasks'], 1)
  assert.equal(result['exitCode'], 0)
  assert.equal(result['counts'], 'one\t1\ntwo\t2\n')
  assert.match(String(result['escrow']), /^0x[0-9a-fA-F]{40}$/)
})

test("its declarations type a TypeScript project's imports from 'hearth'", async () => {
  await writeFile(
    join(project, 'typed.ts'),
    `import { generateIdentity, signPayload, verifySigned, type NodeIdentity, type Signed } from 'hearth'
const identity: NodeIdentity = generateIdentity()
const signed: Signed<{ n: number }> = await signPayload(identity, { n: 1 })
const n: number = (await verifySigned(signed)).n
// @ts-expect-error: the payload's type is kept
const wrong: string = (await verifySigned(signed)).n
export { n, wrong }
`,
  )
  const tsconfig = {
    compilerOptions: { target: 'ES2023', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [join(repoRoot, 'node_modules', '@types')] },
    files: ['typed.ts'],
  }
  await writeFile(join(project, 'tsconfig.json'), JSON.stringify(tsconfig))
  const run = node([createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', '.'])
  assert.equal(run.status, 0, run.stdout + run.stderr)
})

test("the packed command runs from its JavaScript: help, version and a command's own help", () => {
  const bin = join(project, 'node_modules', 'hearth', 'bin', 'hearth.js')
  const help = node([bin, '--help'])
  assert.equal(help.status, 0, help.stderr)
  assert.match(help.stdout, /^Usage: hearth \[options\] \[command\]/)
  for (const command of ['demo', 'run', 'market', 'devnet', 'payments', 'chain', 'deploy', 'wallet', 'provider', 'relay']) assert.match(help.stdout, new RegExp(`^  ${command}\\b`, 'm'))
  assert.equal(node([bin, '--version']).stdout, `${version}\n`)
  const wallet = node([bin, 'wallet', '--help'])
  assert.equal(wallet.status, 0, wallet.stderr)
  assert.match(wallet.stdout, /^Usage: hearth wallet \[options\] \[command\]/)
})

test('bin/hearth.js runs dist/ only while its stamp matches src/, and always when there is no src/', async () => {
  const root = join(work, 'stamp')
  await mkdir(join(root, 'src', 'cli'), { recursive: true })
  await mkdir(join(root, 'dist'))
  await writeFile(join(root, 'tsconfig.json'), '{}')
  await writeFile(join(root, 'src', 'cli', 'main.ts'), 'export {}')
  await writeFile(join(root, 'src', 'cli', 'main.test.ts'), '')
  assert.equal(pickEntry(root, {}), 'src', 'no stamp: never built')
  const stamp = async (): Promise<void> => writeFile(join(root, stampPath), JSON.stringify({ fingerprint: sourceFingerprint(root) }))
  await stamp()
  assert.equal(pickEntry(root, {}), 'dist')
  assert.equal(pickEntry(root, { HEARTH_FROM_SOURCE: '1' }), 'src')
  await writeFile(join(root, 'src', 'cli', 'main.test.ts'), 'a test is not built')
  assert.equal(pickEntry(root, {}), 'dist')
  // An edit that keeps the size, with the clock set back; a new file; a renamed one; a config.
  const edits: Array<() => Promise<unknown>> = [
    () => writeFile(join(root, 'src', 'cli', 'main.ts'), 'export{ }').then(() => utimes(join(root, 'src', 'cli', 'main.ts'), new Date(2000, 0), new Date(2000, 0))),
    () => writeFile(join(root, 'src', 'cli', 'new.ts'), ''),
    () => rename(join(root, 'src', 'cli', 'new.ts'), join(root, 'src', 'cli', 'old.ts')),
    () => writeFile(join(root, 'tsconfig.json'), '{ }'),
  ]
  for (const edit of edits) {
    await edit()
    assert.equal(pickEntry(root, {}), 'src')
    await stamp()
    assert.equal(pickEntry(root, {}), 'dist')
  }
  await rm(join(root, 'src'), { recursive: true })
  assert.equal(pickEntry(root, {}), 'dist', 'an installed package ships dist/ only')
})
