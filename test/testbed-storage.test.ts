/**
 * Dispersed storage on the testbed (src/testbed): every node a `hearth` process in a host of its own in one of three
 * regions tens of milliseconds apart: the chain, a relay, six providers lending disk (`--storage --region R`, two per
 * region) and the owner's `hearth requestor start` storing 4 of 6. A file of 256 MiB with marker strings planted in
 * it goes up in six pieces, two per region; both providers of one region are killed with SIGKILL; the file comes back
 * byte for byte from the other four; and no provider's data folder holds a marker or the file's name.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { fileTestbed, hearthBin, type Started } from './support/testbed-nodes.ts'

const regions = ['eu', 'us', 'asia'] as const
const providerHosts = regions.flatMap((region) => [1, 2].map((n) => ({ name: `${region}${n}`, region })))
const fileBytes = 256 * 1024 * 1024
const markers = ['HEARTH-MARKER-START-5c1d', 'HEARTH-MARKER-MIDDLE-9e2a', 'HEARTH-MARKER-END-07bf']
const secretName = 'quarterly-secret-ledger.bin'

const { testbed, dir, nodes } = await fileTestbed('hd', 'storage', {
  regions: { eu: {}, us: {}, asia: {} },
  rttMs: { 'eu-us': 40, 'eu-asia': 60, 'us-asia': 50 },
  hosts: [{ name: 'chain', region: 'eu' }, { name: 'relay', region: 'eu' }, { name: 'req', region: 'eu' }, ...providerHosts],
})
after(() => nodes.stopAll())

const requestorDir = join(dir, 'requestor')
const providers = new Map<string, Started<{ address: string }>>()
let requestorNode: Started<unknown> | undefined
let fileSha = ''

/** `hearth ARGS --data-dir REQUESTOR --json` on the owner's host. */
async function owner<T>(...args: string[]): Promise<T> {
  const done = await testbed.run('req', process.execPath, [hearthBin, ...args, '--data-dir', requestorDir, '--json'], { timeoutMs: 600_000 })
  // The node's own account of its storage work goes with a failure: which provider did not take a piece, and why.
  const nodeLog = requestorNode?.stderr().split('\n').filter((line) => line.includes('storage')).slice(-30).join('\n') ?? ''
  assert.equal(done.code, 0, `hearth ${args.join(' ')}: ${done.stderr}\nthe requestor node's storage log:\n${nodeLog}`)
  return JSON.parse(done.stdout) as T
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Every file under `folder`, recursively. */
async function filesUnder(folder: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(folder, { withFileTypes: true }).catch(() => [])) {
    const path = join(entry.parentPath, entry.name)
    if (entry.isDirectory()) found.push(...(await filesUnder(path)))
    else found.push(path)
  }
  return found
}

before(async () => {
  const chain = await nodes.chain('chain', providerHosts.length)
  const relay = await nodes.relay('relay')
  await Promise.all(providerHosts.map(async ({ name, region }, i) => {
    providers.set(name, await nodes.provider(name, chain.deployment, [relay.address], chain.keys[i], ['--region', region, '--storage', '--storage-gib', '1', '--storage-price', '0.001']))
  }))
  const address = testbed.hosts['req']!.address
  requestorNode = await nodes.start('req', [
    'requestor', 'start', '--data-dir', requestorDir, '--deployment', chain.deployment, '--funder-key-file', chain.funderKey,
    '--bootstrap', relay.address, '--listen', `/ip4/${address}/tcp/7692`, '--storage-code', '4+2',
  ])
  const deadline = Date.now() + 120_000
  while ((await owner<{ offers: number }>('requestor', 'status')).offers < providerHosts.length) {
    assert.ok(Date.now() < deadline, 'the providers\' offers did not reach the owner\'s node')
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  // The file: random bytes a MiB at a time, a marker at its start, in its middle and at its end.
  const out = createWriteStream(join(dir, secretName))
  const hash = createHash('sha256')
  for (let mib = 0; mib < fileBytes / 2 ** 20; mib++) {
    const chunk = randomBytes(2 ** 20)
    const marker = mib === 0 ? markers[0] : mib === fileBytes / 2 ** 21 ? markers[1] : mib === fileBytes / 2 ** 20 - 1 ? markers[2] : undefined
    if (marker !== undefined) chunk.write(marker.repeat(8), 4096)
    hash.update(chunk)
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()))
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())))
  fileSha = hash.digest('hex')
})

test('a file of 256 MiB goes to six providers in three regions, two pieces each, and no provider holds its plaintext', async () => {
  const put = await owner<{ size: number; pieces: number }>('store', 'put', join(dir, secretName), `vault/${secretName}`)
  assert.deepEqual([put.size, put.pieces], [fileBytes, 6])
  const status = await owner<{ objects: { pieces: { provider: string; region: string }[] }[] }>('store', 'status', `vault/${secretName}`)
  const perRegion = new Map<string, number>()
  for (const piece of status.objects[0]!.pieces) perRegion.set(piece.region, (perRegion.get(piece.region) ?? 0) + 1)
  assert.deepEqual(Object.fromEntries(perRegion), { eu: 2, us: 2, asia: 2 })
  for (const { name } of providerHosts) {
    const files = await filesUnder(join(dir, name, 'storage'))
    assert.ok(files.some((file) => file.endsWith('.piece')), `${name} holds a piece`)
    for (const file of files) {
      const content = await readFile(file)
      for (const marker of markers) assert.equal(content.includes(marker), false, `${file} holds the marker ${marker}`)
      assert.equal(content.includes(secretName.slice(0, 16)), false, `${file} holds the file's name`)
    }
  }
})

test('with every provider of one region killed, the file comes back byte for byte', async () => {
  for (const { name } of providerHosts.filter((host) => host.region === 'asia')) {
    const child = providers.get(name)!.child
    const gone = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await gone
  }
  const back = join(dir, 'back.bin')
  await owner('store', 'get', `vault/${secretName}`, back)
  assert.equal(await sha256Of(back), fileSha)
})
