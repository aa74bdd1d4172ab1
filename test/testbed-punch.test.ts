/**
 * Hole punching on the testbed (src/testbed): a provider and a requestor each behind its own cone NAT, who punch a
 * direct connection and carry on when their relay dies (port mapping: testbed-mapping.test.ts). Every node is its own
 * OS process in its own network namespace. Needs root (CI runs as root), iproute2, iptables and a C compiler; it
 * fails, never skips, where they are missing.
 */
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { RunReport } from '../src/cli/run-job.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { decodePng } from '../src/jobs/png.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { fileTestbed, hearthBin } from './support/testbed-nodes.ts'

const renderWasm = fileURLToPath(new URL('../build/workloads/render.wasm', import.meta.url))

const { testbed, dir, nodes } = await fileTestbed('hp', 'punch', {
  regions: { eu: {} },
  rttMs: {},
  hosts: [
    { name: 'chain', region: 'eu' },
    { name: 'relay', region: 'eu' },
    // Two home networks behind cone NATs, met through the relay: they punch a direct connection.
    { name: 'natc', region: 'eu', nat: 'cone' },
    { name: 'req', region: 'eu', nat: 'cone' },
  ],
})

test('two nodes behind NATs punch a direct connection: the job goes around the relay and survives its death', async (t) => {
  const { deployment, funderKey } = await nodes.chain('chain')
  let relayNode = await nodes.relay('relay')
  const relayAddress = relayNode.address
  await nodes.provider('natc', deployment, [relayAddress])
  const natc = await nodes.waitForStatus('natc', (s) => s.network.reachability.kind === 'private' && s.offer.relayed, 'the NATed provider offers through a relay')
  // Behind a cone NAT it can be hole-punched: relayed, but not relay only.
  assert.equal(natc.offer.relayOnly, false)
  const natcIs = (p: { address: string }): boolean => p.address.toLowerCase() === natc.address.toLowerCase()

  // A render from a requestor behind another NAT; the relay is killed (SIGKILL) once tasks run. The requestor waited
  // for the punch before it sent them, so the job completes over the punched connection, exact and paid.
  const width = 320
  const height = 240
  const job = join(dir, 'render.json')
  await writeFile(job, JSON.stringify({ kind: 'render', name: 'render past a dead relay', runtime: 'wasi', package: renderWasm, width, height, tiles: 48, output: 'render.png', providers: 1 }))
  const renderOut = join(dir, 'out-render')
  const requestor = testbed.exec('req', process.execPath, [
    hearthBin, 'run', job, '--providers', '1', '--json', '--out', renderOut, '--data-dir', join(dir, 'requestor-render'),
    '--bootstrap', relayAddress, '--deployment', deployment, '--funder-key-file', funderKey,
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  requestor.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  // 'close', not 'exit': every line of its output has been read by then.
  const exited = new Promise<number | null>((resolve) => requestor.once('close', resolve))
  const steps: string[] = []
  const running = new Promise<void>((resolve) =>
    createInterface({ input: requestor.stderr! }).on('line', (line) => {
      steps.push(line)
      if (/running \d+ /.test(line)) resolve()
    }),
  )
  await Promise.race([running, exited])
  // The requestor waits for the punch it asked before it sends tasks: they go over the punched connection.
  assert.ok(steps.some((line) => line.toLowerCase().includes(`${natc.address.toLowerCase()} is reached directly, hole-punched`)), steps.join('\n'))
  const relayGone = new Promise((resolve) => relayNode.child.once('exit', resolve))
  relayNode.child.kill('SIGKILL')
  await relayGone
  const killedAt = steps.length
  assert.equal(await exited, 0, steps.join('\n'))
  const renderReport = JSON.parse(stdout) as RunReport
  assert.deepEqual(renderReport.failures, [])
  // The tasks ran to their end after the relay died: the job was not over when it was killed.
  assert.ok(steps.slice(killedAt).some((line) => /settling agreements/.test(line)), steps.join('\n'))
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  t.after(() => runtime.close())
  assert.deepEqual(decodePng(await readFile(join(renderOut, 'render.png'))).rgb, await renderLocally({ runtime, width, height }))
  assert.deepEqual(renderReport.audit.problems, [])
  const rendered = renderReport.providers.find(natcIs)
  assert.ok(rendered !== undefined && rendered.tasks > 0, JSON.stringify(renderReport.providers))
  assert.equal(rendered.connection, 'hole-punched')
  assert.equal(rendered.balanceDeltaWei, rendered.paidWei)

  // The relay comes back under the same identity; the provider reserves again, and a word count from behind the
  // requestor's NAT goes over a punched connection: the relay carries the meeting only, under 1 MiB of the job.
  relayNode = await nodes.relay('relay')
  await nodes.waitForStatus('natc', (s) => s.network.reachability.relays.some((r) => r.reserved), 'the provider reserves on the restarted relay')
  const { report, stderr } = await nodes.wordcount('req', { name: 'punched', providers: 1, bootstrap: relayAddress, deployment, funderKey })
  assert.deepEqual(report.audit.problems, [])
  const punched = report.providers.find(natcIs)
  assert.ok(punched !== undefined && punched.tasks > 0, JSON.stringify(report.providers))
  assert.equal(punched.connection, 'hole-punched', stderr)
  assert.ok(BigInt(punched.paidWei) > 0n)
  assert.equal(punched.balanceDeltaWei, punched.paidWei)

  const exitedRelay = new Promise<number | null>((resolve) => relayNode.child.once('exit', resolve))
  relayNode.child.kill('SIGTERM')
  assert.equal(await exitedRelay, 0)
  const stopped = relayNode.lines.at(-1) as { event: string; relayedBytes: number }
  assert.equal(stopped.event, 'stopped')
  t.diagnostic(`the relay carried ${stopped.relayedBytes} bytes of the word count`)
  assert.ok(stopped.relayedBytes > 0 && stopped.relayedBytes < 1024 * 1024, JSON.stringify(stopped))
})
