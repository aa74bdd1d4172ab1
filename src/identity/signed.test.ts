import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { z } from 'zod'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from './node-identity.ts'
import { recoverPersonalSigner, signedSchema, signPayload, verifySigned } from './signed.ts'
import { recoverMessageAddress, type Hex } from 'viem'
import { hashCanonical } from './canonical-json.ts'
import type { Signed } from './signed.ts'

const alice = generateIdentity()
const bob = generateIdentity()

function rejectedFor(reason: string) {
  return (error: unknown) => isHearthError(error, 'HEARTH_ERR_SIGNATURE_INVALID') && error.details?.reason === reason
}

describe('signed envelopes', () => {
  it('verifies its own signature, whatever the key order of the payload', async () => {
    const signed = await signPayload(alice, { b: [1, 2], a: 'x' })
    assert.equal(signed.signer, alice.address)
    assert.deepEqual(await verifySigned(signed, { expectedSigner: alice.address }), { b: [1, 2], a: 'x' })
    const reordered = { ...signed, payload: { a: 'x', b: [1, 2] } }
    assert.deepEqual(await verifySigned(JSON.parse(JSON.stringify(reordered)) as typeof reordered), { a: 'x', b: [1, 2] })
  })

  it('recovers signers exactly as viem does, for valid, tampered and odd signatures alike', async () => {
    for (let i = 0; i < 30; i++) {
      const identity = generateIdentity()
      const signed = await signPayload(identity, { i, nonce: Math.random() })
      const hash = hashCanonical(signed.payload)
      assert.equal(recoverPersonalSigner(hash, signed.signature), identity.address)
      // a flipped byte in r or s, and the recovery id written as 0/1 instead of 27/28
      const bytes = Buffer.from(signed.signature.slice(2), 'hex')
      bytes[5 + (i % 50)]! ^= 1 << (i % 8)
      const tampered = `0x${bytes.toString('hex')}` as Hex
      const ours = (() => {
        try {
          return recoverPersonalSigner(hash, tampered)
        } catch {
          return 'invalid'
        }
      })()
      const viems = await recoverMessageAddress({ message: { raw: hash }, signature: tampered }).catch(() => 'invalid')
      assert.equal(ours, viems)
      const v01 = Buffer.from(signed.signature.slice(2), 'hex')
      v01[64] = v01[64]! - 27
      assert.equal(recoverPersonalSigner(hash, `0x${v01.toString('hex')}`), identity.address)
    }
    assert.throws(() => recoverPersonalSigner(hashCanonical({}), `0x${'00'.repeat(64)}05`))
  })

  it('rejects a tampered payload', async () => {
    const signed = await signPayload(alice, { priceWei: '100' })
    await assert.rejects(verifySigned({ ...signed, payload: { priceWei: '1' } }), rejectedFor('bad-signature'))
  })

  it('rejects a signer that did not sign, and a signer other than the expected one', async () => {
    const signed = await signPayload(alice, { n: 1 })
    await assert.rejects(verifySigned({ ...signed, signer: bob.address }), rejectedFor('bad-signature'))
    await assert.rejects(verifySigned(signed, { expectedSigner: bob.address }), rejectedFor('signer-mismatch'))
  })

  it('rejects malformed envelopes and signatures', async () => {
    const signed = await signPayload(alice, { n: 1 })
    const malformed: unknown[] = [
      null,
      { payload: { n: 1 } },
      { ...signed, signature: '0x1234' },
      { ...signed, signature: signed.signature.slice(0, -2) + 'zz' },
      { ...signed, signer: 'alice' },
      { ...signed, payload: { n: 1n } },
    ]
    for (const value of malformed) {
      await assert.rejects(verifySigned(value as Signed<unknown>), rejectedFor('malformed'))
    }
    // Right length, but not a point on the curve / invalid recovery id.
    const garbage = `0x${'ab'.repeat(64)}ff` as const
    await assert.rejects(verifySigned({ ...signed, signature: garbage }), rejectedFor('bad-signature'))
  })

  it('signedSchema checks the payload but keeps it byte-for-byte verifiable', async () => {
    const offer = z.object({ cpus: z.number().int() })
    const message = z.object({ offer: signedSchema(offer) })
    const signed = await signPayload(alice, { cpus: 4, extra: 'kept' })
    const parsed = message.parse(JSON.parse(JSON.stringify({ offer: signed })))
    assert.deepEqual(parsed.offer.payload, { cpus: 4, extra: 'kept' })
    await verifySigned(parsed.offer, { expectedSigner: alice.address })
    const bad = message.safeParse({ offer: await signPayload(alice, { cpus: 'four' }) })
    assert.equal(bad.success, false)
    assert.deepEqual(bad.error?.issues[0]?.path, ['offer', 'payload', 'cpus'])
  })
})
