import assert from 'node:assert/strict'
import { test } from 'node:test'
import { sha256Hex } from '../exec/content-hash.ts'
import { admit, dismiss, provideBlob, type BlobServer } from './activity-blobs.ts'

const alice = '0xaaaa000000000000000000000000000000000001'
const bob = '0xbbbb000000000000000000000000000000000002'

test('a blob two activities provided is served until the last of them ends, and only to providers with one running', () => {
  const server: BlobServer = { blobs: new Map(), allowed: new Map(), activities: 0 }
  const program = new TextEncoder().encode('the program')
  const input = new TextEncoder().encode('an input')
  const first = new Set<string>()
  const second = new Set<string>()
  admit(server, alice)
  admit(server, bob)
  admit(server, bob)

  const id = provideBlob(server, first, program)
  assert.equal(id, sha256Hex(program))
  // Provided twice by the same activity: one use, not two.
  assert.equal(provideBlob(server, first, program), id)
  assert.equal(provideBlob(server, second, program), id)
  provideBlob(server, second, input)
  assert.equal(server.blobs.get(id)?.users, 2)
  assert.deepEqual([server.activities, server.allowed.get(alice), server.allowed.get(bob)], [3, 1, 2])

  dismiss(server, alice, first)
  assert.equal(server.blobs.get(id)?.users, 1, 'the other activity still uses the program')
  assert.equal(server.allowed.get(alice), 0)
  dismiss(server, bob, second)
  assert.equal(server.blobs.size, 0, 'nothing is served once no activity that provided it is left')
  assert.deepEqual([server.activities, server.allowed.get(bob)], [1, 1])
})
