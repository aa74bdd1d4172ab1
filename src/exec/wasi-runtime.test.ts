import assert from 'node:assert/strict'
import { closeSync, fstatSync, openSync } from 'node:fs'
import { link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { compileAssemblyScript } from './assemblyscript-compiler.ts'
import { sha256Hex } from './content-hash.ts'
import { failsWith } from './testdata/fails-with.ts'
import { body, leb, limits, section, utf8, wasmModule } from './testdata/wasm-bytes.ts'
import { createWasiRuntime } from './wasi-runtime.ts'
import type { WasiRunResult, WasiRunSpec, WasiRuntime } from './wasi-runtime.ts'

const MiB = 1 << 20

let base: string
let runtime: WasiRuntime
let hostile: Uint8Array
let taskCount = 0

interface Task {
  rootDir: string
  stdoutPath: string
  stderrPath: string
  stdout: () => Promise<string>
}

async function newTask(): Promise<Task> {
  const dir = join(base, `task-${taskCount++}`)
  await mkdir(join(dir, 'root'), { recursive: true })
  const stdoutPath = join(dir, 'stdout')
  return { rootDir: join(dir, 'root'), stdoutPath, stderrPath: join(dir, 'stderr'), stdout: () => readFile(stdoutPath, 'utf8') }
}

function specFor(task: Task, args: string[], overrides: Partial<WasiRunSpec> = {}): WasiRunSpec {
  return {
    module: hostile,
    args: ['hostile', ...args],
    env: {},
    rootDir: task.rootDir,
    stdoutPath: task.stdoutPath,
    stderrPath: task.stderrPath,
    maxMemoryBytes: 16 * MiB,
    // Far off: a test about a deadline sets its own; the others must not depend on how busy the machine is.
    timeoutMs: 120_000,
    maxOutputBytes: MiB,
    ...overrides,
  }
}

async function runHostile(args: string[], overrides: Partial<WasiRunSpec> = {}, task?: Task): Promise<Omit<WasiRunResult, 'stdout'> & { stdout: string }> {
  const t = task ?? (await newTask())
  const result = await runtime.run(specFor(t, args, overrides))
  return { ...result, stdout: await t.stdout() }
}

/** Descriptors of this process that point into `dir` (Linux; elsewhere none can be seen). */
async function descriptorsInto(dir: string): Promise<string[]> {
  if (process.platform !== 'linux') return []
  const targets = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')))
  return targets.filter((target) => target === dir || target.startsWith(dir + '/'))
}

/** What the descriptors of this process that name a path matching `pattern` point to (Linux; elsewhere none). */
async function descriptorTargets(pattern: RegExp): Promise<string[]> {
  if (process.platform !== 'linux') return []
  const targets = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')))
  return targets.filter((target) => pattern.test(target))
}

/** After every hostile run the runtime must still run a normal program. */
async function assertStillWorks(): Promise<void> {
  const result = await runHostile(['ok'])
  assert.equal(result.exitCode, 0)
  assert.equal(result.stdout, 'ok hostile ok\n')
}

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-wasi-'))
  const source = await readFile(new URL('./testdata/hostile.asc', import.meta.url), 'utf8')
  hostile = await compileAssemblyScript({ files: { 'hostile.ts': source }, entry: 'hostile.ts', optimize: false })
  runtime = createWasiRuntime({ maxWorkers: 2 })
})

after(async () => {
  await runtime.close()
  await rm(base, { recursive: true, force: true })
})

