/**
 * `hearth provider` end to end: a provider started as its own process on a shared development chain, found by a
 * requestor over libp2p, paid in vouchers, killed mid-job and restarted from its data directory, then stopped
 * gracefully; and the owner's idle policy handing work back when the (simulated) owner returns.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, test } from 'node:test'
import { parseEther } from 'viem'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { startDevnet } from '../devnet/devnet.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import { identityFromPrivateKey } from '../identity/node-identity.ts'
import { renderJob } from '../jobs/render-job.ts'
import { createHost } from '../net/host.ts'
import { createChainClient } from '../payment/chain-client.ts'
import { tokenBalanceOf } from '../payment/escrow.ts'
import type { EarningsReport } from '../provider/earnings.ts'
import { createIdleMonitor, type IdleSources } from '../provider/idle-policy.ts'
import { readApiInfo } from '../provider/local-api.ts'
import type { ProviderStatus } from '../provider/provider-node.ts'
import type { JobEvent } from '../requestor/events.ts'
import { createRequestor } from '../requestor/requestor.ts'
import { openStore } from '../store/store.ts'
import { devAccountKey, startChain, type RunningChain } from './chain-command.ts'
import { capture, hearth } from './testdata/run-cli.ts'

const repoRoot = resolve(import.meta.dirname, '../..')
const dir = await mkdtemp(join(tmpdir(), 'hearth-provider-cli-'))
after(() => rm(dir, { recursive: true, force: true }))



interface Ready {
  event: 'ready'
  peerId: string
  address: string
  multiaddrs: string[]
  pid: number
  lending: boolean
}

/** `hearth provider start` as its own process; resolves with its ready line. */
async function startProviderProcess(args: string[]): Promise<{ child: ChildProcess; ready: Ready; lines: string[]; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['bin/hearth.js', 'provider', 'start', ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
  // A failed test must not leave providers running.
  after(() => void (child.exitCode === null && child.signalCode === null ? child.kill('SIGKILL') : undefined))
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)))
  const lines: string[] = []
  const ready = await new Promise<Ready>((done, fail) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line)
      const parsed = JSON.parse(line) as { event: string }
      if (parsed.event === 'ready') done(parsed as Ready)
    })
    void exited.then((code) => fail(new Error(`provider exited with ${code} before it was ready:\n${stderr}`)))
  })
  return { child, ready, lines, exited }
}

let chain: RunningChain
const deploymentFile = join(dir, 'deployment.json')
/** A requestor on the same chain (dev account 0), joining providers by their ready lines. */
const requestorIdentity = identityFromPrivateKey(devAccountKey(0))
let requestor: ReturnType<typeof createRequestor>
let payment: Parameters<typeof tokenBalanceOf>[0]
let requestorHost: Awaited<ReturnType<typeof createHost>>
let requestorStore: ReturnType<typeof openStore>
before(async () => {
  await buildContracts()
  chain = await startChain({ port: 0, accounts: 2, deploymentOut: deploymentFile }, capture().io)
  const store = openStore({ path: join(dir, 'requestor.db') })
  requestorStore = store
  const host = await createHost({ identity: requestorIdentity })
  requestorHost = host
  await host.start()
  const client = createChainClient({ transport: chain.url, privateKey: requestorIdentity.privateKey, chainId: chain.chainId })
  payment = { client, tokenAddress: chain.deployment.tokenAddress, escrowAddress: chain.deployment.escrowAddress }
  requestor = createRequestor({ identity: requestorIdentity, host, store, payment })
  await requestor.start()
  stopRequestor = async () => {
    await requestor.stop()
    await host.stop()
    store.close()
  }
})
let stopRequestor = async (): Promise<void> => undefined
after(async () => {
  await stopRequestor()
  await chain?.close()
})

/** Joins the provider and waits until its offer is in the requestor's book. */
async function findProvider(ready: Ready): Promise<void> {
  await requestorHost.dial(ready.multiaddrs[0]!)
  await requestor.market.syncFrom(ready.multiaddrs[0]!)
  await requestor.market.offerBook.waitFor(1, (offer) => offer.provider.toLowerCase() === ready.address.toLowerCase(), { signal: AbortSignal.timeout(10_000) })
}

async function renderSpec(tiles: number) {
  return renderJob({ width: 16, height: 8, tiles, wasm: await loadBuiltinWorkload('render'), providers: 1, maxPricePerTaskWei: parseEther('1') }).spec
}

