/**
 * Hearth across a NAT, on the testbed (src/testbed): every node its own OS process in its own network namespace, the
 * chain served by JSON-RPC from another host, a relay on the public network, a provider with a public address and one
 * behind a symmetric NAT that drops unsolicited connections, and a requestor behind a home router; then a provider and
 * a requestor each behind its own cone NAT, who punch a direct connection and carry on when their relay dies. Needs
 * root (CI runs as root), iproute2, iptables and a C compiler; it fails, never skips, where they are missing.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { RunReport } from '../src/devnet/run-job.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { decodePng } from '../src/jobs/png.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { build, type Testbed } from '../src/testbed/testbed.ts'
import { hearthBin, testbedNodes } from './support/testbed-nodes.ts'
import { referenceCounts, wordcountExample, wordcountTexts } from './support/wordcount.ts'

const prefix = `hn${process.pid}`
const renderWasm = fileURLToPath(new URL('../build/workloads/render.wasm', import.meta.url))

let testbed: Testbed
let dir: string
let nodes: ReturnType<typeof testbedNodes>

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-testbed-nat-'))
  testbed = await build({
    prefix,
    regions: { eu: {} },
    rttMs: {},
    hosts: [
      { name: 'chain', region: 'eu' },
      { name: 'relay', region: 'eu' },
      { name: 'pub', region: 'eu' },
      { name: 'natp', region: 'eu', nat: 'symmetric' },
      { name: 'req', region: 'eu', nat: 'cone' },
      { name: 'reqpub', region: 'eu' },
      // Two home networks behind cone NATs, met through a relay of their own: they punch a direct connection.
      { name: 'relay2', region: 'eu' },
      { name: 'natc', region: 'eu', nat: 'cone' },
      { name: 'req2', region: 'eu', nat: 'cone' },
      // A home router that forwards ports on request (NAT-PMP).
      { name: 'natm', region: 'eu', nat: 'cone', portMapping: true },
    ],
  })
  nodes = testbedNodes(testbed, dir)
})

after(async () => {
  nodes?.stopAll()
  await testbed?.down()
  await rm(dir, { recursive: true, force: true })
})

/** The chain, started by whichever test needs it first. */
let chainStarted: ReturnType<ReturnType<typeof testbedNodes>['chain']> | undefined
const chain = (): ReturnType<ReturnType<typeof testbedNodes>['chain']> => (chainStarted ??= nodes.chain('chain'))

test('a provider behind a symmetric NAT is reached through a Hearth relay: its tasks complete, exact and paid', async () => {
  const { deployment, funderKey } = await chain()
  const relayNode = await nodes.relay('relay')
  const relay = relayNode.ready
  const relayAddress = relayNode.address
  await Promise.all([nodes.provider('pub', deployment, [relayAddress]), nodes.provider('natp', deployment, [relayAddress])])

  // The public provider learns it is dialable from the relay dialling it back; the one behind the NAT learns it is
  // not, reserves a slot on the relay, and announces only its relayed address.
  const pub = await nodes.waitForStatus('pub', (s) => s.network.reachability.kind === 'public', 'the public provider is found dialable')
  assert.match(pub.network.reachability.reason, /dialled back/)
  assert.ok(pub.multiaddrs.some((a) => a.startsWith(`/ip4/${testbed.hosts['pub']!.address}/tcp/7690/`)), pub.multiaddrs.join(', '))
  const natp = await nodes.waitForStatus('natp', (s) => s.network.reachability.kind === 'private', 'the NATed provider holds a relay slot')
  assert.deepEqual(natp.network.reachability.relays, [{ peerId: relay.peerId, reserved: true }])
  assert.ok(natp.multiaddrs.length > 0 && natp.multiaddrs.every((a) => a.includes(`/p2p/${relay.peerId}/p2p-circuit/`)), natp.multiaddrs.join(', '))
  // Its NAT picks a new port per destination, so no hole punch can reach it: its offer says relay only.
  await nodes.waitForStatus('natp', (s) => s.offer.relayed && s.offer.relayOnly, 'the provider behind a symmetric NAT offers as relay only')

  // A requestor behind its own home router runs the word count on both: exact, and paid on chain.
  const out = join(dir, 'out')
  const run = await testbed.run('req', process.execPath, [
    hearthBin, 'run', join(wordcountExample, 'job.json'), '--providers', '2', '--json', '--out', out, '--data-dir', join(dir, 'requestor'),
    '--bootstrap', relayAddress, '--deployment', deployment, '--funder-key-file', funderKey,
  ], { timeoutMs: 300_000 })
  assert.equal(run.code, 0, run.stderr)
  const report = JSON.parse(run.stdout) as RunReport
  assert.deepEqual(report.failures, [])
  assert.equal(await readFile(join(out, 'counts.tsv'), 'utf8'), referenceCounts(...(await wordcountTexts())))
  assert.deepEqual(report.audit.problems, [])
  // The provider behind the NAT took part, and was paid what it earned.
  const relayed = report.providers.find((p) => p.address.toLowerCase() === natp.address.toLowerCase())
  assert.ok(relayed !== undefined && relayed.tasks > 0, JSON.stringify(report.providers))
  assert.ok(BigInt(relayed.paidWei) > 0n)
  assert.equal(relayed.balanceDeltaWei, relayed.paidWei)
  // The report says how the requestor reached each provider: the NATed one through the relay, the public one directly.
  assert.equal(relayed.connection, 'relayed')
  assert.equal(report.providers.find((p) => p.address.toLowerCase() === pub.address.toLowerCase())?.connection, 'direct')

  // A requestor with a public address reaches the NATed provider through the relay first; the provider dials it back
  // (connection reversal), and the work goes over that direct connection.
  const outPublic = join(dir, 'out-public')
  const publicRun = await testbed.run('reqpub', process.execPath, [
    hearthBin, 'run', join(wordcountExample, 'job.json'), '--providers', '2', '--json', '--out', outPublic, '--data-dir', join(dir, 'requestor-public'),
    '--listen', '/ip4/0.0.0.0/tcp/7700', '--bootstrap', relayAddress, '--deployment', deployment, '--funder-key-file', funderKey,
  ], { timeoutMs: 300_000 })
  assert.equal(publicRun.code, 0, publicRun.stderr)
  const publicReport = JSON.parse(publicRun.stdout) as RunReport
  assert.deepEqual(publicReport.failures, [])
  assert.equal(await readFile(join(outPublic, 'counts.tsv'), 'utf8'), referenceCounts(...(await wordcountTexts())))
  const reversed = publicReport.providers.find((p) => p.address.toLowerCase() === natp.address.toLowerCase())
  assert.ok(reversed !== undefined && reversed.tasks > 0, JSON.stringify(publicReport.providers))
  assert.equal(reversed.connection, 'direct', JSON.stringify(publicReport.providers))

  // The relay stops cleanly on SIGTERM, and held the NATed provider's reservation.
  const exited = new Promise<number | null>((resolve) => relayNode.child.once('exit', resolve))
  relayNode.child.kill('SIGTERM')
  assert.equal(await exited, 0)
  const stopped = relayNode.lines.at(-1) as { event: string; reservations: number }
  assert.equal(stopped.event, 'stopped')
  assert.ok(stopped.reservations >= 1, JSON.stringify(stopped))
})

