/**
 * Content-addressed transfer: a blob named by its sha256 content id is fetched in chunks into a `.part` file, resumed
 * from where it stopped after a broken connection (the `.part` file survives a restart too), bounded in size, and
 * checked against its id before it is renamed into place. Nothing unverified is ever read as a package.
 * `blobSource` asks a peer for the rest of the blob in one answer over fetch-blob/4, read and written as it arrives;
 * `blobChunks` for chunks over fetch-blob/3 (raw bytes), or fetch-blob/2 where the peer is older.
 */
import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { HearthError, isHearthError } from '../errors.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import { fetchBlobBinaryProtocol, fetchBlobProtocol, fetchBlobRangeProtocol, maxBlobRangeBytes } from './task-protocols.ts'

export interface Chunk {
  /** Size of the whole blob, as the sender states it (checked against the bound and the content id). */
  totalBytes: number
  offset: number
  data: Uint8Array
}

/** The rest of a blob from one offset, as one answer read as it arrives (fetch-blob/4). */
export interface Range {
  /** Size of the whole blob, as the sender states it. */
  totalBytes: number
  offset: number
  /** The range's bytes in order, as they come; a loop left early ends the exchange. */
  pieces: AsyncIterable<Uint8Array>
}

export interface FetchResumableInit {
  contentId: string
  /** Final path; the partial download lives at `${path}.part`. */
  path: string
  /** Asks the sender for up to `maxBytes` starting at `offset`. */
  fetchChunk: (offset: number, maxBytes: number) => Promise<Chunk>
  /**
   * Asks the sender for the blob from `offset` on (up to `maxBytes`) in one answer: no round trip per chunk. Resolves
   * to undefined when the sender cannot answer so (an older peer): `fetchChunk` takes over from there.
   */
  fetchRange?: (offset: number, maxBytes: number) => Promise<Range | undefined>
  chunkBytes?: number
  /** Refuse blobs larger than this. */
  maxBytes: number
  /**
   * Attempts per chunk before giving up (a failed attempt resumes at the same offset); over ranges, attempts in a row
   * that bring no byte.
   */
  attempts?: number
  /**
   * Chunks asked for at once (default 2): the sender encodes the next chunk while this side takes in the current one.
   * Chunks are still written in order, so what a broken transfer leaves in `.part` is always a prefix of the blob.
   */
  chunksInFlight?: number
}

export interface FetchResumableResult {
  path: string
  /** Bytes received over the network in this call (less than the blob's size when a partial download was resumed). */
  fetchedBytes: number
}

/** A running sha256 over what `path` holds so far (nothing when it does not exist). */
async function sha256Of(path: string): Promise<Hash> {
  const hash = createHash('sha256')
  const exists = (await stat(path).catch(() => undefined)) !== undefined
  if (exists) for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash
}

/** Bytes received but not yet on disk, at most: writes go on while the next bytes arrive. */
const maxUnwrittenBytes = 8 * 1024 * 1024

/**
 * What has arrived of a blob: appended to the `.part` file in order (one write at a time, while the next bytes
 * arrive, so the file always holds a prefix of the blob) and hashed as it comes, so the blob is not read back at the end.
 */
class Received {
  offset: number
  totalBytes: number | undefined
  fetchedBytes = 0
  private writing: Promise<unknown> = Promise.resolve()
  private unwritten = 0

  constructor(
    private readonly init: FetchResumableInit,
    private readonly file: FileHandle,
    private readonly hash: Hash,
    offset: number,
  ) {
    this.offset = offset
  }

  get done(): boolean {
    return this.totalBytes !== undefined && this.offset >= this.totalBytes
  }

  /** Checks a sender's statement of where its bytes start and the blob's size against the transfer. */
  expect(offset: number, totalBytes: number): void {
    const { contentId } = this.init
    if (totalBytes > this.init.maxBytes) {
      throw new HearthError('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', `${contentId} is ${totalBytes} bytes, above the limit of ${this.init.maxBytes}`)
    }
    if (offset !== this.offset || (this.totalBytes !== undefined && totalBytes !== this.totalBytes)) {
      throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the sender of ${contentId} answered with bytes that do not fit the transfer`)
    }
    this.totalBytes = totalBytes
  }

  /** Takes `data`, which the sender said start at the current offset. */
  async take(data: Uint8Array): Promise<void> {
    const { contentId } = this.init
    if (this.offset + data.length > this.totalBytes!) {
      throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the sender of ${contentId} sent more than the stated ${this.totalBytes} bytes`)
    }
    this.hash.update(data)
    this.offset += data.length
    this.fetchedBytes += data.length
    this.unwritten += data.length
    this.writing = this.writing.then(async () => {
      await this.file.write(data)
      this.unwritten -= data.length
    })
    // A failed write fails the next take (or flush); until then nobody waits on it.
    this.writing.catch(() => {})
    if (this.unwritten > maxUnwrittenBytes) await this.writing
  }

  /** Waits until everything taken is on disk (throws a failed write). */
  async flush(): Promise<void> {
    await this.writing
  }
}

