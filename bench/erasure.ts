/**
 * `node --import tsx bench/erasure.ts [--json] [--runs 5] [--mib 64]`: what erasure coding a stored file costs.
 *
 * `--mib` MiB of random data, cut into stripes of 1 MiB of data as storage cuts a file, are erasure coded
 * (src/storage/erasure.ts, the @ronomon/reed-solomon addon) with (k, m) = (4, 2), (10, 6) and (12, 6): encoding every
 * stripe into k + m shards, and decoding every stripe with m data shards lost (the worst case: as many shards as
 * possible rebuilt by arithmetic rather than read back). Two baselines run on the same stripes in the same rounds: a
 * plain copy of each stripe (what any coding must at least pay, as it copies the stripe into its shards) and
 * AES-256-GCM over each stripe (what encrypting a stripe before storing it costs, for scale).
 *
 * Throughput is MB/s per core: 10^6 bytes of stripe data per second of CPU time of this process (process.cpuUsage,
 * which counts the threadpool threads the addon codes on), the median of `--runs` rounds after one warm-up round, the
 * ways taking turns so that load from elsewhere falls on all of them alike. CPU time rather than wall time, as the
 * coding runs on the threadpool and a busy machine stretches wall time without the coding costing more; wall MB/s is
 * given too.
 *
 * Also, on the same data: the owner's whole path (sealed with storage/seal.ts, then each sealed segment coded 10 + 6),
 * and repair (storage/dispersal.ts repairPieces: m of the n pieces rebuilt from the others, every shard read checked
 * against its piece's root), as MB/s of file data and CPU seconds per GiB of file.
 *
 * What it showed on a loaded 2-core machine: (4, 2) encodes at ~2.5 GB/s per core and (10, 6) at ~1.5, both near or
 * above AES-GCM; (12, 6) drops to ~0.9, as the addon needs GF(2^8) once k + m > 16 (up to 16 shards it codes in
 * GF(2^4), a bit matrix a quarter the size). Decoding with m data shards lost costs about what encoding does.
 */
