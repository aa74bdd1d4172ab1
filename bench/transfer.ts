/**
 * `node --import tsx bench/transfer.ts [--json] [--runs 5] [--mib 64]`: how fast a package moves between two nodes.
 *
 * Two real libp2p hosts (TCP + noise + yamux on 127.0.0.1), each in its own process as a requestor and a provider are,
 * move one random blob of `--mib` MiB; each way is measured as the median of `--runs` runs, the ways taking turns:
 * - tcp:        baseline, a plain node:net socket on 127.0.0.1 (the sender writes the blob, the receiver counts bytes);
 * - raw-stream: one libp2p stream carrying the bare bytes (what noise + yamux cost on their own);
 * - fetch-blob/3, /2: chunk requests over `/hearth/exec/fetch-blob/3` (a JSON header, then the chunk's raw bytes
 *               as a frame of their own) and over the older `/2` (the chunk as base64 inside JSON), served as the
 *               requestor serves them, one chunk at a time, into memory (what each protocol adds to the raw stream: a
 *               stream and a round trip per chunk; for /2 also JSON and base64 of the whole chunk);
 * - fetchResumable: the provider's real transfer (transfer.ts `blobSource`, as programs.ts calls it: the rest of the
 *               blob on one stream over `/hearth/exec/fetch-blob/4`, written and hashed as it arrives) into a `.part`
 *               file, hash-checked and renamed; and as a requestor without /4 is fetched from: chunks over /3 asked
 *               ahead (2 in flight), one chunk at a time (chunksInFlight 1), and over /2 (a requestor without /3);
 * - raw stream to disk: the raw stream written to a file and hashed as it comes, with nothing else around it: what the
 *               disk and the hash cost on top of the raw stream, which no transfer to disk avoids.
 * `--latency-ms N` delays every chunk request of the fetchResumable ways by N ms, standing in for a real network's
 * round trip (what asking ahead hides). Throughput is MB/s (10^6 bytes per second) and each is given as a ratio of the TCP baseline. The libp2p connection is
 * dialled once before timing, as a provider already holds one to the requestor that sent it the task.
 * A breakdown of one chunk's work on this thread (base64, JSON, schema check) and of the whole blob's hash and file
 * write says where the time of fetchResumable goes.
 *
 * What it showed on a 2-core machine: noise + yamux alone reach only ~0.2-0.3x of a plain loopback socket (a cipher
 * call per 64 KiB noise frame; loopback TCP is a memory copy), so no libp2p transfer comes near half of raw TCP there.
 * fetch-blob/2 reaches ~0.15-0.4x of the raw stream: each 4 MiB chunk travels as 5.6 MB of base64 inside JSON, and
 * JSON.stringify, TextEncoder, TextDecoder and JSON.parse of that string cost more than the transport. fetch-blob/3
 * sends the same chunks as raw bytes; see docs/design.md (Transfer) for its figures.
 */
import '../src/net/polyfill.ts'
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { createServer, connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { fetchBlobBinaryProtocol, fetchBlobProtocol, fetchBlobRangeProtocol, maxBlobChunkBytes } from '../src/exec/task-protocols.ts'
import { sha256Hex } from '../src/exec/content-hash.ts'
import { blobChunks, blobSource, fetchResumable, type Chunk } from '../src/exec/transfer.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { requestBlob, serveBlobProtocol } from '../src/net/blob-protocol.ts'
import { createHost } from '../src/net/host.ts'
import { encodeJsonFrame } from '../src/net/json-frames.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '5' },
    mib: { type: 'string', default: '64' },
    'latency-ms': { type: 'string', default: '0' },
    /** Internal: be the sending node (a child process of the bench). */
    serve: { type: 'boolean', default: false },
  },
})
const runs = Number(values.runs)
const blobBytes = Number(values.mib) * 1024 * 1024
const latencyMs = Number(values['latency-ms'])
const rawProtocol = '/hearth/bench/raw-blob/1'

/** What the sending process tells the bench on its first stdout line. */
interface SenderInfo {
  tcpPort: number
  multiaddr: string
  contentId: string
}

const log = lineLogger(values.json)

