/**
 * A job's record in the requestor's store: a new job gets one, a resumed job must match its record (the same tasks,
 * package and runtime, or the same digest) and brings back the results its earlier runs accepted, which are never
 * rerun or paid again.
 */
import { randomUUID } from 'node:crypto'
import { HearthError } from '../errors.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import type { Store } from '../store/store.ts'
import type { JobEventListener } from './events.ts'
import type { JobSpec } from './job-types.ts'
import { outcomeOfResult } from './result-check.ts'
import { storedTaskResult } from './stored-result.ts'
import type { TaskOutcome, TaskSpec } from './task-runner.ts'

export interface JobRecord {
  jobId: string
  /** Accepted results of earlier runs, by task index. */
  resumed: Map<number, TaskOutcome>
}

function taskDigest(task: TaskSpec): unknown {
  return { args: task.args, env: task.env, inputs: task.inputs.map((input) => [input.path, sha256Hex(input.data)]), outputs: task.outputs }
}

/** What identifies a job for resuming: its digest, or a hash of its tasks, package and runtime. */
export function jobDigest(spec: JobSpec): string {
  return spec.digest ?? hashCanonical({ runtime: spec.runtime, package: spec.package === undefined ? null : sha256Hex(spec.package), program: spec.program ?? null, imageId: spec.imageId ?? null, tasks: spec.tasks.map(taskDigest) })
}

/** A stored, provider-signed result as the outcome it was when accepted (a resumed job's finished tasks). */
function outcomeFromSaved(document: unknown, taskIndex: number, provider: string): TaskOutcome {
  const result = storedTaskResult(document)
  return { ...outcomeOfResult(result, taskIndex, provider, result.agreementId, 0), checked: false }
}

/** Creates the job's record, or (spec.resumeJobId) reopens an earlier one with its accepted results. */
export function openJobRecord(store: Store, spec: JobSpec, emit: JobEventListener): JobRecord {
  const digest = jobDigest(spec)
  // A resumed job must be the same job: its results so far are reused, never rerun or paid again.
  const resumed = new Map<number, TaskOutcome>()
  if (spec.resumeJobId === undefined) {
    const jobId = randomUUID()
    store.jobs.create({ id: jobId, name: spec.name, specDigest: digest, taskCount: spec.tasks.length, state: 'running', createdAtMs: Date.now(), updatedAtMs: Date.now() })
    return { jobId, resumed }
  }
  const record = store.jobs.get(spec.resumeJobId)
  if (record === undefined) {
    throw new HearthError('HEARTH_ERR_JOB_STATE', `there is no job ${spec.resumeJobId} in this requestor's data directory`, {
      hint: 'pass the job id `hearth run` printed, and the same --data-dir',
    })
  }
  if (record.specDigest !== digest) {
    throw new HearthError('HEARTH_ERR_JOB_STATE', `job ${spec.resumeJobId} was started from a different job file`, {
      hint: 'resume with the job file the job was started with, unchanged',
    })
  }
  const jobId = record.id
  for (const saved of store.taskResults.listByJob(jobId)) resumed.set(saved.taskIndex, outcomeFromSaved(saved.document, saved.taskIndex, saved.provider))
  store.jobs.setState(jobId, 'running')
  emit({ type: 'phase', message: `resuming job ${jobId}: ${resumed.size} tasks already done` })
  return { jobId, resumed }
}
