import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { signPayload } from '../identity/signed.ts'
import { assembleAgreement, proposeTerms, reviewCounter, reviewProposal, verifyAgreement, type AgreementTerms } from './agreement.ts'
import { createOffer, offerId } from './offer.ts'

const payment = { chainId: 31337, escrow: '0x' + '11'.repeat(20), token: '0x' + '22'.repeat(20) }
const provider = generateIdentity()
const requestor = generateIdentity()
const signedOffer = await createOffer({ identity: provider, multiaddrs: [], properties: { 'golem.runtime.name': 'wasi' }, pricing: { model: 'per-task', perTaskWei: '10' }, payment, ttlMs: 60_000 })
const offer = signedOffer.payload
const policy = { maxConcurrentAgreements: 2, maxAgreementSec: 7200, minDebitNoteIntervalSec: 30, maxDebitNoteIntervalSec: 300, maxPaymentTimeoutSec: 600 }

function terms(overrides: Partial<AgreementTerms> = {}): AgreementTerms {
  return {
    offerId: offerId(offer),
    requestor: requestor.address,
    provider: provider.address,
    runtime: 'wasi',
    pricing: { model: 'per-task', perTaskWei: '10' },
    maxTasks: 4,
    taskTimeoutMs: 60_000,
    depositWei: '40',
    payment,
    expiresAtSec: Math.floor(Date.now() / 1000) + 3600,
    debitNoteIntervalSec: 60,
    paymentTimeoutSec: 300,
    jobName: 'test',
    nonce: '0x01',
    createdAtMs: Date.now(),
    ...overrides,
  }
}

const review = (t: AgreementTerms, active = 0) =>
  reviewProposal(t, { offer, offerIds: new Set([offerId(offer)]), policy, activeAgreements: active, nowMs: Date.now() })

test('a provider approves terms that match its offer and policy', () => {
  assert.deepEqual(review(terms()), { decision: 'approve' })
})

function rejection(t: AgreementTerms, active = 0): string {
  const decision = review(t, active)
  assert.equal(decision.decision, 'reject', JSON.stringify(decision))
  return decision.decision === 'reject' ? decision.reason : ''
}

test('a provider rejects what no counter-proposal can fix, with the reason', () => {
  assert.match(rejection(terms({ runtime: 'docker' })), /runtime docker is not offered/)
  assert.match(rejection(terms({ offerId: '0xdead' })), /did not make or that expired/)
  assert.match(rejection(terms({ provider: requestor.address })), /another provider/)
  assert.match(rejection(terms({ payment: { ...payment, chainId: 1 } })), /chain, escrow or token/)
  assert.match(rejection(terms({ expiresAtSec: Math.floor(Date.now() / 1000) + 10 })), /expires too soon/)
  assert.match(rejection(terms(), 2), /limit of concurrent agreements/)
  assert.match(rejection(terms({ depositWei: '39' })), /deposit does not cover/)
  const denied = reviewProposal(terms(), { offer, offerIds: new Set([offerId(offer)]), policy: { ...policy, deniedRequestors: new Set([requestor.address.toLowerCase()]) }, activeAgreements: 0, nowMs: Date.now() })
  assert.deepEqual(denied, { decision: 'reject', reason: 'this provider does not work for this requestor' })
  const notAllowed = reviewProposal(terms(), { offer, offerIds: new Set([offerId(offer)]), policy: { ...policy, allowedRequestors: new Set(['0x' + '99'.repeat(20)]) }, activeAgreements: 0, nowMs: Date.now() })
  assert.equal(notAllowed.decision, 'reject')
})

