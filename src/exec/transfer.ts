/**
 * Content-addressed transfer: a blob named by its sha256 content id is fetched in chunks into a `.part` file, resumed
 * from where it stopped after a broken connection (the `.part` file survives a restart too), bounded in size, and
 * checked against its id before it is renamed into place. Nothing unverified is ever read as a package.
 * `blobChunks` asks a peer for those chunks over fetch-blob/3 (raw bytes), or fetch-blob/2 where the peer is older.
 */
import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, rename, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { HearthError, isHearthError } from '../errors.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import { fetchBlobBinaryProtocol, fetchBlobProtocol } from './activity-protocols.ts'

export interface Chunk {
  /** Size of the whole blob, as the sender states it (checked against the bound and the content id). */
  totalBytes: number
  offset: number
  data: Uint8Array
}

export interface FetchResumableInit {
  contentId: string
  /** Final path; the partial download lives at `${path}.part`. */
  path: string
  /** Asks the sender for up to `maxBytes` starting at `offset`. */
  fetchChunk: (offset: number, maxBytes: number) => Promise<Chunk>
  chunkBytes?: number
  /** Refuse blobs larger than this. */
  maxBytes: number
  /** Attempts per chunk before giving up (a failed attempt resumes at the same offset). */
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

export async function fetchResumable(init: FetchResumableInit): Promise<FetchResumableResult> {
  const chunkBytes = init.chunkBytes ?? 1024 * 1024
  const attempts = init.attempts ?? 3
  const window = init.chunksInFlight ?? 2
  const partPath = `${init.path}.part`
  await mkdir(dirname(init.path), { recursive: true })
  let offset = (await stat(partPath).catch(() => undefined))?.size ?? 0
  // The hash runs along with the writes (the resumed prefix first), so the blob is not read back at the end.
  const hash = await sha256Of(partPath)
  let totalBytes: number | undefined
  let fetchedBytes = 0
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
    throw new HearthError('HEARTH_ERR_NET_REMOTE', `the transfer of ${init.contentId} stopped at byte ${at} after ${attempts} attempts`, {
      hint: 'it resumes from there on the next try',
      cause: lastError,
      details: { contentId: init.contentId, offset: at },
    })
  }
  /** Chunks asked for and not yet written, in offset order. */
  let ahead: { at: number; chunk: Promise<Chunk> }[] = []
  const ask = (at: number): void => {
    const chunk = fetchWithRetries(at)
    // A chunk asked ahead may fail after the transfer stopped for another reason; nobody waits for it then.
    chunk.catch(() => {})
    ahead.push({ at, chunk })
  }

  const file = await open(partPath, 'a')
  try {
    while (totalBytes === undefined || offset < totalBytes) {
      // Chunks asked ahead assume full chunks; a sender that answered a shorter one invalidates them.
      if (ahead[0]?.at !== offset) ahead = []
      if (ahead.length === 0) ask(offset)
      // Once the size is known, keep up to `window` chunks in flight, so the sender prepares the next chunk while
      // this side decodes and writes the current one.
      while (totalBytes !== undefined && ahead.length < window) {
        const next = ahead[ahead.length - 1]!.at + chunkBytes
        if (next >= totalBytes) break
        ask(next)
      }
      const chunk = await ahead.shift()!.chunk
      if (chunk.totalBytes > init.maxBytes) {
        throw new HearthError('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', `${init.contentId} is ${chunk.totalBytes} bytes, above the limit of ${init.maxBytes}`)
      }
      if (chunk.offset !== offset || (totalBytes !== undefined && chunk.totalBytes !== totalBytes) || chunk.data.length > chunkBytes) {
        throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the sender of ${init.contentId} answered a chunk that does not fit the transfer`)
      }
      totalBytes = chunk.totalBytes
      if (chunk.data.length === 0 && offset < totalBytes) {
        throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the sender of ${init.contentId} sent an empty chunk at byte ${offset}`)
      }
      if (offset + chunk.data.length > totalBytes) {
        throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the sender of ${init.contentId} sent more than the stated ${totalBytes} bytes`)
      }
      await file.write(chunk.data)
      hash.update(chunk.data)
      offset += chunk.data.length
      fetchedBytes += chunk.data.length
    }
  } finally {
    stopped = true
    await file.close()
  }
  if (`sha256:${hash.digest('hex')}` !== init.contentId) {
    // A wrong blob is no base to resume from.
    await rm(partPath, { force: true })
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the blob received for ${init.contentId} has another hash`)
  }
  await rename(partPath, init.path)
  return { path: init.path, fetchedBytes }
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
        if (!(isHearthError(error, 'HEARTH_ERR_NET_DIAL') && error.details?.reason === 'unsupported-protocol')) throw error
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
