/**
 * Job kinds: what turns a checked job file into batches of tasks and the tasks' outcomes into one product. Plans are
 * written against a TaskRunner alone, so the same plan runs on the network engine and in this process
 * (requestor/local-runner.ts).
 *
 *   const plan = planJob(loadJobDefinition('job.json'))        // refuses bad placeholders before anything runs
 *   const product = await plan.execute(runner, (p) => console.log(p.phase, p.state, p.tasks))
 *   await writeJobProduct(product, 'out/')                      // product.summary goes into the report
 *
 * Kinds: `map` (the job file's task list), `mapreduce` (mapreduce.ts), `sweep` (sweep.ts), `render` (render-kind.ts).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative } from 'node:path'
import { HearthError } from '../errors.ts'
import type { TaskSpec } from '../requestor/task-runner.ts'
import type { JobDefinition, LoadedJob } from './job-file.ts'
import { planMapReduce } from './mapreduce.ts'
import { runPhase, type JobPlan, type JobProduct } from './plan-support.ts'
import { planRender } from './render-kind.ts'
import { planSweep } from './sweep.ts'

export type { TaskRunner, TaskRunOptions } from '../requestor/task-runner.ts'
export type { JobPlan, JobProduct, OutputFile, PlanProgress } from './plan-support.ts'

/** The tasks of a `map` job, their input files read. */
export async function mapTasks(job: LoadedJob): Promise<TaskSpec[]> {
  return Promise.all(
    job.tasks.map(async (task) => ({
      args: task.args,
      env: task.env,
      inputs: await Promise.all(Object.entries(task.inputPaths).map(async ([path, hostPath]) => ({ path, data: new Uint8Array(await readFile(hostPath)) }))),
      outputs: task.outputs,
    })),
  )
}

/**
 * `map`: the task list as written. A non-zero exit code is the program's answer and is kept, not an error. The product
 * holds each task's outputs under `<task index>/<guest path>`, with its `stdout` and `stderr` beside them.
 */
function planMap(job: LoadedJob): JobPlan {
  return {
    kind: 'map',
    name: job.name,
    estimatedTasks: job.tasks.length,
    async execute(runner, onProgress) {
      const outcomes = await runPhase(runner, await mapTasks(job), { phase: 'map', phases: 1 }, onProgress)
      const outputs = outcomes.flatMap((outcome, index) => [
        { path: `${index}/stdout`, data: outcome.stdout },
        { path: `${index}/stderr`, data: outcome.stderr },
        ...outcome.outputs.map((file) => ({ path: `${index}${file.path}`, data: file.data })),
      ])
      return {
        outputs,
        summary: {
          kind: 'map',
          tasks: outcomes.length,
          succeeded: outcomes.filter((outcome) => outcome.exitCode === 0 && outcome.missingOutputs.length === 0).length,
          exitCodes: outcomes.map((outcome) => outcome.exitCode),
        },
      }
    },
  }
}

/** The plan of a checked job. Throws HEARTH_ERR_JOB_INVALID for what the schema cannot see (unknown placeholders). */
export function planJob(job: JobDefinition): JobPlan {
  switch (job.kind) {
    case 'map':
      return planMap(job)
    case 'mapreduce':
      return planMapReduce(job)
    case 'sweep':
      return planSweep(job)
    case 'render':
      return planRender(job)
  }
}

/** Writes a product's files under `outDir`; returns their paths. A path that would leave `outDir` is refused. */
export async function writeJobProduct(product: JobProduct, outDir: string): Promise<string[]> {
  const written: string[] = []
  for (const file of product.outputs) {
    const target = join(outDir, file.path)
    const inside = relative(outDir, target)
    if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) {
      throw new HearthError('HEARTH_ERR_JOB_INVALID', `the output ${JSON.stringify(file.path)} would be written outside ${outDir}`, {
        hint: 'output paths are relative to the output folder, without ".."',
      })
    }
    await mkdir(dirname(target), { recursive: true })
    await writeFile(target, file.data)
    written.push(target)
  }
  return written
}
