/**
 * Signed envelopes: a payload, its author's address and an EIP-191 personal signature over the SHA-256 of the
 * payload's canonical JSON. EIP-191 (rather than a raw hash signature) lets any Ethereum wallet produce and check them.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, getAddress, hexToBytes, isAddress, isAddressEqual } from 'viem'
import type { Address, Hex } from 'viem'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { hashCanonical } from './canonical-json.ts'
import { signedByKnownKey } from './known-keys.ts'
import type { NodeIdentity } from './node-identity.ts'

export interface Signed<T> {
  payload: T
  signer: Address
  signature: Hex
}

export interface VerifyOptions {
  /** When given, the envelope must be signed by this address (compared case-insensitively). */
  expectedSigner?: Address
}

const signaturePattern = /^0x[0-9a-fA-F]{130}$/

/** The envelope's shape with the payload left unchecked; check the payload after verifying (see verifySigned). */
export const signedEnvelopeSchema = z.object({
  payload: z.unknown(),
  signer: z.string().refine((value) => isAddress(value, { strict: false }), 'expected a 20-byte hex address'),
  signature: z.string().regex(signaturePattern, 'expected a 65-byte hex signature'),
})

/**
 * Schema for a field that carries a signed envelope. It checks the envelope's shape and that the payload satisfies
 * `payloadSchema`, but keeps the payload exactly as received (unknown keys included) so the signature still verifies
 * when the envelope is stored or forwarded. It does NOT verify the signature (that is async): call `verifySigned`.
 * Use JSON-shaped payload schemas (no transforms) for signed data.
 */
export function signedSchema<P extends z.ZodType>(payloadSchema: P): z.ZodType<Signed<z.input<P>>> {
  return signedEnvelopeSchema.superRefine((envelope, ctx) => {
    const result = payloadSchema.safeParse(envelope.payload)
    if (result.success) return
    for (const issue of result.error.issues) {
      ctx.addIssue({ code: 'custom', message: issue.message, path: ['payload', ...issue.path] })
    }
  }) as unknown as z.ZodType<Signed<z.input<P>>>
}

export async function signPayload<T>(identity: NodeIdentity, payload: T): Promise<Signed<T>> {
  const hash = hashCanonical(payload)
  const signature = await identity.account.signMessage({ message: { raw: hash } })
  return { payload, signer: identity.address, signature }
}

/**
 * Checks that `signed.signature` is `signed.signer`'s signature over `signed.payload` (and, optionally, that the
 * signer is who the caller expects). Returns the payload; throws HEARTH_ERR_SIGNATURE_INVALID saying what is wrong.
 */
export async function verifySigned<T>(signed: Signed<T>, options: VerifyOptions = {}): Promise<T> {
  const shape = signedEnvelopeSchema.safeParse(signed)
  if (!shape.success) {
    const issue = shape.error.issues[0]
    const where = issue === undefined || issue.path.length === 0 ? 'envelope' : issue.path.join('.')
    throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `Malformed signed envelope: ${where}: ${issue?.message ?? 'invalid'}`, {
      hint: 'a signed message is { payload, signer: 0x-address, signature: 0x-65-byte-hex }',
      details: { reason: 'malformed', field: where },
    })
  }
  const signer = getAddress(shape.data.signer)
  let hash: Hex
  try {
    hash = hashCanonical(signed.payload)
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', 'Malformed signed envelope: the payload is not canonical JSON', {
      cause,
      details: { reason: 'malformed', field: 'payload' },
    })
  }
  if (options.expectedSigner !== undefined && !isAddressEqual(signer, options.expectedSigner)) {
    throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `Signed by ${signer}, but ${getAddress(options.expectedSigner)} was expected`, {
      details: { reason: 'signer-mismatch', signer, expectedSigner: getAddress(options.expectedSigner) },
    })
  }
  // The signer's key, when this node knows it (a connection's peer), settles it without recovery; anything else
  // (an unknown key, a signature that does not check) goes through recovery, which says what is wrong.
  if (signedByKnownKey(personalDigest(hash), hexToBytes(shape.data.signature as Hex), signer)) return signed.payload
  let recovered: Address
  try {
    recovered = recoverPersonalSigner(hash, shape.data.signature as Hex)
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', 'The signature is not a valid secp256k1 signature', {
      cause,
      details: { reason: 'bad-signature', signer },
    })
  }
  if (!isAddressEqual(recovered, signer)) {
    throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `The signature does not match the payload and signer ${signer} (tampered payload or wrong key)`, {
      details: { reason: 'bad-signature', signer },
    })
  }
  return signed.payload
}

const personalPrefix = new TextEncoder().encode('\x19Ethereum Signed Message:\n32')

/**
 * The address whose key made an EIP-191 personal signature over 32 raw bytes: what viem's recoverMessageAddress
 * returns, computed synchronously with noble's secp256k1 (viem loads its recovery code by a dynamic import on every
 * call, which costs about as much as the recovery itself). Throws on a signature that is not a valid point.
 */
export function recoverPersonalSigner(hash: Hex, signature: Hex): Address {
  const digest = personalDigest(hash)
  const bytes = hexToBytes(signature)
  if (bytes.length !== 65) throw new Error('a signature is 65 bytes')
  const v = bytes[64]!
  const recovery = v >= 27 ? v - 27 : v
  if (recovery !== 0 && recovery !== 1) throw new Error(`invalid recovery id ${v}`)
  // The recovered point itself, not its compressed bytes: decompressing them again would cost a square root.
  const publicKey = secp256k1.Signature.fromBytes(bytes.subarray(0, 64), 'compact').addRecoveryBit(recovery).recoverPublicKey(digest)
  const uncompressed = publicKey.toBytes(false)
  return getAddress(bytesToHex(keccak_256(uncompressed.subarray(1)).subarray(12)))
}

/** What an EIP-191 personal signature over the 32 bytes of `hash` signs: keccak256 of the prefix and the bytes. */
function personalDigest(hash: Hex): Uint8Array {
  const bytes = hexToBytes(hash)
  const message = new Uint8Array(personalPrefix.length + bytes.length)
  message.set(personalPrefix)
  message.set(bytes, personalPrefix.length)
  return keccak_256(message)
}
