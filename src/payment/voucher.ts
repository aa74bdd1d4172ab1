/**
 * EIP-712 cumulative vouchers: the requestor signs "agreement X owes the provider N wei in total so far" under the
 * escrow's domain (chain id + contract), so a voucher redeems only on that chain, contract and agreement.
 * Matches `Voucher(bytes32 agreementId,uint256 cumulativeAmount)` in contracts/HearthEscrow.sol.
 */
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, hexToBigInt, hexToBytes, isAddress, isAddressEqual, isHex, recoverTypedDataAddress, sliceHex } from 'viem'
import type { Address, Hex } from 'viem'
import { privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { HearthError } from '../errors.ts'
import { signedByKnownKey } from '../identity/known-keys.ts'

export interface Voucher {
  /** bytes32: the agreement id, the SHA-256 of its terms' canonical JSON (agreementId in market/agreement.ts). */
  agreementId: Hex
  /** Total owed for the agreement so far (not an increment): a later voucher supersedes an earlier one. */
  cumulativeWei: bigint
  chainId: number
  escrowAddress: Address
  signer: Address
  /** 65-byte r || s || v, v in {27, 28}, low s (what OpenZeppelin's ECDSA accepts). */
  signature: Hex
}

/** The wire form: amounts as decimal strings, since JSON has no bigint. */
export interface VoucherJson {
  agreementId: string
  cumulativeWei: string
  chainId: number
  escrowAddress: string
  signer: string
  signature: string
}

export const voucherTypes = {
  Voucher: [
    { name: 'agreementId', type: 'bytes32' },
    { name: 'cumulativeAmount', type: 'uint256' },
  ],
} as const

export function voucherDomain(chainId: number, escrowAddress: Address) {
  return { name: 'HearthEscrow', version: '1', chainId, verifyingContract: escrowAddress } as const
}

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)
const domainTypeHash = keccak_256(utf8('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)'))
const voucherTypeHash = keccak_256(utf8('Voucher(bytes32 agreementId,uint256 cumulativeAmount)'))

/** A number as the 32-byte big-endian word ABI encoding gives it. */
function word(value: bigint): Uint8Array {
  return hexToBytes(`0x${value.toString(16).padStart(64, '0')}`)
}

/** EIP-712 domain separators by chain and contract (the same few for a node's whole life). */
const domainSeparators = new Map<string, Uint8Array>()

function domainSeparator(chainId: number, escrowAddress: Address): Uint8Array {
  const key = `${chainId}:${escrowAddress.toLowerCase()}`
  let separator = domainSeparators.get(key)
  if (separator === undefined) {
    const { name, version } = voucherDomain(chainId, escrowAddress)
    const encoded = new Uint8Array(5 * 32)
    encoded.set(domainTypeHash, 0)
    encoded.set(keccak_256(utf8(name)), 32)
    encoded.set(keccak_256(utf8(version)), 64)
    encoded.set(word(BigInt(chainId)), 96)
    encoded.set(word(hexToBigInt(escrowAddress)), 128)
    separator = keccak_256(encoded)
    if (domainSeparators.size >= 64) domainSeparators.clear()
    domainSeparators.set(key, separator)
  }
  return separator
}

/**
 * The digest the requestor signs; equals HearthEscrow.voucherDigest(agreementId, cumulativeWei) and viem's
 * hashTypedData over voucherDomain and voucherTypes, computed directly (two keccak256 of 96 bytes and one of 66; the
 * domain separator is kept) rather than through the generic typed-data encoder, which costs a millisecond a voucher.
 */
export function voucherDigest(args: { chainId: number; escrowAddress: Address; agreementId: Hex; cumulativeWei: bigint }): Hex {
  assertBytes32(args.agreementId)
  assertUint256(args.cumulativeWei)
  const struct = new Uint8Array(3 * 32)
  struct.set(voucherTypeHash, 0)
  struct.set(hexToBytes(args.agreementId), 32)
  struct.set(word(args.cumulativeWei), 64)
  const message = new Uint8Array(2 + 2 * 32)
  message.set([0x19, 0x01], 0)
  message.set(domainSeparator(args.chainId, args.escrowAddress), 2)
  message.set(keccak_256(struct), 34)
  return bytesToHex(keccak_256(message))
}

export async function signVoucher(args: {
  privateKey: Hex
  chainId: number
  escrowAddress: Address
  agreementId: Hex
  cumulativeWei: bigint
}): Promise<Voucher> {
  assertBytes32(args.agreementId)
  assertUint256(args.cumulativeWei)
  const account = accountOf(args.privateKey)
  // What signTypedData signs (the EIP-712 digest), without its generic encoder.
  const signature = await account.sign({ hash: voucherDigest(args) })
  return {
    agreementId: args.agreementId,
    cumulativeWei: args.cumulativeWei,
    chainId: args.chainId,
    escrowAddress: args.escrowAddress,
    signer: account.address,
    signature,
  }
}

export interface VoucherExpectations {
  expectedSigner: Address
  chainId: number
  escrowAddress: Address
  agreementId: Hex
  /** When given, the voucher may not promise more than this (the escrow's deposit). */
  maxCumulativeWei?: bigint
}

/**
 * Checks a voucher as the provider must before relying on it: the right chain, contract and agreement, a signature
 * by the requestor that the contract will also accept. Throws HEARTH_ERR_PAYMENT_VOUCHER_INVALID naming the check.
 */
