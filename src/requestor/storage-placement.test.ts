import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { createOfferBook } from '../market/offer-book.ts'
import { compileConstraints } from '../market/constraints/evaluate.ts'
import { createOffer } from '../market/offer.ts'
import { storageOfferProperties } from '../market/storage-terms.ts'
import { choosePlacements } from './storage-placement.ts'

const payment = { chainId: 31337, escrow: '0x' + '11'.repeat(20), token: '0x' + '22'.repeat(20) }

/** A book of storage offers: region and price (wei per GiB-hour) of each, 10 GiB lent; one compute-only offer. */
async function book(providers: { region: string; price: number; gib?: number }[]) {
  const offers = createOfferBook()
  const regionOf = new Map<string, string>()
  for (const { region, price, gib } of providers) {
    const identity = generateIdentity()
    regionOf.set(identity.address.toLowerCase(), region)
    offers.add(await createOffer({ identity, multiaddrs: [], properties: { 'golem.runtime.name': ['wasi', 'storage'], 'hearth.geo.region': region, ...storageOfferProperties({ offeredGib: gib ?? 10, perGibHourWei: String(price) }) }, pricing: { model: 'per-task', perTaskWei: '1' }, payment, ttlMs: 60_000 }))
  }
  offers.add(await createOffer({ identity: generateIdentity(), multiaddrs: [], properties: { 'golem.runtime.name': 'wasi', 'hearth.geo.region': 'eu' }, pricing: { model: 'per-task', perTaskWei: '1' }, payment, ttlMs: 60_000 }))
  return { offers, regionOf }
}

test('pieces go to distinct providers, at most m per region, cheapest first within a region', async () => {
  const { offers, regionOf } = await book([
    { region: 'eu', price: 5 }, { region: 'eu', price: 1 }, { region: 'eu', price: 3 },
    { region: 'us', price: 2 }, { region: 'us', price: 9 }, { region: 'ap', price: 4 }, { region: 'ap', price: 8 },
  ])
  const choice = choosePlacements(offers, { count: 6, perRegion: 2, avoid: new Set(), minBytes: 1 })
  assert.equal(choice.spread, true)
  const regions = choice.offers.map((o) => regionOf.get(o.payload.provider.toLowerCase()))
  assert.deepEqual([...regions].sort(), ['ap', 'ap', 'eu', 'eu', 'us', 'us'])
  assert.equal(new Set(choice.offers.map((o) => o.payload.provider)).size, 6)
  // Within eu, the two cheapest (1 and 3), never the one at 5.
  const euPrices = choice.offers.filter((o) => regionOf.get(o.payload.provider.toLowerCase()) === 'eu').map((o) => o.payload.properties['hearth.storage.perGibHourWei'])
  assert.deepEqual(euPrices.sort(), ['1', '3'])
})

test('the owner\'s regions and price cap bound the choice; too few offers is a clear error; thin markets are reported', async () => {
  const { offers, regionOf } = await book([{ region: 'eu', price: 1 }, { region: 'eu', price: 2 }, { region: 'us', price: 3 }, { region: 'ap', price: 100 }, { region: 'us', price: 4, gib: 0.001 }])
  const capped = choosePlacements(offers, { count: 3, perRegion: 1, avoid: new Set(), minBytes: 1024 ** 2, maxPerGibHourWei: 10n })
  // The cap leaves out ap; two in eu then break the spread of one per region, which is said.
  assert.equal(capped.spread, false)
  assert.ok(capped.offers.every((o) => regionOf.get(o.payload.provider.toLowerCase()) !== 'ap'))
  const onlyEu = choosePlacements(offers, { count: 2, perRegion: 2, avoid: new Set(), minBytes: 1, regions: ['eu'] })
  assert.deepEqual(onlyEu.offers.map((o) => regionOf.get(o.payload.provider.toLowerCase())), ['eu', 'eu'])
  // The offer lending 1 MiB is too small for a piece of 2 MiB; with ap capped out, three cannot be found.
  assert.throws(() => choosePlacements(offers, { count: 4, perRegion: 2, avoid: new Set(), minBytes: 2 * 1024 ** 2, maxPerGibHourWei: 10n }), (error) => isHearthError(error, 'HEARTH_ERR_STORAGE_UNAVAILABLE') && /4 storage providers are needed and 3/.test(error.message))
})

test('the owner\'s constraint filter chooses among storage offers, and an offer\'s own constraints are honoured', async () => {
  const { offers, regionOf } = await book([{ region: 'eu', price: 1 }, { region: 'us', price: 2 }, { region: 'ap', price: 3 }])
  const onlyUs = choosePlacements(offers, { count: 1, perRegion: 1, avoid: new Set(), minBytes: 1, constraints: compileConstraints('(hearth.geo.region=us)') })
  assert.deepEqual(onlyUs.offers.map((o) => regionOf.get(o.payload.provider.toLowerCase())), ['us'])
  // A provider that takes only demands of another runtime is never chosen for storage.
  const picky = generateIdentity()
  offers.add(await createOffer({ identity: picky, multiaddrs: [], properties: { 'golem.runtime.name': ['wasi', 'storage'], 'hearth.geo.region': 'eu', ...storageOfferProperties({ offeredGib: 10, perGibHourWei: '0' }) }, constraints: '(golem.runtime.name=wasi)', pricing: { model: 'per-task', perTaskWei: '1' }, payment, ttlMs: 60_000 }))
  const all = choosePlacements(offers, { count: 3, perRegion: 1, avoid: new Set(), minBytes: 1 })
  assert.ok(all.offers.every((o) => o.payload.provider !== picky.address))
})
