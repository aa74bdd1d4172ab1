/**
 * `node --import tsx bench/storage-testbed.ts [--json] [--runs 3] [--mib 128]`: dispersed storage across regions, on the
 * testbed (src/testbed; needs root, iproute2 and iptables, as the tests do). Three regions (eu, us, asia; 40 to 60 ms
 * apart), the owner's node in eu, six providers lending disk, two per region, storing 4 of 6.
 *
 * Upload and download MB/s of a `--mib` file through `hearth store put` and `get`, medians of `--runs`, against plain
 * TCP between the same namespaces carrying the same bytes the same way: a put sends each of the six providers a
 * sixth-and-a-half of the file (n/k = 1.5 times it in all), at once; a get fetches four such pieces at once.
 */
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { build, missingPrerequisites } from '../src/testbed/testbed.ts'
import { hearthBin, testbedNodes } from '../test/support/testbed-nodes.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({ options: { json: { type: 'boolean' }, runs: { type: 'string', default: '3' }, mib: { type: 'string', default: '128' } } })
const runs = Number(values.runs)
const fileBytes = Number(values.mib) * 1024 * 1024
const log = lineLogger(values.json)
const regions = ['eu', 'us', 'asia'] as const
const providerHosts = regions.flatMap((region) => [1, 2].map((n) => ({ name: `${region}${n}`, region })))
const k = 4
const m = 2

/** A TCP sink (on every provider host) and a source that sends `bytes` to each of `hosts` at once; prints the ms. */
const sinkScript = "require('net').createServer((s) => s.resume().on('end', () => s.end())).listen(7801, '0.0.0.0', () => console.log('{}'))"
const sendScript = `
const net = require('net'); const [bytes, ...hosts] = process.argv.slice(1)
const chunk = Buffer.alloc(1 << 20, 7); const started = performance.now()
Promise.all(hosts.map((host) => new Promise((done, fail) => {
  const socket = net.connect(7801, host); let left = Number(bytes)
  const pump = () => { while (left > 0) { const n = Math.min(left, chunk.length); left -= n; if (!socket.write(chunk.subarray(0, n))) return socket.once('drain', pump) } socket.end() }
  socket.on('connect', pump); socket.on('close', done); socket.on('error', fail); socket.resume()
}))).then(() => console.log(JSON.stringify({ ms: performance.now() - started })))`

async function main(): Promise<void> {
  const missing = missingPrerequisites()
  if (missing.length > 0) {
    log(`skipped: the testbed needs ${missing.join(', ')}`)
    return
  }
  const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-storage-testbed-'))
  const testbed = await build({
    prefix: `bs${process.pid}`,
    regions: { eu: {}, us: {}, asia: {} },
    rttMs: { 'eu-us': 40, 'eu-asia': 60, 'us-asia': 50 },
    hosts: [{ name: 'chain', region: 'eu' }, { name: 'relay', region: 'eu' }, { name: 'req', region: 'eu' }, ...providerHosts],
  })
  const nodes = testbedNodes(testbed, dir)
  try {
    const chain = await nodes.chain('chain', providerHosts.length)
    const relay = await nodes.relay('relay')
    await Promise.all(providerHosts.map(({ name, region }, i) => nodes.provider(name, chain.deployment, [relay.address], chain.keys[i], ['--region', region, '--storage', '--storage-gib', String(Math.ceil((fileBytes * runs * 2) / 1024 ** 3) + 1), '--storage-price', '0.001'])))
    const owner = join(dir, 'requestor')
    await nodes.start('req', ['requestor', 'start', '--data-dir', owner, '--deployment', chain.deployment, '--funder-key-file', chain.funderKey, '--bootstrap', relay.address, '--listen', `/ip4/${testbed.hosts['req']!.address}/tcp/7692`, '--storage-code', `${k}+${m}`, '--audit-every', '86400'])
    const hearth = async (...args: string[]): Promise<number> => {
      const started = performance.now()
      const done = await testbed.run('req', process.execPath, [hearthBin, ...args, '--data-dir', owner, '--json'], { timeoutMs: 1_800_000 })
      if (done.code !== 0) throw new Error(`hearth ${args.join(' ')}: ${done.stderr}`)
      return performance.now() - started
    }
    for (let i = 0; ; i++) {
      const status = await testbed.run('req', process.execPath, [hearthBin, 'requestor', 'status', '--data-dir', owner, '--json'], { timeoutMs: 60_000 })
      if ((JSON.parse(status.stdout) as { offers: number }).offers >= providerHosts.length) break
      if (i > 240) throw new Error('the providers\' offers did not reach the owner\'s node')
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    const file = join(dir, 'file.bin')
    const out = createWriteStream(file)
    for (let left = fileBytes; left > 0; left -= 2 ** 20) out.write(randomBytes(Math.min(left, 2 ** 20)))
    await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())))
    // A first put makes the storage agreements (six escrows); the runs after it measure the data path.
    await hearth('store', 'put', file, 'bench/warm')
    for (const name of [...providerHosts.map((h) => h.name), 'req']) testbed.exec(name, process.execPath, ['-e', sinkScript], { stdio: 'ignore' })
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const pieceBytes = Math.ceil(fileBytes / k)
    const send = async (from: string, to: string[]): Promise<number> => {
      const done = await testbed.run(from, process.execPath, ['-e', sendScript, String(pieceBytes), ...to.map((h) => testbed.hosts[h]!.address)], { timeoutMs: 600_000 })
      return (JSON.parse(done.stdout) as { ms: number }).ms
    }
    // A put: the owner sends each provider its piece at once. A get: four providers send theirs to the owner at once.
    const tcpPut = (): Promise<number> => send('req', providerHosts.map((h) => h.name))
    const tcpGet = async (): Promise<number> => Math.max(...(await Promise.all(['eu1', 'eu2', 'us1', 'us2'].map((host) => send(host, ['req'])))))
    const puts: number[] = []
    const gets: number[] = []
    const tcpPuts: number[] = []
    const tcpGets: number[] = []
    for (let run = 0; run < runs; run++) {
      tcpPuts.push(await tcpPut())
      tcpGets.push(await tcpGet())
      puts.push(await hearth('store', 'put', file, `bench/file-${run}`))
      gets.push(await hearth('store', 'get', `bench/file-${run}`, join(dir, 'back.bin')))
    }
    const mbps = (ms: number): number => round(fileBytes / 1e6 / (ms / 1000))
    const figures = { mib: Number(values.mib), runs, putMBps: mbps(median(puts)), getMBps: mbps(median(gets)), tcpPutMBps: mbps(median(tcpPuts)), tcpGetMBps: mbps(median(tcpGets)), putVsTcp: round(median(tcpPuts) / median(puts)), getVsTcp: round(median(tcpGets) / median(gets)) }
    log(`${figures.mib} MiB, code ${k}+${m} over six providers in three regions (40-60 ms apart), owner in eu; medians of ${runs} (MB/s of the file)`)
    log(`  put: hearth ${figures.putMBps} MB/s, plain TCP carrying the same pieces to the same hosts ${figures.tcpPutMBps} MB/s: ${figures.putVsTcp}x`)
    log(`  get: hearth ${figures.getMBps} MB/s, plain TCP from four hosts ${figures.tcpGetMBps} MB/s: ${figures.getVsTcp}x`)
    if (values.json === true) console.log(JSON.stringify({ bench: 'storage-testbed', ...figures }))
  } finally {
    nodes.stopAll()
    await testbed.down()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
