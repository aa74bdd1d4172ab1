/**
 * The owner's node's storage as buckets of objects (storage/object-store.ts), kept by providers: each object is sealed
 * under the storage key, erasure-coded k of n, and its pieces put on n distinct providers spread over regions
 * (storage-placement.ts), under storage agreements paid by time (storage-holdings.ts). The manifest (what is stored
 * where, sealed) is kept here in one file and in the network beside the pieces, so that the key alone finds it again
 * on a new machine (`restore`). Audits and repair run in storage-upkeep.ts.
 *
 * A put that loses some providers on the way still succeeds once k pieces are whole: the missing ones are rebuilt on
 * other providers before it returns (and later by the upkeep when that fails too).
 */
import { createHash, createHmac } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { HearthError, toHearthError } from '../errors.ts'
import { compileConstraints, type CompiledConstraints } from '../market/constraints/evaluate.ts'
import type { SignedOffer } from '../market/offer.ts'
import { offerTarget } from './negotiator.ts'
import { offerRegion } from './service-replicas.ts'
import { disperseFile, pieceShape, readFile as readDispersed, readRange, repairPieces, type FileLayout, type PieceSink, type PieceSource } from '../storage/dispersal.ts'
import type { ErasureParams } from '../storage/erasure.ts'
import { emptyManifest, findEntry, openManifest, sealManifest, withBucket, withEntry, withoutBucket, withoutEntry, type Manifest, type ManifestEntry } from '../storage/manifest.ts'
import type { BucketInfo, ObjectInfo, ObjectStore, PutObjectInput } from '../storage/object-store.ts'
import { newFileId } from '../storage/seal.ts'
import { writeBody } from '../storage/write-body.ts'
import type { StorageKey } from '../storage/storage-key.ts'
import type { ReputationBook } from './reputation.ts'
import type { ReplicaDeps } from './service-replicas.ts'
import { defaultHoldingTerms, endHolding, loadHoldings, rentHolding, saveHoldings, type Holding, type HoldingTerms } from './storage-holdings.ts'
import { pieceSink, pieceSource, statPieces } from './storage-pieces.ts'
import { choosePlacements } from './storage-placement.ts'

export interface DispersedStoreInit extends ReplicaDeps {
  key: StorageKey
  /** Where the sealed manifest is kept on this machine, and beside it a folder for bodies of unknown size. */
  manifestPath: string
  /** The code: k data pieces and m parity pieces (default 4 + 2: a region of three may go dark). */
  code?: ErasureParams
  /** Regions pieces may go to (all by default). */
  regions?: string[]
  /** The most a provider may ask per GiB-hour (none by default). */
  maxPerGibHourWei?: bigint
  /** A filter over storage offers in Golem's constraint language, e.g. `(golem.node.geo.country_code=DE)`. */
  constraints?: string
  holdingTerms?: Partial<HoldingTerms>
  /** Audits count for and against providers here; excluded providers get no pieces. */
  reputation?: ReputationBook
  log?(line: string): void
}

/** What the upkeep and `status` see of the store. */
export interface StorageContext {
  init: DispersedStoreInit
  code: ErasureParams
  manifest(): Manifest
  /** Replaces the manifest and saves it here and in the network. */
  commit(next: Manifest): Promise<void>
  holdings: Holding[]
  /** Bytes being put per provider, counted against its holdings until the manifest lists them. */
  incoming: Map<string, number>
  /** Providers lost to failed audits (lower-case): they get no more pieces. */
  lost: Set<string>
  /** A holding with room for `bytes` on the provider of `offer`, rented when there is none. */
  roomOn(offer: SignedOffer, bytes: number): Promise<Holding>
  /** Bytes this node's pieces take on `provider` (by the manifest). */
  usedOn(provider: string): number
  /** Saves the holdings (after they changed), so that a restarted node takes them up again. */
  saveHoldings(): Promise<void>
  sourceFor(entry: ManifestEntry, piece: number): PieceSource | undefined
}

export const defaultCode: ErasureParams = { k: 4, m: 2 }

