/**
 * A TaskRunner that runs tasks on this machine: wasi tasks in this process (for `hearth run --local`, for tests that
 * check a plan against a one-process reference, and for the engine's spot checks, which recompute a sample of results
 * on the requestor), or a native program under the native runtime's sandbox.
 * Each task gets its own task directory, prepared and read back by the same core as a provider's (exec/task-core.ts):
 * inputs written under the root, the folders of the outputs created; a directory the task left untouched serves the
 * run's next task (exec/task-dirs.ts), and every one is removed by the end of the run.
 */
import { availableParallelism, tmpdir } from 'node:os'
import type { Address, Hex } from 'viem'
import { HearthError, isHearthError } from '../errors.ts'
import type { Runtime } from '../exec/runtime.ts'
import { runTaskInDir, type TaskProgram } from '../exec/task-core.ts'
import { createTaskDirs, type TaskDirs } from '../exec/task-dirs.ts'
import { adaptWasiRuntime } from '../exec/wasi-adapter.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import type { TaskOutcome, TaskRunner, TaskRunOptions, TaskSpec } from './task-runner.ts'

/** A native program to run instead of a wasi module: the runtime and the program's host path (on its allow-list). */
export interface LocalNativeProgram {
  native: Runtime<string>
  program: string
}

export interface LocalRunnerInit {
  runtime: WasiRuntime | LocalNativeProgram
  /** wasi: the job's module; a batch's `package` option overrides it. */
  package?: Uint8Array
  maxMemoryBytes?: number
  timeoutMs?: number
  maxOutputBytes?: number
  /** Tasks prepared and running at once (the runtime's own worker limit still applies). Default: the CPU count. */
  concurrency?: number
  /** Where task directories go; default the system's temporary folder. */
  workDir?: string
}

/** Outcomes from this process carry no provider and no agreement: all zeros, so they never pass for a provider's. */
export const localProvider: Address = '0x0000000000000000000000000000000000000000'
export const localAgreementId: Hex = `0x${'0'.repeat(64)}`

export function createLocalRunner(init: LocalRunnerInit): TaskRunner {
  const concurrency = init.concurrency ?? availableParallelism()
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `concurrency must be a positive integer, got ${concurrency}`)
  }
  const limits = {
    maxMemoryBytes: init.maxMemoryBytes ?? 256 * 1024 * 1024,
    timeoutMs: init.timeoutMs ?? 60_000,
    maxOutputBytes: init.maxOutputBytes ?? 64 * 1024 * 1024,
  }
  const wasi = 'native' in init.runtime ? undefined : adaptWasiRuntime(init.runtime)

  async function runOne(dirs: TaskDirs, task: TaskSpec, taskIndex: number, module: Uint8Array | undefined): Promise<TaskOutcome> {
    const started = performance.now()
    const taskDir = dirs.take('local')
    try {
      // As on a provider: a wasi guest's argv[0] is "program", a native program sees its own path there.
      const program: Pick<TaskProgram<unknown>, 'runtime' | 'program' | 'args'> = 'native' in init.runtime
        ? { runtime: init.runtime.native as Runtime<unknown>, program: init.runtime.program, args: [init.runtime.program, ...task.args] }
        : { runtime: wasi! as Runtime<unknown>, program: module!, args: ['program', ...task.args] }
      const done = await runTaskInDir(taskDir, { ...program, env: task.env, inputs: task.inputs, outputs: task.outputs, ...limits })
      const { run } = done
      const outputs = done.outputs.map((output) => ({ path: output.path, data: new Uint8Array(output.data) }))
      const missingOutputs = done.missingOutputs
      return {
        taskIndex,
        provider: localProvider,
        agreementId: localAgreementId,
        exitCode: run.exitCode,
        outputs,
        missingOutputs,
        stdout: new Uint8Array(done.stdout),
        stderr: new Uint8Array(done.stderr),
        usage: { durationMs: run.durationMs, cpuMs: run.cpuMs },
        roundTripMs: performance.now() - started,
        attempts: 1,
      }
    } finally {
      await dirs.give('local', taskDir)
    }
  }

  return {
    async run(tasks: TaskSpec[], options?: TaskRunOptions): Promise<TaskOutcome[]> {
      const module = options?.package ?? init.package
      if (module === undefined && !('native' in init.runtime)) {
        throw new HearthError('HEARTH_ERR_API_MISUSE', 'the local runner has no module to run', {
          hint: 'give createLocalRunner a package, or pass one with the batch',
        })
      }
      const dirs = createTaskDirs({ base: init.workDir ?? tmpdir(), prefix: 'hearth-local-task-' })
      const outcomes: TaskOutcome[] = new Array(tasks.length)
      let next = 0
      let failed = false
      // A fixed number of lanes, each taking the next task: bounded task directories on disk, results in order.
      async function lane(): Promise<void> {
        while (!failed && next < tasks.length) {
          const index = next++
          try {
            outcomes[index] = await runOne(dirs, tasks[index]!, index, module)
          } catch (error) {
            failed = true
            const reason = isHearthError(error) ? error.shortMessage : error instanceof Error ? error.message : String(error)
            throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `task ${index}${options === undefined ? '' : ` of ${options.phase}`} failed in this process: ${reason}`, {
              hint: 'the cause says which limit or check stopped it',
              details: { taskIndex: index, phase: options?.phase },
              cause: error,
            })
          }
        }
      }
      const lanes = Array.from({ length: Math.min(concurrency, tasks.length) }, lane)
      const settled = await Promise.allSettled(lanes)
      await dirs.close()
      const rejection = settled.find((result) => result.status === 'rejected')
      if (rejection !== undefined) throw rejection.reason
      return outcomes
    },
  }
}