export async function fetchResumable(init: FetchResumableInit): Promise<FetchResumableResult> {
  const partPath = `${init.path}.part`
  await mkdir(dirname(init.path), { recursive: true })
  const offset = (await stat(partPath).catch(() => undefined))?.size ?? 0
  // The hash runs along with the writes (the resumed prefix first), so the blob is not read back at the end.
  const hash = await sha256Of(partPath)
  const file = await open(partPath, 'a')
  const received = new Received(init, file, hash, offset)
  try {
    try {
      if (init.fetchRange === undefined || !(await receiveRanges(init, init.fetchRange, received))) await receiveChunks(init, received)
    } finally {
      // Whatever arrived in order stays in .part for the next try.
      await received.flush().catch(() => undefined)
    }
    await received.flush()
  } finally {
    await file.close()
  }
  if (`sha256:${hash.digest('hex')}` !== init.contentId) {
    // A wrong blob is no base to resume from.
    await rm(partPath, { force: true })
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the blob received for ${init.contentId} has another hash`)
  }
  await rename(partPath, init.path)
  return { path: init.path, fetchedBytes: received.fetchedBytes }
}

function stoppedAt(init: FetchResumableInit, at: number, attempts: number, cause: unknown): HearthError {
  return new HearthError('HEARTH_ERR_NET_REMOTE', `the transfer of ${init.contentId} stopped at byte ${at} after ${attempts} attempts`, {
    hint: 'it resumes from there on the next try',
    cause,
    details: { contentId: init.contentId, offset: at },
  })
}

/** A failure that is the sender's answer not fitting the transfer: no retry will mend it. */
function refusesTransfer(error: unknown): boolean {
  return isHearthError(error, 'HEARTH_ERR_EXEC_PACKAGE_HASH') || isHearthError(error, 'HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE')
}

/**
 * Takes the blob as ranges, each from where the last stopped, until it is whole; resolves false (nothing more done)
 * once the sender turns out not to answer ranges. A range that breaks off is asked again from where it stopped;
 * `attempts` ranges in a row that bring nothing stop the transfer.
 */
async function receiveRanges(init: FetchResumableInit, fetchRange: NonNullable<FetchResumableInit['fetchRange']>, received: Received): Promise<boolean> {
  const attempts = init.attempts ?? 3
  let failed = 0
  let lastError: unknown
  do {
    if (failed >= attempts) throw stoppedAt(init, received.offset, attempts, lastError)
    const from = received.offset
    try {
      const range = await fetchRange(from, Math.max(1, init.maxBytes - from))
      if (range === undefined) return false
      received.expect(range.offset, range.totalBytes)
      for await (const piece of range.pieces) await received.take(piece)
      if (!received.done) throw new HearthError('HEARTH_ERR_NET_REMOTE', `the sender of ${init.contentId} ended its range at byte ${received.offset} of ${received.totalBytes}`)
    } catch (error) {
      if (refusesTransfer(error)) throw error
      lastError = error
    }
    failed = received.offset > from ? 0 : failed + 1
  } while (!received.done)
  return true
}

/** Takes the blob chunk by chunk, up to `chunksInFlight` asked ahead, each retried at its offset. */
async function receiveChunks(init: FetchResumableInit, received: Received): Promise<void> {
  const chunkBytes = init.chunkBytes ?? 1024 * 1024
  const attempts = init.attempts ?? 3
  const window = init.chunksInFlight ?? 2
  let stopped = false

  /** One chunk, retried at the same offset; an attempt that fails once the transfer has stopped is not retried. */
  const fetchWithRetries = async (at: number): Promise<Chunk> => {
    let lastError: unknown
    for (let attempt = 1; attempt <= attempts && !stopped; attempt++) {
      try {
        return await init.fetchChunk(at, chunkBytes)
      } catch (error) {
        lastError = error
      }
    }
    throw stoppedAt(init, at, attempts, lastError)
  }
  /** Chunks asked for and not yet written, in offset order. */
  let ahead: { at: number; chunk: Promise<Chunk> }[] = []
  const ask = (at: number): void => {
    const chunk = fetchWithRetries(at)
    // A chunk asked ahead may fail after the transfer stopped for another reason; nobody waits for it then.
    chunk.catch(() => {})
    ahead.push({ at, chunk })
  }

  try {
    while (!received.done) {
      // Chunks asked ahead assume full chunks; a sender that answered a shorter one invalidates them.
      if (ahead[0]?.at !== received.offset) ahead = []
      if (ahead.length === 0) ask(received.offset)
      // Once the size is known, keep up to `window` chunks in flight, so the sender prepares the next chunk while
      // this side decodes and writes the current one.
      while (received.totalBytes !== undefined && ahead.length < window) {
        const next = ahead[ahead.length - 1]!.at + chunkBytes
        if (next >= received.totalBytes) break
        ask(next)
      }
      const chunk = await ahead.shift()!.chunk
      received.expect(chunk.offset, chunk.totalBytes)
      if (chunk.data.length > chunkBytes) {
        throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the sender of ${init.contentId} answered a chunk that does not fit the transfer`)
      }
      if (chunk.data.length === 0 && !received.done) {
        throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the sender of ${init.contentId} sent an empty chunk at byte ${received.offset}`)
      }
      await received.take(chunk.data)
    }
  } finally {
    stopped = true
  }
}

/** A failure that says the peer does not serve that protocol (or only other versions of it): ask another way. */
function peerLacksProtocol(error: unknown): boolean {
  return isHearthError(error, 'HEARTH_ERR_NET_VERSION') || (isHearthError(error, 'HEARTH_ERR_NET_DIAL') && error.details?.reason === 'unsupported-protocol')
}

/**
 * Where fetchResumable takes `contentId` from the peer `from`: as ranges over fetch-blob/4 (one stream for the rest of
 * the blob); from a peer that does not serve /4 (an older requestor), chunk by chunk (`blobChunks`).
 */
export function blobSource(
  host: Pick<Host, 'requestBlob' | 'requestBlobStream' | 'request'>,
  from: PeerTarget,
  contentId: string,
): Pick<FetchResumableInit, 'fetchRange' | 'fetchChunk'> {
  let ranges = true
  return {
    fetchChunk: blobChunks(host, from, contentId),
    async fetchRange(offset, maxBytes) {
      if (!ranges) return undefined
      let answer
      try {
        const asked = Math.min(maxBytes, maxBlobRangeBytes)
        answer = await host.requestBlobStream(from, fetchBlobRangeProtocol, { contentId, offset, maxBytes: asked }, { maxBodyBytes: asked })
      } catch (error) {
        if (!peerLacksProtocol(error)) throw error
        ranges = false
        return undefined
      }
      if (answer.header.contentId !== contentId) {
        // Ends the exchange unread.
        await answer.body[Symbol.asyncIterator]().return?.()
        throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `asked for ${contentId}, the sender answered with a range of ${answer.header.contentId}`)
      }
      return { totalBytes: answer.header.totalBytes, offset: answer.header.offset, pieces: answer.body }
    },
  }
}

/**
 * Chunks of `contentId` from the peer `from`, for fetchResumable: over fetch-blob/3, whose bytes travel unencoded;
 * a peer that does not serve /3 (an older requestor) is asked over fetch-blob/2 from then on.
 */
export function blobChunks(host: Pick<Host, 'requestBlob' | 'request'>, from: PeerTarget, contentId: string): (offset: number, maxBytes: number) => Promise<Chunk> {
  let binary = true
  return async (offset, maxBytes) => {
    if (binary) {
      try {
        const { header, body } = await host.requestBlob(from, fetchBlobBinaryProtocol, { contentId, offset, maxBytes }, { maxBodyBytes: maxBytes })
        if (header.contentId !== contentId) {
          throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `asked for ${contentId}, the sender answered with a chunk of ${header.contentId}`)
        }
        return { totalBytes: header.totalBytes, offset: header.offset, data: body }
      } catch (error) {
        if (!peerLacksProtocol(error)) throw error
        binary = false
      }
    }
    const chunk = await host.request(from, fetchBlobProtocol, { contentId, offset, maxBytes })
    if (chunk.contentId !== contentId) {
      throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `asked for ${contentId}, the sender answered with a chunk of ${chunk.contentId}`)
    }
    return { totalBytes: chunk.totalBytes, offset: chunk.offset, data: Buffer.from(chunk.dataBase64, 'base64') }
  }
}
