/**
 * `node --import tsx bench/storage.ts [--json] [--runs 3] [--mib 64] [--big-gib 2] [--code 4+2]`: dispersed storage as
 * a user gets it, each node its own process on a development chain (as test/store-cli.test.ts runs them): six
 * `hearth provider start --storage` in three regions and one `hearth requestor start`, all on 127.0.0.1.
 *
 * 1. Upload and download: `hearth store put` and `get` (the node's API calls, timed) of a `--mib` file of random bytes,
 *    medians of `--runs`, in MB/s of the file, against plain TCP on loopback carrying the same file once (the
 *    baseline; a put carries n/k times the file, in n pieces, to n processes, besides sealing and coding it).
 * 2. Memory: a `--big-gib` file put and got back, and the peak resident memory (VmHWM) of the requestor node's process
 *    before and after: files go through in bounded memory, whatever their size (the aim: under 300 MiB).
 * 3. Repair: one provider holding pieces of both files is stopped; `hearth store repair` audits, finds it gone, and
 *    rebuilds its pieces on the providers left: seconds per GiB rebuilt.
 * 4. Overhead: n/k against Storj (29 of 80 in 2.7x) and Sia (10 of 30, 3x).
 * Wall-clock figures on a shared 2-core machine are noisy: medians, and ratios against the baseline of the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { connect, createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { buildContracts } from '../scripts/build-contracts.ts'
import { devAccountKey, startChain } from '../src/cli/chain-command.ts'
import { capture } from '../src/cli/testdata/run-cli.ts'
import { callRequestorApi } from '../src/requestor/requestor-api.ts'
import { statusBytes } from './lib/process-memory.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({ options: { json: { type: 'boolean' }, runs: { type: 'string', default: '3' }, mib: { type: 'string', default: '64' }, 'big-gib': { type: 'string', default: '2' }, code: { type: 'string', default: '4+2' } } })
const runs = Number(values.runs)
const fileBytes = Number(values.mib) * 1024 * 1024
const bigBytes = Number(values['big-gib']) * 1024 ** 3
const [k, m] = values.code!.split('+').map(Number) as [number, number]
const log = lineLogger(values.json)
const repoRoot = resolve(import.meta.dirname, '..')
const regions = ['eu', 'us', 'ap']
const children: ChildProcess[] = []

async function start(args: string[]): Promise<{ child: ChildProcess; ready: Record<string, unknown> }> {
  const child = spawn(process.execPath, ['bin/hearth.js', ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)))
  const ready = await new Promise<Record<string, unknown>>((done, fail) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as Record<string, unknown>
      if (parsed['event'] === 'ready') done(parsed)
    })
    child.once('exit', (code) => fail(new Error(`hearth ${args[0]} exited with ${code}:\n${stderr}`)))
  })
  return { child, ready }
}

/** A file of `bytes` random bytes, written a MiB at a time. */
async function randomFile(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path)
  for (let left = bytes; left > 0; left -= 1024 * 1024) {
    if (!out.write(randomBytes(Math.min(left, 1024 * 1024)))) await new Promise<void>((done) => out.once('drain', () => done()))
  }
  await new Promise<void>((done, fail) => out.end((error?: Error | null) => (error ? fail(error) : done())))
}

/** Plain TCP on loopback: the file sent once, read and dropped on the other side; seconds. */
async function plainTcp(path: string): Promise<number> {
  const server = createServer((socket) => socket.resume())
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  const started = performance.now()
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1')
  await pipeline(createReadStream(path), socket)
  const seconds = (performance.now() - started) / 1000
  await new Promise((done) => server.close(done))
  return seconds
}

async function timed<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const started = performance.now()
  const value = await work()
  return { seconds: (performance.now() - started) / 1000, value }
}

