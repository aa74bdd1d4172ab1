/**
 * A requestor serves a job's package over fetch-blob/4 (the rest of the blob on one stream), /3 (raw bytes) and /2
 * (base64 in JSON) only to the providers it holds an agreement with: a stranger is refused over each, the provider
 * gets the exact bytes.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { parseEther } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { isHearthError } from '../src/errors.ts'
import { fetchBlobBinaryProtocol, fetchBlobProtocol, fetchBlobRangeProtocol } from '../src/exec/task-protocols.ts'
import { sha256Hex } from '../src/exec/content-hash.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { requestBlob, requestBlobStream } from '../src/net/blob-protocol.ts'
import { createHost } from '../src/net/host.ts'

test('only a provider with an agreement may fetch the package, over /4, /3 or /2', async () => {
  const devnet = await startDevnet({ providers: 1 })
  after(() => devnet.stop())
  const stranger = await createHost({ identity: generateIdentity() })
  await stranger.start()
  after(() => stranger.stop())
  const module = await loadBuiltinWorkload('wordcount')
  const contentId = sha256Hex(module)
  await using session = await devnet.requestor.agent.openJob({
    name: 'fetch-blob-auth',
    runtime: 'wasi',
    package: module,
    tasks: [],
    plannedTasks: 1,
    providers: 1,
    maxPricePerTaskWei: parseEther('0.01'),
    timeoutMs: 60_000,
    maxMemoryBytes: 64 << 20,
    maxOutputBytes: 1 << 20,
  })
  assert.equal(session.slots, 1)
  const requestor = devnet.requestor.host.multiaddrs()[0]!
  const request = { contentId, offset: 0, maxBytes: 1 << 20 }
  const refused = (error: unknown): boolean =>
    isHearthError(error, 'HEARTH_ERR_NET_REMOTE') && error.details?.remoteCode === 'HEARTH_ERR_EXEC_PACKAGE_INVALID' && /does not serve/.test(error.message)
  await assert.rejects(requestBlob({ libp2p: stranger.libp2p }, requestor, fetchBlobBinaryProtocol, request), refused)
  await assert.rejects(stranger.request(requestor, fetchBlobProtocol, request), refused)
  await assert.rejects(requestBlobStream({ libp2p: stranger.libp2p }, requestor, fetchBlobRangeProtocol, { contentId, offset: 0, maxBytes: module.length }), refused)

  const provider = devnet.providers[0]!.host
  const v3 = await requestBlob({ libp2p: provider.libp2p }, requestor, fetchBlobBinaryProtocol, request)
  assert.deepEqual(v3.header, { contentId, totalBytes: module.length, offset: 0 })
  assert.ok(Buffer.from(v3.body).equals(module.subarray(0, 1 << 20)))
  const v2 = await provider.request(requestor, fetchBlobProtocol, request)
  assert.ok(Buffer.from(v2.dataBase64, 'base64').equals(module.subarray(0, 1 << 20)))
  const v4 = await provider.requestBlobStream(requestor, fetchBlobRangeProtocol, { contentId, offset: 10, maxBytes: module.length })
  assert.deepEqual(v4.header, { contentId, totalBytes: module.length, offset: 10 })
  const pieces: Uint8Array[] = []
  for await (const piece of v4.body) pieces.push(piece)
  assert.ok(Buffer.concat(pieces).equals(module.subarray(10)))
})
