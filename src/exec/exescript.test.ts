import assert from 'node:assert/strict'
import { lstat, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { HearthError, isHearthError } from '../errors.ts'
import { sha256Hex } from './content-hash.ts'
import { createActivity, parseBatch } from './exescript.ts'
import type { Activity, ActivityState, ExeEvent, ExeScriptEnvironment } from './exescript.ts'
import { createNativeRuntime } from './native-runtime.ts'
import type { Runtime } from './runtime.ts'
import { exeScriptGuest } from './testdata/exescript-guest.ts'
import { adaptWasiRuntime } from './wasi-adapter.ts'
import { createWasiRuntime } from './wasi-runtime.ts'

const MiB = 1 << 20

describe('ExeScript batches over the wasi runtime', () => {
  let base: string
  let guest: Uint8Array
  let guestId: string
  const runtime = adaptWasiRuntime(createWasiRuntime({ maxWorkers: 2 }))
  const blobs = new Map<string, Uint8Array>()
  let count = 0

  const environment: ExeScriptEnvironment = {
    async resolveDeploy(deploy) {
      const bytes = deploy.packageId === undefined ? undefined : blobs.get(deploy.packageId)
      if (bytes === undefined) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'no such package')
      return { runtime: runtime as Runtime<unknown>, program: bytes, argv0: 'guest' }
    },
    async fetchBlob(contentId) {
      const bytes = blobs.get(contentId)
      if (bytes === undefined) throw new HearthError('HEARTH_ERR_NET_REMOTE', `the requestor holds no ${contentId}`)
      const path = join(base, 'cache', contentId.replace(':', '-'))
      await mkdir(join(base, 'cache'), { recursive: true })
      await writeFile(path, bytes)
      return path
    },
  }

  function newActivity(limits: Partial<Parameters<typeof createActivity>[0]['limits']> = {}): { activity: Activity; states: ActivityState[]; dir: string } {
    const states: ActivityState[] = []
    const dir = join(base, `activity-${count++}`)
    const activity = createActivity({
      id: `a-${count}`,
      dir,
      environment,
      limits: { maxMemoryBytes: 64 * MiB, maxRunMs: 20_000, maxOutputBytes: 4 * MiB, maxTransferBytes: 4 * MiB, ...limits },
      onState: (state) => states.push(state),
    })
    return { activity, states, dir }
  }

  async function exec(activity: Activity, batch: unknown[], signal = new AbortController().signal) {
    const events: ExeEvent[] = []
    const outcome = await activity.exec(batch, { signal, emit: async (event) => void events.push(event) })
    return { outcome, events }
  }

  const deployAndStart = [{ deploy: { packageId: '' } }, { start: {} }]

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'hearth-exescript-'))
    guest = await exeScriptGuest()
    guestId = sha256Hex(guest)
    blobs.set(guestId, guest)
    deployAndStart[0] = { deploy: { packageId: guestId } }
  })
  after(async () => {
    await runtime.close()
    await rm(base, { recursive: true, force: true })
  })

  it('deploys, starts, runs with streamed stdout, transfers a file back and terminates', async () => {
    const { activity, states, dir } = newActivity()
    const { outcome, events } = await exec(activity, [
      ...deployAndStart,
      // The guest opens paths relative to its root.
      { run: { args: ['lines', '5', '100000', 'lines.txt'], capture: { stderr: 'atEnd' } } },
      { transfer: { from: 'container:/lines.txt', to: 'requestor:' } },
      { terminate: {} },
    ])
    const expected = [1, 2, 3, 4, 5].map((i) => `line ${i}\n`).join('')
    assert.deepEqual(outcome.results.map((r) => [r.command, r.ok]), [['deploy', true], ['start', true], ['run', true], ['transfer', true], ['terminate', true]])
    assert.equal(outcome.state, 'Terminated')
    assert.deepEqual(states, ['Deploying', 'Initialized', 'Ready', 'Terminated'])
    // stdout comes as events between the run's start and its end; stderr was asked for at the end.
    const runStart = events.findIndex((e) => e.type === 'command-started' && e.command === 'run')
    const runEnd = events.findIndex((e) => e.type === 'command-finished' && e.command === 'run')
    const chunks = events.map((e, i) => ({ e, i })).filter(({ e }) => e.type === 'stdout')
    assert.ok(chunks.length > 0 && chunks.every(({ i }) => i > runStart && i < runEnd), 'stdout events sit inside the run')
    assert.equal(chunks.map(({ e }) => Buffer.from((e as { dataBase64: string }).dataBase64, 'base64').toString()).join(''), expected)
    assert.equal(events.some((e) => e.type === 'stderr'), false)
    assert.equal(Buffer.from(outcome.results[2]!.stderrBase64!, 'base64').toString(), 'done\n')
    const file = Buffer.concat(events.filter((e) => e.type === 'file').map((e) => Buffer.from((e as { dataBase64: string }).dataBase64, 'base64')))
    assert.equal(file.toString(), expected)
    assert.equal(outcome.results[3]!.contentId, sha256Hex(file))
    assert.ok(outcome.usage.cpuSec > 0)
    assert.equal(await lstat(dir).catch(() => undefined), undefined, 'the activity directory is gone')
    await assert.rejects(exec(activity, [{ start: {} }]), (error) => isHearthError(error, 'HEARTH_ERR_EXEC_ACTIVITY_STATE'))
  })

  it('transfers a blob in by content id, and batches continue the same activity', async () => {
    const { activity } = newActivity()
    const text = 'hello from the requestor\n'
    const id = sha256Hex(text)
    blobs.set(id, Buffer.from(text))
    await exec(activity, deployAndStart)
    assert.equal(activity.state(), 'Ready')
    const { outcome, events } = await exec(activity, [{ transfer: { from: `blob:${id}`, to: 'container:/in/greeting.txt' } }, { run: { args: ['cat', 'in/greeting.txt'] } }])
    assert.deepEqual(outcome.results.map((r) => r.ok), [true, true])
    assert.equal(outcome.results[0]!.contentId, id)
    assert.equal(events.filter((e) => e.type === 'stdout').map((e) => Buffer.from((e as { dataBase64: string }).dataBase64, 'base64').toString()).join(''), text)
    await activity.terminate('test done')
  })

  it('refuses hostile batches with clear errors and keeps working', async () => {
    const { activity } = newActivity({ maxOutputBytes: 256 * 1024 })
    // Nothing of a malformed batch runs.
    await assert.rejects(exec(activity, [...deployAndStart, { format: { disk: '/' } }]), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_EXEC_BATCH_INVALID'))
      assert.match(error.message, /command 2 of the batch is "format"; expected one of deploy, start, run, transfer, serve, logs, terminate/)
      return true
    })
    assert.throws(() => parseBatch([{ run: { args: 'not a list' } }]), /command 0 \(run\) is malformed: args/)
    assert.equal(activity.state(), 'New')
    // Commands out of order fail and end the batch.
    const early = await exec(activity, [{ run: { args: ['lines', '1', '1'] } }, { deploy: { packageId: guestId } }])
    assert.equal(early.outcome.results.length, 1)
    assert.equal(early.outcome.results[0]!.error?.code, 'HEARTH_ERR_EXEC_ACTIVITY_STATE')
    await exec(activity, deployAndStart)
    for (const path of ['container:/../../etc/passwd', 'container:/a/../../b']) {
      const { outcome } = await exec(activity, [{ transfer: { from: path, to: 'requestor:' } }])
      assert.equal(outcome.results[0]!.error?.code, 'HEARTH_ERR_EXEC_PATH_INVALID', path)
      assert.equal(activity.state(), 'Ready')
    }
    // A symlink inside the activity directory that leads out of it.
    await symlink('/etc', join(base, `activity-${count - 1}`, 'root', 'escape'))
    const viaLink = await exec(activity, [{ transfer: { from: 'container:/escape/hostname', to: 'requestor:' } }])
    assert.equal(viaLink.outcome.results[0]!.error?.code, 'HEARTH_ERR_EXEC_PATH_INVALID')
    assert.match(viaLink.outcome.results[0]!.error!.message, /symlink/)
    const intoLink = await exec(activity, [{ transfer: { from: `blob:${guestId}`, to: 'container:/escape/evil' } }])
    assert.equal(intoLink.outcome.results[0]!.error?.code, 'HEARTH_ERR_EXEC_PATH_INVALID')
    await rm(join(base, `activity-${count - 1}`, 'root', 'escape'))
    const badTransfer = await exec(activity, [{ transfer: { from: 'https://example.org/x', to: 'container:/x' } }])
    assert.equal(badTransfer.outcome.results[0]!.error?.code, 'HEARTH_ERR_EXEC_BATCH_INVALID')
    // Output past the cap stops the program.
    const spam = await exec(activity, [{ run: { args: ['spam'] } }, { run: { args: ['lines', '1', '1'] } }])
    assert.equal(spam.outcome.results.length, 1)
    assert.equal(spam.outcome.results[0]!.error?.code, 'HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE')
    // A non-zero exit code is a failed command with its code.
    const exit = await exec(activity, [{ run: { args: ['exit', '3'] } }])
    assert.equal(exit.outcome.results[0]!.exitCode, 3)
    assert.equal(exit.outcome.results[0]!.ok, false)
    // A provider that hosts no services refuses `serve`, and a malformed one is refused whole.
    const serve = await exec(activity, [{ serve: { port: 8080, args: ['serve'] } }])
    assert.equal(serve.outcome.results[0]!.error?.code, 'HEARTH_ERR_SERVICE_NOT_HOSTED')
    assert.equal(activity.served(), undefined)
    assert.throws(() => parseBatch([{ serve: { port: 70_000 } }]), /command 0 \(serve\) is malformed: port/)
    assert.throws(() => parseBatch([{ serve: { port: 80, gateways: ['not an address'] } }]), /gateways/)
    // And the activity still works.
    const fine = await exec(activity, [{ run: { args: ['lines', '2', '1'] } }])
    assert.equal(fine.outcome.results[0]!.ok, true)
    assert.equal(activity.state(), 'Ready')
    await activity.terminate('test done')
  })

  it('aborting a batch mid-run stops the program and terminates the activity', async () => {
    const { activity, states, dir } = newActivity()
    await exec(activity, deployAndStart)
    const controller = new AbortController()
    const events: ExeEvent[] = []
    const running = activity.exec([{ run: { args: ['stream', 'started'] } }], {
      signal: controller.signal,
      emit: async (event) => {
        events.push(event)
        // The program is still running (it never ends by itself): its first line arrived as an event.
        if (event.type === 'stdout') controller.abort(new Error('the requestor went away'))
      },
    })
    await assert.rejects(running, /the requestor went away/)
    assert.equal(activity.state(), 'Terminated')
    assert.equal(states.at(-1), 'Terminated')
    assert.equal(events.some((e) => e.type === 'command-finished'), false)
    assert.equal(await lstat(dir).catch(() => undefined), undefined)
  })
})

