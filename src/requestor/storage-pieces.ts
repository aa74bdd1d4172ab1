/**
 * The owner's side of the piece protocols (storage/storage-protocols.ts): a piece written to a provider as its shards
 * are made (one put tunnel per piece, with backpressure), and read back a batch of stripes at a time, each shard with
 * its proof (dispersal.ts checks them against the roots the owner kept).
 */
import type { Duplex } from 'node:stream'
import { HearthError, isErrorCode } from '../errors.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import type { PieceSink, PieceSource } from '../storage/dispersal.ts'
import { maxReadBytes, piecePutProtocol, pieceReadProtocol, piecesProtocol } from '../storage/storage-protocols.ts'

/** Reads the provider's one-line answer to a put, after the opener ended its side. */
function answerOf(socket: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    socket.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > 4096) socket.destroy(new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', 'the provider\'s answer to a put is over 4 KiB'))
      else chunks.push(chunk)
    })
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
  })
}

/**
 * A sink that puts piece `pieceId` on the provider at `target`: the tunnel opens at the first shard; `end` resolves
 * with the root the provider computed, which must be `expectRoot` when given.
 */
export function pieceSink(host: Host, target: PeerTarget, open: { pieceId: string; shardBytes: number; stripes: number; replace?: boolean }, signal?: AbortSignal): PieceSink & { root(): string | undefined } {
  let socket: Duplex | undefined
  let answer: Promise<string> | undefined
  let root: string | undefined
  const opened = async (): Promise<Duplex> => {
    if (socket !== undefined) return socket
    const tunnel = await host.openTunnel(target, piecePutProtocol, open, signal === undefined ? {} : { signal })
    socket = tunnel.socket
    answer = answerOf(socket)
    return socket
  }
  return {
    async write(shard) {
      const out = await opened()
      if (!out.write(shard)) {
        await new Promise<void>((resolve, reject) => {
          const done = (error?: Error): void => {
            out.off('drain', done)
            out.off('close', closed)
            if (error === undefined) resolve()
            else reject(error)
          }
          const closed = (): void => done(new HearthError('HEARTH_ERR_NET_REMOTE', `the provider closed the put of piece ${open.pieceId}`))
          out.once('drain', done)
          out.once('close', closed)
        })
      }
    },
    async end() {
      const out = await opened()
      out.end()
      const line = (await answer!).trim()
      let parsed: { root?: unknown; error?: { code?: unknown; message?: unknown } }
      try {
        parsed = JSON.parse(line) as typeof parsed
      } catch {
        throw new HearthError('HEARTH_ERR_STORAGE_UNAVAILABLE', `the provider's answer to the put of piece ${open.pieceId} is not one: ${JSON.stringify(line.slice(0, 200))}`)
      }
      if (typeof parsed.root !== 'string') {
        const code = typeof parsed.error?.code === 'string' && isErrorCode(parsed.error.code) ? parsed.error.code : 'HEARTH_ERR_STORAGE_UNAVAILABLE'
        throw new HearthError(code, `the provider refused piece ${open.pieceId}: ${String(parsed.error?.message ?? 'no reason given')}`)
      }
      root = parsed.root
      return root
    },
    root: () => root,
  }
}

interface Batch {
  from: number
  shardBytes: number
  stripes: number
  body: Uint8Array
  proofs: string[][]
}

/**
 * A source that reads piece `pieceId` from the provider at `target`, `batchBytes` of shards per request, the next
 * batch asked for while the current one is read (a file is read stripe after stripe).
 */
export function pieceSource(host: Host, target: PeerTarget, pieceId: string, options: { batchBytes?: number; timeoutMs?: number } = {}): PieceSource {
  const batchBytes = Math.min(options.batchBytes ?? 2 * 1024 * 1024, maxReadBytes)
  let cached: Batch | undefined
  let ahead: { from: number; batch: Promise<Batch> } | undefined
  const fetchBatch = async (from: number, count: number): Promise<Batch> => {
    const answer = await host.requestBlob(target, pieceReadProtocol, { pieceId, fromStripe: from, count }, { timeoutMs: options.timeoutMs ?? 60_000 })
    const { shardBytes, stripes, proofs } = answer.header
    if (answer.body.length !== shardBytes * proofs.length || proofs.length === 0) {
      throw new HearthError('HEARTH_ERR_STORAGE_CORRUPT', `the provider's answer for piece ${pieceId} holds ${answer.body.length} bytes for ${proofs.length} shards of ${shardBytes}`)
    }
    return { from, shardBytes, stripes, body: answer.body, proofs }
  }
  return {
    async read(stripe) {
      if (cached === undefined || stripe < cached.from || stripe >= cached.from + cached.proofs.length) {
        const count = cached === undefined ? 1 : Math.max(1, Math.floor(batchBytes / cached.shardBytes))
        const pending = ahead?.from === stripe ? ahead.batch : fetchBatch(stripe, count)
        ahead = undefined
        cached = await pending
      }
      const batch = cached
      const end = batch.from + batch.proofs.length
      // Halfway through a batch that the next stripe after it exists for: the next batch is asked for now.
      if (ahead === undefined && batch.proofs.length > 1 && stripe >= batch.from + (batch.proofs.length >> 1) && end < batch.stripes) {
        const next = fetchBatch(end, Math.max(1, Math.floor(batchBytes / batch.shardBytes)))
        next.catch(() => undefined)
        ahead = { from: end, batch: next }
      }
      const at = stripe - batch.from
      return {
        shard: batch.body.subarray(at * batch.shardBytes, (at + 1) * batch.shardBytes),
        proof: batch.proofs[at]!.map((hash) => new Uint8Array(Buffer.from(hash, 'hex'))),
      }
    },
  }
}

/** Which of `pieceIds` the provider holds; with `remove`, the owner's own are removed first. */
export async function statPieces(host: Host, target: PeerTarget, pieceIds: string[], remove = false): Promise<{ pieces: { pieceId: string; held: boolean; bytes: number }[]; usedBytes: number; reservedBytes: number }> {
  return host.request(target, piecesProtocol, { op: remove ? 'delete' : 'stat', pieceIds })
}
