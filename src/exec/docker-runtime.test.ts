// What the docker runtime promises beyond the shared compliance suite (docker-runtime.compliance.test.ts): the shape
// of its container, argv and env, a real program (busybox) giving the same bytes inside as outside, images by content
// hash, ownership of the task directory, metering, and that it says exactly why it cannot run.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { StreamDemuxer } from './docker-api.ts'
import { archiveImageId, loadImageArchive, saveImageArchive } from './docker-images.ts'
import { compareVersions, createDockerRuntime, defaultDockerSocket, gpuDeviceRequests } from './docker-runtime.ts'
import type { DockerProgram, DockerRuntime } from './docker-runtime.ts'
import { busyboxPath, importBusyboxImage, startTestEngine } from './docker-test-image.ts'
import type { TestEngine } from './docker-test-image.ts'
import { failsWith } from './testdata/fails-with.ts'
import { shellHarness } from './testdata/runtime-test-support.ts'

let base: string
let engine: TestEngine
let runtime: DockerRuntime
let image: string

const { newTask, sh } = shellHarness<DockerProgram>({
  base: () => base,
  runtime: () => runtime,
  command: (script, args) => ({ program: { image }, args: ['/bin/sh', '-c', script, 'sh', ...args] }),
})

/** A unix-socket HTTP server standing in for an engine that answers wrongly. */
async function fakeEngine(path: string, handler: Parameters<typeof createServer>[1]): Promise<Server> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(path, resolve))
  return server
}

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-docker-'))
  // Fails (never skips) where podman/runc or busybox-static are missing, naming the packages.
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