test('two nodes behind NATs punch a direct connection: the job goes around the relay and survives its death', async (t) => {
  const { deployment, funderKey } = await chain()
  let relayNode = await nodes.relay('relay2')
  const relayAddress = relayNode.address
  await nodes.provider('natc', deployment, [relayAddress])
  const natc = await nodes.waitForStatus('natc', (s) => s.network.reachability.kind === 'private' && s.offer.relayed, 'the NATed provider offers through a relay')
  // Behind a cone NAT it can be hole-punched: relayed, but not relay only.
  assert.equal(natc.offer.relayOnly, false)
  const natcIs = (p: { address: string }): boolean => p.address.toLowerCase() === natc.address.toLowerCase()

  // A render from a requestor behind another NAT; the relay is killed (SIGKILL) once tasks run. The connection the
  // work goes over was punched by then, so the job completes, exact and paid.
  const width = 320
  const height = 240
  const job = join(dir, 'render.json')
  await writeFile(job, JSON.stringify({ kind: 'render', name: 'render past a dead relay', runtime: 'wasi', package: renderWasm, width, height, tiles: 48, output: 'render.png', providers: 1 }))
  const renderOut = join(dir, 'out-render')
  const requestor = testbed.exec('req2', process.execPath, [
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
  relayNode = await nodes.relay('relay2')
  await nodes.waitForStatus('natc', (s) => s.network.reachability.relays.some((r) => r.reserved), 'the provider reserves on the restarted relay')
  const out = join(dir, 'out-punched')
  const run = await testbed.run('req2', process.execPath, [
    hearthBin, 'run', join(wordcountExample, 'job.json'), '--providers', '1', '--json', '--out', out, '--data-dir', join(dir, 'requestor-punched'),
    '--bootstrap', relayAddress, '--deployment', deployment, '--funder-key-file', funderKey,
  ], { timeoutMs: 300_000 })
  assert.equal(run.code, 0, run.stderr)
  const report = JSON.parse(run.stdout) as RunReport
  assert.deepEqual(report.failures, [])
  assert.equal(await readFile(join(out, 'counts.tsv'), 'utf8'), referenceCounts(...(await wordcountTexts())))
  assert.deepEqual(report.audit.problems, [])
  const punched = report.providers.find(natcIs)
  assert.ok(punched !== undefined && punched.tasks > 0, JSON.stringify(report.providers))
  assert.equal(punched.connection, 'hole-punched', run.stderr)
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

test('a provider behind a router that forwards ports on request (NAT-PMP) maps its port and is dialable without a relay', async () => {
  const { deployment } = await chain()
  const relayNode = await nodes.relay('relay')
  await nodes.provider('natm', deployment, [relayNode.address])
  const natm = await nodes.waitForStatus('natm', (s) => s.network.reachability.kind === 'public', 'the provider is found dialable through its mapped port')
  const router = testbed.hosts['natm']!.publicAddress
  assert.match(natm.network.reachability.reason, /dialled back .*NAT-PMP/)
  assert.deepEqual(natm.network.reachability.portMappings.map((m) => [m.externalIp, m.internalPort]), [[router, 7690]])
  // It announces the router's public address and the mapped port (its relay slot stays, for when the mapping lapses),
  // and its offer is not relayed.
  const mapped = natm.network.reachability.portMappings[0]!.externalPort
  const offered = await nodes.waitForStatus('natm', (s) => !s.offer.relayed && s.multiaddrs.some((a) => a.startsWith(`/ip4/${router}/tcp/${mapped}/`)), 'the offer carries the mapped address')
  assert.equal(offered.offer.relayOnly, false)
})