/**
 * Median wall times, in ms, of `runs` rounds in which every way runs once, after one warm-up round: taking turns, the
 * ways share whatever else loads the machine meanwhile, so their ratios hold better than their absolute figures.
 */
async function timedInTurns<K extends string>(ways: Record<K, () => Promise<void>>): Promise<Record<K, number>> {
  const times = Object.fromEntries(Object.keys(ways).map((key) => [key, [] as number[]])) as Record<K, number[]>
  for (let round = 0; round <= runs; round++) {
    for (const [key, once] of Object.entries(ways) as [K, () => Promise<void>][]) {
      const startedAt = performance.now()
      await once()
      if (round > 0) times[key].push(performance.now() - startedAt)
    }
  }
  return Object.fromEntries(Object.entries(times).map(([key, values]) => [key, median(values as number[])])) as Record<K, number>
}

/** Median wall time of `runs` runs of `once` (after one warm-up run), in ms. */
async function timed(once: () => Promise<void>): Promise<number> {
  await once()
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    const startedAt = performance.now()
    await once()
    times.push(performance.now() - startedAt)
  }
  return median(times)
}

/** Sends `bytes` on a libp2p stream in 64 KiB messages, waiting whenever the stream asks for it, then closes it. */
async function sendAll(stream: Stream, bytes: Uint8Array): Promise<void> {
  const piece = 64 * 1024
  for (let offset = 0; offset < bytes.length; offset += piece) {
    if (!stream.send(bytes.subarray(offset, offset + piece))) await stream.onDrain()
  }
  await stream.close()
}

/**
 * The sending node, in its own process as a requestor is: a TCP server that writes the blob to whoever connects, and
 * a libp2p host serving it raw and over fetch-blob. It stops when the bench closes its stdin.
 */
async function serve(): Promise<void> {
  const blob = randomBytes(blobBytes)
  const tcpServer = createServer((socket) => socket.end(blob))
  await new Promise<void>((resolve) => tcpServer.listen(0, '127.0.0.1', resolve))
  const host = await createHost({ identity: generateIdentity() })
  await host.start()
  // The requestor's handler (requestor/blob-server.ts start()), without its per-agreement allow-list.
  await host.handle(fetchBlobProtocol, ({ contentId: id, offset, maxBytes }) => {
    const chunk = blob.subarray(Math.min(offset, blob.length), Math.min(offset + maxBytes, blob.length))
    return { contentId: id, totalBytes: blob.length, offset, dataBase64: Buffer.from(chunk).toString('base64') }
  })
  const servedBlob = ({ contentId: id, offset, maxBytes }: { contentId: string; offset: number; maxBytes: number }) => {
    const chunk = blob.subarray(Math.min(offset, blob.length), Math.min(offset + maxBytes, blob.length))
    return { header: { contentId: id, totalBytes: blob.length, offset }, body: chunk }
  }
  await serveBlobProtocol({ libp2p: host.libp2p }, fetchBlobBinaryProtocol, servedBlob)
  await serveBlobProtocol({ libp2p: host.libp2p }, fetchBlobRangeProtocol, servedBlob)
  await host.libp2p.handle(rawProtocol, async (stream) => {
    try {
      await sendAll(stream, blob)
    } catch (error) {
      stream.abort(error as Error)
    }
  })
  const info: SenderInfo = { tcpPort: (tcpServer.address() as AddressInfo).port, multiaddr: host.multiaddrs()[0]!, contentId: sha256Hex(blob) }
  process.stdout.write(`${JSON.stringify(info)}\n`)
  process.stdin.resume()
  await new Promise((resolve) => process.stdin.on('close', resolve))
  tcpServer.close()
  await host.stop()
}

if (values.serve) {
  await serve()
  process.exit(0)
}

// The sender runs as this process does (with tsx, and with --cpu-prof when this one is profiled).
const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--serve', '--mib', String(values.mib)], {
  stdio: ['pipe', 'pipe', 'inherit'],
})
const sender = await new Promise<SenderInfo>((resolve, reject) => {
  let text = ''
  child.stdout.on('data', (data: Buffer) => {
    text += data.toString('utf8')
    if (text.includes('\n')) resolve(JSON.parse(text.slice(0, text.indexOf('\n'))) as SenderInfo)
  })
  child.on('exit', (code) => reject(new Error(`the sending process exited with ${code} before it was ready`)))
})
const contentId = sender.contentId

