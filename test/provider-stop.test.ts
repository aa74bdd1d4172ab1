/**
 * A provider node (`startProviderNode`, as `hearth provider start` runs it) stopped while a task runs, and its disk
 * admission bound. On a development chain served over JSON-RPC, with `sleep` offered as a native program so a task
 * lasts as long as its argument says:
 * - a task that ends within the stop's grace period completes, reaches the requestor, and is paid on chain;
 * - a task that would outlast it is handed back (retryable), done by another provider, and not billed;
 * - a task whose inputs and outputs alone take more disk than the owner lends is refused for good (run it elsewhere);
 *   one that fits only once a running task is done is refused as busy and waits for room; the provider keeps serving.
 */
import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, before, test } from 'node:test'
import { parseEther, type Hex } from 'viem'
import { devAccountKey, startChain, type RunningChain } from '../src/cli/chain-command.ts'
import { getEscrow } from '../src/payment/escrow.ts'
import { resolveProviderConfig } from '../src/provider/config.ts'
import { startProviderNode, type ProviderNode } from '../src/provider/provider-node.ts'
import type { JobEvent } from '../src/requestor/events.ts'
import type { JobSpec } from '../src/requestor/requestor.ts'
import { startRequestorNode, type RequestorNode } from '../src/requestor/requestor-node.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-provider-stop-'))
after(() => rm(dir, { recursive: true, force: true }))
const deploymentFile = join(dir, 'deployment.json')
const sleepPath = '/usr/bin/sleep'
const perTaskWei = parseEther('0.001')

let chain: RunningChain
before(async () => {
  // Account 0 funds the requestors; accounts 1.. are the providers' node keys (they pay gas for their claims).
  chain = await startChain({ port: 0, accounts: 5, deploymentOut: deploymentFile }, { stdout: new PassThrough(), stderr: new PassThrough() })
})
after(() => chain?.close())

/** A provider node in this process, its node key a funded development account, lending `sleep`. */
async function startProvider(account: number, options: { stopGraceMs?: number; maxTotalDiskGib?: number } = {}): Promise<ProviderNode> {
  const dataDir = join(dir, `provider-${account}`)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await writeFile(join(dataDir, 'node.key'), `${devAccountKey(account)}\n`, { mode: 0o600 })
  await chmod(join(dataDir, 'node.key'), 0o600)
  const config = resolveProviderConfig({
    file: {
      listen: ['/ip4/127.0.0.1/tcp/0'],
      chain: { deployment: deploymentFile },
      resources: { threads: 1, memoryGib: 1, diskGib: 1 },
      runtimes: { native: { sleep: sleepPath } },
      pricing: { model: 'per-task', perTaskHtt: '0.001' },
      idle: { enabled: false },
      ...(options.maxTotalDiskGib === undefined ? {} : { admission: { maxTotalDiskGib: options.maxTotalDiskGib } }),
    },
  })
  const node = await startProviderNode({
    dataDir,
    config,
    // The share check is about the machine the owner lends, not this test's: any machine lends this little.
    machine: { threads: 8, memoryGib: 16, freeDiskGib: 100 },
    ...(options.stopGraceMs === undefined ? {} : { stopGraceMs: options.stopGraceMs }),
  })
  after(() => node.stop())
  assert.ok(node.status().offer.runtimes.includes('native'), `native is not offered: ${node.status().offer.unavailable.join('; ')}`)
  return node
}

