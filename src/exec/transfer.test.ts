import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { serveBlobProtocol } from '../net/blob-protocol.ts'
import { createHost, type Host } from '../net/host.ts'
import { encodeJsonFrame, jsonFrames } from '../net/json-frames.ts'
import { fetchBlobBinaryProtocol, fetchBlobProtocol, fetchBlobRangeProtocol, maxBlobChunkBytes } from './task-protocols.ts'
import { sha256Hex } from './content-hash.ts'
import { blobChunks, blobSource, fetchResumable, type Chunk, type Range } from './transfer.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-transfer-'))
after(() => rm(dir, { recursive: true, force: true }))
const blob = randomBytes(5 * 1024 * 1024 + 123)
const contentId = sha256Hex(blob)

/** A sender over `bytes`; the network is what fails here, so it is the part faked. */
function sender(bytes: Uint8Array, breakAt: Set<number> = new Set()) {
  const asked: number[] = []
  return {
    asked,
    fetchChunk: async (offset: number, maxBytes: number): Promise<Chunk> => {
      asked.push(offset)
      if (breakAt.delete(offset)) throw new Error('connection reset')
      return { totalBytes: bytes.length, offset, data: bytes.subarray(offset, offset + maxBytes) }
    },
  }
}

test('a blob arrives in chunks, is checked, and lands under its final name', async () => {
  const path = join(dir, 'a')
  const s = sender(blob)
  const result = await fetchResumable({ contentId, path, fetchChunk: s.fetchChunk, maxBytes: 64 << 20 })
  assert.equal(result.fetchedBytes, blob.length)
  assert.ok((await readFile(path)).equals(blob))
  assert.equal(s.asked.length, 6)
})

test('a broken connection is retried at the same offset, and a new call resumes a partial download', async () => {
  const path = join(dir, 'b')
  // The first chunk after 2 MiB fails once: retried at once, at the same offset.
  const flaky = sender(blob, new Set([2 << 20]))
  await fetchResumable({ contentId, path, fetchChunk: flaky.fetchChunk, maxBytes: 64 << 20 })
  assert.deepEqual(flaky.asked.filter((o) => o === 2 << 20).length, 2)

  // The process died at 3 MiB: what arrived stays in .part, and the next transfer asks only for the rest.
  const resumed = join(dir, 'c')
  await writeFile(`${resumed}.part`, blob.subarray(0, 3 << 20))
  const rest = sender(blob)
  const result = await fetchResumable({ contentId, path: resumed, fetchChunk: rest.fetchChunk, maxBytes: 64 << 20 })
  assert.equal(result.fetchedBytes, blob.length - (3 << 20))
  assert.equal(rest.asked[0], 3 << 20)
  assert.ok((await readFile(resumed)).equals(blob))
})

test('a sender that keeps failing stops the transfer but keeps what arrived for the next try', async () => {
  const path = join(dir, 'd')
  const healthy = sender(blob)
  // The sender answers the first MiB, then never again.
  const always = { fetchChunk: async (offset: number, maxBytes: number) => (offset >= 1 << 20 ? Promise.reject(new Error('gone')) : healthy.fetchChunk(offset, maxBytes)) }
  await assert.rejects(fetchResumable({ contentId, path, fetchChunk: always.fetchChunk, maxBytes: 64 << 20 }), (e) => isHearthError(e, 'HEARTH_ERR_NET_REMOTE') && /stopped at byte 1048576/.test(e.message))
  assert.equal((await stat(`${path}.part`)).size, 1 << 20)
})

