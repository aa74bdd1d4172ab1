/**
 * The compliance suite every runtime must pass. A runtime's test file calls `registerRuntimeCompliance` with a factory
 * and builders for a handful of small programs (a WASI guest's modes, shell scripts for native, …); the suite then
 * registers node:test tests for what Hearth promises about every sandbox: stdio, exit codes, env, a view of nothing
 * but the task directory, no symlink escape, memory, deadline and output limits, abort, clean-up, and that after every
 * hostile run a normal run still works and nothing is left behind.
 *
 * Items that cannot apply to a runtime (a WASI guest cannot fork or open a socket) are registered as skipped with the
 * runtime's stated reason, never left out silently: `notApplicable` must name a reason for each missing builder.
 */
import assert from 'node:assert/strict'
import { link, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { openDescriptors } from './platform.ts'
import type { Runtime, RunResult, RunSpec } from './runtime.ts'
import { failsWith } from './testdata/fails-with.ts'

/** One invocation: what to run and its argv (program name first). */
export interface ProgramCall<P> {
  program: P
  args: string[]
}

/** Builders for the programs the suite runs. Paths are relative to the task directory unless absolute. */
export interface CompliancePrograms<P> {
  /** Writes `out` + "\n" to stdout and `err` + "\n" to stderr, then exits with `exitCode`. */
  stdio(out: string, err: string, exitCode: number): ProgramCall<P>
  /** Copies the file at `path` to stdout; exits non-zero when it cannot be read. */
  read(path: string): ProgramCall<P>
  /** Writes `text` to the file at `path` (created or truncated); exits non-zero when it cannot. */
  write(path: string, text: string): ProgramCall<P>
  /** Prints the value of environment variable `name` and "\n"; exits non-zero when it is not set. */
  env(name: string): ProgramCall<P>
  /** Tries to make a symlink `link` → `target`, then copies `link` to stdout; exits non-zero when that read fails. */
  symlinkRead(target: string, link: string): ProgramCall<P>
  /** Allocates and touches memory without end. */
  allocate(): ProgramCall<P>
  /** Spins without end, making no system calls. */
  loop(): ProgramCall<P>
  /** Prints `text` and "\n", then spins without end. */
  stream(text: string): ProgramCall<P>
  /** Writes to stdout without end. */
  spam(): ProgramCall<P>
  /** Writes to the file at `path` without end. */
  fill(path: string): ProgramCall<P>
  /** Appends small lines to the file at `path` without end. */
  tick(path: string): ProgramCall<P>
  /** Starts a process that appends lines to `path` without end, and exits 0 at once without waiting for it. */
  background?(path: string): ProgramCall<P>
  /** Forks without end. */
  forkBomb?(): ProgramCall<P>
  /** Opens a TCP connection to host:port; prints "connected" and exits 0 when that works, exits non-zero otherwise. */
  connect?(host: string, port: number): ProgramCall<P>
}

export type OptionalProgram = 'background' | 'forkBomb' | 'connect'

export interface ComplianceTarget<P> {
  /** The runtime's name, used in test titles. */
  name: string
  /** A new runtime; the suite closes it. */
  create(): Runtime<P> | Promise<Runtime<P>>
  /** Builds the programs (e.g. compiles a guest); called once, before the tests. */
  programs(): CompliancePrograms<P> | Promise<CompliancePrograms<P>>
  /** Why an optional program does not exist for this runtime; the matching test is reported as skipped with it. */
  notApplicable?: Partial<Record<OptionalProgram, string>>
  /** What the runtime left behind that it should not have (cgroups, processes, workers…): [] when clean. */
  leftovers?(runtime: Runtime<P>): Promise<string[]>
  /** Memory for ordinary runs; default 64 MiB. */
  memoryBytes?: number
}

const MiB = 1 << 20
const hostOnlyVariable = 'HEARTH_COMPLIANCE_HOST_ONLY'
const secretText = 'top secret of the host'

interface Task {
  dir: string
  rootDir: string
  stdoutPath: string
  stderrPath: string
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Descriptors of this process that point into `dir` (where the system lists them: see platform.ts; elsewhere none). */
async function descriptorsInto(dir: string): Promise<string[]> {
  return (openDescriptors() ?? []).map(({ target }) => target).filter((target) => target === dir || target.startsWith(dir + '/'))
}

async function sizeOf(path: string): Promise<number> {
  return (await stat(path).catch(() => undefined))?.size ?? 0
}

/** Every entry under `dir` that is neither a regular file nor a directory. */
async function oddEntries(dir: string, prefix = ''): Promise<string[]> {
  const odd: string[] = []
  for (const name of await readdir(dir)) {
    const info = await lstat(join(dir, name))
    if (info.isDirectory()) odd.push(...(await oddEntries(join(dir, name), prefix + name + '/')))
    else if (!info.isFile()) odd.push(prefix + name)
  }
  return odd
}

/** What every group of tests shares: the target, the runtime under test and its programs, task folders, common steps. */
class ComplianceSuite<P> {
  readonly memoryBytes: number
  /** Set in the suite's before hook, for the tests. */
  runtime!: Runtime<P>
  programs!: CompliancePrograms<P>
  base!: string
  private taskCount = 0

  constructor(readonly target: ComplianceTarget<P>) {
    this.memoryBytes = target.memoryBytes ?? 64 * MiB
  }

  async newTask(): Promise<Task> {
    const dir = join(this.base, `task-${this.taskCount++}`)
    await mkdir(join(dir, 'root'), { recursive: true })
    return { dir, rootDir: join(dir, 'root'), stdoutPath: join(dir, 'stdout'), stderrPath: join(dir, 'stderr') }
  }

  specFor(task: Task, call: ProgramCall<P>, overrides: Partial<RunSpec<P>> = {}): RunSpec<P> {
    return {
      ...call,
      env: {},
      rootDir: task.rootDir,
      stdoutPath: task.stdoutPath,
      stderrPath: task.stderrPath,
      maxMemoryBytes: this.memoryBytes,
      timeoutMs: 60_000,
      maxOutputBytes: MiB,
      ...overrides,
    }
  }

  async run(call: ProgramCall<P>, overrides: Partial<RunSpec<P>> = {}, given?: Task): Promise<RunResult & { stdout: string; stderr: string; task: Task }> {
    const task = given ?? (await this.newTask())
    const result = await this.runtime.run(this.specFor(task, call, overrides))
    return { ...result, stdout: await readFile(task.stdoutPath, 'utf8'), stderr: await readFile(task.stderrPath, 'utf8'), task }
  }

  /** After a hostile run: nothing left behind, and a normal run still works. */
  async assertRecovered(): Promise<void> {
    const { target } = this
    assert.deepEqual(await target.leftovers?.(this.runtime), target.leftovers === undefined ? undefined : [], 'the runtime left something behind')
    assert.deepEqual(await descriptorsInto(this.base), [], 'descriptors into task folders are still open')
    const result = await this.run(this.programs.stdio('still works', '', 0))
    assert.equal(result.exitCode, 0)
    assert.equal(result.stdout, 'still works\n')
  }

  optional(name: OptionalProgram): { skip: string } | object {
    const reason = this.target.notApplicable?.[name]
    return reason === undefined ? {} : { skip: `${this.target.name}: ${reason}` }
  }

  need<K extends OptionalProgram>(name: K): NonNullable<CompliancePrograms<P>[K]> {
    const builder = this.programs[name]
    assert.ok(builder !== undefined, `${this.target.name} must provide the ${name} program or say in notApplicable why it cannot`)
    return builder.bind(this.programs) as NonNullable<CompliancePrograms<P>[K]>
  }
}

export function registerRuntimeCompliance<P>(target: ComplianceTarget<P>): void {
  const suite = new ComplianceSuite(target)
  describe(`${target.name} runtime compliance`, () => {
    before(async () => {
      suite.base = await mkdtemp(join(tmpdir(), `hearth-${target.name}-compliance-`))
      process.env[hostOnlyVariable] = secretText
      suite.programs = await target.programs()
      suite.runtime = await target.create()
    })

    after(async () => {
      delete process.env[hostOnlyVariable]
      await suite.runtime?.close()
      if (suite.base !== undefined) await rm(suite.base, { recursive: true, force: true })
    })

    registerRunning(suite)
    registerFileIsolation(suite)
    registerLimits(suite)
    registerProcesses(suite)
    registerNetwork(suite)
    registerGuards(suite)
  })
}

/** That the runtime is available, then running a program: stdio, exit codes, the task env, several runs at once, streaming and abort. */
function registerRunning<P>(suite: ComplianceSuite<P>): void {
  it('is available on this machine', async () => {
    const availability = await suite.runtime.available()
    assert.deepEqual(availability, { ok: true }, `the ${suite.target.name} runtime is not available: ${availability.ok ? '' : availability.reason}`)
    assert.equal(suite.runtime.name, suite.target.name)
  })

  it('runs a program: stdout and stderr collected, exit code reported, metering', async () => {
    const result = await suite.run(suite.programs.stdio('hello out', 'hello err', 0))
    assert.equal(result.exitCode, 0)
    assert.equal(result.stdout, 'hello out\n')
    assert.equal(result.stderr, 'hello err\n')
    assert.equal(result.stdoutBytes, 10)
    assert.equal(result.stderrBytes, 10)
    assert.ok(result.durationMs > 0 && result.durationMs < 5_000, `durationMs ${result.durationMs}`)
    assert.ok(Number.isFinite(result.cpuMs) && result.cpuMs >= 0, `cpuMs ${result.cpuMs}`)
    const failing = await suite.run(suite.programs.stdio('', 'failing', 3))
    assert.equal(failing.exitCode, 3, 'a non-zero exit code is a result, not an error')

    // the task directory is the program's own: it reads its inputs there and leaves its outputs there
    const task = await suite.newTask()
    await writeFile(join(task.rootDir, 'input.txt'), 'an input')
    assert.equal((await suite.run(suite.programs.read('input.txt'), {}, task)).stdout, 'an input')
    assert.equal((await suite.run(suite.programs.write('output.txt', 'an output'), {}, task)).exitCode, 0)
    assert.equal(await readFile(join(task.rootDir, 'output.txt'), 'utf8'), 'an output')
  })

  it('gives the program the task env and nothing of the host env', async () => {
    const given = await suite.run(suite.programs.env('TASK_VALUE'), { env: { TASK_VALUE: 'from the task' } })
    assert.equal(given.exitCode, 0)
    assert.equal(given.stdout, 'from the task\n')
    const host = await suite.run(suite.programs.env(hostOnlyVariable))
    assert.notEqual(host.exitCode, 0, 'a variable of the host process is not set inside')
    assert.doesNotMatch(host.stdout, /secret/)
  })

  it('runs several programs at once', async () => {
    const results = await Promise.all([0, 1, 2].map((code) => suite.run(suite.programs.stdio(`run ${code}`, '', code))))
    assert.deepEqual(
      results.map((result) => [result.exitCode, result.stdout]),
      [
        [0, 'run 0\n'],
        [1, 'run 1\n'],
        [2, 'run 2\n'],
      ],
    )
  })

  it('streams stdout while the program runs, and stops it when the AbortSignal aborts', async () => {
    const task = await suite.newTask()
    const controller = new AbortController()
    // A deadline far off: the run must end by the abort (HEARTH_ERR_EXEC_FAILED), however slowly this machine starts it.
    const running = suite.runtime.run(suite.specFor(task, suite.programs.stream('started'), { timeoutMs: 600_000 }), { signal: controller.signal })
    while (!(await readFile(task.stdoutPath, 'utf8').catch(() => '')).includes('started')) await sleep(10)
    controller.abort(new Error('user pressed ctrl-c'))
    await assert.rejects(running, (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_EXEC_FAILED'), String(error))
      assert.equal(error.details?.aborted, true)
      assert.equal((error.cause as Error).message, 'user pressed ctrl-c')
      return true
    })
    // an already aborted signal runs nothing
    const idle = await suite.newTask()
    await assert.rejects(suite.runtime.run(suite.specFor(idle, suite.programs.stdio('no', '', 0)), { signal: AbortSignal.abort() }), failsWith('HEARTH_ERR_EXEC_FAILED', /aborted/))
    assert.equal(await lstat(idle.stdoutPath).catch(() => undefined), undefined, 'nothing ran')
    await suite.assertRecovered()
  })
}

/** What the program sees of the filesystem: its task directory only, and no way out through links. */
function registerFileIsolation<P>(suite: ComplianceSuite<P>): void {
  it('shows the program only its task directory', async () => {
    const task = await suite.newTask()
    await writeFile(join(task.rootDir, 'inside.txt'), 'inside')
    await mkdir(join(task.rootDir, 'sub'))
    const secretPath = join(task.dir, 'secret.txt')
    await writeFile(secretPath, secretText)
    assert.equal((await suite.run(suite.programs.read('sub/../inside.txt'), {}, task)).stdout, 'inside')
    for (const path of ['../secret.txt', 'sub/../../secret.txt', '../../../../../../../secret.txt', secretPath, '/etc/passwd', '/../etc/passwd', '/etc/shadow', '/root/.bashrc']) {
      const result = await suite.run(suite.programs.read(path), {}, task)
      assert.notEqual(result.exitCode, 0, `${path} was readable`)
      assert.doesNotMatch(result.stdout, /secret|root:/, path)
    }
    // `..` at the top either fails (native: / is read-only) or stays at the top, as in a chroot (wasi: uvwasi
    // clamps it to the preopened root): either way nothing lands outside.
    const escape = await suite.run(suite.programs.write('../escaped.txt', 'out'), {}, task)
    assert.equal(await lstat(join(task.dir, 'escaped.txt')).catch(() => undefined), undefined, 'nothing was written outside')
    if (escape.exitCode === 0) assert.equal(await readFile(join(task.rootDir, 'escaped.txt'), 'utf8'), 'out')
    await suite.assertRecovered()
  })

  it('refuses symlink escapes: links the program makes lead nowhere, and a task directory holding links does not run', async () => {
    const task = await suite.newTask()
    await writeFile(join(task.dir, 'secret.txt'), secretText)
    for (const [target, name] of [
      ['../secret.txt', 'link-up'],
      [join(task.dir, 'secret.txt'), 'link-host'],
      ['/etc/passwd', 'link-passwd'],
    ] as const) {
      const result = await suite.run(suite.programs.symlinkRead(target, name), {}, task)
      assert.notEqual(result.exitCode, 0, `reading through a link to ${target} worked`)
      assert.doesNotMatch(result.stdout, /secret|root:/)
    }
    assert.deepEqual(await oddEntries(task.rootDir), [], 'no link is left where the host would follow it')
    assert.equal((await suite.run(suite.programs.stdio('same folder again', '', 0), {}, task)).exitCode, 0)

    const linked = await suite.newTask()
    await symlink('/etc', join(linked.rootDir, 'etc'))
    await assert.rejects(suite.runtime.run(suite.specFor(linked, suite.programs.read('etc/passwd'))), failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /symbolic link/))
    assert.equal(await lstat(linked.stdoutPath).catch(() => undefined), undefined, 'nothing ran')
    const nested = await suite.newTask()
    await mkdir(join(nested.rootDir, 'a', 'b'), { recursive: true })
    await symlink('../../../secret.txt', join(nested.rootDir, 'a', 'b', 'file'))
    await assert.rejects(suite.runtime.run(suite.specFor(nested, suite.programs.read('a/b/file'))), failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /a\/b\/file/))
    const hard = await suite.newTask()
    await writeFile(join(hard.dir, 'outside'), secretText)
    await link(join(hard.dir, 'outside'), join(hard.rootDir, 'alias'))
    await assert.rejects(suite.runtime.run(suite.specFor(hard, suite.programs.write('alias', 'overwritten'))), failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /hard link/))
    assert.equal(await readFile(join(hard.dir, 'outside'), 'utf8'), secretText)
    await suite.assertRecovered()
  })
}