import { createCipheriv, randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { answerRead, disperseFile, repairPieces, type PieceSink, type StoredPiece } from '../src/storage/dispersal.ts'
import { leafHash, merkleLevels } from '../src/storage/merkle.ts'
import { newFileId, sealFile } from '../src/storage/seal.ts'
import { decodeStripe, encodeStripe, shardBytes } from '../src/storage/erasure.ts'
import type { ErasureParams } from '../src/storage/erasure.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '5' },
    mib: { type: 'string', default: '64' },
  },
})
const runs = Number(values.runs)
const totalBytes = Math.round(Number(values.mib) * 1024 * 1024)
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs is ${values.runs}; give a whole number of at least 1`)
if (!(totalBytes > 0)) throw new Error(`--mib is ${values.mib}; give a positive number of MiB`)
const stripeBytes = 1024 * 1024
const codes: ErasureParams[] = [
  { k: 4, m: 2 },
  { k: 10, m: 6 },
  { k: 12, m: 6 },
]

const log = lineLogger(values.json)

/** CPU and wall time of one pass over all stripes, in ms. */
interface Timing {
  cpuMs: number
  wallMs: number
}

/** A way's throughput over the data: per core (CPU time) and on the wall clock. */
interface Rate {
  cpuMBps: number
  wallMBps: number
  cpuMs: number
}

/**
 * Median CPU and wall times of `runs` rounds in which every way runs once, after one warm-up round (which also builds
 * each (k, m) context and lets V8 compile the paths).
 */
async function timedInTurns<K extends string>(ways: Record<K, () => Promise<void>>): Promise<Record<K, Timing>> {
  const keys = Object.keys(ways) as K[]
  const cpu = Object.fromEntries(keys.map((key) => [key, [] as number[]])) as Record<K, number[]>
  const wall = Object.fromEntries(keys.map((key) => [key, [] as number[]])) as Record<K, number[]>
  for (let turn = 0; turn <= runs; turn++) {
    for (const key of keys) {
      const startedAt = performance.now()
      const cpuBefore = process.cpuUsage()
      await ways[key]()
      const used = process.cpuUsage(cpuBefore)
      if (turn === 0) continue
      cpu[key].push((used.user + used.system) / 1000)
      wall[key].push(performance.now() - startedAt)
    }
  }
  return Object.fromEntries(keys.map((key) => [key, { cpuMs: median(cpu[key]), wallMs: median(wall[key]) }])) as Record<K, Timing>
}

function rate({ cpuMs, wallMs }: Timing): Rate {
  return { cpuMBps: Math.round(totalBytes / 1e3 / cpuMs), wallMBps: Math.round(totalBytes / 1e3 / wallMs), cpuMs: round(cpuMs) }
}

const data = randomBytes(totalBytes)
const stripes: Buffer[] = []
for (let offset = 0; offset < totalBytes; offset += stripeBytes) stripes.push(data.subarray(offset, Math.min(offset + stripeBytes, totalBytes)))

// --- baselines ---------------------------------------------------------------------------------------------------------

/** Kept so that the copies are not dead code V8 could drop. */
let sink = 0

async function copyOnce(): Promise<void> {
  for (const stripe of stripes) sink ^= Buffer.from(stripe)[0]!
}

const key = randomBytes(32)
const iv = randomBytes(12)

async function aesGcmOnce(): Promise<void> {
  for (let i = 0; i < stripes.length; i++) {
    // A fresh nonce per stripe, as storing would need; the counter in its first bytes keeps them apart.
    iv.writeUInt32BE(i, 0)
    const cipher = createCipheriv('aes-256-gcm', key, iv)
    sink ^= cipher.update(stripes[i]!)[0]!
    cipher.final()
    sink ^= cipher.getAuthTag()[0]!
  }
}

// --- erasure coding ----------------------------------------------------------------------------------------------------

/** Each stripe's shards with the first m (data) shards lost: what the decode ways start from. */
async function damagedStripes(params: ErasureParams): Promise<(Uint8Array | undefined)[][]> {
  const damaged: (Uint8Array | undefined)[][] = []
  for (const stripe of stripes) {
    const shards: (Uint8Array | undefined)[] = await encodeStripe(params, stripe)
    for (let i = 0; i < params.m; i++) shards[i] = undefined
    damaged.push(shards)
  }
  // A bench of a wrong answer is no bench: the first and last stripes must come back whole.
  for (const i of [0, stripes.length - 1]) {
    const decoded = await decodeStripe(params, damaged[i]!, stripes[i]!.length)
    const whole = Buffer.from(decoded.buffer, decoded.byteOffset, decoded.length).equals(stripes[i]!)
    if (!whole) throw new Error(`(${params.k}, ${params.m}): stripe ${i} decoded wrong`)
  }
  return damaged
}

// --- the whole owner-side path: seal (storage/seal.ts), then erasure-code each sealed segment --------------------------

const storageKey = { bytes: new Uint8Array(randomBytes(32)) }
const sealedCode: ErasureParams = { k: 10, m: 6 }

async function sealAndEncodeOnce(): Promise<void> {
  for await (const segment of sealFile(storageKey, newFileId(), stripes, stripeBytes)) sink ^= (await encodeStripe(sealedCode, segment))[0]![0]!
}

// --- repair: the m pieces of a dispersed file rebuilt from the others (storage/dispersal.ts), shards checked -------------

const dispersed = await (async () => {
  const pieces: StoredPiece[] = Array.from({ length: sealedCode.k + sealedCode.m }, () => ({ shards: [], levels: [] }))
  const sinks = pieces.map((piece): PieceSink => ({
    write: async (shard) => void piece.shards.push(Uint8Array.from(shard)),
    end: async () => void (piece.levels = merkleLevels(piece.shards.map((shard) => leafHash(shard)))),
  }))
  const layout = await disperseFile(storageKey, newFileId(), stripes, sealedCode, sinks, stripeBytes)
  return { layout, pieces }
})()
const lostPieces = Array.from({ length: sealedCode.m }, (_, i) => i * 2)

async function repairOnce(): Promise<void> {
  const { layout, pieces } = dispersed
  const sources = pieces.map((piece) => ({ read: async (stripe: number) => answerRead(piece, stripe) }))
  const drop: PieceSink = { write: async (shard) => void (sink ^= shard[0]!), end: async () => undefined }
  await repairPieces(layout, sources, lostPieces, lostPieces.map(() => drop))
}

const label = ({ k, m }: ErasureParams): string => `${k}+${m}`
const ways: Record<string, () => Promise<void>> = { copy: copyOnce, aesGcm: aesGcmOnce, sealAndEncode: sealAndEncodeOnce, repair: repairOnce }
for (const params of codes) {
  const damaged = await damagedStripes(params)
  ways[`encode ${label(params)}`] = async () => {
    for (const stripe of stripes) await encodeStripe(params, stripe)
  }
  ways[`decode ${label(params)}`] = async () => {
    for (let i = 0; i < stripes.length; i++) await decodeStripe(params, damaged[i]!, stripes[i]!.length)
  }
}

log(`bench: ${values.mib} MiB of random data in ${stripes.length} stripes of 1 MiB, ${runs} runs each (medians); ` +
  'MB/s per core = 10^6 data bytes per CPU second of this process (all threads)')
const timings = await timedInTurns(ways)
const copy = rate(timings.copy!)
const aesGcm = rate(timings.aesGcm!)
const versus = (r: Rate) => ({ vsCopy: round(r.cpuMBps / copy.cpuMBps), vsAesGcm: round(r.cpuMBps / aesGcm.cpuMBps) })
const report = {
  mib: Number(values.mib),
  runs,
  stripeBytes,
  baselines: { copy, aesGcm },
  sealAndEncode: { k: sealedCode.k, m: sealedCode.m, ...rate(timings.sealAndEncode!), ...versus(rate(timings.sealAndEncode!)) },
  // Rate over the file's bytes: m of its n pieces rebuilt (each shard read back checked against its root).
  repair: { k: sealedCode.k, m: sealedCode.m, piecesRebuilt: lostPieces.length, ...rate(timings.repair!), cpuSecPerGiB: round((1024 / rate(timings.repair!).cpuMBps) * 1.048576) },
  codes: codes.map((params) => {
    const encode = rate(timings[`encode ${label(params)}`]!)
    const decode = rate(timings[`decode ${label(params)}`]!)
    return {
      k: params.k,
      m: params.m,
      shardBytes: shardBytes(params, stripeBytes),
      encode: { ...encode, ...versus(encode) },
      decode: { ...decode, lostDataShards: params.m, ...versus(decode) },
    }
  }),
}

if (values.json) {
  console.log(JSON.stringify(report))
} else {
  const row = (name: string, r: Rate, extra = '') =>
    log(`  ${name.padEnd(44)}${String(r.cpuMBps).padStart(8)} MB/s/core ${String(r.wallMBps).padStart(8)} MB/s wall${extra}`)
  row('plain copy (baseline)', copy)
  row('AES-256-GCM (baseline)', aesGcm)
  const whole = report.sealAndEncode
  row(`seal + encode k=${whole.k} m=${whole.m} (the owner's path)`, whole, `   ${whole.vsAesGcm}x AES-GCM, ${whole.vsCopy}x copy`)
  const repair = report.repair
  row(`repair ${repair.piecesRebuilt} of ${repair.k + repair.m} pieces (file bytes)`, repair, `   ${repair.cpuSecPerGiB} CPU s per GiB of file`)
  for (const c of report.codes) {
    const vs = (v: { vsCopy: number; vsAesGcm: number }) => `   ${v.vsAesGcm}x AES-GCM, ${v.vsCopy}x copy`
    row(`encode k=${c.k} m=${c.m} (${c.shardBytes} B shards)`, c.encode, vs(c.encode))
    row(`decode k=${c.k} m=${c.m}, ${c.m} data shards lost`, c.decode, vs(c.decode))
  }
}
if (sink === -1) console.log('')