// --- baseline: plain TCP --------------------------------------------------------------------------------------------

function tcpOnce(): Promise<void> {
  return new Promise((resolve, reject) => {
    let received = 0
    const socket = connect(sender.tcpPort, '127.0.0.1')
    socket.on('data', (data: Buffer) => {
      received += data.length
    })
    socket.on('error', reject)
    socket.on('end', () => (received === blobBytes ? resolve() : reject(new Error(`tcp: ${received} of ${blobBytes} bytes`))))
  })
}

// --- libp2p ------------------------------------------------------------------------------------------------------------

const receiver = await createHost({ identity: generateIdentity() })
await receiver.start()
await receiver.dial(sender.multiaddr)

async function rawStreamOnce(): Promise<void> {
  const stream = await receiver.libp2p.dialProtocol(multiaddr(sender.multiaddr), rawProtocol)
  let received = 0
  for await (const chunk of stream) received += chunk.byteLength
  await stream.close()
  if (received !== blobBytes) throw new Error(`raw stream: ${received} of ${blobBytes} bytes`)
}

/** One chunk over fetch-blob/2, as a provider without /3 asks. */
async function fetchChunkV2(offset: number, maxBytes: number): Promise<Chunk> {
  const chunk = await receiver.request(sender.multiaddr, fetchBlobProtocol, { contentId, offset, maxBytes })
  return { totalBytes: chunk.totalBytes, offset: chunk.offset, data: Buffer.from(chunk.dataBase64, 'base64') }
}

/** One chunk over fetch-blob/3. */
async function fetchChunkV3(offset: number, maxBytes: number): Promise<Chunk> {
  const { header, body } = await requestBlob({ libp2p: receiver.libp2p }, sender.multiaddr, fetchBlobBinaryProtocol, { contentId, offset, maxBytes }, { maxBodyBytes: maxBytes })
  return { totalBytes: header.totalBytes, offset: header.offset, data: body }
}

async function chunkByChunkOnce(fetchChunk: (offset: number, maxBytes: number) => Promise<Chunk>): Promise<void> {
  let offset = 0
  let total = Infinity
  while (offset < total) {
    const chunk = await fetchChunk(offset, maxBlobChunkBytes)
    total = chunk.totalBytes
    offset += chunk.data.length
  }
  if (offset !== blobBytes) throw new Error(`fetch-blob: ${offset} of ${blobBytes} bytes`)
}

const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-transfer-'))
let fetchCount = 0
async function fetchResumableOnce(options: { v2?: boolean; chunksInFlight?: number; ranges?: boolean } = {}): Promise<void> {
  const path = join(dir, `blob-${fetchCount++}`)
  // As the provider agent asks (programs.ts packageFile): /4, or chunks over /3, falling back to /2.
  const viaNetwork = options.v2 === true ? fetchChunkV2 : blobChunks(receiver, sender.multiaddr, contentId)
  const latency = async (): Promise<void> => {
    // Loopback answers at once; --latency-ms stands in for a real network's round trip.
    if (latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, latencyMs))
  }
  const ranges = blobSource(receiver, sender.multiaddr, contentId).fetchRange!
  const result = await fetchResumable({
    contentId,
    path,
    maxBytes: blobBytes,
    chunkBytes: maxBlobChunkBytes,
    fetchChunk: async (offset, maxBytes) => {
      await latency()
      return viaNetwork(offset, maxBytes)
    },
    ...(options.ranges === true
      ? {
          fetchRange: async (offset: number, maxBytes: number) => {
            await latency()
            return ranges(offset, maxBytes)
          },
        }
      : {}),
    ...(options.chunksInFlight === undefined ? {} : { chunksInFlight: options.chunksInFlight }),
  })
  if (result.fetchedBytes !== blobBytes) throw new Error(`fetchResumable: ${result.fetchedBytes} of ${blobBytes} bytes`)
  await rm(path)
}

