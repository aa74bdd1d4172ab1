/**
 * The non-Linux path, run for real on Linux: a provider and a requestor as their own processes with
 * HEARTH_PLATFORM_EMULATE=generic, so that they behave as on macOS or Windows (no /proc, no /sys, no cgroups). A wasi
 * job runs and its result is exact, `hearth provider status` and `stop` work over the HTTP local API, the offer says
 * why native tasks cannot run, and a preload that denies and records every fs call under /proc and /sys shows that
 * neither process tried one.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { PassThrough } from 'node:stream'
import { after, test } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { devAccountKey, startChain } from '../src/cli/chain-command.ts'
import type { RunReport } from '../src/cli/run-job.ts'
import { parseConfigText } from '../src/provider/config.ts'
import type { ProviderStatus } from '../src/provider/provider-node.ts'
import { referenceCounts, wordcountExample, wordcountTexts } from './support/wordcount.ts'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))
const hearthBin = join(repoRoot, 'bin', 'hearth.js')
const preload = pathToFileURL(fileURLToPath(new URL('./support/deny-linux-files.mjs', import.meta.url))).href
const nativeReason = 'native tasks need Linux (bubblewrap, cgroups); this system is generic'

const dir = await mkdtemp(join(tmpdir(), 'hearth-generic-'))
after(() => rm(dir, { recursive: true, force: true }))
const deniedLog = join(dir, 'denied.jsonl')

/** The environment of a process on the emulated generic system, watched by the preload. */
function genericEnv(): NodeJS.ProcessEnv {
  return { ...process.env, HEARTH_PLATFORM_EMULATE: 'generic', HEARTH_TEST_DENIED_LOG: deniedLog, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${preload}`.trim() }
}

/** Runs `hearth ARGS` to its end on the generic system. */
function hearthGeneric(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [hearthBin, ...args], { cwd: repoRoot, env: genericEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  return new Promise((done) => child.once('close', (code) => done({ code, stdout, stderr })))
}

/** The fs calls under /proc or /sys the preload refused, from every process that ran with it. */
async function deniedCalls(): Promise<{ pid: number; call: string; path: string; stack: string[] }[]> {
  const text = await readFile(deniedLog, 'utf8').catch(() => '')
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as { pid: number; call: string; path: string; stack: string[] })
}

interface Ready {
  event: 'ready'
  address: string
  multiaddrs: string[]
  pid: number
}

async function startGenericProvider(args: string[]): Promise<{ child: ChildProcess; ready: Ready; stderr: () => string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [hearthBin, 'provider', 'start', ...args], { cwd: repoRoot, env: genericEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  after(() => void (child.exitCode === null && child.signalCode === null ? child.kill('SIGKILL') : undefined))
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)))
  const ready = await new Promise<Ready>((resolveReady, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as { event: string }
      if (parsed.event === 'ready') resolveReady(parsed as Ready)
    })
    void exited.then((code) => reject(new Error(`the provider exited with ${code} before it was ready:\n${stderr}`)))
  })
  return { child, ready, stderr: () => stderr, exited }
}

test('the preload sees a read of /proc: without the emulation, Hearth reads the CPU times from /proc/stat', async () => {
  const log = join(dir, 'control.jsonl')
  const platformModule = pathToFileURL(join(repoRoot, 'src', 'exec', 'platform.ts')).href
  const script = `const { readCpuTimes, platform } = await import(${JSON.stringify(platformModule)}); console.log(platform().kind); try { readCpuTimes() } catch (error) { console.log(error.code) }`
  const { HEARTH_PLATFORM_EMULATE: _unset, ...env } = process.env
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', preload, '--input-type=module', '-e', script], { cwd: repoRoot, env: { ...env, HEARTH_TEST_DENIED_LOG: log }, stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  await new Promise((done) => child.once('close', done))
  assert.deepEqual(stdout.trim().split('\n'), ['linux', 'ENOENT'])
  const seen = (await readFile(log, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { path: string })
  assert.deepEqual(seen.map((entry) => entry.path), ['/proc/stat'])
})

test('HEARTH_PLATFORM_EMULATE=generic: a wasi job runs across provider and requestor processes, with no read of /proc or /sys', async () => {
  const deployment = join(dir, 'deployment.json')
  const chain = await startChain({ port: 0, accounts: 1, deploymentOut: deployment }, { stdout: new PassThrough(), stderr: new PassThrough() })
  after(() => chain.close())

  // Native programs are allowed, so the provider must say why it cannot offer them; idle detection is on (from
  // node:os here), asking for mains power that this system cannot report.
  const dataDir = join(dir, 'provider')
  const init = await hearthGeneric(['provider', 'init', '--yes', '--data-dir', dataDir, '--deployment', deployment, '--threads', '1', '--memory-gib', '1', '--disk-gib', '1'])
  assert.equal(init.code, 0, init.stderr)
  const configPath = join(dataDir, 'provider.jsonc')
  const config = parseConfigText(await readFile(configPath, 'utf8'), configPath) as { runtimes?: Record<string, unknown> }
  await writeFile(configPath, JSON.stringify({ ...config, runtimes: { ...config.runtimes, native: { sleep: '/usr/bin/sleep' } } }, null, 2))
  const provider = await startGenericProvider([
    '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--deployment', deployment, '--threads', '1', '--memory-gib', '1', '--disk-gib', '1',
    '--idle', '--max-owner-load', '1', '--require-mains',
  ])
  assert.match(provider.stderr(), /idle\.requireMains cannot be honoured here/)

  // Status over the HTTP local API, from a process on the same emulated system.
  const status = await hearthGeneric(['provider', 'status', '--data-dir', dataDir, '--json'])
  assert.equal(status.code, 0, status.stderr)
  const shown = JSON.parse(status.stdout) as ProviderStatus
  assert.equal(shown.pid, provider.ready.pid)
  assert.deepEqual(shown.offer.runtimes, ['wasi'])
  assert.ok(shown.offer.unavailable.includes(`native: ${nativeReason}`), JSON.stringify(shown.offer.unavailable))
  assert.equal(shown.lending.active, true, shown.lending.reason)
  const record = JSON.parse(await readFile(join(dataDir, 'provider.json'), 'utf8')) as { url: string }
  assert.match(record.url, /^http:\/\/127\.0\.0\.1:\d+$/)

  // A requestor process on the same system runs the word count there.
  const funderKey = join(dir, 'funder.key')
  await writeFile(funderKey, `${devAccountKey(0)}\n`, { mode: 0o600 })
  await chmod(funderKey, 0o600)
  const out = join(dir, 'out')
  const run = await hearthGeneric([
    'run', join(wordcountExample, 'job.json'), '--providers', '1', '--json', '--out', out, '--data-dir', join(dir, 'requestor'),
    '--bootstrap', provider.ready.multiaddrs[0]!, '--deployment', deployment, '--funder-key-file', funderKey,
  ])
  assert.equal(run.code, 0, run.stderr)
  const report = JSON.parse(run.stdout) as RunReport
  assert.deepEqual(report.failures, [])
  assert.equal(await readFile(join(out, 'counts.tsv'), 'utf8'), referenceCounts(...(await wordcountTexts())))

  // Stopped over the HTTP API as well: the process ends by itself.
  const stopped = await hearthGeneric(['provider', 'stop', '--data-dir', dataDir, '--json'])
  assert.equal(stopped.code, 0, stopped.stderr)
  assert.equal(await provider.exited, 0, provider.stderr())

  // Neither process (nor a tool they ran through node:fs) touched /proc or /sys.
  assert.deepEqual(await deniedCalls(), [])
})
