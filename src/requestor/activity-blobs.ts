/**
 * The blobs a requestor serves to the providers of its ExeScript activities (activity-client.ts): one server per host,
 * since a protocol has one handler per node. Only a provider running one of this requestor's activities may fetch, and
 * only what an activity provided; a blob is dropped once no activity that provided it is left.
 */
import { HearthError } from '../errors.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import { activityBlobProtocol } from '../exec/exescript-protocols.ts'
import type { Host } from '../net/host.ts'

/** Blobs a host serves to providers of its activities. */
export interface BlobServer {
  blobs: Map<string, { bytes: Uint8Array; users: number }>
  /** Activities running per provider address (lower case): only those providers may fetch. */
  allowed: Map<string, number>
  activities: number
}
const servers = new WeakMap<Host, Promise<BlobServer>>()

/** The host's blob server, started on first use. */
export async function blobServer(host: Host): Promise<BlobServer> {
  let server = servers.get(host)
  if (server === undefined) {
    server = (async () => {
      const state: BlobServer = { blobs: new Map(), allowed: new Map(), activities: 0 }
      await host.handle(activityBlobProtocol, ({ contentId, offset, maxBytes }, ctx) => {
        const blob = state.blobs.get(contentId)
        // Only providers running one of our activities may fetch, and only what we provided.
        if (blob === undefined || (state.allowed.get(ctx.remoteAddress.toLowerCase()) ?? 0) === 0) {
          throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `this requestor offers no blob ${contentId} to you`, { hint: 'blobs are served only to providers of this requestor\'s activities' })
        }
        const bytes = blob.bytes
        const end = Math.min(bytes.length, offset + maxBytes)
        return { contentId, totalBytes: bytes.length, offset, dataBase64: Buffer.from(bytes.subarray(Math.min(offset, end), end)).toString('base64') }
      })
      return state
    })()
    servers.set(host, server)
    server.catch(() => servers.delete(host))
  }
  return server
}

/** One more activity of the provider `peer` (lower case): it may fetch. */
export function admit(server: BlobServer, peer: string): void {
  server.activities++
  server.allowed.set(peer, (server.allowed.get(peer) ?? 0) + 1)
}

/** Serves `bytes` for an activity (`provided` holds what it provided so far); returns their content id. */
export function provideBlob(server: BlobServer, provided: Set<string>, bytes: Uint8Array): string {
  const id = sha256Hex(bytes)
  if (!provided.has(id)) {
    provided.add(id)
    const blob = server.blobs.get(id)
    if (blob === undefined) server.blobs.set(id, { bytes, users: 1 })
    else blob.users++
  }
  return id
}

/** An activity of `peer` has ended: one fewer that may fetch, and the blobs only it provided are dropped. */
export function dismiss(server: BlobServer, peer: string, provided: ReadonlySet<string>): void {
  server.activities--
  server.allowed.set(peer, (server.allowed.get(peer) ?? 1) - 1)
  for (const id of provided) {
    const blob = server.blobs.get(id)
    if (blob !== undefined && --blob.users === 0) server.blobs.delete(id)
  }
}