/** The limits of a run: memory, the deadline, output. */
function registerLimits<P>(suite: ComplianceSuite<P>): void {
  it('stops a program that exhausts its memory', async () => {
    // Stopped by the memory limit (its own error), not by the deadline (HEARTH_ERR_EXEC_TIMEOUT).
    await assert.rejects(suite.run(suite.programs.allocate(), { maxMemoryBytes: 32 * MiB }), failsWith('HEARTH_ERR_EXEC_MEMORY'))
    await suite.assertRecovered()
  })

  it('stops an endless loop at the deadline', async () => {
    await assert.rejects(suite.run(suite.programs.loop(), { timeoutMs: 300 }), failsWith('HEARTH_ERR_EXEC_TIMEOUT', /300 ms/))
    await suite.assertRecovered()
  })

  it('stops huge output on stdout and in files, with little overshoot', async () => {
    const spam = await suite.newTask()
    await assert.rejects(suite.runtime.run(suite.specFor(spam, suite.programs.spam(), { maxOutputBytes: MiB })), failsWith('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE'))
    assert.ok((await sizeOf(spam.stdoutPath)) <= MiB + 64 * 1024, `stdout grew to ${await sizeOf(spam.stdoutPath)} bytes`)
    const fill = await suite.newTask()
    await writeFile(join(fill.rootDir, 'input.bin'), new Uint8Array(2 * MiB))
    await assert.rejects(suite.runtime.run(suite.specFor(fill, suite.programs.fill('fill.bin'), { maxOutputBytes: MiB })), failsWith('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE'))
    const written = await sizeOf(join(fill.rootDir, 'fill.bin'))
    assert.ok(written <= MiB + 256 * 1024, `wrote ${written} bytes`)
    // inputs do not count against the budget
    assert.equal((await suite.run(suite.programs.read('input.bin'), { maxOutputBytes: 3 * MiB }, fill)).exitCode, 0)
    await suite.assertRecovered()
  })
}

