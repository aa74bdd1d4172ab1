import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { signPayload } from '../identity/signed.ts'
import { assembleAgreement, reviewProposal, verifyAgreement, type AgreementTerms } from './agreement.ts'
import { createOffer, offerId } from './offer.ts'

const payment = { chainId: 31337, escrow: '0x' + '11'.repeat(20), token: '0x' + '22'.repeat(20) }
const provider = generateIdentity()
const requestor = generateIdentity()
const signedOffer = await createOffer({ identity: provider, multiaddrs: [], properties: { 'golem.runtime.name': 'wasi' }, perTaskWei: 10n, payment, ttlMs: 60_000 })
const offer = signedOffer.payload
const policy = { maxConcurrentAgreements: 2, maxAgreementSec: 7200 }

function terms(overrides: Partial<AgreementTerms> = {}): AgreementTerms {
  return {
    offerId: offerId(offer),
    requestor: requestor.address,
    provider: provider.address,
    runtime: 'wasi',
    pricing: { model: 'per-task', perTaskWei: '10' },
    maxTasks: 4,
    depositWei: '40',
    payment,
    expiresAtSec: Math.floor(Date.now() / 1000) + 3600,
    jobName: 'test',
    nonce: '0x01',
    createdAtMs: Date.now(),
    ...overrides,
  }
}

const review = (t: AgreementTerms, active = 0) =>
  reviewProposal(t, { offer, offerIds: new Set([offerId(offer)]), policy, activeAgreements: active, nowMs: Date.now() })

test('a provider approves terms that match its offer and policy', () => {
  assert.equal(review(terms()), undefined)
})

test('a provider rejects each kind of bad proposal with a reason', () => {
  assert.match(review(terms({ pricing: { model: 'per-task', perTaskWei: '9' } }))!, /below the offered/)
  assert.match(review(terms({ depositWei: '39' }))!, /deposit does not cover/)
  assert.match(review(terms({ runtime: 'docker' }))!, /runtime docker is not offered/)
  assert.match(review(terms({ offerId: '0xdead' }))!, /did not make or that expired/)
  assert.match(review(terms({ provider: requestor.address }))!, /another provider/)
  assert.match(review(terms({ payment: { ...payment, chainId: 1 } }))!, /chain, escrow or token/)
  assert.match(review(terms({ expiresAtSec: Math.floor(Date.now() / 1000) + 10 }))!, /expires too soon/)
  assert.match(review(terms({ expiresAtSec: Math.floor(Date.now() / 1000) + 99_999 }))!, /longer than/)
  assert.match(review(terms(), 2)!, /limit of concurrent agreements/)
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