const pieceBytes = (layout: FileLayout): number => layout.shardBytes * layout.stripes
export const pieceIdOf = (layout: FileLayout, piece: number): string => `${layout.fileId}-${piece}`

/** The manifest's piece id: derived from the storage key, so the key alone names it. */
export function manifestPieceId(key: StorageKey): string {
  return `${createHmac('sha256', key.bytes).update('hearth/storage/manifest/1').digest('hex').slice(0, 32)}-m`
}

/** A sink that never throws: a provider that fails mid-put is noted, and its piece rebuilt elsewhere. */
function tolerant(sink: PieceSink & { root(): string | undefined }): PieceSink & { failure(): Error | undefined; root(): string | undefined } {
  let failure: Error | undefined
  return {
    async write(shard) {
      if (failure === undefined) await sink.write(shard).catch((error: unknown) => void (failure = toHearthError(error)))
    },
    async end() {
      if (failure === undefined) await sink.end().catch((error: unknown) => void (failure = toHearthError(error)))
    },
    failure: () => failure,
    root: () => sink.root(),
  }
}

function infoOf(entry: ManifestEntry): ObjectInfo {
  return {
    bucket: entry.bucket,
    key: entry.key,
    size: entry.layout.plainBytes,
    etag: entry.etag ?? entry.sha256.slice(0, 32),
    lastModifiedMs: entry.createdAtMs,
    ...(entry.contentType === undefined ? {} : { contentType: entry.contentType }),
    metadata: entry.metadata ?? {},
  }
}

const utf8Order = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b))

export interface DispersedStore extends ObjectStore {
  /** Loads the manifest kept here (none: empty). */
  open(): Promise<void>
  /**
   * Finds the newest manifest in the network by the key alone (a new machine); resolves with the objects it lists.
   * With `adopt`, every object is then read back and stored again under this node's own agreements: pieces are owned
   * by the node that put them, and a node with another wallet key cannot pay for or repair the old ones, which their
   * providers drop once their grace has passed.
   */
  restore(options?: { adopt?: boolean }): Promise<number>
  context: StorageContext
  /** Ends every holding and settles its agreement (the pieces stay with providers for their grace). */
  close(options?: { settle?: boolean }): Promise<void>
}

/** Bytes this node's pieces take on `provider`, by the manifest, and those being put there. */
function usedOn(context: StorageContext, provider: string): number {
  const p = provider.toLowerCase()
  let used = context.incoming.get(p) ?? 0
  for (const entry of context.manifest().entries) for (const place of entry.placements) if (place.provider.toLowerCase() === p) used += pieceBytes(entry.layout)
  return used
}

/** A live holding with room for `bytes` (and the manifest) on the provider of `offer`; a new one rented when none has. */
async function roomOn(context: StorageContext, terms: HoldingTerms, offer: SignedOffer, bytes: number): Promise<Holding> {
  const provider = offer.payload.provider.toLowerCase()
  const live = context.holdings.filter((h) => h.offer.provider.toLowerCase() === provider && h.activity !== undefined && h.failedAtMs === undefined)
  const reserved = live.reduce((sum, h) => sum + h.bytes, 0)
  // Room for the manifest too, which is kept with the providers of the pieces.
  const need = bytes + 4 * 1024 * 1024
  if (live.length > 0 && usedOn(context, provider) + need <= reserved) return live[0]!
  const holding = await rentHolding(context.init, offer, need, terms)
  context.holdings.push(holding)
  await context.saveHoldings()
  return holding
}

/** Where piece `piece` of `entry` is read from: its provider, by a holding's offer or the market's. */
function sourceFor(init: DispersedStoreInit, holdings: readonly Holding[], entry: ManifestEntry, piece: number): PieceSource | undefined {
  const place = entry.placements.find((p) => p.piece === piece)
  if (place === undefined) return undefined
  const provider = place.provider.toLowerCase()
  const offer = holdings.find((h) => h.offer.provider.toLowerCase() === provider)?.offer ?? init.offerBook.list((o) => o.provider.toLowerCase() === provider)[0]?.payload
  return offer === undefined ? undefined : pieceSource(init.host, offerTarget(offer), pieceIdOf(entry.layout, piece))
}