/** The raw stream into a file, hashed as it comes: the least any transfer to disk costs. */
async function rawToDiskOnce(): Promise<void> {
  const stream = await receiver.libp2p.dialProtocol(multiaddr(sender.multiaddr), rawProtocol)
  const path = join(dir, `raw-${fetchCount++}`)
  const file = await open(path, 'w')
  const hash = createHash('sha256')
  let received = 0
  let writing: Promise<unknown> = Promise.resolve()
  try {
    for await (const chunk of stream) {
      const bytes = chunk.subarray()
      received += bytes.byteLength
      hash.update(bytes)
      writing = writing.then(() => file.write(bytes))
    }
    await writing
  } finally {
    await file.close()
  }
  if (`sha256:${hash.digest('hex')}` !== contentId || received !== blobBytes) throw new Error(`raw stream to disk: ${received} of ${blobBytes} bytes`)
  await stream.close()
  await rm(path)
}

// --- where the time of one chunk goes (this thread only) -------------------------------------------------------------

async function breakdown(): Promise<Record<string, number>> {
  const blob = randomBytes(blobBytes)
  const chunk = blob.subarray(0, Math.min(maxBlobChunkBytes, blob.length))
  const reps = Math.max(runs, 5)
  const each = async (work: () => unknown): Promise<number> => timed(async () => {
    for (let i = 0; i < reps; i++) work()
  }).then((ms) => ms / reps)
  const b64 = Buffer.from(chunk).toString('base64')
  const response = { contentId, totalBytes: blob.length, offset: 0, dataBase64: b64 }
  const frame = encodeJsonFrame({ ok: true, body: response })
  const perChunk = {
    base64EncodeMs: await each(() => Buffer.from(chunk).toString('base64')),
    base64DecodeMs: await each(() => Buffer.from(b64, 'base64')),
    jsonEncodeMs: await each(() => encodeJsonFrame({ ok: true, body: response })),
    jsonDecodeMs: await each(() => JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame))),
    schemaCheckMs: await each(() => fetchBlobProtocol.response.parse(response)),
    frameBytes: frame.byteLength,
  }
  const chunks = Math.ceil(blob.length / chunk.length)
  const wholeBlob = {
    sha256Ms: await timed(async () => void sha256Hex(blob)),
    fileWriteMs: await timed(async () => writeFile(join(dir, 'write-test'), blob)),
  }
  await rm(join(dir, 'write-test'), { force: true })
  return {
    ...perChunk,
    chunks,
    // Encode and schema check happen on the sender, decode, schema check and base64 decode on the receiver.
    perBlobCpuMs: chunks * (perChunk.base64EncodeMs + perChunk.base64DecodeMs + perChunk.jsonEncodeMs + perChunk.jsonDecodeMs + 2 * perChunk.schemaCheckMs),
    ...wholeBlob,
  }
}