/** Processes: nothing outlives a run, stopped or ended, and a fork bomb is contained. */
function registerProcesses<P>(suite: ComplianceSuite<P>): void {
  it('leaves nothing running after a run was stopped', async () => {
    const task = await suite.newTask()
    const stop = new AbortController()
    const running = suite.runtime.run(suite.specFor(task, suite.programs.tick('tick.log'), { timeoutMs: 600_000, maxOutputBytes: 256 * MiB }), { signal: stop.signal })
    // Stopped once it is surely running, however long this machine took to start it.
    while ((await sizeOf(join(task.rootDir, 'tick.log')).catch(() => 0)) === 0) await sleep(10)
    stop.abort(new Error('stop'))
    await assert.rejects(running, failsWith('HEARTH_ERR_EXEC_FAILED'))
    const size = await sizeOf(join(task.rootDir, 'tick.log'))
    await sleep(300)
    assert.equal(await sizeOf(join(task.rootDir, 'tick.log')), size, 'something still writes after the run ended')
    await suite.assertRecovered()
  })

  it('leaves nothing running after a program exits that started a background process', suite.optional('background'), async () => {
    const task = await suite.newTask()
    const result = await suite.run(suite.need('background')('bg.log'), {}, task)
    assert.equal(result.exitCode, 0)
    const size = await sizeOf(join(task.rootDir, 'bg.log'))
    await sleep(300)
    assert.equal(await sizeOf(join(task.rootDir, 'bg.log')), size, 'the background process outlived the run')
    await suite.assertRecovered()
  })

  it('contains a fork bomb', suite.optional('forkBomb'), async () => {
    const outcome = await suite.run(suite.need('forkBomb')(), { timeoutMs: 3_000 }).then(
      (result) => result,
      (error: unknown) => error,
    )
    assert.ok(!(outcome instanceof Error) || isHearthError(outcome), `the run failed with something other than a HearthError: ${String(outcome)}`)
    await suite.assertRecovered()
  })
}

