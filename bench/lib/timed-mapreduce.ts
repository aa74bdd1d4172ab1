/**
 * A map-reduce job file run as `hearth run` runs it (prepareJobFile, then runPreparedJob on the requestor), with the
 * time of each part: setup (the file planned, offers, agreements, escrows), reading and chunking, the map phase, the
 * shuffle, the reduce phase, the merge, and settlement; per phase the guests' own run time as the providers metered
 * it, and the CPU time of this process (every node of an in-process devnet) over the whole job.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { JobFigures, JobSession } from '../../src/requestor/job-types.ts'
import type { Requestor } from '../../src/requestor/requestor.ts'
import type { TaskRunner } from '../../src/requestor/task-runner.ts'
import { prepareJobFile, runPreparedJob } from '../../src/jobs/run-job-file.ts'

export interface PhaseTiming {
  phase: string
  ms: number
  tasks: number
  /** Sum over the accepted results of the guest's run time on its provider (checks are not included). */
  guestMs: number
  /** Sum of the requestor's round trips of the accepted results. */
  roundTripMs: number
}

export interface TimedMapReduce {
  jobMs: number
  /** Job file read and planned, offers, latency, agreements, escrows: until the session is open. */
  setupMs: number
  /** Session open to the first phase: input files read and cut into chunks. */
  chunkMs: number
  phases: PhaseTiming[]
  /** Between the phases: the reducers' inputs gathered from the mappers' outputs. */
  shuffleMs: number
  /** Last phase to settlement: the reducers' outputs merged and sorted, the output written. */
  mergeMs: number
  settleMs: number
  cpuMs: number
  figures: JobFigures
  summary: Record<string, unknown>
  counts: Buffer
}

/** Runs `jobFile` on `requestor`, writing its output under `outDir`, which must hold the job's `counts.tsv` after. */
export async function timedMapReduce(requestor: Requestor, jobFile: string, outDir: string, providers: number): Promise<TimedMapReduce> {
  const started = performance.now()
  const cpuBefore = process.cpuUsage()
  const phases: (PhaseTiming & { startedAt: number; endedAt: number })[] = []
  let openedAt = NaN
  let finishingAt = NaN
  const timed: Pick<Requestor, 'openJob'> = {
    async openJob(spec, options) {
      const session = await requestor.openJob(spec, options)
      openedAt = performance.now()
      const run: TaskRunner['run'] = async (tasks, runOptions) => {
        const startedAt = performance.now()
        const outcomes = await session.run(tasks, runOptions)
        const endedAt = performance.now()
        phases.push({
          phase: runOptions?.phase ?? 'tasks', startedAt, endedAt, ms: endedAt - startedAt, tasks: outcomes.length,
          guestMs: outcomes.reduce((sum, o) => sum + o.usage.durationMs, 0),
          roundTripMs: outcomes.reduce((sum, o) => sum + o.roundTripMs, 0),
        })
        return outcomes
      }
      const finish: JobSession['finish'] = (state) => {
        finishingAt = performance.now()
        return session.finish(state)
      }
      return new Proxy(session, {
        get(target, key) {
          if (key === 'run') return run
          if (key === 'finish') return finish
          const value: unknown = Reflect.get(target, key)
          return typeof value === 'function' ? value.bind(target) : value
        },
      })
    },
  }
  const prepared = await prepareJobFile({ jobFile, providers })
  const { run, outcome } = await runPreparedJob(timed, prepared, { outDir, emit: () => undefined })
  const ended = performance.now()
  const cpu = process.cpuUsage(cpuBefore)
  const first = phases[0]
  const last = phases.at(-1)
  if (first === undefined || last === undefined) throw new Error('the job ran no tasks')
  return {
    jobMs: ended - started,
    setupMs: openedAt - started,
    chunkMs: first.startedAt - openedAt,
    phases: phases.map(({ startedAt: _s, endedAt: _e, ...phase }) => phase),
    shuffleMs: phases.slice(1).reduce((sum, phase, i) => sum + phase.startedAt - phases[i]!.endedAt, 0),
    mergeMs: finishingAt - last.endedAt,
    settleMs: ended - finishingAt,
    cpuMs: (cpu.user + cpu.system) / 1000,
    figures: outcome.figures,
    summary: run.summary,
    counts: await readFile(join(outDir, 'counts.tsv')),
  }
}
