// Long-running servers in the native runtime: the shared serve suite (serve-suite.ts), with busybox httpd and the
// host's /bin/sh as offered programs, and close() stopping every server.
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createNativeRuntime } from './native-runtime.ts'
import type { NativeProgram, NativeRuntime } from './native-runtime.ts'
import { forwarderChildren, serveSuite } from './testdata/serve-suite.ts'

let base: string
let runtime: NativeRuntime

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-serve-native-'))
  runtime = createNativeRuntime({ programs: ['/bin/sh', '/bin/busybox'] })
  const availability = await runtime.available()
  // Fails (never skips) where bubblewrap is missing, as the native tests do: CI must install it.
  assert.deepEqual(availability, { ok: true }, `the native runtime cannot run here: ${availability.ok ? '' : availability.reason}`)
})

after(async () => {
  await runtime?.close()
  await rm(base, { recursive: true, force: true })
})

serveSuite<NativeProgram>({
  name: 'native',
  runtime: () => runtime,
  base: () => base,
  shell: (script) => ({ program: '/bin/sh', args: ['sh', '-c', script, 'sh'] }),
  leftovers: () => runtime.leftovers(),
})

describe('native: serve, the runtime', () => {
  it('serves busybox httpd as an offered program itself; close() stops every server and removes its cgroup and forwarder', async () => {
    const own = createNativeRuntime({ programs: ['/bin/busybox'] })
    const dir = join(base, 'close')
    await mkdir(join(dir, 'root'), { recursive: true })
    try {
      const served = await own.serve!({
        program: '/bin/busybox',
        args: ['busybox', 'httpd', '-f', '-p', '8080', '-h', '/task'],
        env: {},
        port: 8080,
        rootDir: join(dir, 'root'),
        logPath: join(dir, 'log'),
        maxLogBytes: 1 << 20,
        maxMemoryBytes: 64 << 20,
        maxDiskBytes: 1 << 20,
      })
      await served.waitListening(60_000)
      assert.notDeepEqual(await own.leftovers(), [], 'its cgroup')
      await own.close()
      assert.equal((await served.ended).reason, 'stopped')
      assert.deepEqual(await own.leftovers(), [])
      assert.deepEqual(await forwarderChildren(), [])
    } finally {
      await own.close()
    }
  })
})
