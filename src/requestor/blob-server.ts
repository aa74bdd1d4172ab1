/**
 * The blobs a requestor serves to its providers: job packages (wasi modules, docker image archives), the probe's
 * program, and what its ExeScript activities provide (packages, input files), by content id: the rest of a blob from
 * an offset over fetch-blob/4, chunks over fetch-blob/3 (raw bytes) and fetch-blob/2 (base64 in JSON). Only providers
 * this requestor let in may fetch: those with an agreement of one of its jobs, and the provider of each activity while
 * it lives. A blob is served while some scope that served it (a job, an activity) is open, and dropped when the last
 * of them is released.
 */
import { HearthError } from '../errors.ts'
import { fetchBlobBinaryProtocol, fetchBlobProtocol, fetchBlobRangeProtocol } from '../exec/task-protocols.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import type { Host } from '../net/host.ts'

/** The blobs of one job or one activity: served while it is open, released when it closes. */
export interface BlobScope {
  /** Serves `bytes` under their content id (sha256), which it returns. */
  serve(bytes: Uint8Array): string
  /** Lets `provider` (an address) fetch blobs while this scope is open. */
  allow(provider: string): void
  /**
   * This scope no longer serves its blobs nor lets its providers in: blobs no other open scope serves are dropped, and
   * providers no other scope let in may fetch no more.
   */
  release(): void
}

export interface BlobServer {
  /**
   * Lets `provider` (an address) fetch blobs: it holds an agreement from this requestor, or runs one of its activities.
   * Returns what takes that back; a provider let in twice may fetch until both are taken back.
   */
  allow(provider: string): () => void
  openScope(): BlobScope
  /** The blobs served now, each with the number of open scopes that serve it. */
  served(): ReadonlyMap<string, number>
  /** Whether `provider` may fetch now. */
  allows(provider: string): boolean
  /** Answers fetch-blob/3 and /2. */
  start(): Promise<void>
  stop(): Promise<void>
}

export function createBlobServer(init: { host: Host }): BlobServer {
  const { host } = init
  const blobs = new Map<string, { bytes: Uint8Array; scopes: number }>()
  /** Providers let in, each with the number of times: only they may fetch this requestor's blobs. */
  const allowedFetchers = new Map<string, number>()
  const blobChunk = (contentId: string, offset: number, maxBytes: number, remoteAddress: string): { totalBytes: number; chunk: Uint8Array } => {
    const bytes = blobs.get(contentId)?.bytes
    if (bytes === undefined || !allowedFetchers.has(remoteAddress.toLowerCase())) {
      throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `this requestor does not serve ${contentId} to you`)
    }
    return { totalBytes: bytes.length, chunk: bytes.subarray(Math.min(offset, bytes.length), Math.min(offset + maxBytes, bytes.length)) }
  }
  const server: BlobServer = {
    allow(provider) {
      const key = provider.toLowerCase()
      allowedFetchers.set(key, (allowedFetchers.get(key) ?? 0) + 1)
      let taken = false
      return () => {
        if (taken) return
        taken = true
        const left = (allowedFetchers.get(key) ?? 1) - 1
        if (left === 0) allowedFetchers.delete(key)
        else allowedFetchers.set(key, left)
      }
    },
    allows: (provider) => allowedFetchers.has(provider.toLowerCase()),
    served: () => new Map([...blobs].map(([id, blob]) => [id, blob.scopes])),
    openScope() {
      const served = new Set<string>()
      const allowed = new Map<string, () => void>()
      let released = false
      return {
        allow: (provider) => {
          const key = provider.toLowerCase()
          if (!released && !allowed.has(key)) allowed.set(key, server.allow(key))
        },
        serve(bytes) {
          const id = sha256Hex(bytes)
          if (released) throw new HearthError('HEARTH_ERR_INTERNAL', `a released blob scope was asked to serve ${id}`)
          if (!served.has(id)) {
            served.add(id)
            const blob = blobs.get(id)
            if (blob === undefined) blobs.set(id, { bytes, scopes: 1 })
            else blob.scopes++
          }
          return id
        },
        release: () => {
          if (released) return
          released = true
          for (const takeBack of allowed.values()) takeBack()
          for (const id of served) {
            const blob = blobs.get(id)
            if (blob !== undefined && --blob.scopes === 0) blobs.delete(id)
          }
        },
      }
    },
    async start() {
      // Only providers let in (an agreement of an open job, an activity alive) may fetch, over any version. /4 sends
      // the rest of the blob from an offset on one stream, as fast as the provider takes it in.
      await host.serveBlob(fetchBlobRangeProtocol, ({ contentId, offset, maxBytes }, ctx) => {
        const { totalBytes, chunk } = blobChunk(contentId, offset, maxBytes, ctx.remoteAddress)
        return { header: { contentId, totalBytes, offset }, body: chunk }
      })
      await host.serveBlob(fetchBlobBinaryProtocol, ({ contentId, offset, maxBytes }, ctx) => {
        const { totalBytes, chunk } = blobChunk(contentId, offset, maxBytes, ctx.remoteAddress)
        return { header: { contentId, totalBytes, offset }, body: chunk }
      })
      // fetch-blob/2 stays for providers that do not speak /3 yet.
      await host.handle(fetchBlobProtocol, ({ contentId, offset, maxBytes }, ctx) => {
        const { totalBytes, chunk } = blobChunk(contentId, offset, maxBytes, ctx.remoteAddress)
        return { contentId, totalBytes, offset, dataBase64: Buffer.from(chunk).toString('base64') }
      })
    },
    async stop() {
      await host.unhandle(fetchBlobRangeProtocol).catch(() => undefined)
      await host.unhandle(fetchBlobBinaryProtocol).catch(() => undefined)
      await host.unhandle(fetchBlobProtocol).catch(() => undefined)
    },
  }
  return server
}
