/**
 * The chaos run: four providers as their own processes (`hearth provider start`, on a chain served by `hearth chain`)
 * render one image for an in-process requestor while, every 2.5 s, one of them is killed with SIGKILL and restarted
 * from its data directory (same key, same database, same port); one more dies as settlement begins. The picture must
 * be the one-process render. Then every provider is restarted one last time and given a bounded time to collect what
 * it is owed (vouchers the requestor signed while it was down) and claim it; in the end each provider must have been
 * paid on chain exactly what the requestor accepted from it, and the chain's token balances must add up.
 *
 * The seed (printed first; `CHAOS_SEED=N` replays it) makes the choices: which provider dies when, and whether debit
 * notes come with every result or at the default interval. A busy machine's timing is not replayed, only the choices.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseEther, type Address } from 'viem'
import { buildContracts } from '../scripts/build-contracts.ts'
import { devAccountKey } from '../src/cli/chain-command.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { identityFromPrivateKey } from '../src/identity/node-identity.ts'
import { assembleRender, renderJob } from '../src/jobs/render-job.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { addUsage, costWei, noUsage } from '../src/market/pricing.ts'
import { createHost } from '../src/net/host.ts'
import { createChainClient } from '../src/payment/chain-client.ts'
import { getEscrow, tokenBalanceOf, type EscrowContext, type EscrowState } from '../src/payment/escrow.ts'
import { createRequestor, type AgreementOutcome, type JobOutcome } from '../src/requestor/requestor.ts'
import { seededRandom } from '../src/seeded-random.ts'
import { openStore } from '../src/store/store.ts'

const hearth = fileURLToPath(new URL('../bin/hearth.js', import.meta.url))

const providerCount = 4
const tileCount = 160
// Tiles of about 20x15 pixels: a few ms of ray tracing each, so the job's time is the network's and the chaos's.
const width = 1280
const height = 960
const killEveryMs = 2_500
/** How long the providers, restarted one last time, get to collect what they are owed and claim it. */
const collectWithinMs = 150_000

/** Keeps the last lines of a log (a child's stderr, the requestor's reports), for the failure message. */
function tail(lines: string[], text: string, prefix = '', keep = 80): void {
  lines.push(...text.split('\n').filter((line) => line.trim() !== '').map((line) => prefix + line))
  if (lines.length > keep) lines.splice(0, lines.length - keep)
}

/** `hearth chain` in its own process; resolves with its JSON report once it serves. */
async function startChainProcess(deploymentFile: string): Promise<{ url: string; chainId: number; tokenAddress: Address; escrowAddress: Address }> {
  const child = spawn(process.execPath, [hearth, 'chain', '--port', '0', '--accounts', String(providerCount + 1), '--deployment-out', deploymentFile, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  after(() => void (child.exitCode === null && child.signalCode === null ? child.kill('SIGKILL') : undefined))
  const log: string[] = []
  child.stderr!.on('data', (c: Buffer) => tail(log, c.toString()))
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line) as { url: string; chainId: number; tokenAddress: Address; escrowAddress: Address }))
    child.once('close', (code) => reject(new Error(`hearth chain exited with ${code} before it served:\n${log.join('\n')}`)))
  })
}

interface Ready {
  event: 'ready'
  address: string
  multiaddrs: string[]
}

/** One provider's data directory, run as a process that is killed and started again from it. */
interface ProviderProcess {
  index: number
  dataDir: string
  address: Address
  /** The port it listens on: picked at the first start, kept at every restart (the requestor dials it there). */
  port: number
  child: ChildProcess | undefined
  exited: Promise<void>
  starts: number
  /** Kills and restarts of this provider, one after the other: two at once would leave a process untracked. */
  strikes: Promise<void>
  log: string[]
}

function providerProcess(index: number, root: string): ProviderProcess {
  const address = identityFromPrivateKey(devAccountKey(index + 1)).address
  return { index, dataDir: join(root, `provider-${index}`), address, port: 0, child: undefined, exited: Promise.resolve(), starts: 0, strikes: Promise.resolve(), log: [] }
}

/**
 * Starts the provider from its data directory (the process is spawned before this returns). Resolves with its ready
 * line, or with undefined when it was killed before it was ready: the chaos may strike a provider still starting.
 */
