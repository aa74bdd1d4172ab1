/**
 * Churn across NATs, on the testbed (src/testbed): three providers each behind its own home router (two cone NATs, to
 * which the requestor punches direct connections, and a symmetric one, reached through the Hearth relay only), a
 * requestor behind another, and every 2.5 s one provider killed with SIGKILL and started again from its data directory
 * (same key, same database), as home machines restart. The render must come out exactly as one process renders it,
 * and the money read from the chain must add up. The seed (printed; `CHAOS_SEED=N` replays it) picks the victims.
 */
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { RunReport } from '../src/cli/run-job.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { decodePng } from '../src/jobs/png.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { seededRandom } from '../src/seeded-random.ts'
import { fileTestbed, hearthBin } from './support/testbed-nodes.ts'

const renderWasm = fileURLToPath(new URL('../build/workloads/render.wasm', import.meta.url))
const providers = [
  { name: 'home0', nat: 'cone' as const },
  { name: 'home1', nat: 'symmetric' as const },
  { name: 'home2', nat: 'cone' as const },
]
const killEveryMs = 2_500
const width = 800
const height = 600

const { testbed, dir, nodes } = await fileTestbed('hc', 'chaos', {
  regions: { eu: {} },
  rttMs: {},
  hosts: [{ name: 'chain', region: 'eu' }, { name: 'relay', region: 'eu' }, { name: 'req', region: 'eu', nat: 'cone' }, ...providers.map((p) => ({ ...p, region: 'eu' }))],
})

test('providers behind NATs killed and restarted every 2.5 s through a render: the image is exact and the money adds up', { timeout: 600_000 }, async (t) => {
  const seed = process.env['CHAOS_SEED'] === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(process.env['CHAOS_SEED'])
  const random = seededRandom(seed)
  t.diagnostic(`chaos seed ${seed} (replay: CHAOS_SEED=${seed})`)

  const chain = await nodes.chain('chain', providers.length)
  const relay = await nodes.relay('relay')
  const keys = new Map(providers.map((p, i) => [p.name, chain.keys[i]!]))
  const running = new Map(await Promise.all(providers.map(async (p) => [p.name, (await nodes.provider(p.name, chain.deployment, [relay.address], keys.get(p.name))).child] as const)))

  const job = join(dir, 'render.json')
  await writeFile(job, JSON.stringify({ kind: 'render', name: 'chaos across NATs', runtime: 'wasi', package: renderWasm, width, height, tiles: 120, output: 'render.png', providers: 3, timeoutMs: 60_000 }))
  const out = join(dir, 'out')
  const requestor = testbed.exec('req', process.execPath, [
    hearthBin, 'run', job, '--providers', '3', '--json', '--out', out, '--data-dir', join(dir, 'requestor'),
    '--bootstrap', relay.address, '--deployment', chain.deployment, '--funder-key-file', chain.funderKey,
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  requestor.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  const steps: string[] = []
  const exited = new Promise<number | null>((resolve) => requestor.once('exit', resolve))

  // The chaos starts once tasks run, and lasts until the requestor is done (settlement included).
  const chaosLog: string[] = []
  const started = performance.now()
  const at = (): string => `${((performance.now() - started) / 1000).toFixed(1)}s`
  let chaosOn = true
  const tasksRunning = new Promise<void>((resolve) =>
    createInterface({ input: requestor.stderr! }).on('line', (line) => {
      steps.push(line)
      if (/running \d+ /.test(line)) resolve()
    }),
  )
  const chaos = (async () => {
    await Promise.race([tasksRunning, exited])
    const restarts: Promise<unknown>[] = []
    while (chaosOn) {
      const victim = providers[Math.floor(random() * providers.length)]!.name
      chaosLog.push(`${at()} kill ${victim}`)
      const child = running.get(victim)!
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGKILL')
        await gone
      }
      const restarted = nodes.provider(victim, chain.deployment, [relay.address], keys.get(victim)).then(
        (node) => {
          running.set(victim, node.child)
          chaosLog.push(`${at()} ${victim} up`)
        },
        () => chaosLog.push(`${at()} ${victim} killed while starting`),
      )
      restarts.push(restarted)
      // The next victim may be one still starting: wait for it to be up (or dead) before it can be killed again.
      await Promise.race([Promise.all([restarted, new Promise((resolve) => setTimeout(resolve, killEveryMs))]), exited])
    }
    await Promise.all(restarts)
  })()

  const code = await exited
  chaosOn = false
  await chaos
  t.diagnostic(`chaos: ${chaosLog.join(', ')}`)
  const context = `${steps.slice(-40).join('\n')}\nchaos: ${chaosLog.join(', ')}`
  assert.equal(code, 0, context)
  const report = JSON.parse(stdout) as RunReport
  assert.deepEqual(report.failures, [], context)
  assert.ok(chaosLog.some((line) => / kill /.test(line)), context)

  // The picture is the one-process render, pixel for pixel.
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  const image = decodePng(await readFile(join(out, 'render.png')))
  assert.deepEqual(image.rgb, await renderLocally({ runtime, width, height }))
  // Deposits, claims, refunds and balances read from the chain add up, whoever was down at settlement.
  assert.deepEqual(report.audit.problems, [], context)
})
