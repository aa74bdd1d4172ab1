/**
 * The disk a provider lends: pieces of owners' files (ciphertext, storage/piece-store.ts) held under storage
 * agreements. An agreement for the runtime `storage` reserves `storageBytes`; its requestor makes it live with an
 * activity (a holding) that the activity service meters by time like any other, so it is paid by debit notes and
 * vouchers and ends like any other when its escrow falls behind, a note goes unpaid or the agreement ends. While an
 * owner has live holdings it may put pieces up to what they reserve together; anyone may read a piece it names.
 *
 * When an owner's last holding ends its pieces stay for `graceMs` (a day by default), unpaid, so that an owner's node
 * that was away comes back, makes a new agreement and finds its pieces; after that they are removed.
 */
import { Duplex } from 'node:stream'
import type { Address } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import type { Activity, ActivityState } from '../exec/exescript-model.ts'
import type { AgreementTerms } from '../market/agreement.ts'
import type { Host } from '../net/host.ts'
import { openPieceStore, type PieceStore, type PieceWriter } from '../storage/piece-store.ts'
import { maxPieceBytes, maxReadBytes, piecePutProtocol, pieceReadProtocol, piecesProtocol, type PiecePutOpen } from '../storage/storage-protocols.ts'

export interface StorageServiceInit {
  host: Host
  /** Where the pieces live (the node's `storage/` folder). */
  dir: string
  /** The disk lent, in bytes: pieces never take more, and agreements never reserve more. */
  offeredBytes: number
  /** How long an owner's pieces stay once it holds no live agreement (default a day). */
  graceMs?: number
  log?(line: string): void
}

export interface StorageService {
  start(): Promise<void>
  stop(): Promise<void>
  /** The activity of a storage agreement: it reserves the agreement's bytes for its requestor while it lives. */
  hold(activityId: string, requestor: Address, terms: AgreementTerms): Activity
  /** What live holdings reserve, and what pieces take. */
  usage(): { reservedBytes: number; usedBytes: number; pieces: number; owners: number }
}

interface Holding {
  requestor: string
  bytes: number
}

/** A holding as an activity: it runs no batches; its usage is the time it has been live. */
function holdingActivity(id: string, onEnd: () => void): Activity {
  const createdAtMs = Date.now()
  let endedAtMs: number | undefined
  let state: ActivityState = 'Ready'
  return {
    id,
    state: () => state,
    usage: () => ({ durationSec: ((endedAtMs ?? Date.now()) - createdAtMs) / 1000, cpuSec: 0 }),
    exec: () => Promise.reject(new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `activity ${id} holds storage and runs no batches`, { hint: 'put and read pieces with the storage protocols' })),
    served: () => undefined,
    terminate(_reason, final = 'Terminated') {
      if (endedAtMs === undefined) {
        endedAtMs = Date.now()
        state = final
        onEnd()
      }
      return Promise.resolve()
    },
  }
}

/**
 * The provider's side of a put tunnel: bytes in are cut into shards for the writer; once the opener ends its side,
 * the piece is closed and one JSON line goes back, its root or the error. A tunnel torn down early drops the piece.
 */
function pieceIntake(writer: PieceWriter, open: PiecePutOpen, onDone: () => void): Duplex {
  let pending: Buffer[] = []
  let pendingBytes = 0
  let failure: HearthError | undefined
  let ended = false
  const finish = (line: object): void => {
    ended = true
    onDone()
    intake.push(`${JSON.stringify(line)}\n`)
    intake.push(null)
  }
  const intake = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      if (failure !== undefined) return callback()
      pending.push(chunk)
      pendingBytes += chunk.length
      void (async () => {
        while (pendingBytes >= open.shardBytes) {
          const all = Buffer.concat(pending)
          await writer.write(all.subarray(0, open.shardBytes))
          pending = [all.subarray(open.shardBytes)]
          pendingBytes = all.length - open.shardBytes
        }
      })().then(() => callback(), (error: unknown) => {
        failure = toHearthError(error)
        void writer.abort()
        finish({ error: { code: failure.code, message: failure.shortMessage } })
        callback()
      })
    },
    final(callback) {
      if (failure !== undefined || ended) return callback()
      const ending = pendingBytes === 0 ? writer.end() : Promise.reject(new HearthError('HEARTH_ERR_API_MISUSE', `piece ${open.pieceId}: ${pendingBytes} bytes left over, less than a shard`))
      ending.then((root) => finish({ root }), async (error: unknown) => {
        await writer.abort()
        const hearth = toHearthError(error)
        finish({ error: { code: hearth.code, message: hearth.shortMessage } })
      }).finally(() => callback())
    },
    destroy(error, callback) {
      if (!ended) {
        ended = true
        onDone()
        void writer.abort()
      }
      callback(error)
    },
  })
  return intake
}