async function startProvider(provider: ProviderProcess, deploymentFile: string): Promise<Ready | undefined> {
  const args = ['provider', 'start', '--data-dir', provider.dataDir, '--listen', `/ip4/127.0.0.1/tcp/${provider.port}`, '--no-idle', '--deployment', deploymentFile, '--threads', '1', '--memory-gib', '1', '--disk-gib', '1']
  const child = spawn(process.execPath, [hearth, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  after(() => void (child.exitCode === null && child.signalCode === null ? child.kill('SIGKILL') : undefined))
  provider.child = child
  const run = ++provider.starts
  // 'close', not 'exit': by then everything it wrote to stderr has been read.
  provider.exited = new Promise((resolve) => child.once('close', () => resolve()))
  child.stderr!.on('data', (c: Buffer) => tail(provider.log, c.toString(), `[run ${run}] `))
  const ready = await new Promise<Ready | undefined>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as { event: string }
      if (parsed.event === 'ready') resolve(parsed as Ready)
    })
    child.once('close', (code, signal) => (signal === 'SIGKILL' ? resolve(undefined) : reject(new Error(`provider ${provider.index} exited with ${code} before it was ready:\n${provider.log.join('\n')}`))))
  })
  if (ready !== undefined && provider.port === 0) provider.port = Number(/\/tcp\/(\d+)/.exec(ready.multiaddrs[0]!)![1])
  return ready
}

async function killProvider(provider: ProviderProcess): Promise<void> {
  const child = provider.child
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGKILL')
  await provider.exited
}