/** The network: none inside. */
function registerNetwork<P>(suite: ComplianceSuite<P>): void {
  it('has no network: connecting to 127.0.0.1 fails inside', suite.optional('connect'), async () => {
    let connections = 0
    const server = createServer((socket) => {
      connections++
      socket.destroy()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = server.address() as { port: number }
      const result = await suite.run(suite.need('connect')('127.0.0.1', port))
      assert.notEqual(result.exitCode, 0)
      assert.doesNotMatch(result.stdout, /connected/)
      assert.equal(connections, 0)
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
    await suite.assertRecovered()
  })
}

/** What the runtime refuses: a busy task directory, an invalid run, runs after close() (which stops those in flight). */
function registerGuards<P>(suite: ComplianceSuite<P>): void {
  it('refuses a second run in a task directory that is in use', async () => {
    const task = await suite.newTask()
    const stopFirst = new AbortController()
    const first = suite.runtime.run(suite.specFor(task, suite.programs.stream('running'), { timeoutMs: 600_000 }), { signal: stopFirst.signal })
    // Once the first is running: of two runs started in the same tick either may win, which is not the point here.
    while (!(await readFile(task.stdoutPath, 'utf8').catch(() => '')).includes('running')) await sleep(10)
    await assert.rejects(
      suite.runtime.run({ ...suite.specFor(task, suite.programs.stdio('second', '', 0)), stdoutPath: join(task.dir, 'out2'), stderrPath: join(task.dir, 'err2') }),
      failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /in use/),
    )
    stopFirst.abort(new Error('done with it'))
    await assert.rejects(first, failsWith('HEARTH_ERR_EXEC_FAILED'))
    await suite.assertRecovered()
  })

  it('validates the run before starting anything', async () => {
    const task = await suite.newTask()
    const call = suite.programs.stdio('x', '', 0)
    await assert.rejects(suite.runtime.run(suite.specFor(task, call, { timeoutMs: 0 })), failsWith('HEARTH_ERR_CONFIG_INVALID', /timeoutMs/))
    await assert.rejects(suite.runtime.run(suite.specFor(task, call, { env: { 'A=B': 'x' } })), failsWith('HEARTH_ERR_CONFIG_INVALID'))
    await assert.rejects(suite.runtime.run(suite.specFor(task, { ...call, args: [...call.args, 'o\0k'] })), failsWith('HEARTH_ERR_CONFIG_INVALID', /NUL/))
    await assert.rejects(suite.runtime.run(suite.specFor(task, call, { rootDir: join(task.dir, 'missing') })), failsWith('HEARTH_ERR_EXEC_PATH_INVALID'))
    await assert.rejects(
      suite.runtime.run(suite.specFor(task, call, { stdoutPath: join(task.rootDir, 'stdout') })),
      failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /inside the task directory/),
    )
  })

  it('stops runs in flight on close() and refuses new ones', async () => {
    const closing = await suite.target.create()
    const task = await suite.newTask()
    const inFlight = assert.rejects(closing.run(suite.specFor(task, suite.programs.loop())), failsWith('HEARTH_ERR_EXEC_FAILED', /closed/))
    await sleep(200)
    await closing.close()
    await inFlight
    await assert.rejects(closing.run(suite.specFor(await suite.newTask(), suite.programs.stdio('x', '', 0))), failsWith('HEARTH_ERR_EXEC_FAILED', /closed/))
    await suite.assertRecovered()
  })
}