export function createDispersedStore(init: DispersedStoreInit): DispersedStore {
  const code = init.code ?? defaultCode
  const n = code.k + code.m
  placementLimits(init) // a malformed filter is the owner's error, said at start, not a market without offers later
  const terms: HoldingTerms = { ...defaultHoldingTerms, ...init.holdingTerms }
  let manifest: Manifest = emptyManifest()
  let saving: Promise<void> = Promise.resolve()
  const holdings: Holding[] = []
  /** Bytes being put per provider, counted against its holdings until the manifest lists them. */
  const incoming = new Map<string, number>()
  const spoolDir = join(dirname(init.manifestPath), 'spool')
  const manifestId = manifestPieceId(init.key)
  const holdingsPath = join(dirname(init.manifestPath), 'holdings.json')
  /** Saves of the holdings, one after another. */
  let savingHoldings: Promise<void> = Promise.resolve()

  function commit(next: Manifest): Promise<void> {
    manifest = next
    saving = saving.then(async () => {
      const sealed = await sealManifest(init.key, { ...manifest, savedAtMs: Date.now() })
      await saveHere(init.manifestPath, sealed)
      await saveInNetwork(context, manifestId, sealed)
    })
    const done = saving
    saving = saving.catch(() => undefined)
    return done
  }

  const context: StorageContext = {
    init, code, manifest: () => manifest, commit, holdings, incoming, lost: new Set(),
    sourceFor: (entry, piece) => sourceFor(init, holdings, entry, piece),
    roomOn: (offer, bytes) => roomOn(context, terms, offer, bytes),
    usedOn: (provider) => usedOn(context, provider),
    saveHoldings: () => (savingHoldings = savingHoldings.then(() => saveHoldings(holdingsPath, holdings)).catch((error: unknown) => init.log?.(`storage: the holdings could not be saved: ${toHearthError(error).shortMessage}`))),
  }

  function requireBucket(bucket: string): void {
    if (!(manifest.buckets ?? []).some((b) => b.name === bucket)) throw new HearthError('HEARTH_ERR_STORAGE_NOT_FOUND', `there is no bucket ${bucket}`, { hint: 'create it first (hearth store put creates it)' })
  }

  return {
    context,
    async open() {
      const sealed = await readFile(init.manifestPath).catch(() => undefined)
      manifest = sealed === undefined ? emptyManifest() : await openManifest(init.key, new Uint8Array(sealed))
      holdings.push(...(await loadHoldings(init, holdingsPath)))
      await rm(spoolDir, { recursive: true, force: true })
    },
    async restore(options = {}) {
      manifest = await findManifest(init, manifestId) ?? manifest
      await coverPlacements(context)
      if (options.adopt === true) {
        await commit(manifest)
        await storeAgain(this, manifest.entries)
      }
      return manifest.entries.length
    },
    async listBuckets(): Promise<BucketInfo[]> {
      return [...(manifest.buckets ?? [])].sort((a, b) => utf8Order(a.name, b.name))
    },
    createBucket: async (name) => commit(withBucket(manifest, name)),
    async deleteBucket(name) {
      requireBucket(name)
      await commit(withoutBucket(manifest, name))
    },
    hasBucket: (name) => Promise.resolve((manifest.buckets ?? []).some((b) => b.name === name)),
    async putObject(input: PutObjectInput) {
      requireBucket(input.bucket)
      const spooled = input.size === undefined ? await spool(spoolDir, input.body) : undefined
      try {
        const body = spooled === undefined ? input.body : createReadStream(spooled.path)
        const { layout, placements, sha256, md5 } = await disperse(context, body, spooled?.size ?? input.size!)
        const before = findEntry(manifest, input.bucket, input.key)
        const entry: ManifestEntry = {
          bucket: input.bucket, key: input.key, createdAtMs: Date.now(), sha256, layout, placements,
          etag: input.etag?.() ?? md5,
          ...(input.contentType === undefined ? {} : { contentType: input.contentType }),
          ...(input.metadata === undefined || Object.keys(input.metadata).length === 0 ? {} : { metadata: input.metadata }),
        }
        await commit(withEntry(manifest, entry))
        if (before !== undefined) await dropPieces(init, before)
        if (placements.length < n) await repairEntry(context, entry).catch((error: unknown) => init.log?.(`storage: ${input.bucket}/${input.key} keeps ${placements.length} of ${n} pieces for now: ${toHearthError(error).shortMessage}`))
        return infoOf(findEntry(manifest, input.bucket, input.key) ?? entry)
      } finally {
        if (spooled !== undefined) await rm(spooled.path, { force: true })
      }
    },
    async headObject(bucket, key) {
      requireBucket(bucket)
      const entry = findEntry(manifest, bucket, key)
      return entry === undefined ? undefined : infoOf(entry)
    },
    async getObject(bucket, key, range) {
      requireBucket(bucket)
      const entry = findEntry(manifest, bucket, key)
      if (entry === undefined) return undefined
      const sources = Array.from({ length: entry.layout.k + entry.layout.m }, (_, piece) => context.sourceFor(entry, piece))
      const body = range === undefined ? checkedWhole(readDispersed(init.key, entry.layout, sources), entry.sha256) : readRange(init.key, entry.layout, sources, range)
      return { info: infoOf(entry), body }
    },
    async listObjects(bucket, prefix = '') {
      requireBucket(bucket)
      return manifest.entries.filter((entry) => entry.bucket === bucket && entry.key.startsWith(prefix)).map(infoOf).sort((a, b) => utf8Order(a.key, b.key))
    },
    async deleteObject(bucket, key) {
      requireBucket(bucket)
      const entry = findEntry(manifest, bucket, key)
      if (entry === undefined) return
      await commit(withoutEntry(manifest, bucket, key))
      await dropPieces(init, entry)
    },
    async close(options = {}) {
      await saving
      if (options.settle !== false) {
        await Promise.all(holdings.splice(0).map((holding) => endHolding(init, holding)))
        await context.saveHoldings()
      }
    },
  }
}

