/**
 * The blobs a requestor serves to its providers: job packages (wasi modules, docker image archives) and the probe's
 * program, by content id, over fetch-blob/3 (raw bytes) and fetch-blob/2 (base64 in JSON). Only providers with an
 * agreement from this requestor may fetch them; a job's blobs are dropped when the job closes.
 */
import { HearthError } from '../errors.ts'
import { fetchBlobBinaryProtocol, fetchBlobProtocol } from '../exec/activity-protocols.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import type { Host } from '../net/host.ts'

/** The blobs of one job: served while it is open, released when it closes. */
export interface BlobScope {
  /** Serves `bytes` under their content id (sha256), which it returns. */
  serve(bytes: Uint8Array): string
  /** Stops serving every blob this scope served. */
  release(): void
}

export interface BlobServer {
  /** Lets `provider` (an address) fetch blobs: it holds an agreement from this requestor. */
  allow(provider: string): void
  openScope(): BlobScope
  /** Answers fetch-blob/3 and /2. */
  start(): Promise<void>
  stop(): Promise<void>
}

export function createBlobServer(init: { host: Host }): BlobServer {
  const { host } = init
  const blobs = new Map<string, Uint8Array>()
  /** Providers with an agreement from this requestor: only they may fetch its blobs. */
  const allowedFetchers = new Set<string>()
  const blobChunk = (contentId: string, offset: number, maxBytes: number, remoteAddress: string): { totalBytes: number; chunk: Uint8Array } => {
    const bytes = blobs.get(contentId)
    if (bytes === undefined || !allowedFetchers.has(remoteAddress.toLowerCase())) {
      throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `this requestor does not serve ${contentId} to you`)
    }
    return { totalBytes: bytes.length, chunk: bytes.subarray(Math.min(offset, bytes.length), Math.min(offset + maxBytes, bytes.length)) }
  }
  return {
    allow: (provider) => void allowedFetchers.add(provider.toLowerCase()),
    openScope() {
      const served = new Set<string>()
      return {
        serve(bytes) {
          const id = sha256Hex(bytes)
          blobs.set(id, bytes)
          served.add(id)
          return id
        },
        release: () => {
          for (const id of served) blobs.delete(id)
        },
      }
    },
    async start() {
      // Only providers with an agreement from this requestor may fetch its blobs, over either version.
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
      await host.unhandle(fetchBlobBinaryProtocol).catch(() => undefined)
      await host.unhandle(fetchBlobProtocol).catch(() => undefined)
    },
  }
}
