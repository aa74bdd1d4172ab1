/**
 * One secp256k1 key per node. The same 32 bytes give the node its Ethereum address (payments, signatures) and its
 * libp2p PeerId (transport encryption), so a connection's remote PeerId tells us whom to expect as a signer.
 */
import { ECDH } from 'node:crypto'
import { chmod, mkdir, open, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { privateKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { getAddress, hexToBytes } from 'viem'
import type { Address, Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount, publicKeyToAddress } from 'viem/accounts'
import type { PrivateKeyAccount } from 'viem/accounts'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { HearthError } from '../errors.ts'
import { rememberPublicKey } from './known-keys.ts'

export interface NodeIdentity {
  /** 0x-prefixed 32-byte secp256k1 secret. Never log it. */
  privateKey: Hex
  /** Checksummed Ethereum address of the key. */
  address: Address
  /** libp2p PeerId derived from the same key (a secp256k1 PeerId). */
  peerId: PeerId
  /** The key in libp2p's form, for createLibp2p({ privateKey }). */
  libp2pKey: PrivateKey
  /** The key as a viem account, for signing messages and transactions. */
  account: PrivateKeyAccount
}

export const keyFileName = 'node.key'

const privateKeyPattern = /^(0x)?[0-9a-fA-F]{64}$/

export function identityFromPrivateKey(privateKey: string): NodeIdentity {
  const trimmed = privateKey.trim()
  // Never echo the input: it is a secret.
  if (!privateKeyPattern.test(trimmed)) {
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', 'The node key is not 32 bytes of hex', {
      hint: 'a node key is 64 hex digits, optionally prefixed with 0x',
    })
  }
  const hex = (trimmed.startsWith('0x') ? trimmed : `0x${trimmed}`).toLowerCase() as Hex
  let account: PrivateKeyAccount
  let libp2pKey: PrivateKey
  try {
    account = privateKeyToAccount(hex)
    libp2pKey = privateKeyFromRaw(hexToBytes(hex))
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', 'The node key is not a valid secp256k1 secret (zero or not below the curve order)', { cause })
  }
  return { privateKey: hex, address: account.address, peerId: peerIdFromPrivateKey(libp2pKey), libp2pKey, account }
}

export function generateIdentity(): NodeIdentity {
  return identityFromPrivateKey(generatePrivateKey())
}

/**
 * Reads `dataDir/node.key`, creating the directory (0700) and a fresh key (0600) on first run. A key file that group
 * or others may access is refused rather than silently fixed: someone may already have copied it.
 */
export async function loadOrCreateIdentity(dataDir: string): Promise<NodeIdentity> {
  const path = join(dataDir, keyFileName)
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `Cannot create the data directory ${dataDir}`, { cause, details: { path: dataDir } })
  }
  const existing = await readNodeKeyFile(path)
  if (existing !== undefined) return existing
  const identity = generateIdentity()
  try {
    // 'wx' fails when another process created the file meanwhile; we then load theirs instead of overwriting it.
    await writeFile(path, `${identity.privateKey}\n`, { mode: 0o600, flag: 'wx' })
    // The mode passed to open() is filtered by the umask; make it exact.
    await chmod(path, 0o600)
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST') {
      const raced = await readNodeKeyFile(path)
      if (raced !== undefined) return raced
    }
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `Cannot write the node key file ${path}`, { cause, details: { path } })
  }
  return identity
}

/**
 * Reads a secret file (a key of any kind: a node key, a funder or deployer key, the local API key), refusing one that
 * group or others may access rather than silently fixing it: someone may already have copied it. Every key file
 * Hearth reads goes through here. The mode is read from the open file, so the file checked is the file read.
 * Resolves undefined when the file does not exist and `missing` is 'undefined'.
 */
export async function readSecretFile(path: string, options: { what?: string; missing: 'undefined' }): Promise<string | undefined>
export async function readSecretFile(path: string, options?: { what?: string; missing?: 'throw' }): Promise<string>
export async function readSecretFile(path: string, options: { what?: string; missing?: 'throw' | 'undefined' } = {}): Promise<string | undefined> {
  const what = options.what ?? 'key file'
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT' && options.missing === 'undefined') return undefined
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `Cannot read the ${what} ${path}`, { cause, details: { path } })
  }
  try {
    const { mode } = await handle.stat()
    // POSIX permission bits mean nothing on Windows, where ACLs protect the file instead.
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `The ${what} ${path} is accessible by group or others (mode ${(mode & 0o777).toString(8).padStart(4, '0')})`, {
        hint: `run: chmod 600 ${path}  (and treat the key as leaked if others could read it)`,
        details: { path, mode: mode & 0o777 },
      })
    }
    return await handle.readFile('utf8')
  } catch (cause) {
    if (cause instanceof HearthError) throw cause
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `Cannot read the ${what} ${path}`, { cause, details: { path } })
  } finally {
    await handle.close()
  }
}

/**
 * An identity from a key file (64 hex digits, as in a node's `node.key`): a funder's, a deployer's, the key a wallet
 * sends from. Checked as {@link readSecretFile} checks; the key itself is never echoed.
 */
export async function readKeyFile(path: string, what = 'key file'): Promise<NodeIdentity> {
  return identityFromKeyText(await readSecretFile(path, { what }), path, what)
}

async function readNodeKeyFile(path: string): Promise<NodeIdentity | undefined> {
  const text = await readSecretFile(path, { what: 'node key file', missing: 'undefined' })
  return text === undefined ? undefined : identityFromKeyText(text, path, 'node key file')
}

function identityFromKeyText(text: string, path: string, what: string): NodeIdentity {
  try {
    return identityFromPrivateKey(text)
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `The ${what} ${path} is malformed`, {
      cause,
      hint:
        what === 'node key file'
          ? 'it must hold 64 hex digits (optionally 0x-prefixed); restore it from a backup, or move it away to create a new identity (the old address and its funds stay with the old key)'
          : 'it must hold 64 hex digits (optionally 0x-prefixed), as a node.key does',
      details: { path },
    })
  }
}

/**
 * Addresses of the peers met lately, by PeerId string. Every request and response asks for its peer's address, and
 * deriving one (decompress the point, keccak, checksum) costs about 0.2 ms; a node talks to few peers many times.
 */
const peerAddresses = new Map<string, Address>()
const maxCachedPeerAddresses = 4096

/** The Ethereum address of a secp256k1 PeerId, i.e. of the node on the far side of a libp2p connection. */
export function addressFromPeerId(peerId: PeerId): Address {
  if (peerId.type !== 'secp256k1' || peerId.publicKey === undefined) {
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `Peer ${peerId.toString()} has a ${peerId.type} key, not secp256k1, so it has no Ethereum address`, {
      details: { peerId: peerId.toString(), keyType: peerId.type },
    })
  }
  // A secp256k1 PeerId is its public key (identity multihash), so the string names the key exactly.
  const key = peerId.toString()
  let address = peerAddresses.get(key)
  if (address === undefined) {
    // PeerIds carry the compressed point; an address hashes the uncompressed one. Node's OpenSSL decompresses it.
    const uncompressed = ECDH.convertKey(peerId.publicKey.raw, 'secp256k1', undefined, 'hex', 'uncompressed') as string
    address = getAddress(publicKeyToAddress(`0x${uncompressed}`))
    if (peerAddresses.size >= maxCachedPeerAddresses) peerAddresses.clear()
    peerAddresses.set(key, address)
  }
  // The peer's signatures can now be checked against its key rather than by recovering it (known-keys.ts).
  rememberPublicKey(address, peerId.publicKey.raw)
  return address
}