async function saveHere(path: string, sealed: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const temp = `${path}.next`
  await writeFile(temp, sealed, { mode: 0o600 })
  await rename(temp, path)
}


/** Puts the sealed manifest on up to three providers that hold pieces (a 4-byte length, then the sealed bytes, padded). */
async function saveInNetwork(context: StorageContext, manifestId: string, sealed: Uint8Array): Promise<void> {
  const shardBytes = 64 * 1024
  const framed = Buffer.alloc(Math.ceil((sealed.length + 4) / shardBytes) * shardBytes)
  framed.writeUInt32BE(sealed.length, 0)
  framed.set(sealed, 4)
  const providers = [...new Map(context.holdings.filter((h) => h.activity !== undefined && h.failedAtMs === undefined).map((h) => [h.offer.provider.toLowerCase(), h])).values()].slice(0, 3)
  await Promise.all(providers.map(async (holding) => {
    const sink = pieceSink(context.init.host, offerTarget(holding.offer), { pieceId: manifestId, shardBytes, stripes: framed.length / shardBytes, replace: true })
    try {
      for (let at = 0; at < framed.length; at += shardBytes) await sink.write(framed.subarray(at, at + shardBytes))
      await sink.end()
    } catch (error) {
      context.init.log?.(`storage: the manifest could not be kept with ${holding.offer.provider}: ${toHearthError(error).shortMessage}`)
    }
  }))
}


/** A body of unknown size, written to the spool (this machine only, mode 0600) while it is hashed. */
async function spool(spoolDir: string, body: AsyncIterable<Uint8Array>): Promise<{ path: string; size: number }> {
  await mkdir(spoolDir, { recursive: true, mode: 0o700 })
  const path = join(spoolDir, Buffer.from(newFileId()).toString('hex'))
  const handle = await open(path, 'w', 0o600)
  let size = 0
  try {
    size = await writeBody(handle, body)
  } catch (error) {
    await handle.close()
    await rm(path, { force: true })
    throw error
  }
  await handle.close()
  return { path, size }
}


