import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, hexToBytes, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { isHearthError } from '../errors.ts'
import { rememberPublicKey, signedByKnownKey } from './known-keys.ts'
import { generateIdentity } from './node-identity.ts'
import { recoverPersonalSigner, signPayload, verifySigned } from './signed.ts'

const prefix = new TextEncoder().encode('\x19Ethereum Signed Message:\n32')
const personalDigest = (hash: Hex): Uint8Array => keccak_256(new Uint8Array([...prefix, ...hexToBytes(hash)]))

/** What recovery says: the signature over `hash` is by `address`. */
function recoveredIs(hash: Hex, signature: Uint8Array, address: string): boolean {
  try {
    return recoverPersonalSigner(hash, bytesToHex(signature)).toLowerCase() === address.toLowerCase()
  } catch {
    return false
  }
}

describe('signatures checked against known keys', () => {
  it('accepts and refuses exactly what recovering the signer accepts and refuses, before and after its table is built', async () => {
    const key = randomBytes(32)
    const account = privateKeyToAccount(bytesToHex(key))
    const other = privateKeyToAccount(bytesToHex(randomBytes(32)))
    rememberPublicKey(account.address, secp256k1.getPublicKey(key, true))
    const tamperings: ((signature: Uint8Array) => void)[] = [
      () => {},
      (signature) => void (signature[64] = signature[64] === 27 ? 28 : 27),
      (signature) => void (signature[3]! ^= 1),
      (signature) => void (signature[40]! ^= 0x80),
      (signature) => void signature.fill(0xff, 0, 32),
      (signature) => void signature.fill(0, 32, 64),
      (signature) => void (signature[64] = 29),
    ]
    let accepted = 0
    for (let round = 0; round < 4; round++) {
      for (const [index, tamper] of tamperings.entries()) {
        const hash = bytesToHex(randomBytes(32))
        const signature = hexToBytes(await account.signMessage({ message: { raw: hash } }))
        tamper(signature)
        const fast = signedByKnownKey(personalDigest(hash), signature, account.address)
        assert.equal(fast, recoveredIs(hash, signature, account.address), `round ${round}, tampering ${index}`)
        if (fast) accepted++
        // Another digest, or another signer's key: never.
        assert.equal(signedByKnownKey(personalDigest(bytesToHex(randomBytes(32))), signature, account.address), false)
        const foreign = hexToBytes(await other.signMessage({ message: { raw: hash } }))
        assert.equal(signedByKnownKey(personalDigest(hash), foreign, account.address), false)
      }
    }
    assert.equal(accepted, 4, 'the untampered signature of each round')
  })

  it('knows nothing of an address whose key it was not told', async () => {
    const account = privateKeyToAccount(bytesToHex(randomBytes(32)))
    const hash = bytesToHex(randomBytes(32))
    const signature = hexToBytes(await account.signMessage({ message: { raw: hash } }))
    assert.equal(signedByKnownKey(personalDigest(hash), signature, account.address), false)
  })

  it('lets verifySigned accept a known signer and refuse a tampered envelope with the same error as recovery', async () => {
    const identity = generateIdentity()
    rememberPublicKey(identity.address, secp256k1.getPublicKey(hexToBytes(identity.privateKey), true))
    for (let i = 0; i < 3; i++) {
      const envelope = await signPayload(identity, { task: i, data: 'x'.repeat(i) })
      assert.deepEqual(await verifySigned(envelope, { expectedSigner: identity.address }), { task: i, data: 'x'.repeat(i) })
      await assert.rejects(verifySigned({ ...envelope, payload: { task: i + 1, data: '' } }, { expectedSigner: identity.address }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_SIGNATURE_INVALID') && error.details?.reason === 'bad-signature')
    }
  })
})