test('a provider counters debit notes rarer than its maximum interval: a requestor cannot put off paying for a day', () => {
  const proposed = terms({ debitNoteIntervalSec: 86_400 })
  const decision = review(proposed)
  assert.equal(decision.decision, 'counter')
  if (decision.decision !== 'counter') return
  assert.equal(decision.terms.debitNoteIntervalSec, 300)
  assert.match(decision.reasons.join('; '), /rarer than this provider's 300 s/)
  // The counter changes only the interval: a requestor within its limits takes it.
  const limits = { maxPerTaskWei: 10n, minDurationSec: 600, maxDebitNoteIntervalSec: 86_400, minPaymentTimeoutSec: 60, nowMs: Date.now() }
  assert.equal(reviewCounter(proposed, decision.terms, limits), undefined)
})

test('a provider counters a low price, a long agreement, frequent debit notes and a long payment timeout, changing only those terms', () => {
  const proposed = terms({ pricing: { model: 'per-task', perTaskWei: '7' }, depositWei: '28', expiresAtSec: Math.floor(Date.now() / 1000) + 99_999, debitNoteIntervalSec: 5, paymentTimeoutSec: 9_999 })
  const decision = review(proposed)
  assert.equal(decision.decision, 'counter')
  if (decision.decision !== 'counter') return
  assert.equal(decision.reasons.length, 4)
  assert.equal(decision.terms.paymentTimeoutSec, 600)
  assert.deepEqual(decision.terms.pricing, { model: 'per-task', perTaskWei: '10' })
  assert.equal(decision.terms.depositWei, '40')
  assert.ok(decision.terms.expiresAtSec <= Math.floor(Date.now() / 1000) + 7200)
  assert.equal(decision.terms.debitNoteIntervalSec, 30)
  // The requestor takes it when within its limits; the provider then approves those exact terms.
  const limits = { maxPerTaskWei: 10n, minDurationSec: 600, maxDebitNoteIntervalSec: 60, minPaymentTimeoutSec: 60, nowMs: Date.now() }
  assert.equal(reviewCounter(proposed, decision.terms, limits), undefined)
  assert.deepEqual(review(decision.terms), { decision: 'approve' })
  // ...and refuses it when the price passes its cap, or when a term that is not negotiable changed.
  assert.match(reviewCounter(proposed, decision.terms, { ...limits, maxPerTaskWei: 9n })!, /above the cap/)
  assert.match(reviewCounter(proposed, { ...decision.terms, maxTasks: 400, depositWei: '4000' }, limits)!, /changes maxTasks/)
  assert.match(reviewCounter(proposed, { ...decision.terms, depositWei: '41' }, limits)!, /deposit does not follow/)
  assert.match(reviewCounter(proposed, decision.terms, { ...limits, minPaymentTimeoutSec: 900 })!, /too little time to answer debit notes/)
})

test('an agreement carries both signatures over the same terms and its id is their hash', async () => {
  const t = terms()
  const agreement = assembleAgreement(await signPayload(requestor, t), await signPayload(provider, t))
  assert.deepEqual(await verifyAgreement(agreement), t)
  // Changing a term after signing breaks the id and the signatures.
  const altered = { ...agreement, terms: { ...t, maxTasks: 400, depositWei: '4000' } }
  await assert.rejects(verifyAgreement(altered), (e) => isHearthError(e, 'HEARTH_ERR_SIGNATURE_INVALID'))
  // A provider signature over other terms cannot be stitched on.
  assert.throws(() => assembleAgreement({ payload: t, signer: requestor.address, signature: agreement.requestorSignature as `0x${string}` }, { payload: { ...t, maxTasks: 1 }, signer: provider.address, signature: agreement.providerSignature as `0x${string}` }))
  const swapped = { ...agreement, providerSignature: agreement.requestorSignature }
  await assert.rejects(verifyAgreement(swapped), (e) => isHearthError(e, 'HEARTH_ERR_SIGNATURE_INVALID'))
})

test('proposed terms take the offer\'s prices, deposit enough for every task, and never repeat', () => {
  const a = proposeTerms({ offer, requestor: requestor.address, runtime: 'wasi', maxTasks: 4, taskTimeoutMs: 60_000, jobName: 'j' })
  const b = proposeTerms({ offer, requestor: requestor.address, runtime: 'wasi', maxTasks: 4, taskTimeoutMs: 60_000, jobName: 'j' })
  assert.deepEqual(a.pricing, offer.pricing)
  assert.equal(a.depositWei, '40')
  assert.notEqual(a.nonce, b.nonce)
  assert.deepEqual(review(a), { decision: 'approve' })
})

test('GPUs are granted only as offered, and never to wasi tasks', async () => {
  const gpuOffer = (await createOffer({ identity: provider, multiaddrs: [], properties: { 'golem.runtime.name': ['wasi', 'native'], 'hearth.inf.gpu.count': 2 }, pricing: { model: 'per-task', perTaskWei: '10' }, payment, ttlMs: 60_000 })).payload
  const reviewGpu = (t: AgreementTerms) => reviewProposal({ ...t, offerId: offerId(gpuOffer) }, { offer: gpuOffer, offerIds: new Set([offerId(gpuOffer)]), policy, activeAgreements: 0, nowMs: Date.now() })
  assert.equal(reviewGpu(terms({ runtime: 'native', gpus: 2 })).decision, 'approve')
  const tooMany = reviewGpu(terms({ runtime: 'native', gpus: 3 }))
  assert.deepEqual(tooMany, { decision: 'reject', reason: 'the proposal asks for 3 GPUs and this provider offers 2' })
  assert.match(JSON.stringify(reviewGpu(terms({ runtime: 'wasi', gpus: 1 }))), /wasi task cannot use GPUs/)
  // an offer without GPUs grants none
  assert.match(rejection(terms({ gpus: 1 })), /wasi task cannot use GPUs|offers 0/)
})

test('an escrow topped up as work goes stays at least one task ahead: less is countered with the price, or refused', () => {
  const ahead = proposeTerms({ offer, requestor: requestor.address, runtime: 'wasi', maxTasks: 4, taskTimeoutMs: 60_000, jobName: 'j', escrowAhead: true })
  assert.equal(ahead.escrowAheadWei, '10')
  assert.deepEqual(review(ahead), { decision: 'approve' })
  assert.match(rejection(terms({ escrowAheadWei: '9' })), /less than one task at its longest ahead/)
  // A price countered up takes the amount ahead up with it; the requestor checks that it follows from the price.
  const cheap = terms({ pricing: { model: 'per-task', perTaskWei: '7' }, depositWei: '28', escrowAheadWei: '7' })
  const decision = review(cheap)
  assert.equal(decision.decision, 'counter')
  if (decision.decision !== 'counter') return
  assert.equal(decision.terms.escrowAheadWei, '10')
  const limits = { maxPerTaskWei: 10n, minDurationSec: 600, maxDebitNoteIntervalSec: 300, minPaymentTimeoutSec: 60, nowMs: Date.now() }
  assert.equal(reviewCounter(cheap, decision.terms, limits), undefined)
  assert.match(reviewCounter(cheap, { ...decision.terms, escrowAheadWei: '40' }, limits)!, /escrowAheadWei does not follow/)
  // A provider cannot turn a deposit made up front into top-ups, or back, nor add a term the proposal lacked.
  const { escrowAheadWei: _dropped, ...upFront } = decision.terms
  assert.match(reviewCounter(cheap, upFront, limits)!, /whether the escrow is topped up/)
  assert.match(reviewCounter(terms(), { ...terms(), gpus: 1 }, limits)!, /changes gpus/)
})