async function disperse(context: StorageContext, body: AsyncIterable<Uint8Array>, size: number): Promise<{ layout: FileLayout; placements: ManifestEntry['placements']; sha256: string; md5: string }> {
  const { init, code, holdings, incoming } = context
  const n = code.k + code.m
  const fileId = newFileId()
  const fileHex = Buffer.from(fileId).toString('hex')
  const { shardBytes, stripes } = pieceShape(code, size)
  const bytesEach = shardBytes * stripes
  const excluded = new Set(holdings.filter((h) => h.failedAtMs !== undefined).map((h) => h.offer.provider.toLowerCase()))
  for (const provider of init.reputation?.list().filter((r) => r.excluded).map((r) => r.provider.toLowerCase()) ?? []) excluded.add(provider)
  const choice = choosePlacements(init.offerBook, { count: n, perRegion: code.m, avoid: excluded, minBytes: bytesEach, ...placementLimits(init) })
  if (!choice.spread) init.log?.(`storage: too few regions to keep one region's loss within the ${code.m} pieces the code survives`)
  const rented = await Promise.allSettled(choice.offers.map((offer) => context.roomOn(offer, bytesEach)))
  const sinks = choice.offers.map((offer, i) => {
    if (rented[i]!.status === 'rejected') return undefined
    const provider = offer.payload.provider.toLowerCase()
    incoming.set(provider, (incoming.get(provider) ?? 0) + bytesEach)
    return tolerant(pieceSink(init.host, offerTarget(offer.payload), { pieceId: `${fileHex}-${i}`, shardBytes, stripes }))
  })
  const sha = createHash('sha256')
  const md5 = createHash('md5')
  const hashed = async function* (): AsyncGenerator<Uint8Array> {
    for await (const chunk of body) {
      sha.update(chunk)
      md5.update(chunk)
      yield chunk
    }
  }
  const failedSink: PieceSink = { write: () => Promise.resolve(), end: () => Promise.resolve() }
  try {
    const layout = await disperseFile(init.key, fileId, hashed(), code, sinks.map((sink) => sink ?? failedSink))
    if (layout.stripes !== stripes) throw new HearthError('HEARTH_ERR_API_MISUSE', `the body held ${layout.plainBytes} bytes where ${size} were announced`)
    const placements: ManifestEntry['placements'] = []
    for (const [i, sink] of sinks.entries()) {
      const offer = choice.offers[i]!.payload
      if (sink === undefined || sink.failure() !== undefined || sink.root() !== layout.pieces[i]!.root) {
        const why = rented[i]!.status === 'rejected' ? toHearthError((rented[i] as PromiseRejectedResult).reason).shortMessage : sink?.failure()?.message ?? 'it kept a piece whose root differs'
        init.log?.(`storage: provider ${offer.provider} did not take piece ${i} of ${layout.fileId}: ${why}`)
        continue
      }
      const holding = holdings.find((h) => h.offer.provider.toLowerCase() === offer.provider.toLowerCase())
      placements.push({ piece: i, provider: offer.provider, ...(holding === undefined ? {} : { agreementId: holding.agreement.id }), ...(holding?.region === undefined ? {} : { region: holding.region }) })
    }
    if (placements.length < code.k) throw new HearthError('HEARTH_ERR_STORAGE_UNAVAILABLE', `only ${placements.length} of ${n} providers took their piece; ${code.k} are needed`, { hint: 'try again: other providers are chosen' })
    return { layout, placements, sha256: sha.digest('hex'), md5: md5.digest('hex') }
  } finally {
    for (const offer of choice.offers) {
      const provider = offer.payload.provider.toLowerCase()
      const left = (incoming.get(provider) ?? 0) - bytesEach
      if (left > 0) incoming.set(provider, left)
      else incoming.delete(provider)
    }
  }
}


