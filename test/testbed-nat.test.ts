/**
 * Hearth across a NAT, on the testbed (src/testbed): every node its own OS process in its own network namespace, the
 * chain served by JSON-RPC from another host, a relay on the public network, a provider with a public address and one
 * behind a symmetric NAT that drops unsolicited connections, and a requestor behind a home router. Needs root (CI
 * runs as root), iproute2, iptables and a C compiler; it fails, never skips, where they are missing.
 */
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { hearth } from '../src/cli/testdata/run-cli.ts'
import type { RunReport } from '../src/devnet/run-job.ts'
import type { ProviderStatus } from '../src/provider/provider-node.ts'
import { build, type Testbed } from '../src/testbed/testbed.ts'
import { referenceCounts, wordcountExample, wordcountTexts } from './support/wordcount.ts'

const hearthBin = fileURLToPath(new URL('../bin/hearth.js', import.meta.url))
const prefix = `hn${process.pid}`

let testbed: Testbed
let dir: string
const children: ChildProcess[] = []

interface Started<T> {
  ready: T
  child: ChildProcess
  /** Every stdout line so far, parsed (the ready line first). */
  lines: unknown[]
}

/** Starts `hearth ARGS` on a testbed host and resolves once it prints its first stdout line (the ready line). */
async function startNode<T>(host: string, args: string[]): Promise<Started<T>> {
  const child = testbed.exec(host, process.execPath, [hearthBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const lines: unknown[] = []
  return new Promise<Started<T>>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(JSON.parse(line))
      if (lines.length === 1) resolve({ ready: lines[0] as T, child, lines })
    })
    child.once('exit', (code) => reject(new Error(`hearth ${args[0]} on ${host} exited with ${code}:\n${stderr}`)))
  })
}

async function providerStatus(dataDir: string): Promise<ProviderStatus> {
  const status = await hearth(['provider', 'status', '--data-dir', dataDir, '--json'])
  assert.equal(status.code, 0, status.stderr)
  return JSON.parse(status.stdout) as ProviderStatus
}

/** Polls the provider's status until `done` holds (a reachability check and a reservation take a few seconds). */
async function waitForStatus(dataDir: string, done: (status: ProviderStatus) => boolean, what: string): Promise<ProviderStatus> {
  const deadline = Date.now() + 120_000
  let status = await providerStatus(dataDir)
  while (!done(status)) {
    if (Date.now() > deadline) assert.fail(`${what}: ${JSON.stringify(status.network)}`)
    await new Promise((resolve) => setTimeout(resolve, 500))
    status = await providerStatus(dataDir)
  }
  return status
}

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
    ],
  })
})

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  await testbed?.down()
  await rm(dir, { recursive: true, force: true })
})

test('a provider behind a symmetric NAT is reached through a Hearth relay: its tasks complete, exact and paid', async () => {
  const deployment = join(dir, 'deployment.json')
  const { ready: chain } = await startNode<{ url: string; accounts: { privateKey: string }[] }>('chain', [
    'chain', '--host', testbed.hosts['chain']!.address, '--port', '8545', '--accounts', '1', '--deployment-out', deployment, '--json',
  ])
  assert.equal(chain.url, `http://${testbed.hosts['chain']!.address}:8545`)
  const funderKey = join(dir, 'funder.key')
  await writeFile(funderKey, chain.accounts[0]!.privateKey, { mode: 0o600 })
  await chmod(funderKey, 0o600)

  const relayNode = await startNode<{ peerId: string; multiaddrs: string[] }>('relay', [
    'relay', '--data-dir', join(dir, 'relay'), '--listen', '/ip4/0.0.0.0/tcp/7691', '--announce', `/ip4/${testbed.hosts['relay']!.address}/tcp/7691`, '--json',
  ])
  const relay = relayNode.ready
  const relayAddress = relay.multiaddrs.find((a) => a.includes(testbed.hosts['relay']!.address))
  assert.ok(relayAddress !== undefined, `the relay announces its public address: ${relay.multiaddrs.join(', ')}`)

  const providerArgs = (name: string) => [
    'provider', 'start', '--data-dir', join(dir, name), '--listen', '/ip4/0.0.0.0/tcp/7690', '--no-idle', '--deployment', deployment,
    '--threads', '1', '--memory-gib', '1', '--disk-gib', '1', '--bootstrap', relayAddress,
  ]
  // A provider claims its pay itself: on this development chain the faucet gives it gas.
  for (const name of ['pub', 'natp']) {
    const funded = await testbed.run(name, process.execPath, [hearthBin, 'wallet', '--faucet', '--data-dir', join(dir, name), '--deployment', deployment, '--json'], { timeoutMs: 120_000 })
    assert.equal(funded.code, 0, funded.stderr)
  }
  await Promise.all([startNode('pub', providerArgs('pub')), startNode('natp', providerArgs('natp'))])

  // The public provider learns it is dialable from the relay dialling it back; the one behind the NAT learns it is
  // not, reserves a slot on the relay, and announces only its relayed address.
  const pub = await waitForStatus(join(dir, 'pub'), (s) => s.network.reachability.kind === 'public', 'the public provider is found dialable')
  assert.match(pub.network.reachability.reason, /dialled back/)
  assert.ok(pub.multiaddrs.some((a) => a.startsWith(`/ip4/${testbed.hosts['pub']!.address}/tcp/7690/`)), pub.multiaddrs.join(', '))
  const natp = await waitForStatus(join(dir, 'natp'), (s) => s.network.reachability.kind === 'private', 'the NATed provider holds a relay slot')
  assert.deepEqual(natp.network.reachability.relays, [{ peerId: relay.peerId, reserved: true }])
  assert.ok(natp.multiaddrs.length > 0 && natp.multiaddrs.every((a) => a.includes(`/p2p/${relay.peerId}/p2p-circuit/`)), natp.multiaddrs.join(', '))

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

  // The relay stops cleanly on SIGTERM, and held the NATed provider's reservation.
  const exited = new Promise<number | null>((resolve) => relayNode.child.once('exit', resolve))
  relayNode.child.kill('SIGTERM')
  assert.equal(await exited, 0)
  const stopped = relayNode.lines.at(-1) as { event: string; reservations: number }
  assert.equal(stopped.event, 'stopped')
  assert.ok(stopped.reservations >= 1, JSON.stringify(stopped))
})