const mbps = (bytes: number, seconds: number): number => round(bytes / 1e6 / seconds)

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-storage-'))
  try {
    await buildContracts()
    const deployment = join(dir, 'deployment.json')
    const chain = await startChain({ port: 0, accounts: 8, deploymentOut: deployment }, capture().io)
    try {
      const bootstrap: string[] = []
      const providers: { child: ChildProcess; address: string }[] = []
      for (let i = 1; i <= k + m + 1; i++) {
        const dataDir = join(dir, `provider-${i}`)
        await mkdir(dataDir, { recursive: true, mode: 0o700 })
        await writeFile(join(dataDir, 'node.key'), `${devAccountKey(i)}\n`, { mode: 0o600 })
        await chmod(join(dataDir, 'node.key'), 0o600)
        const started = await start([
          'provider', 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-idle', '--deployment', deployment,
          '--threads', '1', '--memory-gib', '1', '--disk-gib', '1', '--region', regions[i % 3]!, '--storage', '--storage-gib', String(Math.ceil((bigBytes * 2) / 1024 ** 3) + 1), '--storage-price', '0.00001',
        ])
        bootstrap.push((started.ready['multiaddrs'] as string[])[0]!)
        providers.push({ child: started.child, address: String(started.ready['address']).toLowerCase() })
      }
      const funderKey = join(dir, 'funder.key')
      await writeFile(funderKey, `${devAccountKey(0)}\n`, { mode: 0o600 })
      await chmod(funderKey, 0o600)
      const owner = join(dir, 'requestor')
      const node = await start(['requestor', 'start', '--data-dir', owner, '--deployment', deployment, '--funder-key-file', funderKey, '--bootstrap', ...bootstrap, '--storage-code', `${k}+${m}`, '--audit-every', '86400'])
      for (let i = 0; ((await callRequestorApi(owner, 'status')) as { offers: number }).offers < providers.length; i++) {
        if (i > 600) throw new Error('the providers\' offers did not reach the requestor node')
        await new Promise((done) => setTimeout(done, 200))
      }
      const api = (command: string, body: Record<string, unknown>) => callRequestorApi(owner, command as never, body, { timeoutMs: 3_600_000 })

      // 1. Upload and download against plain TCP.
      const small = join(dir, 'file.bin')
      await randomFile(small, fileBytes)
      const puts: number[] = []
      const gets: number[] = []
      const tcp: number[] = []
      for (let run = 0; run < runs; run++) {
        tcp.push((await plainTcp(small)))
        puts.push((await timed(() => api('store-put', { bucket: 'bench', key: `file-${run}`, path: small }))).seconds)
        gets.push((await timed(() => api('store-get', { bucket: 'bench', key: `file-${run}`, path: join(dir, 'back.bin') }))).seconds)
      }
      const transfer = {
        fileMiB: fileBytes / 1024 / 1024,
        plainTcpMBps: mbps(fileBytes, median(tcp)),
        putMBps: mbps(fileBytes, median(puts)),
        getMBps: mbps(fileBytes, median(gets)),
        putVsTcp: round(median(tcp) / median(puts)),
        getVsTcp: round(median(tcp) / median(gets)),
      }
      log(`code ${k}+${m} over ${providers.length} providers in ${regions.length} regions; ${transfer.fileMiB} MiB file, medians of ${runs}`)
      log(`  plain TCP (baseline)   ${transfer.plainTcpMBps} MB/s`)
      log(`  hearth store put       ${transfer.putMBps} MB/s   ${transfer.putVsTcp}x plain TCP (carries ${round((k + m) / k)}x the file)`)
      log(`  hearth store get       ${transfer.getMBps} MB/s   ${transfer.getVsTcp}x plain TCP`)

      // 2. Memory of the owner's node through a big file.
      const pid = node.child.pid!
      const before = statusBytes(pid, 'VmHWM')
      const big = join(dir, 'big.bin')
      await randomFile(big, bigBytes)
      const bigPut = await timed(() => api('store-put', { bucket: 'bench', key: 'big', path: big }))
      const bigGet = await timed(() => api('store-get', { bucket: 'bench', key: 'big', path: join(dir, 'big-back.bin') }))
      const same = (await stat(join(dir, 'big-back.bin'))).size === bigBytes
      const memory = { bigGiB: bigBytes / 1024 ** 3, peakRssBeforeMiB: round(before / 2 ** 20), peakRssAfterMiB: round(statusBytes(pid, 'VmHWM') / 2 ** 20), putMBps: mbps(bigBytes, bigPut.seconds), getMBps: mbps(bigBytes, bigGet.seconds), sizeMatches: same }
      log(`  ${memory.bigGiB} GiB put ${memory.putMBps} MB/s, get ${memory.getMBps} MB/s; requestor node peak RSS ${memory.peakRssBeforeMiB} MiB before, ${memory.peakRssAfterMiB} MiB after (aim: < 300)`)
      await rm(big, { force: true })
      await rm(join(dir, 'big-back.bin'), { force: true })

      // 3. Repair: one provider holding pieces stops.
      const status = (await api('store-status', { bucket: 'bench' })) as { objects: { key: string; bytes: number; k: number; pieces: { provider: string }[] }[] }
      const victim = status.objects.find((o) => o.key === 'big')!.pieces[0]!.provider.toLowerCase()
      // What the victim held: a piece of each object it took part in, about a k-th of the object.
      const pieceBytes = status.objects.filter((o) => o.pieces.some((p) => p.provider.toLowerCase() === victim)).reduce((sum, o) => sum + o.bytes / o.k, 0)
      const lost = providers.find((p) => p.address === victim)!
      lost.child.kill('SIGTERM')
      await new Promise((done) => lost.child.once('exit', done))
      // Two missed audits in a row lose a provider: two rounds.
      await api('store-repair', {})
      const repair = await timed(() => api('store-repair', {}) as Promise<{ rebuilt: number }>)
      const repaired = { rebuiltPieces: repair.value.rebuilt, seconds: round(repair.seconds), secondsPerGiB: round(repair.seconds / (pieceBytes / 1024 ** 3)) }
      log(`  repair after a provider left: ${repaired.rebuiltPieces} pieces rebuilt (~${round(pieceBytes / 1024 ** 3)} GiB) in ${repaired.seconds} s, ${repaired.secondsPerGiB} s per GiB rebuilt`)

      // 4. Overhead against the anchors.
      const overhead = { hearth: round((k + m) / k), storj: round(80 / 29), sia: 3 }
      log(`  stored bytes per file byte: ${overhead.hearth}x (${k}+${m}); Storj ${overhead.storj}x (29 of 80), Sia ${overhead.sia}x (10 of 30)`)
      if (values.json === true) console.log(JSON.stringify({ code: { k, m }, transfer, memory, repair: repaired, overhead }))
    } finally {
      for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
      await chain.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
