/**
 * Providers as their own processes (`hearth provider start`), one of them killed with SIGKILL in the middle of a job:
 * the requestor loses no task. The tiles it held are run again elsewhere, and the picture is the one-process render.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { PassThrough } from 'node:stream'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseEther } from 'viem'
import { devAccountKey, startChain } from '../src/cli/chain-command.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { assembleRender, renderJob } from '../src/jobs/render-job.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { startRequestorNode } from '../src/requestor/requestor-node.ts'

const hearth = fileURLToPath(new URL('../bin/hearth.js', import.meta.url))

interface Ready {
  event: 'ready'
  address: string
  multiaddrs: string[]
}

async function startProvider(dataDir: string, deployment: string): Promise<{ child: ChildProcess; ready: Ready }> {
  const args = ['provider', 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-idle', '--deployment', deployment, '--threads', '1', '--memory-gib', '1', '--disk-gib', '1']
  const child = spawn(process.execPath, [hearth, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  after(() => void (child.exitCode === null && child.signalCode === null ? child.kill('SIGKILL') : undefined))
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const ready = await new Promise<Ready>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as { event: string }
      if (parsed.event === 'ready') resolve(parsed as Ready)
    })
    child.once('exit', (code) => reject(new Error(`provider exited with ${code} before it was ready:\n${stderr}`)))
  })
  return { child, ready }
}

test('a provider process killed mid-job loses no task: its tiles are redone elsewhere and the image is exact', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-provider-kill-'))
  after(() => rm(dir, { recursive: true, force: true }))
  const deployment = join(dir, 'deployment.json')
  const chain = await startChain({ port: 0, accounts: 1, deploymentOut: deployment }, { stdout: new PassThrough(), stderr: new PassThrough() })
  after(() => chain.close())

  const providers = await Promise.all([0, 1, 2].map((i) => startProvider(join(dir, `provider-${i}`), deployment)))
  const node = await startRequestorNode({
    dataDir: join(dir, 'requestor'),
    bootstrap: providers.map((p) => p.ready.multiaddrs[0]!),
    rpcUrl: chain.url,
    deployment: chain.deployment,
    fund: { funderKey: devAccountKey(0), gasWei: parseEther('1'), tokensWei: parseEther('100') },
  })
  after(() => node.stop())

  const width = 320
  const height = 240
  const { spec, tiles } = renderJob({ width, height, tiles: 30, wasm: await loadBuiltinWorkload('render'), providers: 3, maxPricePerTaskWei: parseEther('1') })
  const victim = providers[0]!
  let killedAfter: number | undefined
  let startedOnVictim = 0
  const outcome = await node.requestor.runJob(
    { ...spec, offerWaitMs: 10_000 },
    {
      onEvent: (event) => {
        if (event.type === 'task-started' && killedAfter === undefined && event.provider.toLowerCase() === victim.ready.address.toLowerCase()) startedOnVictim++
        // Killed as soon as it has delivered one tile, so it holds work when it dies.
        if (event.type === 'task-done' && killedAfter === undefined && event.agreeing?.some((p) => p.toLowerCase() === victim.ready.address.toLowerCase())) {
          killedAfter = event.done
          victim.child.kill('SIGKILL')
        }
      },
    },
  )
  assert.ok(killedAfter !== undefined && killedAfter < tiles.length, `killed after ${killedAfter} of ${tiles.length}`)
  assert.equal(victim.child.signalCode, 'SIGKILL')
  assert.deepEqual(outcome.failures, [])
  assert.ok(outcome.results.every((r) => r !== undefined))
  // The tiles were finished by the providers still alive; the dead one is credited only with tiles it was sent
  // before it died (several may come back in one answer), and all it still held was retried elsewhere.
  const credited = outcome.results.filter((r) => r!.provider.toLowerCase() === victim.ready.address.toLowerCase()).length
  assert.ok(credited <= startedOnVictim && startedOnVictim < tiles.length, `${credited} tiles credited to the killed provider, ${startedOnVictim} sent to it`)

  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  const image = assembleRender(width, height, tiles, outcome)
  assert.ok(Buffer.from(image).equals(Buffer.from(await renderLocally({ runtime, width, height }))))
})
