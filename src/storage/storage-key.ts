/**
 * The storage key: 32 random bytes that encrypt everything a node stores with providers (seal.ts), kept in its own
 * file (`storage.key`, mode 0600, 64 hex digits), apart from the node key, so exporting one never exports the money.
 * The key alone restores every file on a new machine; losing it loses the data: nobody, Hearth included, can decrypt
 * without it. A key file that group or others may access is refused (identity/node-identity.ts readSecretFile).
 */
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { HearthError } from '../errors.ts'
import { readSecretFile } from '../identity/node-identity.ts'

/** What a person is told where a storage key is made or exported. */
export const storageKeyWarning =
  'This key decrypts everything you store through Hearth, and nothing else can: keep a copy of it somewhere safe. Lose it and the data is lost; anyone who has it can read your files.'

export interface StorageKey {
  readonly bytes: Uint8Array
}

/** A storage key from its text form: 64 hex digits, with or without 0x, surrounding white space ignored. */
export function parseStorageKey(text: string, source = 'the storage key'): StorageKey {
  const hex = text.trim().replace(/^0x/i, '')
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `${source} is not a storage key: expected 64 hex digits`, { hint: 'restore the file from your copy of the key' })
  }
  return { bytes: new Uint8Array(Buffer.from(hex, 'hex')) }
}

/** The key's text form, as the key file holds it and an export prints it. */
export function formatStorageKey(key: StorageKey): string {
  return Buffer.from(key.bytes).toString('hex')
}

/**
 * Reads the storage key at `path`, or makes one (mode 0600) when there is none and `create` is set; resolves with
 * whether it was made, so the caller can show {@link storageKeyWarning} once.
 */
export async function loadStorageKey(path: string, options: { create?: boolean } = {}): Promise<{ key: StorageKey; created: boolean }> {
  const text = await readSecretFile(path, { what: 'storage key file', missing: 'undefined' })
  if (text !== undefined) return { key: parseStorageKey(text, `the storage key file ${path}`), created: false }
  if (options.create !== true) {
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `there is no storage key file ${path}`, { hint: 'create one, or restore your copy of the key into that file (mode 0600)' })
  }
  const key: StorageKey = { bytes: new Uint8Array(randomBytes(32)) }
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 })
    // 'wx': a key another process made meanwhile is never overwritten (its data would be lost with it).
    await writeFile(path, `${formatStorageKey(key)}\n`, { mode: 0o600, flag: 'wx' })
    await chmod(path, 0o600)
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST') return loadStorageKey(path)
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `cannot write the storage key file ${path}`, { cause, details: { path } })
  }
  return { key, created: true }
}

/**
 * Writes the key held in `from` (its text form, as `key export` prints it) to the key file at `to` (mode 0600); a key
 * file already there is never replaced, since the data stored under it would be lost with it.
 */
export async function importStorageKey(from: string, to: string): Promise<StorageKey> {
  const text = await readFile(from, 'utf8').catch((cause: unknown) => {
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `cannot read ${from}`, { cause, hint: 'name the file you exported the key to' })
  })
  const key = parseStorageKey(text, from)
  await mkdir(dirname(to), { recursive: true, mode: 0o700 })
  try {
    await writeFile(to, `${formatStorageKey(key)}\n`, { mode: 0o600, flag: 'wx' })
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `${to} holds a storage key already`, { hint: 'import into a new data directory: a key in use is never replaced, or the data stored under it would be lost' })
    }
    throw new HearthError('HEARTH_ERR_IDENTITY_KEY', `cannot write the storage key file ${to}`, { cause })
  }
  await chmod(to, 0o600)
  return key
}