/** Removes an entry's pieces from their providers (best effort: a provider away drops them after its grace). */
async function dropPieces(init: DispersedStoreInit, entry: ManifestEntry): Promise<void> {
  await Promise.all(entry.placements.map(async (place) => {
    const offer = init.offerBook.list((o) => o.provider.toLowerCase() === place.provider.toLowerCase())[0]
    if (offer !== undefined) await statPieces(init.host, offerTarget(offer.payload), [pieceIdOf(entry.layout, place.piece)], true).catch(() => undefined)
  }))
}


/**
 * Holdings with every provider the manifest places pieces with, as large as those pieces: a node taking up a manifest
 * (restored on a new machine) pays for the pieces it finds, so their providers keep them.
 */
async function coverPlacements(context: StorageContext): Promise<void> {
  const providers = new Set(context.manifest().entries.flatMap((entry) => entry.placements.map((place) => place.provider.toLowerCase())))
  for (const provider of providers) {
    if (context.holdings.some((h) => h.offer.provider.toLowerCase() === provider && h.activity !== undefined && h.failedAtMs === undefined)) continue
    const offer = context.init.offerBook.list((o) => o.provider.toLowerCase() === provider)[0]
    if (offer === undefined) continue
    await context.roomOn(offer, context.usedOn(provider)).catch((error: unknown) => context.init.log?.(`storage: no holding with ${provider} for the pieces it keeps: ${toHearthError(error).shortMessage}`))
  }
}

/** Reads each entry back and stores it again (under this node's own agreements), one after another. */
async function storeAgain(store: ObjectStore, entries: readonly ManifestEntry[]): Promise<void> {
  for (const entry of [...entries]) {
    const got = await store.getObject(entry.bucket, entry.key)
    if (got === undefined) continue
    await store.putObject({
      bucket: entry.bucket, key: entry.key, body: got.body, size: entry.layout.plainBytes, etag: () => got.info.etag,
      ...(entry.contentType === undefined ? {} : { contentType: entry.contentType }),
      ...(entry.metadata === undefined ? {} : { metadata: entry.metadata }),
    })
  }
}

/** The owner's limits on where pieces go: regions and a price cap. */
function placementLimits(init: DispersedStoreInit): { regions?: string[]; maxPerGibHourWei?: bigint; constraints?: CompiledConstraints } {
  return {
    ...(init.regions === undefined ? {} : { regions: init.regions }),
    ...(init.maxPerGibHourWei === undefined ? {} : { maxPerGibHourWei: init.maxPerGibHourWei }),
    ...(init.constraints === undefined || init.constraints.trim() === '' ? {} : { constraints: compileConstraints(init.constraints) }),
  }
}

/** The whole file, its SHA-256 checked at the end against the manifest's (the last chunk is held back until then). */
async function* checkedWhole(chunks: AsyncIterable<Uint8Array>, sha256: string): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256')
  let held: Uint8Array | undefined
  for await (const chunk of chunks) {
    hash.update(chunk)
    if (held !== undefined) yield held
    held = chunk
  }
  if (hash.digest('hex') !== sha256) throw new HearthError('HEARTH_ERR_STORAGE_CORRUPT', 'the file read back does not match the hash it was stored with', { hint: 'read it again: other pieces are tried' })
  if (held !== undefined) yield held
}

/** The newest manifest any storage provider holds under the key's manifest id. */
async function findManifest(init: DispersedStoreInit, manifestId: string): Promise<Manifest | undefined> {
  let newest: Manifest | undefined
  const offers = init.offerBook.list((offer) => offer.properties['hearth.storage.perGibHourWei'] !== undefined)
  await Promise.all(offers.map(async (offer) => {
    try {
      const source = pieceSource(init.host, offerTarget(offer.payload), manifestId, { batchBytes: 8 * 1024 * 1024 })
      const first = await source.read(0)
      const length = Buffer.from(first.shard).readUInt32BE(0)
      const parts: Uint8Array[] = [first.shard]
      let have = first.shard.length
      for (let stripe = 1; have < length + 4; stripe++) {
        const next = await source.read(stripe)
        parts.push(next.shard)
        have += next.shard.length
      }
      const found = await openManifest(init.key, new Uint8Array(Buffer.concat(parts).subarray(4, 4 + length)))
      if (newest === undefined || (found.savedAtMs ?? 0) > (newest.savedAtMs ?? 0)) newest = found
    } catch {
      // Not there, or not ours: another provider may hold it.
    }
  }))
  return newest
}