export function createStorageService(init: StorageServiceInit): StorageService {
  const { host } = init
  const graceMs = init.graceMs ?? 24 * 3600_000
  const holdings = new Map<string, Holding>()
  /** Puts in progress per owner, in bytes: counted against its holdings from the start. */
  const incoming = new Map<string, number>()
  /** When each owner last had a live holding (the service's start for owners not seen since). */
  const lastHeld = new Map<string, number>()
  let pieces: PieceStore | undefined
  let startedAtMs = Date.now()
  let sweepTimer: NodeJS.Timeout | undefined

  const store = (): PieceStore => {
    if (pieces === undefined) throw new HearthError('HEARTH_ERR_STORAGE_UNAVAILABLE', 'this provider\'s storage has not started')
    return pieces
  }
  const reservedFor = (owner: string): number => [...holdings.values()].filter((h) => h.requestor === owner).reduce((sum, h) => sum + h.bytes, 0)
  const usedBy = (owner: string): number => store().list().filter((piece) => piece.owner === owner).reduce((sum, piece) => sum + piece.bytes, 0) + (incoming.get(owner) ?? 0)

  async function put(open: PiecePutOpen, requestor: Address): Promise<Duplex> {
    const owner = requestor.toLowerCase()
    const bytes = open.shardBytes * open.stripes
    if (bytes > maxPieceBytes) throw new HearthError('HEARTH_ERR_STORAGE_FULL', `a piece of ${bytes} bytes is over the ${maxPieceBytes} one put may carry`, { hint: 'split the file into more pieces' })
    const reserved = reservedFor(owner)
    if (reserved === 0) throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', 'you hold no live storage agreement with this provider', { hint: 'make a storage agreement and create its activity before putting pieces' })
    const replaced = open.replace === true ? (store().get(open.pieceId)?.bytes ?? 0) : 0
    const used = usedBy(owner) - replaced
    if (used + bytes > reserved) {
      throw new HearthError('HEARTH_ERR_STORAGE_FULL', `a piece of ${bytes} bytes does not fit your holdings: they reserve ${reserved} bytes and ${used} are taken`, { hint: 'make a larger storage agreement, or remove pieces first' })
    }
    const writer = await store().create(open.pieceId, { shardBytes: open.shardBytes, stripes: open.stripes }, { owner, ...(open.replace === true ? { replace: true } : {}) })
    incoming.set(owner, (incoming.get(owner) ?? 0) + bytes)
    return pieceIntake(writer, open, () => {
      const left = (incoming.get(owner) ?? 0) - bytes
      if (left > 0) incoming.set(owner, left)
      else incoming.delete(owner)
    })
  }

  async function read({ pieceId, fromStripe, count }: { pieceId: string; fromStripe: number; count: number }): Promise<{ header: { shardBytes: number; stripes: number; proofs: string[][] }; body: Uint8Array }> {
    const piece = store().get(pieceId)
    if (piece === undefined) throw new HearthError('HEARTH_ERR_STORAGE_NOT_FOUND', `this provider holds no piece ${pieceId}`, { hint: 'read it from another provider of the file' })
    if (fromStripe >= piece.stripes) throw new HearthError('HEARTH_ERR_API_MISUSE', `piece ${pieceId} has ${piece.stripes} stripes; stripe ${fromStripe} is past its end`)
    const take = Math.max(1, Math.min(count, piece.stripes - fromStripe, Math.floor(maxReadBytes / piece.shardBytes)))
    const { shards, proofs } = await store().readRange(pieceId, fromStripe, take)
    return { header: { shardBytes: piece.shardBytes, stripes: piece.stripes, proofs: proofs.map((proof) => proof.map((hash) => Buffer.from(hash).toString('hex'))) }, body: shards }
  }

  /** Removes the pieces of owners whose last holding ended longer than the grace ago. */
  async function sweep(): Promise<void> {
    const nowMs = Date.now()
    const live = new Set([...holdings.values()].map((h) => h.requestor))
    for (const piece of store().list()) {
      if (piece.owner === '' || live.has(piece.owner)) continue
      if (nowMs - (lastHeld.get(piece.owner) ?? startedAtMs) < graceMs) continue
      await store().remove(piece.id)
      init.log?.(`storage: removed piece ${piece.id} of ${piece.owner}: no agreement held it for ${Math.round(graceMs / 1000)} s`)
    }
  }

  return {
    async start() {
      startedAtMs = Date.now()
      pieces = await openPieceStore({ dir: init.dir, maxBytes: init.offeredBytes })
      await host.serveTunnel(piecePutProtocol, (open, ctx) => put(open, ctx.remoteAddress))
      await host.serveBlob(pieceReadProtocol, (request) => read(request))
      await host.handle(piecesProtocol, async (request, ctx) => {
        const owner = ctx.remoteAddress.toLowerCase()
        const answer = []
        for (const pieceId of request.pieceIds) {
          const piece = store().get(pieceId)
          if (request.op === 'delete' && piece?.owner === owner) await store().remove(pieceId)
          answer.push({ pieceId, held: store().has(pieceId), bytes: piece?.bytes ?? 0 })
        }
        return { pieces: answer, usedBytes: usedBy(owner), reservedBytes: reservedFor(owner) }
      })
      sweepTimer = setInterval(() => void sweep().catch((error: unknown) => init.log?.(`storage: sweep failed: ${toHearthError(error).shortMessage}`)), Math.min(60_000, Math.max(1000, Math.floor(graceMs / 4))))
      sweepTimer.unref()
    },
    async stop() {
      if (sweepTimer !== undefined) clearInterval(sweepTimer)
      for (const protocol of [piecePutProtocol, pieceReadProtocol, piecesProtocol]) await host.unhandle(protocol).catch(() => undefined)
    },
    hold(activityId, requestor, terms) {
      const owner = requestor.toLowerCase()
      if (terms.storageBytes === undefined) throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'a storage activity needs a storage agreement (one that states storageBytes)')
      holdings.set(activityId, { requestor: owner, bytes: terms.storageBytes })
      lastHeld.set(owner, Date.now())
      return holdingActivity(activityId, () => {
        holdings.delete(activityId)
        lastHeld.set(owner, Date.now())
      })
    },
    usage() {
      const list = pieces?.list() ?? []
      return {
        reservedBytes: [...holdings.values()].reduce((sum, h) => sum + h.bytes, 0),
        usedBytes: pieces?.usedBytes() ?? 0,
        pieces: list.length,
        owners: new Set(list.map((piece) => piece.owner)).size,
      }
    },
  }
}
