/** ExeScript over the docker runtime: a container's output streams as events while it runs (podman stands in for Docker). */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, it } from 'node:test'
import { createDockerRuntime, type DockerRuntime } from './docker-runtime.ts'
import { importBusyboxImage, startTestEngine, type TestEngine } from './docker-test-image.ts'
import { createActivity, type ExeEvent } from './exescript.ts'
import type { Runtime } from './runtime.ts'

const MiB = 1 << 20
let base: string
let engine: TestEngine
let runtime: DockerRuntime
let image: string

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-exescript-docker-'))
  // Fails (never skips) where podman/runc or busybox-static are missing, naming the packages.
  engine = await startTestEngine(join(base, 'podman'))
  runtime = createDockerRuntime({ socketPath: engine.socketPath })
  image = await importBusyboxImage(runtime, base)
})

after(async () => {
  await runtime?.close()
  await engine?.stop()
  await rm(base, { recursive: true, force: true })
})

it('streams a container\'s stdout and stderr as events, and transfers its file back', async () => {
  const activity = createActivity({
    id: 'docker-1',
    dir: join(base, 'activity'),
    environment: {
      resolveDeploy: async (deploy) => ({ runtime: runtime as Runtime<unknown>, program: { image: deploy.imageId! }, argv0: undefined }),
      fetchBlob: () => Promise.reject(new Error('unused')),
    },
    limits: { maxMemoryBytes: 128 * MiB, maxRunMs: 30_000, maxOutputBytes: MiB, maxTransferBytes: MiB },
  })
  const events: ExeEvent[] = []
  const outcome = await activity.exec(
    [
      { deploy: { imageId: image } },
      { start: {} },
      { run: { args: ['sh', '-c', 'for i in 1 2 3; do echo box $i; sleep 0.05; done; echo warn >&2; echo made > out.txt'] } },
      { transfer: { from: 'container:/out.txt', to: 'requestor:' } },
      { terminate: {} },
    ],
    { signal: new AbortController().signal, emit: async (event) => void events.push(event) },
  )
  assert.deepEqual(outcome.results.map((r) => r.ok), [true, true, true, true, true], JSON.stringify(outcome.results))
  const text = (type: string): string => events.filter((e) => e.type === type).map((e) => Buffer.from((e as { dataBase64: string }).dataBase64, 'base64').toString()).join('')
  assert.equal(text('stdout'), 'box 1\nbox 2\nbox 3\n')
  assert.equal(text('stderr'), 'warn\n')
  assert.equal(text('file'), 'made\n')
  const finished = events.findIndex((e) => e.type === 'command-finished' && e.command === 'run')
  assert.ok(events.findLastIndex((e) => e.type === 'stdout') < finished)
  assert.equal(activity.state(), 'Terminated')
})