/**
 * Rebuilds the pieces of `entry` that have no placement on new providers, from any k of the others, and records
 * where they went.
 */
export async function repairEntry(context: StorageContext, entry: ManifestEntry): Promise<number> {
  const { layout } = entry
  const n = layout.k + layout.m
  const lost = Array.from({ length: n }, (_, piece) => piece).filter((piece) => !entry.placements.some((p) => p.piece === piece))
  if (lost.length === 0) return 0
  const avoid = new Set([...context.lost, ...entry.placements.map((p) => p.provider.toLowerCase())])
  for (const holding of context.holdings) if (holding.failedAtMs !== undefined) avoid.add(holding.offer.provider.toLowerCase())
  const placedByRegion = new Map<string, number>()
  for (const place of entry.placements) placedByRegion.set(place.region ?? '', (placedByRegion.get(place.region ?? '') ?? 0) + 1)
  const bytes = pieceBytes(layout)
  // Providers that cannot be reached or refuse are left out, and others asked, a few times over.
  const targets: { offer: SignedOffer; holding: Holding }[] = []
  for (let attempt = 0; attempt < 4 && targets.length < lost.length; attempt++) {
    const { offers } = choosePlacements(context.init.offerBook, { count: lost.length - targets.length, perRegion: layout.m, placedByRegion, avoid, minBytes: bytes, ...placementLimits(context.init) })
    const rented = await Promise.allSettled(offers.map((offer) => context.roomOn(offer, bytes)))
    for (const [i, outcome] of rented.entries()) {
      const offer = offers[i]!
      avoid.add(offer.payload.provider.toLowerCase())
      if (outcome.status === 'rejected') continue
      targets.push({ offer, holding: outcome.value })
      const region = offerRegion(offer.payload) ?? ''
      placedByRegion.set(region, (placedByRegion.get(region) ?? 0) + 1)
    }
  }
  const rebuilding = lost.slice(0, targets.length)
  if (rebuilding.length === 0) throw new HearthError('HEARTH_ERR_STORAGE_UNAVAILABLE', `no provider took the ${lost.length} pieces to rebuild`, { hint: 'the upkeep tries again at its next round' })
  const sinks = targets.map(({ offer }, i) => tolerant(pieceSink(context.init.host, offerTarget(offer.payload), { pieceId: pieceIdOf(layout, rebuilding[i]!), shardBytes: layout.shardBytes, stripes: layout.stripes })))
  const sources = Array.from({ length: n }, (_, piece) => context.sourceFor(entry, piece))
  await repairPieces(layout, sources, rebuilding, sinks)
  const current = findEntry(context.manifest(), entry.bucket, entry.key)
  // Replaced or removed while the repair ran: the rebuilt pieces belong to no object.
  if (current === undefined || current.layout.fileId !== layout.fileId) return 0
  const placed = rebuilding.flatMap((piece, i) => {
    const { offer, holding } = targets[i]!
    if (sinks[i]!.failure() !== undefined || sinks[i]!.root() !== layout.pieces[piece]!.root) {
      context.init.log?.(`storage: provider ${offer.payload.provider} did not take rebuilt piece ${piece} of ${layout.fileId}: ${sinks[i]!.failure()?.message ?? 'it kept a piece whose root differs'}`)
      return []
    }
    return [{ piece, provider: offer.payload.provider, agreementId: holding.agreement.id, ...(holding.region === undefined ? {} : { region: holding.region }) }]
  })
  await context.commit(withEntry(context.manifest(), { ...current, placements: [...current.placements.filter((p) => !rebuilding.includes(p.piece)), ...placed] }))
  return placed.length
}
