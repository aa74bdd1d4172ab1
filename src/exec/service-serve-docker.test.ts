// Long-running servers in the docker runtime (serve-suite.ts, shared with native), and what only docker has: the
// container is removed when the server ends, and close() stops every server of the runtime.
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createDockerRuntime } from './docker-runtime.ts'
import type { DockerProgram, DockerRuntime } from './docker-runtime.ts'
import { importBusyboxImage, startTestEngine } from './docker-test-image.ts'
import type { TestEngine } from './docker-test-image.ts'
import { forwarderChildren, serveSuite } from './testdata/serve-suite.ts'

let base: string
let engine: TestEngine
let runtime: DockerRuntime
let image: string

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-serve-docker-'))
  // Fails (never skips) where podman/runc or busybox-static are missing, naming the packages, as the docker tests do.
  engine = await startTestEngine(join(base, 'podman'))
  runtime = createDockerRuntime({ socketPath: engine.socketPath })
  const availability = await runtime.available()
  assert.deepEqual(availability, { ok: true }, `the docker runtime cannot run here: ${availability.ok ? '' : availability.reason}`)
  image = await importBusyboxImage(runtime, base)
})

after(async () => {
  await runtime?.close()
  await engine?.stop()
  await rm(base, { recursive: true, force: true })
})

serveSuite<DockerProgram>({
  name: 'docker',
  runtime: () => runtime,
  base: () => base,
  shell: (script) => ({ program: { image }, args: ['/bin/sh', '-c', script, 'sh'] }),
  leftovers: () => runtime.leftovers(),
})

describe('docker: serve, the runtime', () => {
  it('close() stops every server and removes its container and forwarder', async () => {
    const own = createDockerRuntime({ socketPath: engine.socketPath })
    const dir = join(base, 'close')
    await mkdir(join(dir, 'root'), { recursive: true })
    try {
      const served = await own.serve!({
        program: { image },
        args: ['/bin/busybox', 'sleep', '600'],
        env: {},
        port: 8080,
        rootDir: join(dir, 'root'),
        logPath: join(dir, 'log'),
        maxLogBytes: 1 << 20,
        maxMemoryBytes: 64 << 20,
        maxDiskBytes: 1 << 20,
      })
      assert.equal((await own.leftovers()).length, 1)
      await own.close()
      assert.equal((await served.ended).reason, 'stopped')
      assert.deepEqual(await own.leftovers(), [])
      assert.deepEqual(await forwarderChildren(), [])
    } finally {
      await own.close()
    }
  })
})
