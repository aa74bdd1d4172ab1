/**
 * Test helpers the shell-based runtimes (native, docker) share: one way to make a task directory and run a script in
 * it, and the compliance programs a POSIX shell writes the same in both.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { CompliancePrograms, ProgramCall } from '../runtime-compliance.ts'
import type { RunResult, RunSpec, Runtime } from '../runtime.ts'

const MiB = 1 << 20

export interface ShellTask<P> {
  dir: string
  rootDir: string
  /** `sh -c script sh args...` in this task's directory, stdio next to it, with test-sized limits. */
  spec: (script: string, args?: string[], overrides?: Partial<RunSpec<P>>) => RunSpec<P>
}

export interface ShellHarness<P> {
  /** A fresh task directory (`root`) under the base folder, with stdout and stderr files beside it. */
  newTask(): Promise<ShellTask<P>>
  /** Runs a script (in `given`, else a fresh task) and returns the result with what it wrote to stdout and stderr. */
  sh(script: string, args?: string[], overrides?: Partial<RunSpec<P>>, given?: ShellTask<P>): Promise<RunResult & { stdout: string; stderr: string }>
}

/**
 * Tasks and script runs for a runtime whose program is a shell: `base` and `runtime` are read when a task is made or
 * run (the tests set them up in `before`), `command` says how the runtime spells `sh -c script sh args...`.
 */
export function shellHarness<P>(options: {
  base: () => string
  runtime: () => Runtime<P>
  command: (script: string, args: string[]) => ProgramCall<P>
}): ShellHarness<P> {
  let taskCount = 0
  const newTask = async (): Promise<ShellTask<P>> => {
    const dir = join(options.base(), `task-${taskCount++}`)
    await mkdir(join(dir, 'root'), { recursive: true })
    return {
      dir,
      rootDir: join(dir, 'root'),
      spec: (script, args = [], overrides = {}) => ({
        ...options.command(script, args),
        env: {},
        rootDir: join(dir, 'root'),
        stdoutPath: join(dir, 'stdout'),
        stderrPath: join(dir, 'stderr'),
        maxMemoryBytes: 64 * MiB,
        timeoutMs: 10_000,
        maxOutputBytes: MiB,
        ...overrides,
      }),
    }
  }
  return {
    newTask,
    async sh(script, args = [], overrides = {}, given) {
      const task = given ?? (await newTask())
      const result = await options.runtime().run(task.spec(script, args, overrides))
      return { ...result, stdout: await readFile(join(task.dir, 'stdout'), 'utf8'), stderr: await readFile(join(task.dir, 'stderr'), 'utf8') }
    },
  }
}

/**
 * The compliance programs that a POSIX shell (dash, busybox sh) writes alike in every shell-based runtime. `sh` runs
 * `sh -c script sh args...`: the script sees args as $1, $2, … (never spliced into the script text).
 */
export function shellCompliancePrograms<P>(
  sh: (script: string, ...args: string[]) => ProgramCall<P>,
): Omit<CompliancePrograms<P>, 'env' | 'connect'> {
  return {
    stdio: (out, err, exitCode) => sh('printf "%s\\n" "$1"; printf "%s\\n" "$2" >&2; exit "$3"', out, err, String(exitCode)),
    read: (path) => sh('exec cat -- "$1"', path),
    write: (path, text) => sh('printf "%s" "$2" > "$1"', path, text),
    symlinkRead: (target, link) => sh('ln -s -- "$1" "$2"; exec cat -- "$2"', target, link),
    // Doubles a shell string until the kernel's OOM killer stops it.
    allocate: () => sh('x=a; while :; do x="$x$x"; done'),
    loop: () => sh('while :; do :; done'),
    stream: (text) => sh('printf "%s\\n" "$1"; while :; do :; done', text),
    spam: () => sh('exec yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
    fill: (path) => sh('exec yes > "$1"', path),
    tick: (path) => sh('while :; do echo tick >> "$1"; sleep 0.01; done', path),
    background: (path) => sh('(while :; do echo tick >> "$1"; sleep 0.01; done) < /dev/null > /dev/null 2>&1 & exit 0', path),
    // Each f starts two more in the background; dash gives up when fork fails, so the outer loop keeps trying.
    forkBomb: () => sh('f() { f | f & }; while :; do f 2> /dev/null; done'),
  }
}
