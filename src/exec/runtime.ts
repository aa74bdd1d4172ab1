/**
 * The one interface every sandbox runtime implements (`wasi`, `native`, later `docker`), so that the provider agent,
 * the compliance suite (runtime-compliance.ts) and metering treat them alike.
 *
 * A runtime differs from another only in what a program is (`P`): wasm bytes for `wasi`, an allow-listed host path for
 * `native`. Everything else — the task directory, argv, env, stdio files, limits, the result and the errors — is shared:
 * - a non-zero exit code is a result, not an error;
 * - a run stopped by a limit throws a HearthError: HEARTH_ERR_EXEC_TIMEOUT (deadline), HEARTH_ERR_EXEC_MEMORY,
 *   HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE, HEARTH_ERR_EXEC_FAILED with `details.aborted` (AbortSignal or close());
 * - a task directory holding a symlink, a hard link or a special file is refused before running
 *   (HEARTH_ERR_EXEC_PATH_INVALID), as are stdio files inside it.
 */

import type { Duplex } from 'node:stream'

export type RuntimeName = 'wasi' | 'native' | 'docker'

export interface RunSpec<P> {
  /** What to run: for `wasi` the module's bytes, for `native` an absolute host path on the provider's allow-list. */
  program: P
  /** argv, program name first. (`native`: bubblewrap 0.8 cannot set argv[0], so the program sees its own path there.) */
  args: string[]
  /** The whole environment the program sees (`native` adds PATH and HOME=/task when these are not given). */
  env: Record<string, string>
  /** The task's own directory: the program's only writable place, seen as `/` (wasi) or `/task`, its cwd (native). */
  rootDir: string
  /** Host files for stdout and stderr, outside rootDir; created or truncated. They fill while the program runs. */
  stdoutPath: string
  stderrPath: string
  maxMemoryBytes: number
  /** Wall-clock deadline of the run. */
  timeoutMs: number
  /** Budget for stdout + stderr + bytes the program adds under rootDir. */
  maxOutputBytes: number
  /** CPU time per wall-clock time the run may use (cgroup quota); default 1. `wasi` guests are single-threaded. */
  maxCpuCores?: number
  /**
   * NVIDIA GPUs the run may use, by index as detected (exec/gpu.ts), as its agreement grants them. Default: none, and
   * no GPU device is visible to the program. `wasi` guests cannot use GPUs and refuse a run that asks for one.
   */
  gpus?: number[]
  /**
   * The program's content id (`sha256:<hex>` of `program`), where the caller already checked it: a runtime may key
   * what it derives from the program by it (wasi: the compiled module) rather than hash the program at every run.
   */
  programId?: string
}

export interface RunResult {
  /** The program's exit code; 128 + N when the native program died of signal N. */
  exitCode: number
  durationMs: number
  /** CPU time the run used (wasi: the guest's thread; native: every process of the run, from its cgroup). */
  cpuMs: number
  stdoutBytes: number
  stderrBytes: number
}

/** A run whose stdout and stderr are kept in memory rather than written to files (see Runtime.runKeepingStdio). */
export type KeptStdioRunSpec<P> = Omit<RunSpec<P>, 'stdoutPath' | 'stderrPath'>

export interface KeptStdioRunResult extends RunResult {
  stdout: Uint8Array
  stderr: Uint8Array
}

export interface RunOptions {
  /** Aborting stops the run; it then fails with HEARTH_ERR_EXEC_FAILED, `details.aborted` true, the reason as cause. */
  signal?: AbortSignal
}

export type RuntimeAvailability = { ok: true } | { ok: false; reason: string }

/**
 * A long-running server (a service's replica) under the same sandbox as a task: no network but the path the provider
 * itself opens to `port` inside the sandbox's own network namespace (ServedProgram.connect). No deadline; it runs
 * until it ends by itself, by a limit, or stop().
 */
export interface ServeSpec<P> {
  /** As RunSpec.program: an image (`docker`) or an allow-listed host path (`native`). */
  program: P
  /** argv, program name first (the caller has already put the port where the program expects it). */
  args: string[]
  env: Record<string, string>
  /** The TCP port the server listens on inside its own network namespace, on 127.0.0.1 or 0.0.0.0. */
  port: number
  /** The replica's own directory: read-write at /task, its cwd (as for tasks). */
  rootDir: string
  /** Host file outside rootDir: the server's stdout and stderr, interleaved as they come; created or truncated. */
  logPath: string
  /** Bound on logPath: a write that would pass it first drops the older half of the file (the newest is kept). */
  maxLogBytes: number
  maxMemoryBytes: number
  maxCpuCores?: number
  /** The largest file the server may write under rootDir (RLIMIT_FSIZE, as for tasks). */
  maxDiskBytes: number
}

/** How a served program ended. */
export interface ServeEnding {
  exitCode: number
  /** 'memory': killed by the kernel at its memory limit; 'stopped': by stop() or the runtime's close(). */
  reason: 'exited' | 'memory' | 'stopped'
}

export interface ServedProgram {
  /** A new TCP connection to the server's port inside its namespace. Rejects (HEARTH_ERR_EXEC_FAILED) when nothing listens there or the server has ended. */
  connect(): Promise<Duplex>
  /** Resolves once a connection to the port succeeds; rejects when the server exits first (the message names the exit code and the log's last lines) or timeoutMs passes. */
  waitListening(timeoutMs: number): Promise<void>
  /** CPU time the server's processes used so far (from its cgroup) and the time since it started. */
  usage(): Promise<{ cpuMs: number; uptimeMs: number }>
  /** Settles when the server process ends: by itself, by a limit (memory: reason 'memory') or by stop(). Never rejects. */
  readonly ended: Promise<ServeEnding>
  /** Kills the server and removes everything it had (container, forwarder, cgroup); idempotent; never throws. */
  stop(): Promise<void>
}

export interface Runtime<P> {
  readonly name: RuntimeName
  /**
   * Whether this machine can run the runtime, and if not exactly why (a missing package, kernel feature, permission).
   * A provider offers only runtimes that answer ok. Cheap after the first call (the answer is kept).
   */
  available(): Promise<RuntimeAvailability>
  run(spec: RunSpec<P>, options?: RunOptions): Promise<RunResult>
  /**
   * Where a runtime has it: a run as `run`, under the same limits (stdout and stderr count against maxOutputBytes as
   * they are written), with stdout and stderr kept in memory and returned with the result instead of written to
   * files. One-shot tasks use it (task-core.ts): no stdio files to create, read back and remove.
   */
  runKeepingStdio?(spec: KeptStdioRunSpec<P>, options?: RunOptions): Promise<KeptStdioRunResult>
  /**
   * Where a runtime has it (`docker`, `native`): starts a long-running server in the sandbox and resolves once it has
   * started (not yet listening: see ServedProgram.waitListening). Refused as `run` refuses (program, env, directory).
   */
  serve?(spec: ServeSpec<P>): Promise<ServedProgram>
  /** Stops every run in flight (they fail with HEARTH_ERR_EXEC_FAILED) and every served program, and refuses new ones. */
  close(): Promise<void>
}