describe('ExeScript over the native runtime (bubblewrap)', () => {
  const native = createNativeRuntime({ programs: ['/bin/sh'] })
  let base: string
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'hearth-exescript-native-'))
  })
  after(async () => {
    await native.close()
    await rm(base, { recursive: true, force: true })
  })

  it('streams a native program\'s output as it runs', async (t) => {
    const availability = await native.available()
    if (!availability.ok) return t.skip(availability.reason)
    const activity = createActivity({
      id: 'native-1',
      dir: join(base, 'a'),
      environment: {
        resolveDeploy: async () => ({ runtime: native as Runtime<unknown>, program: '/bin/sh', argv0: '/bin/sh' }),
        fetchBlob: () => Promise.reject(new Error('unused')),
      },
      limits: { maxMemoryBytes: 256 * MiB, maxRunMs: 20_000, maxOutputBytes: MiB, maxTransferBytes: MiB },
    })
    const events: ExeEvent[] = []
    const outcome = await activity.exec(
      [{ deploy: { program: 'sh' } }, { start: {} }, { run: { args: ['-c', 'for i in 1 2 3; do echo native $i; sleep 0.1; done; echo oops >&2; exit 0'] } }],
      { signal: new AbortController().signal, emit: async (event) => void events.push(event) },
    )
    assert.equal(outcome.results[2]!.ok, true, JSON.stringify(outcome.results[2]))
    const text = (type: string): string => events.filter((e) => e.type === type).map((e) => Buffer.from((e as { dataBase64: string }).dataBase64, 'base64').toString()).join('')
    assert.equal(text('stdout'), 'native 1\nnative 2\nnative 3\n')
    assert.equal(text('stderr'), 'oops\n')
    const finished = events.findIndex((e) => e.type === 'command-finished' && e.command === 'run')
    assert.ok(events.findLastIndex((e) => e.type === 'stdout') < finished)
    await activity.terminate('done')
  })
})
