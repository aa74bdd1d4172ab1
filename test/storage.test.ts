/**
 * Dispersed storage on a devnet with the real chain and contracts: six providers lend disk in three regions, the
 * owner's node stores files sealed and erasure-coded 2 of 3 (one piece per region), reads them back whole and in
 * ranges, audits the providers, and repairs what a corrupting provider or a dark region took; storage agreements are
 * paid by time, a provider that failed an audit only up to the last one it passed.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseEther, type Hex } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { getEscrow } from '../src/payment/escrow.ts'
import { createDispersedStore, pieceIdOf, type DispersedStore } from '../src/requestor/dispersed-store.ts'
import { createStorageUpkeep, type StorageUpkeep } from '../src/requestor/storage-upkeep.ts'
import { pieceSink, pieceSource, statPieces } from '../src/requestor/storage-pieces.ts'
import { offerTarget } from '../src/requestor/negotiator.ts'
import { isHearthError } from '../src/errors.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { createHost } from '../src/net/host.ts'
import { loadStorageKey } from '../src/storage/storage-key.ts'

const regions = ['eu', 'us', 'ap']
const perGibHourWei = parseEther('2')

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of body) parts.push(chunk)
  return Buffer.concat(parts)
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes
}

/** Every file under `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(entry.parentPath, entry.name)
    if (entry.isDirectory()) found.push(...(await filesUnder(path)))
    else found.push(path)
  }
  return found
}

describe('dispersed storage on providers in three regions', { timeout: 600_000 }, () => {
  let dir: string
  let devnet: Devnet
  let store: DispersedStore
  let upkeep: StorageUpkeep
  const logs: string[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-storage-'))
    devnet = await startDevnet({
      providers: 6,
      dataDir: join(dir, 'devnet'),
      providerProperties: (i) => ({ 'hearth.geo.region': regions[i % 3]! }),
      providerStorage: () => ({ offeredGib: 2, perGibHourWei: perGibHourWei.toString() }),
      providerActivityMeterEveryMs: 1000,
    })
    const { requestor } = devnet
    await requestor.agent.offerBook.waitFor(6, (offer) => offer.properties['hearth.storage.perGibHourWei'] !== undefined, { signal: AbortSignal.timeout(60_000) })
    const { key } = await loadStorageKey(join(dir, 'owner', 'storage.key'), { create: true })
    store = createDispersedStore({
      host: requestor.host, identity: requestor.identity, store: requestor.store, accounts: requestor.agent.accounts, blobs: requestor.agent.blobs, offerBook: requestor.agent.offerBook,
      key, manifestPath: join(dir, 'owner', 'manifest.sealed'), code: { k: 2, m: 1 },
      holdingTerms: { escrowAheadSec: 60, minReserveBytes: 64 * 1024 * 1024 },
      log: (line) => logs.push(line),
    })
    await store.open()
    upkeep = createStorageUpkeep(store.context, { missesBeforeLost: 1, auditTimeoutMs: 5000 })
  })

  after(async () => {
    upkeep?.stop()
    await store?.close({ settle: false }).catch(() => undefined)
    await devnet?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const providerDir = (address: string): string => {
    const index = devnet.providers.findIndex((p) => p.identity.address.toLowerCase() === address.toLowerCase())
    return join(dir, 'devnet', `provider-${index + 1}`, 'storage')
  }

  it('stores a file sealed, one piece per region, and gives it back whole and in ranges; providers hold no plaintext', async () => {
    await store.createBucket('photos')
    const marker = 'HEARTH-PLAINTEXT-MARKER-7f3a'
    const name = 'holiday/secret-name-of-the-file.bin'
    const bytes = Buffer.concat([Buffer.from(marker.repeat(1000)), randomBytes(3 * 1024 * 1024 + 12345), Buffer.from(marker)])
    const info = await store.putObject({ bucket: 'photos', key: name, body: once(bytes), size: bytes.length })
    assert.equal(info.size, bytes.length)
    const entry = store.context.manifest().entries.find((e) => e.key === name)!
    assert.equal(entry.placements.length, 3)
    assert.deepEqual(new Set(entry.placements.map((p) => p.region)), new Set(regions))
    assert.equal(new Set(entry.placements.map((p) => p.provider.toLowerCase())).size, 3)

    const got = await store.getObject('photos', name)
    assert.ok(got !== undefined)
    assert.ok((await collect(got.body)).equals(bytes))
    const range = await store.getObject('photos', name, { start: 1024 * 1024 - 10, end: 2 * 1024 * 1024 + 10 })
    assert.ok((await collect(range!.body)).equals(bytes.subarray(1024 * 1024 - 10, 2 * 1024 * 1024 + 11)))
    assert.deepEqual((await store.listObjects('photos', 'holiday/')).map((o) => o.key), [name])

    // Each provider holds its piece: ciphertext, with neither the marker nor the file's name anywhere in its folder.
    for (const place of entry.placements) {
      const files = await filesUnder(providerDir(place.provider))
      assert.ok(files.some((file) => file.endsWith(`${pieceIdOf(entry.layout, place.piece)}.piece`)), `provider ${place.provider} holds its piece`)
      for (const file of files) {
        const content = await readFile(file)
        assert.equal(content.includes(marker), false, `${file} holds plaintext`)
        assert.equal(content.includes('secret-name-of-the-file'), false, `${file} holds the file's name`)
      }
    }
  })

  it('finds a corrupted piece by audit, rebuilds it elsewhere, and pays its provider only up to the audit it passed', async () => {
    const bytes = randomBytes(2 * 1024 * 1024 + 777)
    await store.putObject({ bucket: 'photos', key: 'audited.bin', body: once(bytes), size: bytes.length })
    const entry = store.context.manifest().entries.find((e) => e.key === 'audited.bin')!
    // Every stripe is challenged, so the audit covers the corrupted one whatever the draw.
    const thorough = createStorageUpkeep(store.context, { missesBeforeLost: 1, auditTimeoutMs: 5000, stripesPerAudit: entry.layout.stripes })
    const first = await thorough.audit()
    assert.equal(first.failed, 0)
    const passedAtMs = Date.now()

    const victim = entry.placements[0]!
    const holding = store.context.holdings.find((h) => h.offer.provider.toLowerCase() === victim.provider.toLowerCase())!
    const piecePath = join(providerDir(victim.provider), `${pieceIdOf(entry.layout, victim.piece)}.piece`)
    const piece = await readFile(piecePath)
    const at = entry.layout.shardBytes + 5
    piece.writeUInt8(piece.readUInt8(at) ^ 0xff, at)
    await writeFile(piecePath, piece)
    // Time passes on the meter between the passed audit and the failed one: none of it may be paid.
    await new Promise((resolve) => setTimeout(resolve, 4000))

    const second = await thorough.audit()
    assert.deepEqual(second.lost, [victim.provider.toLowerCase()])
    assert.ok(thorough.records().get(pieceIdOf(entry.layout, victim.piece))!.lastError!.includes('fails its proof'))
    assert.ok(holding.failedAtMs !== undefined && holding.lastPassedMs <= passedAtMs)
    assert.ok(await thorough.repair() >= 1)

    const repaired = store.context.manifest().entries.find((e) => e.key === 'audited.bin')!
    assert.equal(repaired.placements.length, 3)
    assert.ok(repaired.placements.every((p) => p.provider.toLowerCase() !== victim.provider.toLowerCase()))
    assert.ok((await collect((await store.getObject('photos', 'audited.bin'))!.body)).equals(bytes))
    assert.equal((await thorough.audit()).failed, 0)

    // The lost provider's agreement was settled on chain for no more than its life up to the passed audit.
    const terms = holding.agreement.terms
    const escrow = await getEscrow(devnet.requestor.payment, { requestorAddress: devnet.requestor.payment.client.address, agreementId: holding.agreement.id as Hex })
    assert.ok(escrow !== undefined && escrow.claimedWei > 0n, 'the provider was paid for the time before the passed audit')
    const perSec = BigInt((terms.pricing as { perDurationSecWei: string }).perDurationSecWei)
    const paidUpToMs = holding.lastPassedMs - holding.createdAtMs
    assert.ok(escrow.claimedWei <= (perSec * BigInt(paidUpToMs + 1000)) / 1000n, `claimed ${escrow.claimedWei} wei for ${paidUpToMs} ms at ${perSec} wei/s`)
    assert.ok(escrow.claimedWei < (perSec * BigInt(Date.now() - holding.createdAtMs)) / 1000n)
  })

  it('keeps a file readable when every provider of one region goes dark, and restores full redundancy', async () => {
    const bytes = randomBytes(1024 * 1024 + 99)
    await store.putObject({ bucket: 'photos', key: 'dark.bin', body: once(bytes), size: bytes.length })
    const dark = store.context.manifest().entries.find((e) => e.key === 'dark.bin')!.placements.find((p) => p.region === 'ap')!
    for (const [i, provider] of devnet.providers.entries()) {
      if (regions[i % 3] !== 'ap') continue
      await provider.agent.stop()
      await provider.host.stop()
    }
    assert.ok((await collect((await store.getObject('photos', 'dark.bin'))!.body)).equals(bytes))
    const round = await upkeep.audit()
    assert.ok(round.lost.includes(dark.provider.toLowerCase()))
    await upkeep.repair()
    const after = store.context.manifest().entries.find((e) => e.key === 'dark.bin')!
    assert.equal(after.placements.length, 3)
    assert.ok(after.placements.every((p) => p.region !== 'ap'))
    assert.ok((await collect((await store.getObject('photos', 'dark.bin'))!.body)).equals(bytes))
  })

  it('refuses strangers: no put without a holding, none past it, no removing or replacing another owner\'s piece', async () => {
    const entry = store.context.manifest().entries.find((e) => e.key === 'holiday/secret-name-of-the-file.bin')!
    const place = entry.placements[0]!
    const offer = devnet.requestor.agent.offerBook.list((o) => o.provider.toLowerCase() === place.provider.toLowerCase())[0]!.payload
    const target = offerTarget(offer)
    const pieceId = pieceIdOf(entry.layout, place.piece)
    const identity = generateIdentity()
    const stranger = await createHost({ identity })
    await stranger.start()
    try {
      // No storage agreement with this provider: nothing may be put.
      const sink = pieceSink(stranger, target, { pieceId: `${'ab'.repeat(16)}-0`, shardBytes: 1024, stripes: 4 })
      await assert.rejects(sink.write(new Uint8Array(1024)).then(() => sink.end()), (error) => isHearthError(error) && /no live storage agreement/.test(error.message))
      // Nor may another owner's piece be replaced or removed; reading it is allowed (it is ciphertext, named by a random id).
      const replace = pieceSink(stranger, target, { pieceId, shardBytes: entry.layout.shardBytes, stripes: entry.layout.stripes, replace: true })
      await assert.rejects(replace.write(new Uint8Array(entry.layout.shardBytes)).then(() => replace.end()), (error) => isHearthError(error))
      const removed = await statPieces(stranger, target, [pieceId], true)
      assert.deepEqual(removed.pieces, [{ pieceId, held: true, bytes: entry.layout.shardBytes * entry.layout.stripes }])
      const read = await pieceSource(stranger, target, pieceId).read(0)
      assert.equal(read.shard.length, entry.layout.shardBytes)
      // Malformed requests: an id that is not one, a read past the piece's end.
      await assert.rejects(statPieces(stranger, target, ['../../etc/passwd']), (error) => isHearthError(error))
      await assert.rejects(pieceSource(stranger, target, pieceId).read(entry.layout.stripes + 5), (error) => isHearthError(error) && /past its end/.test(error.message))
    } finally {
      await stranger.stop()
    }
    // The owner itself cannot put past what its holdings reserve with that provider.
    const holding = store.context.holdings.find((h) => h.offer.provider.toLowerCase() === place.provider.toLowerCase() && h.failedAtMs === undefined)!
    const reserved = store.context.holdings.filter((h) => h.offer.provider.toLowerCase() === place.provider.toLowerCase() && h.failedAtMs === undefined).reduce((sum, h) => sum + h.bytes, 0)
    const shardBytes = 1024 * 1024
    const tooBig = pieceSink(devnet.requestor.host, offerTarget(holding.offer), { pieceId: `${'cd'.repeat(16)}-1`, shardBytes, stripes: Math.ceil(reserved / shardBytes) + 1 })
    await assert.rejects(tooBig.write(new Uint8Array(shardBytes)).then(() => tooBig.end()), (error) => isHearthError(error) && /does not fit your holdings/.test(error.message))
    // A put that sends fewer bytes than it announced keeps nothing.
    const short = pieceSink(devnet.requestor.host, offerTarget(holding.offer), { pieceId: `${'ef'.repeat(16)}-2`, shardBytes: 1024, stripes: 3 })
    await short.write(new Uint8Array(1024))
    await assert.rejects(short.end(), (error) => isHearthError(error) && /1 shards of the 3 agreed/.test(error.message))
    const after = await statPieces(devnet.requestor.host, offerTarget(holding.offer), [`${'ef'.repeat(16)}-2`])
    assert.equal(after.pieces[0]!.held, false)
  })

  it('removes an object and its pieces from the providers', async () => {
    const entry = store.context.manifest().entries.find((e) => e.key === 'dark.bin')!
    await store.deleteObject('photos', 'dark.bin')
    assert.equal(await store.headObject('photos', 'dark.bin'), undefined)
    for (const place of entry.placements) {
      const path = join(providerDir(place.provider), `${pieceIdOf(entry.layout, place.piece)}.piece`)
      await assert.rejects(stat(path))
    }
  })

  it('settles every storage agreement by time: each provider claimed on chain what the owner\'s last voucher says, and its balance grew by that', async () => {
    const live = store.context.holdings.filter((h) => h.failedAtMs === undefined)
    assert.ok(live.length >= 3)
    const providers = [...new Set(live.map((h) => h.offer.provider.toLowerCase()))]
    const before = new Map(await Promise.all(providers.map(async (p) => [p, await devnet.balanceOf(p as Hex)] as const)))
    await store.close({ settle: true })
    assert.equal(store.context.holdings.length, 0)
    const claimedBy = new Map<string, bigint>()
    for (const holding of live) {
      const escrow = await getEscrow(devnet.requestor.payment, { requestorAddress: devnet.requestor.payment.client.address, agreementId: holding.agreement.id as Hex })
      const voucher = devnet.requestor.store.vouchers.latest(holding.agreement.id)
      assert.ok(escrow !== undefined && voucher !== undefined && voucher.cumulativeWei > 0n, `agreement ${holding.agreement.id} was paid by voucher`)
      // Paid by time: what the provider claimed is the owner's final voucher, within what the escrow held.
      assert.equal(escrow.claimedWei, voucher.cumulativeWei)
      assert.ok(escrow.claimedWei <= escrow.depositedWei)
      const provider = holding.offer.provider.toLowerCase()
      claimedBy.set(provider, (claimedBy.get(provider) ?? 0n) + escrow.claimedWei)
    }
    for (const provider of providers) assert.equal((await devnet.balanceOf(provider as Hex)) - before.get(provider)!, claimedBy.get(provider), `provider ${provider}'s balance grew by its claims`)
  })
})