test('providers killed and restarted every 2.5 s through a render are each paid on chain exactly what the requestor accepted', { timeout: 420_000 }, async (t) => {
  const seed = process.env['CHAOS_SEED'] === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(process.env['CHAOS_SEED'])
  const random = seededRandom(seed)
  // Debit notes with every result (a voucher per accepted tile), or at the default interval (vouchers for the first
  // result, at half the provider's cap of unpaid work, and at the end).
  const debitNoteIntervalSec = random() < 0.5 ? 0 : undefined
  // Any provider may die, all four in turn: a provider that is unreachable is asked again after a backoff, so the job
  // goes on while any of them is up.
  const banner = `chaos seed ${seed} (replay: CHAOS_SEED=${seed}); debit notes ${debitNoteIntervalSec === 0 ? 'with every result' : 'at the default interval'}`
  t.diagnostic(banner)
  process.stderr.write(`${banner}\n`)

  const dir = await mkdtemp(join(tmpdir(), 'hearth-chaos-'))
  after(() => rm(dir, { recursive: true, force: true }))
  await buildContracts()
  const deploymentFile = join(dir, 'deployment.json')
  const chain = await startChainProcess(deploymentFile)

  // Dev account 0 is the requestor's, 1..4 are the providers' node keys (gas and tokens funded by `hearth chain`).
  const providers = Array.from({ length: providerCount }, (_, i) => providerProcess(i, dir))
  for (const provider of providers) {
    await mkdir(provider.dataDir, { recursive: true, mode: 0o700 })
    await writeFile(join(provider.dataDir, 'node.key'), `${devAccountKey(provider.index + 1)}\n`, { mode: 0o600 })
    await chmod(join(provider.dataDir, 'node.key'), 0o600)
  }
  const readies = await Promise.all(providers.map((provider) => startProvider(provider, deploymentFile)))

  const identity = identityFromPrivateKey(devAccountKey(0))
  const store = openStore({ path: join(dir, 'requestor.db') })
  const host = await createHost({ identity })
  await host.start()
  const client = createChainClient({ transport: chain.url, privateKey: identity.privateKey, chainId: chain.chainId })
  const payment: EscrowContext = { client, tokenAddress: chain.tokenAddress, escrowAddress: chain.escrowAddress }
  const requestorLog: string[] = []
  const requestor = createRequestor({ identity, host, store, payment, log: (message) => tail(requestorLog, message) })
  await requestor.start()
  after(async () => {
    await requestor.stop()
    await host.stop()
    store.close()
  })
  for (const ready of readies) {
    await host.dial(ready!.multiaddrs[0]!)
    await requestor.market.syncFrom(ready!.multiaddrs[0]!)
  }
  await requestor.market.offerBook.waitFor(providerCount, () => true, { signal: AbortSignal.timeout(30_000) })

  const balanceOf = (address: Address): Promise<bigint> => tokenBalanceOf(payment, address)
  const escrowOf = async (agreement: AgreementOutcome): Promise<EscrowState> => (await getEscrow(payment, { requestorAddress: identity.address, agreementId: agreement.agreementId }))!
  /** The balances and escrows, all as of one block: a release landing between two reads would make them disagree. */
  const readChain = async (agreements: readonly AgreementOutcome[]) => {
    for (;;) {
      const block = await client.publicClient.getBlockNumber({ cacheTime: 0 })
      const figures = {
        requestor: await balanceOf(identity.address),
        escrow: await balanceOf(chain.escrowAddress),
        providers: await Promise.all(providers.map((p) => balanceOf(p.address))),
        escrows: await Promise.all(agreements.map(escrowOf)),
      }
      if ((await client.publicClient.getBlockNumber({ cacheTime: 0 })) === block) return figures
    }
  }
  // Balances before anything is locked: every token that moves afterwards moves between these five and the escrow.
  const before = await readChain([])

  // The chaos: from the first accepted tile until the job (settlement included) is over, a provider picked by the
  // seed dies every 2.5 s and starts again from its data directory in the background; and as settlement begins, one
  // that rendered tiles dies, so that its final voucher is signed while it is down.
  const chaosLog: string[] = []
  const jobStartedAt = performance.now()
  const at = (): string => `${((performance.now() - jobStartedAt) / 1000).toFixed(1)}s`
  const restarts: Promise<unknown>[] = []
  const strike = (victim: ProviderProcess, why: string): Promise<void> => {
    victim.strikes = victim.strikes.then(async () => {
      chaosLog.push(`${at()} kill ${victim.index}${why}`)
      await killProvider(victim)
      const started = startProvider(victim, deploymentFile)
      restarts.push(
        started.then(
          (ready) => chaosLog.push(`${at()} ${victim.index} ${ready === undefined ? 'killed while starting' : 'up'}`),
          (error: unknown) => chaosLog.push(`${at()} ${victim.index} did not start again: ${String(error)}`),
        ),
      )
    })
    return victim.strikes
  }
  const victims = providers
  let chaosOn = false
  let stopChaos: () => void = () => undefined
  const chaosOver = new Promise<void>((resolve) => (stopChaos = resolve))
  let chaos: Promise<void> | undefined
  const startChaos = (): void => {
    chaosOn = true
    chaos = (async () => {
      while (chaosOn) {
        await strike(victims[Math.floor(random() * victims.length)]!, '')
        await Promise.race([new Promise((resolve) => setTimeout(resolve, killEveryMs)), chaosOver])
      }
    })()
  }
  const rendered = new Set<string>()

  const { spec, tiles } = renderJob({ width, height, tiles: tileCount, wasm: await loadBuiltinWorkload('render'), providers: providerCount, maxPricePerTaskWei: parseEther('1') })
  let outcome: JobOutcome
  let jobSec = 0
  try {
    outcome = await requestor.runJob(
      // The default bounds on retries: a provider's absence does not count as a failure of the task it held.
      { ...spec, offerWaitMs: 10_000, ...(debitNoteIntervalSec === undefined ? {} : { debitNoteIntervalSec }) },
      {
        onEvent: (event) => {
          if (event.type === 'task-done') {
            rendered.add(event.provider.toLowerCase())
            if (chaos === undefined) startChaos()
          }
          if (event.type === 'phase' && /^settling/.test(event.message)) {
            const workers = victims.filter((provider) => rendered.has(provider.address.toLowerCase()))
            const pool = workers.length > 0 ? workers : victims
            void strike(pool[Math.floor(random() * pool.length)]!, ' as settlement begins')
          }
        },
      },
    )
  } finally {
    jobSec = (performance.now() - jobStartedAt) / 1000
    chaosOn = false
    stopChaos()
    await chaos
    await Promise.allSettled(providers.map((provider) => provider.strikes))
    await Promise.allSettled(restarts)
  }
  t.diagnostic(`job over in ${jobSec.toFixed(1)} s; chaos: ${chaosLog.join(', ')}`)

  // The picture is exact, whoever rendered each tile.
  assert.deepEqual(outcome.failures, [])
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  const image = assembleRender(width, height, tiles, outcome)
  assert.ok(Buffer.from(image).equals(Buffer.from(await renderLocally({ runtime, width, height }))), 'the image differs from the one-process render')

  // Every provider restarted one last time from its data directory: it asks the requestor what it signed while the
  // provider was away, and claims it. The requestor stays up (and keeps delivering what was not acknowledged).
  const restartedAt = performance.now()
  for (const provider of providers) await killProvider(provider)
  await Promise.all(providers.map((provider) => startProvider(provider, deploymentFile)))

  // What the requestor accepted from each provider, from its accounts (its store), against the chain.
  const agreementsOf = (provider: ProviderProcess): AgreementOutcome[] => outcome.agreements.filter((a) => a.provider.toLowerCase() === provider.address.toLowerCase())
  const owedTo = (provider: ProviderProcess): bigint => agreementsOf(provider).reduce((sum, a) => sum + requestor.accounts.account(a.agreementId).owedWei(), 0n)
  const claimedBy = async (provider: ProviderProcess): Promise<bigint> => {
    let sum = 0n
    for (const agreement of agreementsOf(provider)) sum += (await escrowOf(agreement)).claimedWei
    return sum
  }
  const deadline = Date.now() + collectWithinMs
  for (;;) {
    const claimed = await Promise.all(providers.map(claimedBy))
    if (providers.every((provider, i) => claimed[i]! >= owedTo(provider)) || Date.now() > deadline) break
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  const collectSec = (performance.now() - restartedAt) / 1000

  const now = await readChain(outcome.agreements)
  const paid = providers.map((provider) => now.providers[provider.index]! - before.providers[provider.index]!)
  const claimedOn = (agreement: AgreementOutcome): bigint => now.escrows[outcome.agreements.indexOf(agreement)]!.claimedWei
  const unsettled = outcome.agreements.filter((a) => !a.settled).length
  const report = [`${unsettled} of ${outcome.agreements.length} agreements were not settled when the job ended; ${collectSec.toFixed(1)} s from the last restart to the end of the wait for claims`]
  for (const provider of providers) {
    const accepted = outcome.results.filter((r) => r!.provider.toLowerCase() === provider.address.toLowerCase()).length
    report.push(`provider ${provider.index} ${provider.address}: ${accepted} tiles accepted, owed ${owedTo(provider)} wei, paid ${paid[provider.index]} wei, started ${provider.starts} times`)
  }
  for (const line of report) t.diagnostic(line)
  const explain = (): string => ['', banner, ...report, `chaos: ${chaosLog.join(', ')}`, 'requestor:', ...requestorLog, ...providers.flatMap((p) => [`provider ${p.index}:`, ...p.log])].join('\n')

  for (const provider of providers) {
    // The requestor's accounts agree with the results it used: each agreement owes the cost of its accepted tiles.
    for (const agreement of agreementsOf(provider)) {
      const used = outcome.results.filter((r) => r!.agreementId.toLowerCase() === agreement.agreementId.toLowerCase())
      const usage = used.reduce((sum, r) => addUsage(sum, { tasks: 1, cpuMs: r!.usage.cpuMs, durationMs: r!.usage.durationMs }), noUsage)
      assert.equal(requestor.accounts.account(agreement.agreementId).owedWei(), costWei(agreement.pricing, usage), `agreement ${agreement.agreementId}${explain()}`)
    }
    // Paid on chain exactly what was accepted from it, not more, not less: its balance, and each escrow's claims.
    assert.equal(paid[provider.index], owedTo(provider), `provider ${provider.index} was paid ${paid[provider.index]} wei for ${owedTo(provider)} wei of accepted work${explain()}`)
    for (const agreement of agreementsOf(provider)) {
      assert.equal(claimedOn(agreement), requestor.accounts.account(agreement.agreementId).owedWei(), `agreement ${agreement.agreementId}${explain()}`)
    }
  }
  assert.ok(paid.some((wei) => wei > 0n))

  // Tokens add up on chain: what left the requestor went to the providers or is still locked in the escrows.
  const lockedWei = now.escrows.reduce((sum, escrow) => sum + (escrow.closed ? 0n : escrow.depositedWei - escrow.claimedWei), 0n)
  const requestorDelta = now.requestor - before.requestor
  const escrowDelta = now.escrow - before.escrow
  assert.equal(escrowDelta, lockedWei, 'the escrow contract holds what its open escrows have left')
  assert.equal(requestorDelta + paid.reduce((sum, wei) => sum + wei, 0n) + escrowDelta, 0n)
})