test('init writes a commented config; bad values exit 2 naming the field', async () => {
  const dataDir = join(dir, 'init')
  const ok = await hearth(['provider', 'init', '--data-dir', dataDir, '--yes', '--threads', '1', '--memory-gib', '1', '--disk-gib', '1', '--deployment', deploymentFile, '--pricing-model', 'linear', '--suggest-price', '--json'])
  assert.equal(ok.code, 0, ok.stderr)
  const report = JSON.parse(ok.stdout) as { configFile: string; config: { pricing: { model: string; perCpuHourHtt: string } }; breakEven: { perCpuHourHtt: string }; warning?: string }
  assert.equal(report.config.pricing.model, 'linear')
  // The suggestion is break-even plus half: above cost, so no warning.
  assert.ok(Number(report.config.pricing.perCpuHourHtt) > Number(report.breakEven.perCpuHourHtt))
  assert.equal(report.warning, undefined)
  const text = await readFile(report.configFile, 'utf8')
  assert.match(text, /\/\/ Lend only while the owner is away/)
  const again = await hearth(['provider', 'init', '--data-dir', dataDir, '--yes'])
  assert.equal(again.code, 2)
  assert.match(again.stderr, /exists already/)
  const bad = await hearth(['provider', 'init', '--data-dir', join(dir, 'init-bad'), '--yes', '--threads', 'lots'])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /resources.threads \(from the flag\): expected a number, got "lots"/)
  const greedy = await hearth(['provider', 'init', '--data-dir', join(dir, 'init-greedy'), '--yes', '--threads', '100000'])
  assert.equal(greedy.code, 2)
  assert.match(greedy.stderr, /resources.threads: 100000 threads would leave the owner none/)
  const cheap = await hearth(['provider', 'init', '--data-dir', join(dir, 'init-cheap'), '--yes', '--threads', '1', '--memory-gib', '1', '--disk-gib', '1', '--per-task-htt', '0.000001', '--json'])
  assert.match((JSON.parse(cheap.stdout) as { warning: string }).warning, /below cost/)
})