test('a wrong blob, an oversized one, or chunks that do not fit are refused and nothing unverified is kept', async () => {
  const wrong = randomBytes(1000)
  await assert.rejects(fetchResumable({ contentId, path: join(dir, 'e'), fetchChunk: sender(wrong).fetchChunk, maxBytes: 64 << 20 }), (e) => isHearthError(e, 'HEARTH_ERR_EXEC_PACKAGE_HASH'))
  await assert.rejects(stat(join(dir, 'e')))
  await assert.rejects(stat(join(dir, 'e.part')))
  await assert.rejects(fetchResumable({ contentId, path: join(dir, 'f'), fetchChunk: sender(blob).fetchChunk, maxBytes: 1 << 20 }), (e) => isHearthError(e, 'HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE'))
  const lying = { fetchChunk: async (offset: number): Promise<Chunk> => ({ totalBytes: blob.length, offset: offset + 5, data: blob.subarray(0, 10) }) }
  await assert.rejects(fetchResumable({ contentId, path: join(dir, 'g'), fetchChunk: lying.fetchChunk, maxBytes: 64 << 20 }), (e) => isHearthError(e, 'HEARTH_ERR_EXEC_PACKAGE_HASH'))
})

/** A sender of ranges whose answers break off after `cutAfter` bytes, each of the next `cuts` times. */
function rangeSender(bytes: Uint8Array, cutAfter: number, cuts: number) {
  const asked: number[] = []
  let left = cuts
  const fetchRange = async (offset: number): Promise<Range> => {
    asked.push(offset)
    const cut = left-- > 0
    async function* pieces(): AsyncGenerator<Uint8Array> {
      const end = cut ? Math.min(bytes.length, offset + cutAfter) : bytes.length
      for (let at = offset; at < end; at += 300_000) yield bytes.subarray(at, Math.min(at + 300_000, end))
      if (cut) throw new Error('connection reset')
    }
    return { totalBytes: bytes.length, offset, pieces: pieces() }
  }
  return { asked, fetchRange }
}

const noChunks = async (): Promise<Chunk> => Promise.reject(new Error('no chunks: ranges only'))

test('a blob arrives as ranges: one that breaks off is asked again from where it stopped', async () => {
  const path = join(dir, 'r1')
  const s = rangeSender(blob, 2_000_000, 2)
  const result = await fetchResumable({ contentId, path, fetchRange: s.fetchRange, fetchChunk: noChunks, maxBytes: 64 << 20 })
  assert.equal(result.fetchedBytes, blob.length)
  assert.ok((await readFile(path)).equals(blob))
  // Each range brought what came before its break, and the next began where the file ended.
  assert.deepEqual(s.asked, [0, 2_000_000, 4_000_000])
})

test('ranges that bring nothing stop the transfer, keeping what arrived; an older sender is asked for chunks', async () => {
  const path = join(dir, 'r2')
  // The first range brings 900 kB; then every range breaks before its first piece.
  const first = rangeSender(blob, 900_000, 1)
  let calls = 0
  const stuck = async (offset: number): Promise<Range> => (calls++ === 0 ? first.fetchRange(offset) : rangeSender(blob, 0, 1).fetchRange(offset))
  await assert.rejects(fetchResumable({ contentId, path, fetchRange: stuck, fetchChunk: noChunks, maxBytes: 64 << 20 }), (e) => isHearthError(e, 'HEARTH_ERR_NET_REMOTE') && /stopped at byte 900000 after 3 attempts/.test(e.message))
  assert.equal(calls, 4)
  assert.equal((await stat(`${path}.part`)).size, 900_000)
  // A sender that does not answer ranges: chunks from where the file ends.
  const chunks = sender(blob)
  const result = await fetchResumable({ contentId, path, fetchRange: async () => undefined, fetchChunk: chunks.fetchChunk, maxBytes: 64 << 20 })
  assert.equal(result.fetchedBytes, blob.length - 900_000)
  assert.equal(chunks.asked[0], 900_000)
  assert.ok((await readFile(path)).equals(blob))
  // A range that does not fit the transfer, or an oversized blob, is refused at once, not retried.
  const lying = async (offset: number): Promise<Range> => ({ ...(await rangeSender(blob, 0, 0).fetchRange(offset)), offset: offset + 1 })
  await assert.rejects(fetchResumable({ contentId, path: join(dir, 'r3'), fetchRange: lying, fetchChunk: noChunks, maxBytes: 64 << 20 }), (e) => isHearthError(e, 'HEARTH_ERR_EXEC_PACKAGE_HASH'))
  await assert.rejects(fetchResumable({ contentId, path: join(dir, 'r4'), fetchRange: rangeSender(blob, 0, 0).fetchRange, fetchChunk: noChunks, maxBytes: 1 << 20 }), (e) => isHearthError(e, 'HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE'))
})

