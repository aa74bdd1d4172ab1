import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import { blobChunks } from '../exec/transfer.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { createHost, type Host } from '../net/host.ts'
import { createBlobServer, type BlobServer } from './blob-server.ts'

let requestor: Host
let alice: Host
let bob: Host
let server: BlobServer

before(async () => {
  requestor = await createHost({ identity: generateIdentity() })
  alice = await createHost({ identity: generateIdentity() })
  bob = await createHost({ identity: generateIdentity() })
  await Promise.all([requestor, alice, bob].map((host) => host.start()))
  server = createBlobServer({ host: requestor })
  await server.start()
})
after(async () => {
  await server.stop()
  await Promise.all([requestor, alice, bob].map((host) => host.stop()))
})

/** What `host` gets asking the requestor for the first bytes of `contentId` over fetch-blob: the bytes, or the refusal's code. */
async function fetchFirst(host: Host, contentId: string): Promise<string> {
  try {
    const chunk = await blobChunks(host, requestor.multiaddrs()[0]!, contentId)(0, 1024)
    return new TextDecoder().decode(chunk.data)
  } catch (error) {
    assert.ok(isHearthError(error, 'HEARTH_ERR_NET_REMOTE'), String(error))
    return String(error.details?.remoteCode)
  }
}

test('a blob two scopes serve is fetched until the last of them is released, and only by providers a scope let in', async () => {
  const program = new TextEncoder().encode('the program')
  const input = new TextEncoder().encode('an input')
  const job = server.openScope()
  const activity = server.openScope()
  job.allow(alice.address)
  activity.allow(bob.address)
  activity.allow(alice.address.toUpperCase().replace('0X', '0x'))

  const id = job.serve(program)
  assert.equal(id, sha256Hex(program))
  // Served twice by the same scope: one use, not two.
  assert.equal(job.serve(program), id)
  assert.equal(activity.serve(program), id)
  const inputId = activity.serve(input)
  assert.deepEqual([...server.served()].sort(), [[id, 2], [inputId, 1]].sort())

  assert.equal(await fetchFirst(alice, id), 'the program')
  assert.equal(await fetchFirst(bob, inputId), 'an input')
  const stranger = await createHost({ identity: generateIdentity() })
  await stranger.start()
  try {
    assert.equal(await fetchFirst(stranger, id), 'HEARTH_ERR_EXEC_PACKAGE_INVALID', 'a provider no scope let in gets nothing')
  } finally {
    await stranger.stop()
  }

  activity.release()
  assert.deepEqual([...server.served()], [[id, 1]], 'the job still serves the program; the input only the activity served is gone')
  assert.equal(server.allows(bob.address), false, 'the activity\'s provider may fetch no more')
  assert.equal(server.allows(alice.address), true, 'the job still lets alice in')
  assert.equal(await fetchFirst(bob, id), 'HEARTH_ERR_EXEC_PACKAGE_INVALID')
  assert.equal(await fetchFirst(alice, id), 'the program')

  job.release()
  job.release()
  assert.equal(server.served().size, 0)
  assert.equal(server.allows(alice.address), false)
  assert.equal(await fetchFirst(alice, id), 'HEARTH_ERR_EXEC_PACKAGE_INVALID')
  assert.throws(() => job.serve(program), (error: unknown) => isHearthError(error, 'HEARTH_ERR_INTERNAL'))
})