test('a provider process is found, paid, killed mid-job, restarted with its earnings and vouchers, and stopped gracefully', async () => {
  const dataDir = join(dir, 'lender')
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  // Dev account 1 holds gas: the provider's node key is its chain account.
  await writeFile(join(dataDir, 'node.key'), `${devAccountKey(1)}\n`, { mode: 0o600 })
  await chmod(join(dataDir, 'node.key'), 0o600)
  const args = ['--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-idle', '--deployment', deploymentFile, '--threads', '1', '--memory-gib', '1', '--disk-gib', '1']

  // Turned away first: a provider that denies this requestor signs nothing with it.
  const denying = await startProviderProcess([...args, '--deny', requestorIdentity.address])
  await findProvider(denying.ready)
  const spec = await renderSpec(4)
  await assert.rejects(requestor.runJob({ ...spec, debitNoteIntervalSec: 0 }), /refused|rejected|denied/i)
  assert.equal((await hearth(['provider', 'stop', '--data-dir', dataDir])).code, 0)
  assert.equal(await denying.exited, 0)

  // Now lending to anyone: found, given work, paid in vouchers; killed right after its first voucher.
  const first = await startProviderProcess(args)
  assert.equal(first.ready.lending, true)
  const status = await hearth(['provider', 'status', '--data-dir', dataDir, '--json'])
  assert.equal(status.code, 0, status.stderr)
  const shown = JSON.parse(status.stdout) as ProviderStatus
  assert.equal(shown.address.toLowerCase(), first.ready.address.toLowerCase())
  assert.deepEqual(shown.offer.runtimes, ['wasi'])
  assert.ok((shown.offer.cpuScore ?? 0) > 0)
  assert.equal(shown.lending.active, true)

  // One provider per data directory.
  const twice = await hearth(['provider', 'start', ...args])
  assert.equal(twice.code, 2)
  assert.match(twice.stderr, /already running/)

  // The local API (HTTP on 127.0.0.1) refuses a caller without the key.
  const info = (await readApiInfo(dataDir))!
  assert.match(info.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.equal(info.pid, first.ready.pid)
  const refused = await fetch(`${info.url}/v1/stop`, { method: 'POST', headers: { authorization: `Bearer ${'00'.repeat(32)}` } })
  assert.equal(refused.status, 401)
  assert.match(((await refused.json()) as { error: { message: string } }).error.message, /refused the key/)

  await findProvider(first.ready)
  const events: JobEvent[] = []
  const abort = new AbortController()
  let killed = false
  await requestor
    .runJob({ ...spec, debitNoteIntervalSec: 0, maxAttempts: 1 }, {
      signal: abort.signal,
      onEvent: (event) => {
        events.push(event)
        if (event.type === 'voucher-delivered' && !killed) {
          killed = true
          first.child.kill('SIGKILL')
          abort.abort()
        }
      },
    })
    .catch(() => undefined)
  await first.exited
  const voucher = events.find((e): e is Extract<JobEvent, { type: 'voucher-delivered' }> => e.type === 'voucher-delivered')
  assert.ok(voucher !== undefined, JSON.stringify(events))
  const heldWei = BigInt(voucher.cumulativeWei)
  assert.ok(heldWei > 0n)

  // Down: the database still says what it is owed.
  const down = await hearth(['provider', 'earnings', '--data-dir', dataDir, '--json'])
  assert.equal(down.code, 0, down.stderr)
  const owed = JSON.parse(down.stdout) as EarningsReport
  assert.equal(owed.totals.unclaimedWei, heldWei.toString())
  assert.equal(owed.totals.revenueWei, heldWei.toString())
  assert.equal(owed.agreements[0]!.state, 'approved')
  assert.ok(owed.totals.tasks >= 1)
  assert.notEqual(owed.totals.estimatedCostWei, null)
  // Killed outright, it left its provider.json: status says the process is gone rather than trying its old port.
  const afterKill = await hearth(['provider', 'status', '--data-dir', dataDir])
  assert.equal(afterKill.code, 1)
  assert.match(afterKill.stderr, new RegExp(`the provider is not running \\(pid ${first.ready.pid} is gone`))

  // The requestor went on signing while the provider was down: a final voucher for every result it accepted, which
  // never arrived.
  const signedWei = requestorStore.vouchers.latest(owed.agreements[0]!.agreementId)!.cumulativeWei
  assert.ok(signedWei >= heldWei, `${signedWei} >= ${heldWei}`)

  // Restarted from its data directory: same identity, the agreement kept; it asks the requestor what it is owed,
  // and claims everything on chain.
  const balanceBefore = await tokenBalanceOf(payment, first.ready.address as `0x${string}`)
  const second = await startProviderProcess(args)
  assert.equal(second.ready.address, first.ready.address)
  const deadline = Date.now() + 120_000
  let earnings = owed
  while (earnings.totals.claimedWei !== signedWei.toString()) {
    assert.ok(Date.now() < deadline, `not claimed after restart: ${JSON.stringify(earnings.totals)}`)
    await new Promise((r) => setTimeout(r, 200))
    earnings = JSON.parse((await hearth(['provider', 'earnings', '--data-dir', dataDir, '--json'])).stdout) as EarningsReport
  }
  assert.equal(earnings.totals.unclaimedWei, '0')
  assert.equal(earnings.totals.revenueWei, signedWei.toString())
  assert.equal(await tokenBalanceOf(payment, first.ready.address as `0x${string}`), balanceBefore + signedWei)
  const afterRestart = JSON.parse((await hearth(['provider', 'status', '--data-dir', dataDir, '--json'])).stdout) as ProviderStatus
  assert.equal(afterRestart.earnings.claimedWei, signedWei.toString())
  assert.equal(afterRestart.activeAgreements, 1)

  // Graceful stop: the process ends by itself with exit code 0 and reports what it claimed.
  const stopped = await hearth(['provider', 'stop', '--data-dir', dataDir, '--json'])
  assert.equal(stopped.code, 0, stopped.stderr)
  assert.equal(await second.exited, 0)
  const last = JSON.parse(second.lines.at(-1)!) as { event: string; handedBack: number }
  assert.equal(last.event, 'stopped')
  assert.equal(last.handedBack, 0)
  assert.equal(await readApiInfo(dataDir), undefined)
})

test('a task asking more memory than the owner lends in all is refused, retryably; SIGTERM stops the provider cleanly', async () => {
  const dataDir = join(dir, 'sigterm')
  const started = await startProviderProcess(['--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-idle', '--deployment', deploymentFile, '--threads', '1', '--memory-gib', '1', '--disk-gib', '1', '--max-total-memory-gib', '0.05'])
  await findProvider(started.ready)
  // Each render task may use up to 64 MiB; the owner lends 51 MiB to all running tasks together.
  const outcome = await requestor.runJob({ ...(await renderSpec(1)), maxMemoryBytes: 64 << 20, maxAttempts: 1 })
  assert.equal(outcome.results.filter((r) => r !== undefined).length, 0)
  assert.match(outcome.failures[0]?.message ?? '', /no room for the task now \(memory: 0 bytes in use \+ 67108864 asked > 53687091 lent\)/)
  started.child.kill('SIGTERM')
  assert.equal(await started.exited, 0)
  assert.equal(JSON.parse(started.lines.at(-1)!).event, 'stopped')
})

test('the owner comes back: new work is refused, the running task is handed back, and lending resumes once idle', async () => {
  // Tasks that take as long as they are told: `sleep`, offered as a native program.
  const devnet = await startDevnet({ providers: 1, nativePrograms: { sleep: '/usr/bin/sleep', sh: '/usr/bin/sh' } })
  after(() => devnet.stop())
  const agent = devnet.providers[0]!.agent
  const owner = { load: 0 }
  const sources: IdleSources = { ownerLoad: () => owner.load, onMains: () => true, now: () => new Date() }
  const monitor = createIdleMonitor({
    rules: { maxOwnerLoad: 0.25, requireMains: true, hours: [] },
    sources,
    checkEveryMs: 100,
    resumeAfterMs: 500,
    onChange: async ({ lending, reason }) => (lending ? agent.resume() : agent.pause(reason ?? 'owner back', { handBack: true })),
  })
  await monitor.check()
  monitor.start()
  after(() => monitor.stop())
  const sleepJob = (seconds: string) => ({
    name: 'sleeps',
    runtime: 'native' as const,
    program: 'sleep',
    tasks: [{ args: [seconds], env: {}, inputs: [], outputs: [] }],
    providers: 1,
    maxPricePerTaskWei: parseEther('1'),
    timeoutMs: 120_000,
    maxMemoryBytes: 64 << 20,
    maxOutputBytes: 1 << 20,
    maxAttempts: 1,
  })
  // The owner sits down while a one-minute task runs: it comes back to the requestor as handed back.
  const outcome = await devnet.requestor.agent.runJob(sleepJob('60'), {
    onEvent: (event) => {
      if (event.type === 'task-started') owner.load = 0.9
    },
  })
  assert.equal(outcome.results.filter((r) => r !== undefined).length, 0)
  assert.match(outcome.failures[0]?.message ?? '', /not taking work now: owner load 0.90 is above 0.25/)
  assert.deepEqual(agent.lending(), { paused: true, reason: 'owner load 0.90 is above 0.25' })
  assert.equal(agent.running().tasks, 0)
  assert.equal(agent.stats().tasksRun, 0)
  // While the owner works, proposals are refused.
  await assert.rejects(devnet.requestor.agent.runJob(sleepJob('0')))

  // The owner leaves; after the quiet period the provider takes work again and is paid for it.
  owner.load = 0
  const deadline = Date.now() + 120_000
  while (agent.lending().paused) {
    assert.ok(Date.now() < deadline, 'lending did not resume')
    await new Promise((r) => setTimeout(r, 50))
  }
  await devnet.requestor.agent.market.syncAll()
  const resumed = await devnet.requestor.agent.runJob(sleepJob('0'))
  assert.equal(resumed.results.filter((r) => r !== undefined).length, 1)
  assert.equal(agent.stats().tasksRun, 1)

  // A task that crashes (killed by a segmentation fault) is the task's problem, not the agent's: it keeps serving.
  const crash = await devnet.requestor.agent.runJob({ ...sleepJob('0'), program: 'sh', tasks: [{ args: ['-c', 'kill -SEGV $$'], env: {}, inputs: [], outputs: [] }] })
  assert.notEqual(crash.results[0]?.exitCode ?? crash.failures.length, 0)
  const survivor = await devnet.requestor.agent.runJob(sleepJob('0'))
  assert.equal(survivor.results.filter((r) => r !== undefined && r.exitCode === 0).length, 1)
})
