import assert from 'node:assert/strict'
import { test } from 'node:test'
import { generateIdentity } from '../identity/node-identity.ts'
import { proposeTerms, reviewProposal, type AgreementTerms } from './agreement.ts'
import { createOffer, offerId } from './offer.ts'
import { costWei } from './pricing.ts'
import { offerStorageBytes, offerStoragePrice, storageCostWei, storageOfferProperties, storagePricingFor } from './storage-terms.ts'

const payment = { chainId: 31337, escrow: '0x' + '11'.repeat(20), token: '0x' + '22'.repeat(20) }
const provider = generateIdentity()
const requestor = generateIdentity()
const gib = 1024 ** 3
// 3.6e15 wei per GiB-hour: exactly 1e12 wei per GiB-second.
const perGibHourWei = 3_600_000_000_000_000n
const offer = (await createOffer({ identity: provider, multiaddrs: [], properties: { 'golem.runtime.name': ['wasi', 'storage'], ...storageOfferProperties({ offeredGib: 4, perGibHourWei: perGibHourWei.toString() }) }, pricing: { model: 'per-task', perTaskWei: '10' }, payment, ttlMs: 60_000 })).payload
const policy = { maxConcurrentAgreements: 16, maxAgreementSec: 86_400, minDebitNoteIntervalSec: 0, maxDebitNoteIntervalSec: 300, maxPaymentTimeoutSec: 600 }
const review = (terms: AgreementTerms, reservedStorageBytes = 0) => reviewProposal(terms, { offer, offerIds: new Set([offerId(offer)]), policy, activeAgreements: 0, reservedStorageBytes, nowMs: Date.now() })
const storageTerms = (storageBytes: number): AgreementTerms => proposeTerms({ offer, requestor: requestor.address, runtime: 'storage', storageBytes, maxTasks: 28, taskTimeoutMs: 3_600_000, escrowAhead: true, jobName: 'storage', durationSec: 86_400 })

test('an offer states the disk it lends and its price per GiB-hour; a reservation is priced per second from them', () => {
  assert.equal(offerStorageBytes(offer), 4 * gib)
  assert.equal(offerStoragePrice(offer), perGibHourWei)
  assert.equal(offer.properties['golem.inf.storage.gib'], 4)
  // Half a GiB: 5e11 wei a second; an hour of it costs half the price per GiB-hour.
  const pricing = storagePricingFor(perGibHourWei, gib / 2)
  assert.deepEqual(pricing, { model: 'linear', startWei: '0', perCpuSecWei: '0', perDurationSecWei: '500000000000' })
  assert.equal(costWei(pricing, { tasks: 0, cpuMs: 0, durationMs: 3_600_000 }), perGibHourWei / 2n)
  assert.equal(storageCostWei(perGibHourWei, gib / 2, 1), perGibHourWei / 2n)
  // Rounded up to the wei: a reservation at a tiny price still costs a wei a second, never nothing.
  assert.deepEqual(storagePricingFor(1n, 1), { model: 'linear', startWei: '0', perCpuSecWei: '0', perDurationSecWei: '1' })
})

test('a provider takes a storage proposal at its price within the disk it has left, counters a lower price, refuses the rest', () => {
  assert.deepEqual(review(storageTerms(gib)), { decision: 'approve' })
  // More than the disk left beside what other agreements reserve.
  const over = review(storageTerms(2 * gib), 3 * gib)
  assert.equal(over.decision, 'reject')
  assert.match((over as { reason: string }).reason, /reserves 2147483648 bytes and this provider has 1073741824 bytes of disk left/)
  // Priced below what the reservation costs at the offer's price: countered with the offer's, nothing else changed.
  const cheap = storageTerms(gib)
  const low = { ...cheap, pricing: storagePricingFor(perGibHourWei / 2n, gib), depositWei: '1' }
  const countered = review(low)
  assert.equal(countered.decision, 'counter')
  assert.deepEqual((countered as { terms: AgreementTerms }).terms.pricing, storagePricingFor(perGibHourWei, gib))
  // A storage proposal must say what it reserves; a compute one may not.
  const { storageBytes: _dropped, ...noBytes } = cheap
  assert.match((review(noBytes) as { reason: string }).reason, /must state storageBytes/)
  const compute = proposeTerms({ offer, requestor: requestor.address, runtime: 'wasi', maxTasks: 1, taskTimeoutMs: 1000, jobName: 'x' })
  assert.match((review({ ...compute, storageBytes: 10 }) as { reason: string }).reason, /storageBytes belongs to storage agreements only/)
})