try {
  log(`bench: ${values.mib} MiB from another process over 127.0.0.1, ${runs} runs each (medians), chunks of ${maxBlobChunkBytes >> 20} MiB` +
    (latencyMs > 0 ? `, ${latencyMs} ms added to each chunk request of fetchResumable` : ''))
  const mbps = (ms: number): number => Number((blobBytes / 1e6 / (ms / 1000)).toFixed(1))
  const { tcpMs, rawMs, rawDiskMs, v3Ms, v2Ms, serialMs, rangeMs, resumableMs, resumableV2Ms } = await timedInTurns({
    tcpMs: tcpOnce,
    rawMs: rawStreamOnce,
    rawDiskMs: rawToDiskOnce,
    v3Ms: () => chunkByChunkOnce(fetchChunkV3),
    v2Ms: () => chunkByChunkOnce(fetchChunkV2),
    serialMs: () => fetchResumableOnce({ chunksInFlight: 1 }),
    rangeMs: () => fetchResumableOnce({ ranges: true }),
    resumableMs: () => fetchResumableOnce(),
    resumableV2Ms: () => fetchResumableOnce({ v2: true }),
  })
  const parts = await breakdown()
    const report = {
    bytes: blobBytes,
    runs,
    chunkBytes: maxBlobChunkBytes,
    protocol: fetchBlobBinaryProtocol.id,
    latencyMs,
    tcp: { ms: round(tcpMs), mbps: mbps(tcpMs) },
    rawStream: { ms: round(rawMs), mbps: mbps(rawMs), vsTcp: round(tcpMs / rawMs) },
    rawStreamToDisk: { ms: round(rawDiskMs), mbps: mbps(rawDiskMs), vsTcp: round(tcpMs / rawDiskMs), vsRawStream: round(rawMs / rawDiskMs) },
    fetchBlobV3: { ms: round(v3Ms), mbps: mbps(v3Ms), vsTcp: round(tcpMs / v3Ms), vsRawStream: round(rawMs / v3Ms) },
    fetchBlobV2: { ms: round(v2Ms), mbps: mbps(v2Ms), vsTcp: round(tcpMs / v2Ms), vsRawStream: round(rawMs / v2Ms) },
    fetchResumableOneAtATime: { ms: round(serialMs), mbps: mbps(serialMs), vsTcp: round(tcpMs / serialMs), vsRawStream: round(rawMs / serialMs) },
    fetchResumable: { ms: round(rangeMs), mbps: mbps(rangeMs), vsTcp: round(tcpMs / rangeMs), vsRawStream: round(rawMs / rangeMs), vsRawStreamToDisk: round(rawDiskMs / rangeMs) },
    fetchResumableChunksV3: { ms: round(resumableMs), mbps: mbps(resumableMs), vsTcp: round(tcpMs / resumableMs), vsRawStream: round(rawMs / resumableMs) },
    fetchResumableV2: { ms: round(resumableV2Ms), mbps: mbps(resumableV2Ms), vsTcp: round(tcpMs / resumableV2Ms), vsRawStream: round(rawMs / resumableV2Ms) },
    breakdown: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, round(v)])),
  }
  if (values.json) {
    console.log(JSON.stringify(report))
  } else {
    log(`  plain TCP socket (baseline)         ${report.tcp.mbps} MB/s  (${report.tcp.ms} ms)`)
    log(`  raw libp2p stream (noise + yamux)   ${report.rawStream.mbps} MB/s  (${report.rawStream.ms} ms, ${report.rawStream.vsTcp}x TCP)`)
    const line = (label: string, way: { ms: number; mbps: number; vsTcp: number; vsRawStream: number }): void =>
      log(`  ${label.padEnd(36)}${way.mbps} MB/s  (${way.ms} ms, ${way.vsTcp}x TCP, ${way.vsRawStream}x the raw stream)`)
    log(`  one chunk at a time, into memory:`)
    line('  fetch-blob/3 (raw bytes)', report.fetchBlobV3)
    line('  fetch-blob/2 (base64 in JSON)', report.fetchBlobV2)
    line('raw stream to disk, hashed', report.rawStreamToDisk)
    log(`  fetchResumable to disk, verified (the provider's path):`)
    line('  /4, the rest of the blob on one stream', report.fetchResumable)
    log(`    (${report.fetchResumable.vsRawStreamToDisk}x the raw stream to disk)`)
    line('  /3, 2 chunks in flight', report.fetchResumableChunksV3)
    line('  /3, one chunk at a time', report.fetchResumableOneAtATime)
    line('  /2, 2 chunks in flight', report.fetchResumableV2)
    const b = report.breakdown
    log(`  per ${maxBlobChunkBytes >> 20} MiB chunk (${b.frameBytes} bytes of JSON): base64 encode ${b.base64EncodeMs} ms, decode ${b.base64DecodeMs} ms, ` +
      `JSON encode ${b.jsonEncodeMs} ms, decode ${b.jsonDecodeMs} ms, schema check ${b.schemaCheckMs} ms (done twice)`)
    log(`  per blob: that CPU work ${b.perBlobCpuMs} ms over ${b.chunks} chunks; sha256 ${b.sha256Ms} ms; file write ${b.fileWriteMs} ms`)
  }
} finally {
  await receiver.stop()
  child.stdin.end()
  await rm(dir, { recursive: true, force: true })
}