describe('docker-runtime', () => {
  it('container: uid 1000, own hostname, no capabilities, no-new-privs, read-only root, only /task and /tmp writable, loopback only', async () => {
    const result = await sh(
      [
        'id -u; id -g; hostname; pwd',
        'grep -E "^(CapEff|NoNewPrivs)" /proc/self/status',
        'touch /x 2>/dev/null && echo root-writable',
        'touch /bin/x 2>/dev/null && echo bin-writable',
        'touch /tmp/x && echo tmp-ok',
        'touch /task/x && echo task-ok',
        'ls /sys/class/net | tr "\\n" " "; echo',
        'ulimit -n',
        'ls /proc | grep -c "^[0-9]"',
      ].join('\n'),
    )
    const lines = result.stdout.trim().split('\n')
    assert.deepEqual(lines.slice(0, 4), ['1000', '1000', 'hearth-task', '/task'], result.stderr)
    assert.match(lines[4]!, /^CapEff:\s+0+$/)
    assert.match(lines[5]!, /^NoNewPrivs:\s+1$/)
    assert.deepEqual(lines.slice(6, 8), ['tmp-ok', 'task-ok'])
    assert.equal(lines[8]!.trim(), 'lo', 'no network interface but loopback')
    assert.equal(lines[9], '1024')
    assert.ok(Number(lines[10]) <= 5, `the container sees ${lines[10]} processes`)
    assert.equal(lines.length, 11, result.stdout)
  })

  it('passes argv unchanged (no shell splicing) and gives the task env plus HOME=/task, nothing of the host', async () => {
    const tricky = ['two words', "it's \"quoted\"", '$(touch /task/pwned)', 'line\nbreak', '--', '']
    const args = await sh('printf "[%s]" "$@"', tricky)
    assert.equal(args.stdout, tricky.map((arg) => `[${arg}]`).join(''))
    process.env.HEARTH_DOCKER_HOST_ONLY = 'host secret'
    try {
      const env = await sh('env | sort', [], { env: { TASK: 'yes' } })
      const names = env.stdout.split('\n').filter(Boolean).map((line) => line.split('=')[0])
      assert.ok(env.stdout.includes('TASK=yes\n') && env.stdout.includes('HOME=/task\n'), env.stdout)
      assert.ok(!names.includes('HEARTH_DOCKER_HOST_ONLY'), env.stdout)
      // what the engine itself adds: PATH (image default), HOSTNAME, container=podman / oci
      for (const name of names) assert.match(name!, /^(TASK|HOME|PATH|HOSTNAME|PWD|SHLVL|TERM|container)$/, `unexpected variable ${name}`)
    } finally {
      delete process.env.HEARTH_DOCKER_HOST_ONLY
    }
    const overridden = await sh('echo "$HOME"', [], { env: { HOME: '/tmp' } })
    assert.equal(overridden.stdout, '/tmp\n')
  })

  it("runs busybox's own tools on task inputs: the same bytes inside the container as outside", async () => {
    const task = await newTask()
    const lines = Array.from({ length: 2000 }, (_, i) => `line ${(i * 7919) % 2003} ${'x'.repeat(i % 13)}`).join('\n') + '\n'
    await writeFile(join(task.rootDir, 'input.txt'), lines)
    const script = 'wc input.txt > wc.out && sort input.txt > sorted.out && md5sum input.txt sorted.out > md5.out && sort -n -k2 input.txt | md5sum'
    const inside = await sh(script, [], {}, task)
    assert.equal(inside.exitCode, 0, inside.stderr)
    const local = (args: string[]): Buffer => execFileSync(busyboxPath, args, { cwd: task.rootDir })
    assert.deepEqual(await readFile(join(task.rootDir, 'wc.out')), local(['wc', 'input.txt']))
    assert.deepEqual(await readFile(join(task.rootDir, 'sorted.out')), local(['sort', 'input.txt']))
    assert.deepEqual(await readFile(join(task.rootDir, 'md5.out')), local(['md5sum', 'input.txt', 'sorted.out']))
    assert.equal(inside.stdout, execFileSync('/bin/sh', ['-c', `${busyboxPath} sort -n -k2 input.txt | ${busyboxPath} md5sum`], { cwd: task.rootDir, encoding: 'utf8' }))
  })

  it('leaves the task directory to the provider: its files, no links, fifos or setuid bits; the folder owner restored', async () => {
    const task = await newTask()
    const before = await lstat(task.rootDir)
    const script = ['echo data > file', 'ln -s /etc/passwd link', 'ln file hard', 'mkfifo fifo', 'echo tool > tool && chmod 4755 tool', 'mkdir -p locked/inner && echo x > locked/inner/x && chmod 000 locked/inner locked'].join('\n')
    const result = await sh(script, [], {}, task)
    assert.equal(result.exitCode, 0, result.stderr)
    assert.deepEqual((await readdir(task.rootDir)).sort(), ['file', 'hard', 'locked', 'tool'])
    const owner = await lstat(task.rootDir)
    assert.deepEqual([owner.uid, owner.gid], [before.uid, before.gid])
    assert.equal((await lstat(join(task.rootDir, 'file'))).uid, before.uid, 'the program\'s files belong to the provider afterwards')
    assert.equal((await lstat(join(task.rootDir, 'hard'))).nlink, 1)
    assert.equal((await lstat(join(task.rootDir, 'tool'))).mode & 0o7000, 0)
    assert.equal(await readFile(join(task.rootDir, 'locked', 'inner', 'x'), 'utf8'), 'x\n')
    assert.equal((await sh('cat file hard', [], {}, task)).stdout, 'data\ndata\n', 'and the next run accepts the directory')
  })

  it('reports exit codes, death by a signal as 128 + its number (an init is PID 1), and a command missing from the image', async () => {
    assert.equal((await sh('exit 42')).exitCode, 42)
    assert.equal((await sh('kill -SEGV $$')).exitCode, 139)
    // The init (catatonit, docker-init) cannot exec it: a non-zero exit with its message on stderr, as for any program.
    const task = await newTask()
    const missing = await runtime.run({ ...task.spec(''), args: ['/bin/no-such-command'] })
    assert.notEqual(missing.exitCode, 0)
    assert.match(await readFile(join(task.dir, 'stderr'), 'utf8'), /No such file or directory/)
    assert.deepEqual(await runtime.leftovers(), [])
  })

  it('caps CPU with NanoCpus and meters CPU time from the cgroup; stopped runs carry metering', async () => {
    // A fixed amount of work (not a fixed time), so that the figures do not depend on how busy the machine is.
    const work = 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done'
    // The cgroup is read at each output poll while it exists (the engine removes it at exit): the trailing sleep puts
    // polls after the work, so both figures hold all of it however late a loaded machine runs the last poll before exit.
    const one = await sh(`${work}; sleep 4`, [], { maxCpuCores: 0.5, timeoutMs: 300_000 })
    const two = await sh(`(${work}) & (${work}) & wait; sleep 4`, [], { maxCpuCores: 0.5, timeoutMs: 300_000 })
    assert.equal(two.exitCode, 0)
    // Both processes are metered from the container's cgroup: about twice the CPU of one.
    assert.ok(two.cpuMs > one.cpuMs * 1.25, `two processes metered ${two.cpuMs} ms of CPU, one alone ${one.cpuMs} ms`)
    // Half a core: the run lasts at least twice its CPU time, less one quota period a burst may take first.
    assert.ok(two.durationMs >= two.cpuMs * 2 - 100, `${two.cpuMs} ms of CPU in ${two.durationMs} ms under 0.5 cores`)
    // A run stopped at its deadline carries its metering (how much CPU the loop got by then depends on the load).
    const task = await newTask()
    await assert.rejects(runtime.run(task.spec('while :; do :; done', [], { timeoutMs: 500 })), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_EXEC_TIMEOUT'))
      assert.ok((error.details?.durationMs as number) >= 500)
      assert.ok(typeof error.details?.cpuMs === 'number', `cpuMs ${String(error.details?.cpuMs)}`)
      return true
    })
  })

  it('images by content hash: save, remove, load back the same id; refuses a mismatching archive, a missing or unoffered image', async () => {
    const archive = join(base, 'busybox-image.tar')
    await saveImageArchive(runtime, image, archive)
    assert.equal(await archiveImageId(archive), image, 'the id is the SHA-256 of the archive\'s config')
    const removed = await runtime.api.call({ method: 'DELETE', path: `/images/${image}`, query: { force: true } })
    assert.equal(removed.status, 200, removed.body.toString())
    assert.equal(await runtime.hasImage(image), false)
    const other = `sha256:${'0'.repeat(64)}`
    await assert.rejects(loadImageArchive(runtime, archive, other), failsWith('HEARTH_ERR_EXEC_PACKAGE_HASH'))
    assert.equal(await loadImageArchive(runtime, archive, image), image)
    assert.equal(await runtime.hasImage(image), true)
    assert.equal((await sh('echo loaded')).stdout, 'loaded\n')

    const task = await newTask()
    await assert.rejects(runtime.run({ ...task.spec('true'), program: { image: other } }), failsWith('HEARTH_ERR_EXEC_IMAGE_MISSING'))
    await assert.rejects(runtime.run({ ...task.spec('true'), program: { image: 'busybox:latest' } }), failsWith('HEARTH_ERR_EXEC_PACKAGE_INVALID', /sha256/))
    const offering = createDockerRuntime({ socketPath: engine.socketPath, images: [other] })
    await assert.rejects(offering.run(task.spec('true')), failsWith('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED'))
    const none = await offering.available()
    assert.match(none.ok ? '' : none.reason, /holds none of the offered images/)
    await offering.close()
    await writeFile(join(base, 'not-an-image.tar'), new Uint8Array(1024))
    await assert.rejects(loadImageArchive(runtime, join(base, 'not-an-image.tar')), failsWith('HEARTH_ERR_EXEC_PACKAGE_INVALID', /manifest/))
  })

  it('says exactly why it is unavailable: no socket, API unreachable, too old an API', async () => {
    const missing = await createDockerRuntime({ socketPath: join(base, 'none.sock') }).available()
    assert.match(missing.ok ? '' : missing.reason, /no Docker Engine socket at .*none\.sock.*podman and runc/)
    const task = await newTask()
    await assert.rejects(createDockerRuntime({ socketPath: join(base, 'none.sock') }).run(task.spec('true')), failsWith('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE'))

    const brokenPath = join(base, 'broken.sock')
    const broken = await fakeEngine(brokenPath, (req) => req.socket.destroy())
    const old = await fakeEngine(join(base, 'old.sock'), (req, res) => {
      res.setHeader('content-type', req.url === '/_ping' ? 'text/plain' : 'application/json')
      res.end(req.url === '/_ping' ? 'OK' : JSON.stringify({ ApiVersion: '1.39', Os: 'linux' }))
    })
    try {
      const unreachable = await createDockerRuntime({ socketPath: brokenPath }).available()
      assert.match(unreachable.ok ? '' : unreachable.reason, /API at .*broken\.sock is unreachable/)
      const tooOld = await createDockerRuntime({ socketPath: join(base, 'old.sock') }).available()
      assert.match(tooOld.ok ? '' : tooOld.reason, /serves Docker API 1\.39, older than the 1\.41/)
    } finally {
      broken.close()
      old.close()
    }
    assert.throws(() => createDockerRuntime({ network: true as unknown as false }), failsWith('HEARTH_ERR_CONFIG_INVALID', /network/))
    assert.throws(() => createDockerRuntime({ images: ['busybox'] }), failsWith('HEARTH_ERR_CONFIG_INVALID', /not an image id/))
  })

})