/** A sender whose later chunks answer first (writing in arrival order would scramble the file); counts requests in flight. */
function slowSender(shortAt?: number) {
  const state = { asked: [] as number[], inFlight: 0, mostInFlight: 0 }
  const fetchChunk = async (offset: number, maxBytes: number): Promise<Chunk> => {
    state.asked.push(offset)
    state.inFlight++
    state.mostInFlight = Math.max(state.mostInFlight, state.inFlight)
    await new Promise((resolve) => setTimeout(resolve, offset === 0 ? 1 : 20 - (offset >> 20) * 3))
    state.inFlight--
    const size = offset === shortAt ? maxBytes >> 1 : maxBytes
    return { totalBytes: blob.length, offset, data: blob.subarray(offset, offset + size) }
  }
  return { state, fetchChunk }
}

test('chunks are asked ahead, up to chunksInFlight at once, and written in order', async () => {
  const path = join(dir, 'h')
  const s = slowSender()
  const result = await fetchResumable({ contentId, path, fetchChunk: s.fetchChunk, maxBytes: 64 << 20, chunksInFlight: 3 })
  assert.equal(result.fetchedBytes, blob.length)
  assert.ok((await readFile(path)).equals(blob))
  assert.equal(s.state.mostInFlight, 3)
  // The first chunk tells the size; nothing is asked past the end.
  assert.deepEqual(s.state.asked, [0, 1, 2, 3, 4, 5].map((i) => i << 20))
})

test('a short answer from the sender drops the chunks asked ahead and the transfer goes on from where it is', async () => {
  const path = join(dir, 'i')
  // At 2 MiB the sender answers only half a chunk: the chunk asked ahead at 3 MiB no longer fits.
  const s = slowSender(2 << 20)
  const result = await fetchResumable({ contentId, path, fetchChunk: s.fetchChunk, maxBytes: 64 << 20, chunksInFlight: 3 })
  assert.equal(result.fetchedBytes, blob.length)
  assert.ok((await readFile(path)).equals(blob))
  assert.ok(s.state.asked.includes(2.5 * (1 << 20)), `asked ${s.state.asked.join(', ')}`)
})