/** Stops the provider once the task has reached it and runs there (a task announced is not yet a task running). */
function stopWhenRunning(provider: ProviderNode): ReturnType<ProviderNode['stop']> {
  return (async () => {
    const deadline = Date.now() + 120_000
    while (provider.agent.running().tasks === 0) {
      if (Date.now() > deadline) throw new Error('the task never reached the provider')
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return provider.stop()
  })()
}

/** A fresh requestor that joins through the given providers and waits until it holds all their offers. */
async function startRequestor(name: string, providers: ProviderNode[]): Promise<RequestorNode> {
  const node = await startRequestorNode({
    dataDir: join(dir, name),
    bootstrap: providers.map((p) => p.multiaddrs()[0]!),
    rpcUrl: chain.url,
    deployment: chain.deployment,
    fund: { funderKey: devAccountKey(0), gasWei: parseEther('1'), tokensWei: parseEther('10') },
  })
  after(() => node.stop())
  for (const provider of providers) {
    await node.requestor.market.syncFrom(provider.multiaddrs()[0]!)
    await node.requestor.market.offerBook.waitFor(1, (offer) => offer.provider.toLowerCase() === provider.address.toLowerCase(), { signal: AbortSignal.timeout(10_000) })
  }
  return node
}

function sleepJob(tasks: JobSpec['tasks'], overrides: Partial<JobSpec> = {}): JobSpec {
  return {
    name: 'sleeps',
    runtime: 'native',
    program: 'sleep',
    tasks,
    providers: 1,
    maxPricePerTaskWei: parseEther('1'),
    timeoutMs: 60_000,
    maxMemoryBytes: 64 << 20,
    maxOutputBytes: 1 << 20,
    debitNoteIntervalSec: 0,
    ...overrides,
  }
}

const sleepTask = (seconds: string, inputBytes = 0): JobSpec['tasks'][number] => ({
  args: [seconds],
  env: {},
  inputs: inputBytes === 0 ? [] : [{ path: '/in/data.bin', data: new Uint8Array(inputBytes).fill(7) }],
  outputs: [],
})

test('stopped with a task running that ends within the grace period: the task completes, its result arrives, and it is paid on chain', async () => {
  const provider = await startProvider(1, { stopGraceMs: 30_000 })
  const requestor = await startRequestor('requestor-finish', [provider])
  let stopping: ReturnType<ProviderNode['stop']> | undefined
  const events: JobEvent[] = []
  const outcome = await requestor.requestor.runJob(sleepJob([sleepTask('2')], { maxAttempts: 1 }), {
    onEvent: (event) => {
      events.push(event)
      // The owner stops the provider while the two-second task runs.
      if (event.type === 'task-started') stopping ??= stopWhenRunning(provider)
    },
  })
  assert.ok(stopping !== undefined, 'the task never started')
  assert.deepEqual(outcome.failures, [])
  assert.equal(outcome.results[0]?.exitCode, 0)
  assert.equal(outcome.results[0]?.provider.toLowerCase(), provider.address.toLowerCase())
  const report = await stopping
  assert.equal(report.handedBack, 0)
  assert.equal(provider.agent.stats().tasksRun, 1)
  // New work was refused from the moment the stop began.
  assert.deepEqual(provider.agent.lending(), { paused: true, reason: 'the provider is stopping' })

  // What the task earned was claimed on chain before the node closed (by the stop itself, or by the requestor's
  // settlement that reached the provider before it closed).
  const agreementId = outcome.results[0]!.agreementId
  const escrow = await getEscrow(requestor.payment, { requestorAddress: requestor.identity.address, agreementId: agreementId as Hex })
  assert.ok(escrow !== undefined)
  assert.equal(escrow.claimedWei, perTaskWei, `events: ${JSON.stringify(events.filter((e) => e.type !== 'offers'))}\nstop: ${JSON.stringify(report)}`)
  assert.equal(escrow.providerAddress.toLowerCase(), provider.address.toLowerCase())
})

test('stopped with a task that would outlast the grace period: the task is handed back, done by another provider, and not billed', async () => {
  const providers = [await startProvider(2, { stopGraceMs: 300 }), await startProvider(3, { stopGraceMs: 300 })]
  const requestor = await startRequestor('requestor-handback', providers)
  const byAddress = new Map(providers.map((p) => [p.address.toLowerCase(), p]))
  let stopped: { node: ProviderNode; report: ReturnType<ProviderNode['stop']> } | undefined
  const events: JobEvent[] = []
  const outcome = await requestor.requestor.runJob(
    // Agreements with both; no replication, so the task runs on one provider at a time.
    sleepJob([sleepTask('3')], { providers: 2, maxAttempts: 2, verification: { adaptive: false } }),
    {
      onEvent: (event) => {
        events.push(event)
        // Whichever provider gets the three-second task first is stopped with 0.3 s of grace.
        if (event.type === 'task-started' && stopped === undefined) {
          const node = byAddress.get(event.provider.toLowerCase())!
          stopped = { node, report: stopWhenRunning(node) }
        }
      },
    },
  )
  assert.ok(stopped !== undefined, 'the task never started')
  const report = await stopped.report
  const other = providers.find((p) => p !== stopped!.node)!
  assert.equal(report.handedBack, 1)
  // The requestor was told to retry elsewhere, and did.
  const handedBack = events.find((e): e is Extract<JobEvent, { type: 'task-failed' }> => e.type === 'task-failed')
  assert.ok(handedBack !== undefined, JSON.stringify(events))
  assert.equal(handedBack.provider.toLowerCase(), stopped.node.address.toLowerCase())
  assert.match(handedBack.message, /not taking work now: the provider is stopping/)
  assert.equal(handedBack.willRetry, true)
  assert.deepEqual(outcome.failures, [])
  assert.equal(outcome.results[0]?.exitCode, 0)
  assert.equal(outcome.results[0]?.provider.toLowerCase(), other.address.toLowerCase())

  // Not billed: the stopped provider metered nothing, was sent no voucher, and claimed nothing on chain.
  assert.equal(stopped.node.agent.stats().tasksRun, 0)
  assert.deepEqual(report.claimed, [])
  assert.ok(!events.some((e) => e.type === 'voucher-delivered' && e.provider.toLowerCase() === stopped!.node.address.toLowerCase()))
  const agreements = new Map(outcome.agreements.map((a) => [a.provider.toLowerCase(), a]))
  const stoppedAgreement = agreements.get(stopped.node.address.toLowerCase())
  assert.ok(stoppedAgreement !== undefined)
  assert.equal(stoppedAgreement.tasks, 0)
  const unbilled = await getEscrow(requestor.payment, { requestorAddress: requestor.identity.address, agreementId: stoppedAgreement.agreementId })
  assert.equal(unbilled?.claimedWei, 0n)
  // The provider that did the task was paid for it.
  const paid = await getEscrow(requestor.payment, { requestorAddress: requestor.identity.address, agreementId: agreements.get(other.address.toLowerCase())!.agreementId })
  assert.equal(paid?.claimedWei, perTaskWei)
})

test('disk admission: a task bigger than all the disk lent is refused for good, one that fits only later waits for room, and the provider keeps serving', async () => {
  // About 1 MiB lent to all running tasks together: 0.001 GiB = 1073741 bytes.
  const provider = await startProvider(4, { maxTotalDiskGib: 0.001 })
  const lentBytes = Math.floor(0.001 * 1024 ** 3)
  const requestor = await startRequestor('requestor-disk', [provider])

  // A task's disk is its inputs' size plus its output allowance: 64 KiB + 1 MiB is more than all that is lent, so it
  // never fits here. It is refused (run it elsewhere) rather than left waiting for room that never comes.
  const tooBig = await requestor.requestor.runJob(sleepJob([sleepTask('0', 64 << 10)], { maxAttempts: 1 }))
  assert.equal(tooBig.results.filter((r) => r !== undefined).length, 0)
  const refusal = tooBig.failures[0]?.message ?? ''
  assert.match(refusal, /HEARTH_ERR_PROVIDER_TOO_SMALL/)
  assert.match(refusal, new RegExp(`no room for the task now \\(disk: 0 bytes in use \\+ ${(64 << 10) + (1 << 20)} asked > ${lentBytes} lent\\) and never will`))
  assert.equal(provider.agent.stats().tasksRun, 0)
  assert.equal(provider.agent.running().tasks, 0)
  assert.equal(provider.status().lending.active, true)

  // Two tasks of 1 KiB input + 600 KiB output allowance each: one fits, both together do not. The provider holds
  // two tasks at once (one more than its thread), so the second is refused as busy while the first runs, and runs
  // once the first has given its disk back.
  const perTaskBytes = 1024 + 600 * 1024
  const events: JobEvent[] = []
  const both = await requestor.requestor.runJob(sleepJob([sleepTask('1', 1024), sleepTask('1', 1024)], { maxAttempts: 1, maxOutputBytes: 600 * 1024 }), {
    onEvent: (event) => events.push(event),
  })
  assert.deepEqual(both.failures, [])
  assert.deepEqual(both.results.map((r) => r?.exitCode), [0, 0])
  const busy = events.filter((e): e is Extract<JobEvent, { type: 'task-failed' }> => e.type === 'task-failed')
  assert.ok(busy.length > 0, 'no task was refused for lack of disk')
  for (const event of busy) {
    assert.match(event.message, new RegExp(`HEARTH_ERR_PROVIDER_BUSY: this provider has no room for the task now \\(disk: ${perTaskBytes} bytes in use \\+ ${perTaskBytes} asked > ${lentBytes} lent\\)`))
    assert.equal(event.willRetry, true)
  }
  assert.equal(provider.agent.stats().tasksRun, 2)
  assert.equal(provider.agent.running().diskBytes, 0)
  assert.equal(provider.status().lending.active, true)
})
