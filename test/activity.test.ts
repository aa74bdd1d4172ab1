/** ExeScript activities end to end on the devnet: a real chain, a provider and a requestor over libp2p on 127.0.0.1. */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseEther, type Address } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { createBlobServer } from '../src/requestor/blob-server.ts'
import { isHearthError } from '../src/errors.ts'
import { sha256Hex } from '../src/exec/content-hash.ts'
import type { ExeEvent } from '../src/exec/exescript.ts'
import { adaptWasiRuntime } from '../src/exec/wasi-adapter.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { exeScriptGuest } from '../src/exec/testdata/exescript-guest.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { proposeTerms } from '../src/market/agreement.ts'
import { createHost } from '../src/net/host.ts'
import { createActivityService } from '../src/provider/activity-service.ts'
import { createActivity, type ActivityAgreement } from '../src/requestor/activity-client.ts'
import { negotiateMany, offerTarget } from '../src/requestor/negotiator.ts'
import { createPackageCache } from '../src/exec/package-cache.ts'

const text = (events: ExeEvent[], type: 'stdout' | 'stderr'): string =>
  events.filter((e) => e.type === type).map((e) => Buffer.from((e as { dataBase64: string }).dataBase64, 'base64').toString()).join('')

describe('ExeScript activities on the devnet', () => {
  let devnet: Devnet
  let guest: Uint8Array

  /** An agreement for `runtime` with the devnet's provider, its escrow open on chain. */
  async function agreementFor(runtime: 'wasi' | 'native'): Promise<ActivityAgreement> {
    const { requestor } = devnet
    const signed = devnet.providers[0]!.agent.currentOffer()!
    const negotiated = await negotiateMany({ host: requestor.host, identity: requestor.identity, store: requestor.store }, [signed], {
      need: 1,
      termsFor: (offer) => proposeTerms({ offer, requestor: requestor.identity.address, runtime, maxTasks: 20, taskTimeoutMs: 30_000, jobName: `activities ${runtime}` }),
      limits: { maxPerTaskWei: parseEther('1'), minDurationSec: 600, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 },
    })
    const [{ agreement, offer }] = negotiated.agreements as [(typeof negotiated.agreements)[0]]
    await requestor.agent.accounts.open([{ agreement, offer }])
    return { id: agreement.id, provider: offer.provider as Address, target: offerTarget(offer) }
  }

  const deps = () => ({ host: devnet.requestor.host, identity: devnet.requestor.identity, store: devnet.requestor.store, blobs: devnet.requestor.agent.blobs })
  const providerRecord = (id: string) => devnet.providers[0]!.store.activities.get('provider', id)

  before(async () => {
    guest = await exeScriptGuest()
    devnet = await startDevnet({ providers: 1, nativePrograms: { sh: '/bin/sh' } })
  })
  after(async () => {
    await devnet?.stop()
  })

  it('deploy → start → run with stdout streamed as it is written → transfer back → terminate, with states kept on both sides', async () => {
    const agreement = await agreementFor('wasi')
    let activityId: string
    {
      await using activity = await createActivity(deps(), agreement)
      activityId = activity.id
      assert.equal(providerRecord(activityId)?.state, 'New')
      const packageId = activity.provide(guest)
      const call = activity.exec([
        { deploy: { packageId } },
        { start: {} },
        { run: { args: ['lines', '6', '200000', 'lines.txt'], capture: { stderr: 'atEnd' } } },
        { transfer: { from: 'container:/lines.txt', to: 'requestor:' } },
      ])
      const events: ExeEvent[] = []
      for await (const event of call) events.push(event)
      const outcome = await call.result
      assert.deepEqual(outcome.results.map((r) => [r.command, r.ok]), [['deploy', true], ['start', true], ['run', true], ['transfer', true]])
      // Order, not timing: every stdout chunk came between the run's start and its end.
      const started = events.findIndex((e) => e.type === 'command-started' && e.command === 'run')
      const finished = events.findIndex((e) => e.type === 'command-finished' && e.command === 'run')
      const stdoutAt = events.flatMap((e, i) => (e.type === 'stdout' ? [i] : []))
      assert.ok(stdoutAt.length > 0 && stdoutAt.every((i) => i > started && i < finished), JSON.stringify(events.map((e) => e.type)))
      const expected = [1, 2, 3, 4, 5, 6].map((i) => `line ${i}\n`).join('')
      assert.equal(text(events, 'stdout'), expected)
      assert.equal(Buffer.from(outcome.results[2]!.stderrBase64!, 'base64').toString(), 'done\n')
      assert.deepEqual(events.filter((e) => e.type === 'state').map((e) => (e as { state: string }).state), ['Deploying', 'Initialized', 'Ready'])
      // The file came back whole and matches the content id the provider signed.
      assert.equal(outcome.files.length, 1)
      assert.equal(Buffer.from(outcome.files[0]!.bytes).toString(), expected)
      assert.equal(outcome.files[0]!.contentId, sha256Hex(expected))
      assert.equal(activity.state(), 'Ready')
      assert.equal(providerRecord(activityId)?.state, 'Ready')
      assert.equal(providerRecord(activityId)?.batchIds.length, 1)
    }
    // `await using` terminated it: both sides agree, and the provider metered it.
    const provider = providerRecord(activityId)!
    assert.equal(provider.state, 'Terminated')
    assert.ok(provider.usage !== null && provider.usage.cpuSec > 0 && provider.usage.durationSec > 0, JSON.stringify(provider.usage))
    const requestor = devnet.requestor.store.activities.get('requestor', activityId)!
    assert.equal(requestor.state, 'Terminated')
    assert.deepEqual(requestor.usage, provider.usage)
  })

  it('hostile batches get clear errors and the provider keeps serving', async () => {
    const agreement = await agreementFor('wasi')
    await using activity = await createActivity(deps(), agreement)
    const packageId = activity.provide(guest)
    // An unknown command: the whole batch is refused before anything runs.
    await assert.rejects(activity.exec([{ deploy: { packageId } }, { format: { disk: '/' } }]).result, (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_NET_REMOTE'), String(error))
      assert.equal(error.details?.remoteCode, 'HEARTH_ERR_EXEC_BATCH_INVALID')
      assert.match(error.message, /"format"/)
      return true
    })
    assert.equal(activity.state(), 'New')
    const ready = await activity.exec([{ deploy: { packageId } }, { start: {} }]).result
    assert.equal(ready.state, 'Ready')
    // A path out of the activity directory.
    const escape = await activity.exec([{ transfer: { from: 'container:/../../../etc/passwd', to: 'requestor:' } }]).result
    assert.equal(escape.results[0]!.error?.code, 'HEARTH_ERR_EXEC_PATH_INVALID')
    assert.equal(escape.files.length, 0)
    // Output without end, stopped at the run's cap.
    const spam = await activity.exec([{ run: { args: ['spam'], maxOutputBytes: 512 * 1024 } }]).result
    assert.equal(spam.results[0]!.error?.code, 'HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE')
    // Still alive, on this activity and for new ones (where a run before deploy is refused by the state machine).
    const after = activity.exec([{ run: { args: ['lines', '2', '1'] } }])
    const events: ExeEvent[] = []
    for await (const event of after) events.push(event)
    assert.equal((await after.result).results[0]!.ok, true)
    assert.equal(text(events, 'stdout'), 'line 1\nline 2\n')
    await using other = await createActivity(deps(), agreement)
    const early = await other.exec([{ run: { args: ['lines', '1', '1'] } }]).result
    assert.equal(early.results[0]!.error?.code, 'HEARTH_ERR_EXEC_ACTIVITY_STATE')
  })

  it('a requestor that aborts a batch terminates the activity on the provider', async () => {
    const agreement = await agreementFor('wasi')
    const activity = await createActivity(deps(), agreement)
    const packageId = activity.provide(guest)
    await activity.exec([{ deploy: { packageId } }, { start: {} }]).result
    const controller = new AbortController()
    // The program prints one line and then never ends: that line can only have come while it ran.
    const call = activity.exec([{ run: { args: ['stream', 'still running'] } }], { signal: controller.signal })
    const seen: ExeEvent[] = []
    await assert.rejects(
      (async () => {
        for await (const event of call) {
          seen.push(event)
          if (event.type === 'stdout') controller.abort(new Error('the user pressed ctrl-c'))
        }
      })(),
      /ctrl-c/,
    )
    await assert.rejects(call.result, /ctrl-c/)
    assert.equal(text(seen, 'stdout'), 'still running\n')
    assert.equal(seen.some((e) => e.type === 'command-finished'), false)
    const deadline = Date.now() + 120_000
    while (providerRecord(activity.id)?.state !== 'Terminated') {
      assert.ok(Date.now() < deadline, `the provider still has the activity as ${providerRecord(activity.id)?.state}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.match(providerRecord(activity.id)!.lastError ?? '', /aborted|cancel|went away/)
    assert.equal(activity.state(), 'Terminated')
    assert.equal(devnet.requestor.store.activities.get('requestor', activity.id)?.state, 'Terminated')
    await assert.rejects(activity.exec([{ run: { args: ['lines', '1', '1'] } }]).result, (error) => isHearthError(error, 'HEARTH_ERR_EXEC_ACTIVITY_STATE'))
    // Terminating an ended activity asks nothing of the provider.
    assert.equal(await activity.terminate(), undefined)
  })

  it('streams a native program (bubblewrap) as it runs', async (t) => {
    const offer = devnet.providers[0]!.agent.currentOffer()!.payload
    if (!(offer.properties['golem.runtime.name'] as string[]).includes('native')) {
      return t.skip(`native is not offered here: ${String(offer.properties['hearth.runtime.unavailable'])}`)
    }
    const agreement = await agreementFor('native')
    await using activity = await createActivity(deps(), agreement)
    const call = activity.exec([
      { deploy: { program: 'sh' } },
      { start: {} },
      { run: { args: ['-c', 'for i in 1 2 3; do echo native $i; sleep 0.05; done; echo warn >&2; echo result > out.txt'] } },
      { transfer: { from: 'container:/out.txt', to: 'requestor:' } },
    ])
    const events: ExeEvent[] = []
    for await (const event of call) events.push(event)
    const outcome = await call.result
    assert.deepEqual(outcome.results.map((r) => r.ok), [true, true, true, true], JSON.stringify(outcome.results))
    assert.equal(text(events, 'stdout'), 'native 1\nnative 2\nnative 3\n')
    assert.equal(text(events, 'stderr'), 'warn\n')
    const finished = events.findIndex((e) => e.type === 'command-finished' && e.command === 'run')
    assert.ok(events.findLastIndex((e) => e.type === 'stdout') < finished)
    assert.equal(Buffer.from(outcome.files[0]!.bytes).toString(), 'result\n')
    // A program the provider does not offer.
    await using refused = await createActivity(deps(), agreement)
    const denied = await refused.exec([{ deploy: { program: 'bash' } }]).result
    assert.equal(denied.results[0]!.error?.code, 'HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED')
    assert.equal(denied.state, 'New')
  })

  it('activities of a requestor without an agreement, or under another requestor\'s, are refused', async () => {
    const agreement = await agreementFor('wasi')
    await assert.rejects(createActivity(deps(), { ...agreement, id: `0x${'ab'.repeat(32)}` }), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_NET_REMOTE'))
      assert.equal(error.details?.remoteCode, 'HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN')
      return true
    })
    const strangerIdentity = generateIdentity()
    const stranger = await createHost({ identity: strangerIdentity })
    await stranger.start()
    try {
      await assert.rejects(createActivity({ host: stranger, identity: strangerIdentity, blobs: createBlobServer({ host: stranger }) }, agreement), (error) => {
        assert.ok(isHearthError(error, 'HEARTH_ERR_NET_REMOTE'))
        assert.equal(error.details?.remoteCode, 'HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN')
        assert.match(error.message, /another requestor/)
        return true
      })
    } finally {
      await stranger.stop()
    }
  })

  it('a provider restarting marks the activities that were running as Unresponsive', async () => {
    const { store } = devnet.providers[0]!
    // As a crash leaves it: an activity recorded as running, and no one who ended it.
    store.activities.create({ role: 'provider', id: 'crashed-1', agreementId: '0x01', peer: devnet.requestor.identity.address, state: 'Ready', createdAtMs: Date.now() })
    const identity = generateIdentity()
    const host = await createHost({ identity })
    await host.start()
    const dir = await mkdtemp(join(tmpdir(), 'hearth-activity-restart-'))
    const wasi = adaptWasiRuntime(createWasiRuntime({ maxWorkers: 1 }))
    const service = createActivityService({
      host,
      identity,
      store,
      activitiesDir: join(dir, 'exescript'),
      packages: createPackageCache({ dir: join(dir, 'packages'), maxBytes: 1 << 30, maxEntries: 16 }),
      fetching: new Map(),
      account: () => {
        throw new Error('unused')
      },
      runtimes: { wasi },
    })
    try {
      await service.start()
      const record = store.activities.get('provider', 'crashed-1')!
      assert.equal(record.state, 'Unresponsive')
      assert.match(record.lastError ?? '', /restarted/)
    } finally {
      await service.stop()
      await wasi.close()
      await host.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