describe('over the network: fetch-blob/4, and /3 or /2 for a peer without it', () => {
  let provider: Host
  let requestor: Host
  let older: Host
  let hostile: Host
  const served: Record<string, number> = { 2: 0, 3: 0, 4: 0 }
  let rangesAnswered = 0
  const serveV2 = (host: Host): Promise<void> => host.handle(fetchBlobProtocol, ({ contentId: id, offset, maxBytes }) => {
    served[2]!++
    return { contentId: id, totalBytes: blob.length, offset, dataBase64: Buffer.from(blob.subarray(offset, offset + maxBytes)).toString('base64') }
  })
  /** What the hostile sender writes on the stream after the request, given the chunk it was asked for. */
  let misbehave: (stream: Stream, offset: number, maxBytes: number) => Promise<void> = async () => {}
  const header = (offset: number, bodyBytes: number): Uint8Array => encodeJsonFrame({ ok: true, header: { contentId, totalBytes: blob.length, offset }, bodyBytes })

  before(async () => {
    const hosts = await Promise.all([0, 1, 2, 3].map(() => createHost({ identity: generateIdentity() })))
    await Promise.all(hosts.map((host) => host.start()))
    ;[provider, requestor, older, hostile] = hosts as [Host, Host, Host, Host]
    // As the requestor serves them (requestor/blob-server.ts start()), without its per-agreement allow-list.
    await serveBlobProtocol({ libp2p: requestor.libp2p }, fetchBlobBinaryProtocol, ({ contentId: id, offset, maxBytes }) => {
      served[3]!++
      return { header: { contentId: id, totalBytes: blob.length, offset }, body: blob.subarray(offset, offset + maxBytes) }
    })
    await serveV2(requestor)
    await serveBlobProtocol({ libp2p: requestor.libp2p }, fetchBlobRangeProtocol, ({ contentId: id, offset, maxBytes }) => {
      served[4]!++
      return { header: { contentId: id, totalBytes: blob.length, offset }, body: blob.subarray(offset, offset + maxBytes) }
    })
    await serveV2(older)
    // A range sender that breaks off after the first 1.5 MiB of its first answer, and is honest after.
    await hostile.libp2p.handle(fetchBlobRangeProtocol.id, async (stream) => {
      try {
        const { offset } = (await jsonFrames(stream, 1024).read()).value as { offset: number }
        const frames = jsonFrames(stream, 1024)
        const cut = rangesAnswered++ === 0
        await frames.writeFrames([header(offset, blob.length - offset)])
        const end = cut ? offset + (3 << 19) : blob.length
        for (let at = offset; at < end; at += 1 << 20) await frames.writeFrames([blob.subarray(at, Math.min(at + (1 << 20), end))])
        if (cut) return stream.abort(new Error('cut'))
        await stream.close()
      } catch (error) {
        stream.abort(error as Error)
      }
    })
    await hostile.libp2p.handle(fetchBlobBinaryProtocol.id, async (stream) => {
      try {
        const { offset, maxBytes } = (await jsonFrames(stream, 1024).read()).value as { offset: number; maxBytes: number }
        await misbehave(stream, offset, maxBytes)
        await stream.close()
      } catch (error) {
        stream.abort(error as Error)
      }
    })
  })
  after(() => Promise.all([provider, requestor, older, hostile].map((host) => host?.stop())))

  test('a blob moves on one stream over fetch-blob/4 from a peer that serves it', async () => {
    const path = join(dir, 'net-4')
    Object.assign(served, { 2: 0, 3: 0, 4: 0 })
    const result = await fetchResumable({ contentId, path, maxBytes: 64 << 20, chunkBytes: maxBlobChunkBytes, ...blobSource(provider, requestor.multiaddrs()[0]!, contentId) })
    assert.equal(result.fetchedBytes, blob.length)
    assert.ok((await readFile(path)).equals(blob))
    assert.deepEqual(served, { 2: 0, 3: 0, 4: 1 })
  })

  test('a peer without /4 is asked for chunks, over /2 when it lacks /3 too', async () => {
    const path = join(dir, 'net-4-older')
    Object.assign(served, { 2: 0, 3: 0, 4: 0 })
    const result = await fetchResumable({ contentId, path, maxBytes: 64 << 20, chunkBytes: 1 << 20, chunksInFlight: 1, ...blobSource(provider, older.multiaddrs()[0]!, contentId) })
    assert.ok((await readFile(path)).equals(blob))
    assert.equal(result.fetchedBytes, blob.length)
    assert.deepEqual(served, { 2: 6, 3: 0, 4: 0 })
  })

  test('a range cut off over the network is asked again from the end of what arrived, and completes', async () => {
    const path = join(dir, 'net-4-cut')
    const result = await fetchResumable({ contentId, path, maxBytes: 64 << 20, ...blobSource(provider, hostile.multiaddrs()[0]!, contentId) })
    assert.equal(result.fetchedBytes, blob.length)
    assert.ok((await readFile(path)).equals(blob))
    assert.equal(rangesAnswered, 2)
  })

  test('a blob moves as raw bytes over fetch-blob/3 from a peer that serves it', async () => {
    const path = join(dir, 'net-3')
    served[2] = 0
    served[3] = 0
    const result = await fetchResumable({ contentId, path, maxBytes: 64 << 20, chunkBytes: maxBlobChunkBytes, fetchChunk: blobChunks(provider, requestor.multiaddrs()[0]!, contentId) })
    assert.equal(result.fetchedBytes, blob.length)
    assert.ok((await readFile(path)).equals(blob))
    assert.deepEqual(served, { 2: 0, 3: 2, 4: 0 })
  })

  test('a peer that does not serve /3 is asked over /2 from then on', async () => {
    const path = join(dir, 'net-2')
    served[2] = 0
    served[3] = 0
    const result = await fetchResumable({ contentId, path, maxBytes: 64 << 20, chunkBytes: 1 << 20, chunksInFlight: 1, fetchChunk: blobChunks(provider, older.multiaddrs()[0]!, contentId) })
    assert.equal(result.fetchedBytes, blob.length)
    assert.ok((await readFile(path)).equals(blob))
    assert.deepEqual(served, { 2: 6, 3: 0, 4: 0 })
  })

  test('a sender that sends more than it declared stops the transfer, and only good bytes stay in .part', async () => {
    // Honest for the first chunk; from then on each body is longer than its header says.
    misbehave = async (stream, offset, maxBytes) => {
      await jsonFrames(stream, 1024).writeFrames([header(offset, maxBytes), offset === 0 ? blob.subarray(0, maxBytes) : new Uint8Array(maxBytes + 1)])
    }
    const path = join(dir, 'net-long')
    await assert.rejects(
      fetchResumable({ contentId, path, maxBytes: 64 << 20, chunkBytes: 1 << 20, chunksInFlight: 1, fetchChunk: blobChunks(provider, hostile.multiaddrs()[0]!, contentId) }),
      (e) => isHearthError(e, 'HEARTH_ERR_NET_REMOTE') && isHearthError(e.cause, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE') && /stopped at byte 1048576/.test(e.message),
    )
    assert.ok((await readFile(`${path}.part`)).equals(blob.subarray(0, 1 << 20)))
  })

  test('a truncated stream fails the chunk; the next transfer resumes from the good prefix and completes', async () => {
    // The body's length prefix promises the whole chunk; the sender ends the stream halfway through it.
    misbehave = async (stream, offset, maxBytes) => {
      const frames = jsonFrames(stream, 1024)
      if (offset === 0) return frames.writeFrames([header(offset, maxBytes), blob.subarray(0, maxBytes)])
      await frames.write(header(offset, maxBytes))
      stream.send(Uint8Array.from([0x80, 0x80, 0x40])) // varint 1 MiB
      stream.send(blob.subarray(offset, offset + (maxBytes >> 1)))
    }
    const path = join(dir, 'net-short')
    await assert.rejects(
      fetchResumable({ contentId, path, maxBytes: 64 << 20, chunkBytes: 1 << 20, chunksInFlight: 1, fetchChunk: blobChunks(provider, hostile.multiaddrs()[0]!, contentId) }),
      (e) => isHearthError(e, 'HEARTH_ERR_NET_REMOTE') && isHearthError(e.cause, 'HEARTH_ERR_NET_MESSAGE_INVALID') && /stream ended before a complete frame/.test(e.cause.message),
    )
    assert.ok((await readFile(`${path}.part`)).equals(blob.subarray(0, 1 << 20)))
    const rest = await fetchResumable({ contentId, path, maxBytes: 64 << 20, chunkBytes: 1 << 20, fetchChunk: blobChunks(provider, requestor.multiaddrs()[0]!, contentId) })
    assert.equal(rest.fetchedBytes, blob.length - (1 << 20))
    assert.ok((await readFile(path)).equals(blob))
  })
})