describe('docker-api helpers', () => {
  it('demultiplexes the Docker stream format across chunk boundaries', () => {
    const frames: string[] = []
    const demuxer = new StreamDemuxer((stream, payload) => frames.push(`${stream}:${payload.toString()}`))
    const frame = (kind: number, text: string): Buffer => {
      const header = Buffer.alloc(8)
      header[0] = kind
      header.writeUInt32BE(Buffer.byteLength(text), 4)
      return Buffer.concat([header, Buffer.from(text)])
    }
    const all = Buffer.concat([frame(1, 'out one'), frame(2, 'err'), frame(1, ''), frame(1, 'out two')])
    for (let i = 0; i < all.length; i += 3) demuxer.push(all.subarray(i, i + 3))
    assert.deepEqual(frames, ['stdout:out one', 'stderr:err', 'stdout:', 'stdout:out two'])
    assert.equal(demuxer.leftover, 0)
  })

  it('finds the socket from DOCKER_HOST and compares API versions', () => {
    assert.equal(defaultDockerSocket({ DOCKER_HOST: 'unix:///run/x.sock' }), '/run/x.sock')
    assert.throws(() => defaultDockerSocket({ DOCKER_HOST: 'tcp://10.0.0.1:2375' }), failsWith('HEARTH_ERR_CONFIG_INVALID', /not a unix socket/))
    assert.equal(compareVersions('1.41', '1.41'), 0)
    assert.equal(compareVersions('1.9', '1.41'), -1)
    assert.equal(compareVersions('1.43', '1.41'), 1)
  })

  it('asks the engine for the agreed GPUs only, by index, through a device request', () => {
    assert.deepEqual(gpuDeviceRequests([]), {})
    assert.deepEqual(gpuDeviceRequests([2, 0, 2]), { DeviceRequests: [{ Driver: 'nvidia', DeviceIDs: ['0', '2'], Capabilities: [['gpu', 'utility', 'compute']] }] })
  })
})
