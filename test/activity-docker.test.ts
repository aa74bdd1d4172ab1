/** An ExeScript activity running a container on a devnet provider: the image travels as an archive, by content id. */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { parseEther, type Address } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { saveImageArchive } from '../src/exec/docker-images.ts'
import { createDockerRuntime } from '../src/exec/docker-runtime.ts'
import { importBusyboxImage, startTestEngine } from '../src/exec/docker-test-image.ts'
import type { ExeEvent } from '../src/exec/exescript.ts'
import { proposeTerms } from '../src/market/agreement.ts'
import { createActivity } from '../src/requestor/activity-client.ts'
import { negotiateMany, offerTarget } from '../src/requestor/negotiator.ts'

test('a container activity: the archive is fetched by content id, loaded, and its output streams back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-activity-docker-'))
  after(() => rm(dir, { recursive: true, force: true }))
  const engine = await startTestEngine(join(dir, 'engine'))
  after(() => engine.stop())
  const docker = createDockerRuntime({ socketPath: engine.socketPath })
  after(() => docker.close())
  const imageId = await importBusyboxImage(docker, join(dir, 'rootfs'))
  const archivePath = join(dir, 'busybox.tar')
  await saveImageArchive(docker, imageId, archivePath)
  // Gone from the engine, so the provider must fetch the archive from the requestor and load it.
  await docker.api.json({ method: 'DELETE', path: `/images/${imageId}?force=true` }, 'remove the image')

  const devnet = await startDevnet({ providers: 1, dockerSocket: engine.socketPath })
  after(() => devnet.stop())
  const { requestor } = devnet
  const signed = devnet.providers[0]!.agent.currentOffer()!
  assert.ok((signed.payload.properties['golem.runtime.name'] as string[]).includes('docker'), String(signed.payload.properties['hearth.runtime.unavailable']))
  const negotiated = await negotiateMany({ host: requestor.host, identity: requestor.identity, store: requestor.store }, [signed], {
    need: 1,
    termsFor: (offer) => proposeTerms({ offer, requestor: requestor.identity.address, runtime: 'docker', maxTasks: 5, taskTimeoutMs: 60_000, jobName: 'container activity' }),
    limits: { maxPerTaskWei: parseEther('1'), minDurationSec: 600, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 },
  })
  const { agreement, offer } = negotiated.agreements[0]!
  await requestor.agent.accounts.open([{ agreement, offer }])

  await using activity = await createActivity({ host: requestor.host, identity: requestor.identity, store: requestor.store, blobs: requestor.agent.blobs }, { id: agreement.id, provider: offer.provider as Address, target: offerTarget(offer) })
  const packageId = activity.provide(await readFile(archivePath))
  const call = activity.exec([
    { deploy: { imageId, packageId } },
    { start: {} },
    { run: { args: ['sh', '-c', 'for i in 1 2 3; do echo box $i; done; echo made > out.txt'] } },
    { transfer: { from: 'container:/out.txt', to: 'requestor:' } },
  ])
  const events: ExeEvent[] = []
  for await (const event of call) events.push(event)
  const outcome = await call.result
  assert.deepEqual(outcome.results.map((r) => r.ok), [true, true, true, true], JSON.stringify(outcome.results))
  assert.equal(events.filter((e) => e.type === 'stdout').map((e) => Buffer.from((e as { dataBase64: string }).dataBase64, 'base64').toString()).join(''), 'box 1\nbox 2\nbox 3\n')
  assert.equal(Buffer.from(outcome.files[0]!.bytes).toString(), 'made\n')
  assert.equal(await docker.hasImage(imageId), true, 'the provider loaded the image from the archive')
})
