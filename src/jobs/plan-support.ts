/**
 * What the plans of every job kind share: the types of a plan and its product, argument templates with `{name}`
 * placeholders, guest paths as each runtime's programs see them, and the check that a task really produced its result.
 */
import { HearthError } from '../errors.ts'
import type { TaskOutcome, TaskRunner } from '../requestor/task-runner.ts'
import type { JobKind } from './job-file.ts'

export interface OutputFile {
  /** Relative to the job's output folder, with `/` separators, e.g. `counts.tsv` or `3/out/counts.tsv`. */
  path: string
  data: Uint8Array
}

export interface JobProduct {
  outputs: OutputFile[]
  /** Figures for the report, by kind (JSON-serialisable). */
  summary: Record<string, unknown>
}

/** A phase (a batch of tasks given to the runner) starting or finishing. */
export interface PlanProgress {
  phase: string
  state: 'started' | 'finished'
  tasks: number
  /** Phases this plan runs in all, where known up front (a map-reduce has two; a phase may be skipped). */
  phases: number
}

export interface JobPlan {
  kind: JobKind
  name: string
  /** How many tasks the plan will run, estimated before any input is read (for budgets). */
  estimatedTasks: number
  /** Runs the plan's phases on `runner` and builds the final product; rejects when a task fails. */
  execute(runner: TaskRunner, onProgress?: (progress: PlanProgress) => void): Promise<JobProduct>
}

export type Runtime = 'wasi' | 'native' | 'docker'

/**
 * A guest path as the program sees it: absolute for wasi (its root is the task directory), relative for native and
 * docker (the task directory is the working directory, so `/in/a.txt` is `in/a.txt`).
 */
export function programPath(runtime: Runtime, guestPath: string): string {
  return runtime === 'wasi' ? guestPath : guestPath.slice(1)
}

const placeholder = /\{([A-Za-z_][A-Za-z0-9_-]*)\}/g

/** The `{name}` placeholders an argument template uses. */
export function placeholdersOf(args: readonly string[]): Set<string> {
  const names = new Set<string>()
  for (const arg of args) for (const match of arg.matchAll(placeholder)) names.add(match[1]!)
  return names
}

/**
 * Fills an argument template. An argument that is exactly `{name}` of a list value becomes one argument per item;
 * elsewhere a placeholder is replaced by its (string) value.
 */
export function fillArgs(args: readonly string[], values: Record<string, string | readonly string[]>): string[] {
  return args.flatMap((arg) => {
    const whole = /^\{([A-Za-z_][A-Za-z0-9_-]*)\}$/.exec(arg)
    const value = whole === null ? undefined : values[whole[1]!]
    if (Array.isArray(value)) return [...value]
    return [arg.replace(placeholder, (text, name: string) => {
      const v = values[name]
      if (v === undefined) return text
      return typeof v === 'string' ? v : v.join(' ')
    })]
  })
}

/** Refuses placeholders a template may not use, naming the field. */
export function checkPlaceholders(field: string, args: readonly string[], allowed: readonly string[]): void {
  const unknown = [...placeholdersOf(args)].filter((name) => !allowed.includes(name))
  if (unknown.length > 0) {
    const problem = `${field}: unknown placeholder ${unknown.map((name) => `{${name}}`).join(', ')}; expected ${allowed.map((name) => `{${name}}`).join(', ')}`
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `the job is invalid:\n  ${problem}`, {
      hint: 'placeholders in args are filled in per task; use only the ones listed',
      details: { problems: [problem] },
    })
  }
}

/** The tail of a task's stderr, for an error message. */
function stderrTail(outcome: TaskOutcome): string {
  const text = Buffer.from(outcome.stderr).toString('utf8').trim()
  return text.length > 500 ? `…${text.slice(-500)}` : text
}

/** Throws HEARTH_ERR_JOB_TASK_FAILED unless the task exited 0 and brought back every output. */
export function requireSuccess(outcome: TaskOutcome, what: string): void {
  if (outcome.exitCode === 0 && outcome.missingOutputs.length === 0) return
  const reason = outcome.exitCode !== 0 ? `exited with code ${outcome.exitCode}` : `did not write ${outcome.missingOutputs.join(', ')}`
  const stderr = stderrTail(outcome)
  throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `${what} ${reason}${stderr === '' ? '' : `: ${stderr}`}`, {
    hint: 'the program refused its input or arguments; run it alone on the same input to see why',
    details: { exitCode: outcome.exitCode, missingOutputs: outcome.missingOutputs, stderr },
  })
}

/** The bytes of one output of a finished task. */
export function outputOf(outcome: TaskOutcome, path: string): Uint8Array {
  const output = outcome.outputs.find((file) => file.path === path)
  if (output === undefined) {
    throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `task ${outcome.taskIndex} brought back no ${path}`, { hint: 'the task must write every output it names' })
  }
  return output.data
}

/** Runs one batch, reporting its start and end. */
export async function runPhase(
  runner: TaskRunner,
  tasks: Parameters<TaskRunner['run']>[0],
  options: { phase: string; package?: Uint8Array; phases: number },
  onProgress: ((progress: PlanProgress) => void) | undefined,
): Promise<TaskOutcome[]> {
  onProgress?.({ phase: options.phase, state: 'started', tasks: tasks.length, phases: options.phases })
  const outcomes = await runner.run(tasks, { phase: options.phase, ...(options.package === undefined ? {} : { package: options.package }) })
  if (outcomes.length !== tasks.length) {
    throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `the runner returned ${outcomes.length} outcomes for ${tasks.length} ${options.phase} tasks`)
  }
  onProgress?.({ phase: options.phase, state: 'finished', tasks: tasks.length, phases: options.phases })
  return outcomes
}
