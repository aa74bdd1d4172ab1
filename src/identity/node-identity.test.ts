import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { peerIdFromString } from '@libp2p/peer-id'
import { privateKeyToAccount } from 'viem/accounts'
import { isHearthError } from '../errors.ts'
import { addressFromPeerId, generateIdentity, identityFromPrivateKey, keyFileName, loadOrCreateIdentity } from './node-identity.ts'

// A well-known test key (Hardhat account #0), so the expected address is independent of our code.
const hardhatKey = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
const hardhatAddress = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'

describe('node identity', async () => {
  const root = await mkdtemp(join(tmpdir(), 'hearth-identity-'))
  after(() => rm(root, { recursive: true, force: true }))

  it('derives the Ethereum address and a secp256k1 PeerId from one key', () => {
    const identity = identityFromPrivateKey(hardhatKey)
    assert.equal(identity.address, hardhatAddress)
    assert.equal(identity.peerId.type, 'secp256k1')
    assert.equal(addressFromPeerId(identity.peerId), hardhatAddress)
    // Without 0x and in upper case it is the same key.
    assert.equal(identityFromPrivateKey(hardhatKey.slice(2).toUpperCase()).peerId.toString(), identity.peerId.toString())
  })

  it('round-trips PeerId <-> address through the PeerId string', () => {
    for (let i = 0; i < 5; i++) {
      const identity = generateIdentity()
      const parsed = peerIdFromString(identity.peerId.toString())
      assert.equal(addressFromPeerId(parsed), identity.address)
      assert.equal(privateKeyToAccount(identity.privateKey).address, identity.address)
    }
  })

  it('refuses keys that are not secp256k1 secrets, without echoing them', () => {
    for (const bad of ['', '0x1234', `0x${'zz'.repeat(32)}`, `0x${'00'.repeat(32)}`, `0x${'ff'.repeat(32)}`]) {
      assert.throws(() => identityFromPrivateKey(bad), (error: unknown) =>
        isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY') && (bad.length < 10 || !error.message.includes(bad.slice(2))))
    }
  })

  it('creates dataDir/node.key with mode 0600 in a 0700 directory, and reloads the same identity', async () => {
    const dataDir = join(root, 'fresh', 'nested')
    const created = await loadOrCreateIdentity(dataDir)
    const file = await stat(join(dataDir, keyFileName))
    assert.equal(file.mode & 0o777, 0o600)
    assert.equal((await stat(dataDir)).mode & 0o777, 0o700)
    const reloaded = await loadOrCreateIdentity(dataDir)
    assert.equal(reloaded.address, created.address)
    assert.equal(reloaded.peerId.toString(), created.peerId.toString())
    assert.equal(reloaded.privateKey, created.privateKey)
  })

  it('refuses a key file readable by group or others, with a chmod hint', async () => {
    const dataDir = join(root, 'loose')
    await loadOrCreateIdentity(dataDir)
    const path = join(dataDir, keyFileName)
    await chmod(path, 0o644)
    await assert.rejects(loadOrCreateIdentity(dataDir), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY') && error.hint !== undefined && error.hint.includes(`chmod 600 ${path}`))
    await chmod(path, 0o600)
    await loadOrCreateIdentity(dataDir)
  })

  it('reports a malformed key file clearly', async () => {
    const dataDir = join(root, 'malformed')
    await loadOrCreateIdentity(dataDir)
    await writeFile(join(dataDir, keyFileName), 'not a key\n', { mode: 0o600 })
    await assert.rejects(loadOrCreateIdentity(dataDir), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY') && /malformed/.test(error.message))
  })
})