export async function verifyVoucher(voucher: Voucher, expected: VoucherExpectations): Promise<void> {
  const fail = (check: string, message: string): never => {
    throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', `voucher rejected: ${message}`, {
      details: { check, agreementId: voucher.agreementId, cumulativeWei: String(voucher.cumulativeWei) },
    })
  }
  if (voucher.chainId !== expected.chainId) {
    fail('chainId', `it is for chain ${voucher.chainId}, not chain ${expected.chainId}`)
  }
  if (!isAddress(voucher.escrowAddress, { strict: false }) || !isAddressEqual(voucher.escrowAddress, expected.escrowAddress)) {
    fail('escrowAddress', `it is for escrow contract ${voucher.escrowAddress}, not ${expected.escrowAddress}`)
  }
  if (voucher.agreementId.toLowerCase() !== expected.agreementId.toLowerCase()) {
    fail('agreementId', `it is for agreement ${voucher.agreementId}, not ${expected.agreementId}`)
  }
  if (expected.maxCumulativeWei !== undefined && voucher.cumulativeWei > expected.maxCumulativeWei) {
    fail('amount', `it promises ${voucher.cumulativeWei} wei, more than the ${expected.maxCumulativeWei} wei deposited`)
  }
  if (!isHex(voucher.signature) || voucher.signature.length !== 132) {
    fail('signature', 'the signature is not 65 bytes of hex')
  }
  // The contract (OpenZeppelin ECDSA) refuses high-s and v other than 27/28; a voucher it would refuse is worthless.
  const s = hexToBigInt(sliceHex(voucher.signature, 32, 64))
  const v = Number.parseInt(voucher.signature.slice(130), 16)
  if (s > secp256k1HalfOrder || (v !== 27 && v !== 28)) {
    fail('signature', 'the signature is not in the canonical form (low s, v 27/28) the escrow contract accepts')
  }
  // The requestor's key, when this node knows it (the connection's peer), settles the signer without recovery.
  if (isAddress(voucher.signer, { strict: false }) && isAddressEqual(voucher.signer, expected.expectedSigner)
    && signedByKnownKey(hexToBytes(voucherDigest(voucher)), hexToBytes(voucher.signature), expected.expectedSigner)) return
  let recovered: Address | undefined
  try {
    recovered = await recoverTypedDataAddress({
      domain: voucherDomain(voucher.chainId, voucher.escrowAddress),
      types: voucherTypes,
      primaryType: 'Voucher',
      message: { agreementId: voucher.agreementId, cumulativeAmount: voucher.cumulativeWei },
      signature: voucher.signature,
    })
  } catch {
    fail('signature', 'no signer can be recovered from the signature')
  }
  if (!isAddressEqual(recovered!, expected.expectedSigner)) {
    fail('signer', `it is signed by ${recovered!}, not by the requestor ${expected.expectedSigner}`)
  }
  if (!isAddress(voucher.signer, { strict: false }) || !isAddressEqual(voucher.signer, recovered!)) {
    fail('signer', `its signer field ${voucher.signer} does not match the signature (${recovered!})`)
  }
}

/** Accounts by private key: deriving one (its public key and address) costs a curve multiplication. */
const accounts = new Map<Hex, PrivateKeyAccount>()

function accountOf(privateKey: Hex): PrivateKeyAccount {
  let account = accounts.get(privateKey)
  if (account === undefined) {
    account = privateKeyToAccount(privateKey)
    if (accounts.size >= 16) accounts.clear()
    accounts.set(privateKey, account)
  }
  return account
}

export function voucherToJson(voucher: Voucher): VoucherJson {
  return {
    agreementId: voucher.agreementId,
    cumulativeWei: voucher.cumulativeWei.toString(10),
    chainId: voucher.chainId,
    escrowAddress: voucher.escrowAddress,
    signer: voucher.signer,
    signature: voucher.signature,
  }
}

/** Parses a voucher from the network; checks its shape only (call verifyVoucher before trusting it). */
export function voucherFromJson(json: unknown): Voucher {
  const fail = (message: string): never => {
    throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', `malformed voucher: ${message}`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('not a JSON object')
  const o = json as Record<string, unknown>
  const { agreementId, cumulativeWei, chainId, escrowAddress, signer, signature } = o
  if (typeof agreementId !== 'string' || !/^0x[0-9a-fA-F]{64}$/.test(agreementId)) fail('agreementId is not 32 bytes of hex')
  if (typeof cumulativeWei !== 'string' || !/^(0|[1-9][0-9]{0,77})$/.test(cumulativeWei)) {
    fail('cumulativeWei is not a decimal integer string')
  }
  if (typeof chainId !== 'number' || !Number.isSafeInteger(chainId) || chainId <= 0) fail('chainId is not a positive integer')
  if (typeof escrowAddress !== 'string' || !isAddress(escrowAddress, { strict: false })) fail('escrowAddress is not an address')
  if (typeof signer !== 'string' || !isAddress(signer, { strict: false })) fail('signer is not an address')
  if (typeof signature !== 'string' || !/^0x[0-9a-fA-F]{130}$/.test(signature)) fail('signature is not 65 bytes of hex')
  const amount = BigInt(cumulativeWei as string)
  if (amount > maxUint256) fail('cumulativeWei exceeds uint256')
  return {
    agreementId: agreementId as Hex,
    cumulativeWei: amount,
    chainId: chainId as number,
    escrowAddress: escrowAddress as Address,
    signer: signer as Address,
    signature: signature as Hex,
  }
}

const maxUint256 = 2n ** 256n - 1n
const secp256k1HalfOrder = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n

function assertBytes32(value: Hex): void {
  if (!/^0x[0-9a-fA-F]{64}$/.test(value)) {
    throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', `agreementId ${value} is not 32 bytes of hex`)
  }
}

function assertUint256(value: bigint): void {
  if (value < 0n || value > maxUint256) {
    throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', `cumulativeWei ${value} is outside uint256`)
  }
}