describe('wasi-runtime', () => {
  it('runs a program: args, stdout, exit code, metering', async () => {
    const result = await runHostile(['ok'])
    assert.equal(result.exitCode, 0)
    assert.equal(result.stdout, 'ok hostile ok\n')
    assert.equal(result.stdoutBytes, 14)
    assert.equal(result.stderrBytes, 0)
    assert.ok(result.durationMs > 0)
    assert.ok(result.cpuMs >= 0 && result.cpuMs <= result.durationMs + 20, `cpuMs ${result.cpuMs} durationMs ${result.durationMs}`)

    const failing = await runHostile(['ok', '7'])
    assert.equal(failing.exitCode, 7, 'a non-zero exit code is a result, not an error')

    const task = await newTask()
    const badArgs = await runtime.run(specFor(task, ['no-such-mode']))
    assert.equal(badArgs.exitCode, 2)
    assert.match(await readFile(task.stderrPath, 'utf8'), /unknown mode/)
  })

  it('stops an endless loop at the deadline', async () => {
    await assert.rejects(runHostile(['loop'], { timeoutMs: 300 }), failsWith('HEARTH_ERR_EXEC_TIMEOUT', /300 ms/))
    // the stopped worker's descriptors (the preopened root, files the guest held open) do not leak
    const task = await newTask()
    await assert.rejects(runtime.run(specFor(task, ['hold', 'held.txt'], { timeoutMs: 200 })), failsWith('HEARTH_ERR_EXEC_TIMEOUT'))
    assert.deepEqual(await descriptorsInto(task.rootDir), [])
    await assertStillWorks()
  })

  it('stops a run when its signal aborts', async () => {
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('user pressed ctrl-c')), 100)
    const task = await newTask()
    await assert.rejects(runtime.run(specFor(task, ['loop']), { signal: controller.signal }), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_EXEC_FAILED'))
      assert.equal(error.details?.aborted, true)
      assert.equal((error.cause as Error).message, 'user pressed ctrl-c')
      return true
    })
    await assert.rejects(runtime.run(specFor(task, ['ok']), { signal: AbortSignal.abort() }), failsWith('HEARTH_ERR_EXEC_FAILED', /aborted/))
    await assertStillWorks()
  })

  it('caps a defined memory: growing past the limit fails and the process survives', async () => {
    await assert.rejects(runHostile(['grow'], { maxMemoryBytes: 8 * MiB }), failsWith('HEARTH_ERR_EXEC_MEMORY', /limit of 8388608 bytes/))
    // a module whose initial memory is already above the limit does not start
    await assert.rejects(runHostile(['ok'], { maxMemoryBytes: 0 }), failsWith('HEARTH_ERR_EXEC_MEMORY'))
    await assertStillWorks()
  })

  it('caps an imported memory with a memory of its own', async () => {
    // imports env.memory (1 page), grows it by 16 pages, traps when that fails; exports no memory at all
    const module = wasmModule([
      section(1, [1, 0x60, 0, 0]),
      section(2, [1, ...utf8('env'), ...utf8('memory'), 0x02, ...limits(0x00, 1)]),
      section(3, [1, 0]),
      section(7, [1, ...utf8('_start'), 0x00, 0]),
      section(10, [1, ...body([0x41, 16, 0x40, 0, 0x41, 0x7f, 0x46, 0x04, 0x40, 0x00, 0x0b])]),
    ])
    const task = await newTask()
    assert.equal((await runtime.run({ ...specFor(task, []), module, maxMemoryBytes: 17 * 65_536 })).exitCode, 0)
    await assert.rejects(runtime.run({ ...specFor(task, []), module, maxMemoryBytes: 16 * 65_536 }), failsWith('HEARTH_ERR_EXEC_MEMORY'))
  })

  it('survives a guest that grows past 64 MiB and then calls WASI (nodejs/node#46777)', async () => {
    const result = await runHostile(['big', '100'], { maxMemoryBytes: 128 * MiB })
    assert.equal(result.stdout, 'big 100\n')
  })

  it('reports a trap and an unknown import as HEARTH_ERR_EXEC_FAILED with the reason', async () => {
    await assert.rejects(runHostile(['trap']), failsWith('HEARTH_ERR_EXEC_FAILED', /trapped: unreachable/))
    // closing stdio must not close this process's descriptors (their numbers may be reused by then)
    assert.equal((await runHostile(['closeio'])).stdout, 'still here\n')
    const module = wasmModule([
      section(1, [1, 0x60, 0, 0]),
      section(2, [1, ...utf8('env'), ...utf8('launch_missiles'), 0x00, 0]),
      section(3, [1, 0]),
      section(5, [1, ...limits(0x00, 1)]),
      section(7, [2, ...utf8('_start'), 0x00, 1, ...utf8('memory'), 0x02, 0]),
      section(10, [1, ...body([0x10, 0])]),
    ])
    const task = await newTask()
    await assert.rejects(runtime.run({ ...specFor(task, []), module }), failsWith('HEARTH_ERR_EXEC_FAILED', /env\.launch_missiles/))
    assert.deepEqual(await descriptorsInto(task.rootDir), [], 'a run that never started closes its preopened root too')
    await assert.rejects(
      runtime.run({ ...specFor(task, []), module: new TextEncoder().encode('not wasm') }),
      failsWith('HEARTH_ERR_EXEC_PACKAGE_INVALID'),
    )
    await assertStillWorks()
  })

  it('shows the guest only its root directory', async () => {
    const task = await newTask()
    await writeFile(join(task.rootDir, 'inside.txt'), 'inside')
    await mkdir(join(task.rootDir, 'sub'))
    await writeFile(join(task.rootDir, '..', 'secret.txt'), 'secret')
    const open = async (path: string): Promise<string> => (await runHostile(['open', path], {}, task)).stdout.trim()
    assert.equal(await open('inside.txt'), 'read inside')
    assert.equal(await open('sub/../inside.txt'), 'read inside')
    for (const path of ['../secret.txt', 'sub/../../secret.txt', '/etc/passwd', '/../etc/passwd', '../../../../../../etc/passwd']) {
      assert.match(await open(path), /^errno \d+$/, path)
    }
    // guests may not make symlinks (a symlink in the root could point anywhere on the host)
    assert.equal((await runHostile(['symlink', '/etc', 'etc'], {}, task)).stdout, 'errno 76\n')
    assert.deepEqual((await readdir(task.rootDir)).sort(), ['inside.txt', 'sub'])
  })

  it('refuses a root directory holding a symlink, a hard link or a missing root, before running', async () => {
    const task = await newTask()
    await symlink('/etc', join(task.rootDir, 'etc'))
    await assert.rejects(runtime.run(specFor(task, ['ok'])), failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /etc, which is a symbolic link/))
    assert.equal(await lstat(task.stdoutPath).catch(() => undefined), undefined, 'nothing ran')

    const nested = await newTask()
    await mkdir(join(nested.rootDir, 'a', 'b'), { recursive: true })
    await symlink('../../../secret.txt', join(nested.rootDir, 'a', 'b', 'file'))
    await assert.rejects(runtime.run(specFor(nested, ['ok'])), failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /a\/b\/file/))

    const linked = await newTask()
    await writeFile(join(linked.rootDir, '..', 'outside'), 'x')
    await link(join(linked.rootDir, '..', 'outside'), join(linked.rootDir, 'alias'))
    await assert.rejects(runtime.run(specFor(linked, ['ok'])), failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /hard link/))

    const missing = await newTask()
    await assert.rejects(runtime.run({ ...specFor(missing, ['ok']), rootDir: join(base, 'nope') }), failsWith('HEARTH_ERR_EXEC_PATH_INVALID'))
    await assert.rejects(
      runtime.run({ ...specFor(missing, ['ok']), stdoutPath: join(missing.rootDir, 'stdout') }),
      failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /inside the task directory/),
    )
    await assertStillWorks()
  })

  it('stops a program that writes endlessly to stdout', async () => {
    const task = await newTask()
    await assert.rejects(runtime.run(specFor(task, ['spam'], { maxOutputBytes: 2 * MiB })), failsWith('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE'))
    assert.ok((await stat(task.stdoutPath)).size <= 2 * MiB)
    await assertStillWorks()
  })

  it('stops a program that fills a file under its root, with little overshoot', async () => {
    const task = await newTask()
    await writeFile(join(task.rootDir, 'input.bin'), new Uint8Array(3 * MiB))
    await assert.rejects(runtime.run(specFor(task, ['fill', 'fill.bin'], { maxOutputBytes: 2 * MiB })), failsWith('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE'))
    const written = (await stat(join(task.rootDir, 'fill.bin'))).size
    assert.ok(written <= 2 * MiB + 256 * 1024, `wrote ${written} bytes`)
    // input files do not count, and a program under the limit is fine
    const ok = await runHostile(['write', 'out.bin', String(MiB)], { maxOutputBytes: MiB + 100 }, task)
    assert.equal(ok.exitCode, 0)
    // over the limit, even in one write that ends before any poll could see it
    await assert.rejects(runHostile(['write', 'out.bin', String(MiB)], { maxOutputBytes: MiB - 1 }, task), failsWith('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE'))
    await assertStillWorks()
  })

  it('runs more tasks than workers, and rejects runs after close', async () => {
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => runHostile(['ok', String(i)])))
    assert.deepEqual(
      results.map((result) => result.exitCode),
      [0, 1, 2, 3, 4],
    )

    const closing = createWasiRuntime({ maxWorkers: 1 })
    const task = await newTask()
    const inFlight = assert.rejects(closing.run(specFor(task, ['loop'])), failsWith('HEARTH_ERR_EXEC_FAILED', /closed/))
    // Queue the second run only once the endless one holds the only worker, so it cannot slip in first.
    const queuedTask = await newTask()
    await new Promise((resolve) => setTimeout(resolve, 150))
    const queued = assert.rejects(closing.run(specFor(queuedTask, ['ok'])), failsWith('HEARTH_ERR_EXEC_FAILED', /closed/))
    await closing.close()
    await inFlight
    await queued
    await assert.rejects(closing.run(specFor(task, ['ok'])), failsWith('HEARTH_ERR_EXEC_FAILED', /closed/))
  })

  it('retires workers without closing descriptor numbers that other threads have taken since', async () => {
    // Descriptor numbers belong to the whole process: once a retired worker's thread has closed its descriptors, the
    // next open anywhere in the process may get one of those numbers. Every run here retires its worker, while this
    // thread keeps taking the lowest free numbers (as other runs and workers would) and checks that each stays open and
    // still names the file it was opened for.
    const recycling = createWasiRuntime({ maxWorkers: 2, maxRunsPerWorker: 1 })
    const schedstatBefore = new Set(await descriptorTargets(/\/schedstat$/))
    const sentinelPath = join(base, 'sentinel')
    await writeFile(sentinelPath, '')
    const sentinel = await stat(sentinelPath)
    const pause = new Int32Array(new SharedArrayBuffer(4))
    let held: number[] = []
    let broken: string | undefined
    let stopped = false
    const takeNumbers = (): void => {
      for (const fd of held) {
        let info
        try {
          info = fstatSync(fd)
        } catch (error) {
          broken ??= `descriptor ${fd} was closed under its owner (${(error as NodeJS.ErrnoException).code})`
          continue
        }
        // A number that now names another file is someone else's: leave it open.
        if (info.dev !== sentinel.dev || info.ino !== sentinel.ino) broken ??= `descriptor ${fd} was closed and reused under its owner`
        else closeSync(fd)
      }
      held = []
      if (stopped || broken !== undefined) return
      // Let a retiring worker's thread end before this thread hears of it, then take the numbers it freed.
      Atomics.wait(pause, 0, 0, 3)
      for (let i = 0; i < 8; i++) held.push(openSync(sentinelPath, 'r'))
      setImmediate(takeNumbers)
    }
    try {
      setImmediate(takeNumbers)
      for (let round = 0; round < 20 && broken === undefined; round++) {
        const results = await Promise.all([0, 1].map(async () => {
          const task = await newTask()
          const result = await recycling.run(specFor(task, ['ok']))
          return { exitCode: result.exitCode, stdout: await task.stdout() }
        }))
        assert.deepEqual(results, [0, 1].map(() => ({ exitCode: 0, stdout: 'ok hostile ok\n' })), `round ${round}`)
      }
    } finally {
      stopped = true
      await new Promise((resolve) => setImmediate(resolve))
      await recycling.close()
    }
    assert.equal(broken, undefined)
    // Each retired worker's own descriptor (its CPU-time statistics) was closed once, not leaked: none is left that
    // was not open before (other runtimes' idle workers may have retired meanwhile, closing theirs).
    assert.deepEqual((await descriptorTargets(/\/schedstat$/)).filter((target) => !schedstatBefore.has(target)), [])
  })

  it('stops a worker that waited idle, and starts a fresh one for the next run', async () => {
    const quick = createWasiRuntime({ maxWorkers: 1, idleWorkerMs: 50 })
    try {
      const before = new Set(await descriptorTargets(/\/schedstat$/))
      const first = await newTask()
      assert.equal((await quick.run(specFor(first, ['ok']))).exitCode, 0)
      // A worker keeps its thread's CPU-time statistics open (Linux): that descriptor, named by the thread's id, goes
      // when the worker does. Elsewhere nothing can be seen, and only the second run is checked.
      const held = (await descriptorTargets(/\/schedstat$/)).filter((target) => !before.has(target))
      if (process.platform === 'linux') assert.equal(held.length, 1, 'the idle worker holds its statistics open')
      const stillHeld = async (): Promise<boolean> => (await descriptorTargets(/\/schedstat$/)).some((target) => held.includes(target))
      for (let waited = 0; waited < 600 && (await stillHeld()); waited++) await new Promise((resolve) => setTimeout(resolve, 100))
      assert.equal(await stillHeld(), false, 'the idle worker was stopped')
      const second = await newTask()
      assert.equal((await quick.run(specFor(second, ['ok']))).exitCode, 0)
      assert.equal(await second.stdout(), 'ok hostile ok\n')
    } finally {
      await quick.close()
    }
  })

  it('refuses a second run in a task directory that is in use', async () => {
    const task = await newTask()
    const first = runtime.run(specFor(task, ['loop'], { timeoutMs: 300 }))
    await assert.rejects(
      runtime.run({ ...specFor(task, ['ok']), stdoutPath: join(task.rootDir, '..', 'out2'), stderrPath: join(task.rootDir, '..', 'err2') }),
      failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /in use/),
    )
    await assert.rejects(first, failsWith('HEARTH_ERR_EXEC_TIMEOUT'))
  })

  describe('stdio kept in memory (no stdio files named)', () => {
    /** A run in a task directory of its own with no stdio files, and what the directory's parent holds after it. */
    async function runKept(args: string[], overrides: Partial<WasiRunSpec> = {}): Promise<WasiRunResult & { beside: string[] }> {
      const task = await newTask()
      const { stdoutPath: _stdout, stderrPath: _stderr, ...spec } = specFor(task, args, overrides)
      const result = await runtime.run(spec)
      return { ...result, beside: await readdir(dirname(task.rootDir)) }
    }
    const text = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? new Uint8Array(0)).toString('utf8')

    it('returns what the guest wrote to stdout and stderr, and writes no file for it', async () => {
      const ok = await runKept(['ok'])
      assert.equal(text(ok.stdout), 'ok hostile ok\n')
      assert.equal(ok.stdoutBytes, 14)
      assert.equal(text(ok.stderr), '')
      assert.deepEqual(ok.beside, ['root'], 'nothing beside the root')
      const bad = await runKept(['no-such-mode'])
      assert.equal(bad.exitCode, 2)
      assert.match(text(bad.stderr), /unknown mode/)
      // A guest closing its stdio still writes to it (the runtime's descriptors are not the guest's to close).
      assert.equal(text((await runKept(['closeio'])).stdout), 'still here\n')
    })

    it('holds stdout to the output budget, and refuses what a stream cannot do', async () => {
      await assert.rejects(runKept(['spam'], { maxOutputBytes: 2 * MiB }), failsWith('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE'))
      // A vector past the end of the guest's memory: EFAULT (21), nothing of it kept.
      assert.equal(text((await runKept(['badwrite'])).stdout), 'errno 21\n')
      // Writing at an offset of stdout: ESPIPE (70), as on a pipe.
      assert.equal(text((await runKept(['pwrite'])).stdout), 'errno 70\n')
      await assertStillWorks()
    })

    it('keys the compiled module by the content id given, after checking it once against the bytes', async () => {
      const id = sha256Hex(hostile)
      assert.equal(text((await runKept(['ok'], { moduleId: id })).stdout), 'ok hostile ok\n')
      const other = `sha256:${'0'.repeat(64)}`
      await assert.rejects(runKept(['ok'], { moduleId: other }), failsWith('HEARTH_ERR_EXEC_PACKAGE_HASH'))
      const task = await newTask()
      const { stderrPath: _stderr, ...onlyStdout } = specFor(task, ['ok'])
      await assert.rejects(runtime.run(onlyStdout), failsWith('HEARTH_ERR_CONFIG_INVALID', /both stdoutPath and stderrPath/))
    })
  })

  it('validates the spec', async () => {
    const task = await newTask()
    await assert.rejects(runtime.run(specFor(task, ['ok'], { timeoutMs: 0 })), failsWith('HEARTH_ERR_CONFIG_INVALID', /timeoutMs/))
    await assert.rejects(runtime.run(specFor(task, ['o\0k'])), failsWith('HEARTH_ERR_CONFIG_INVALID', /NUL/))
    await assert.rejects(runtime.run(specFor(task, ['ok'], { env: { 'A=B': 'x' } })), failsWith('HEARTH_ERR_CONFIG_INVALID'))
    assert.equal(leb(624485).length, 3, 'helper sanity')
  })
})
