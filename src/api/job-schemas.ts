/** The shapes of the job commands of the requestor node's local API (node-jobs.ts), for its OpenAPI document. */
import { z } from 'zod'

const wei = z.string().regex(/^\d+$/)
const count = z.number().int().nonnegative()
const state = z.enum(['queued', 'running', 'finished', 'failed', 'cancelled'])

export const jobSubmitBody = z.strictObject({
  jobFile: z.record(z.string(), z.unknown()).describe('the job file, as JSON (see docs/job-kinds.md); relative paths in it are read from `files`'),
  files: z
    .array(z.strictObject({ path: z.string().min(1).max(1024).describe('relative to the job file'), base64: z.string().max(64 * 1024 * 1024) }))
    .max(10_000)
    .optional()
    .describe('the job\'s inputs and package, as the job file names them'),
})

export const jobSubmittedSchema = z.object({ id: z.string(), name: z.string(), kind: z.string(), state })

const progress = z.object({
  phase: z.string().nullable(),
  total: count,
  done: count,
  failed: count,
  running: count,
  retries: count,
  rejected: count,
  spentWei: wei.describe('accepted work so far, at the agreed prices'),
  etaSec: z.number().nullable(),
  agreements: z.array(
    z.object({
      agreementId: z.string(),
      provider: z.string(),
      depositWei: wei.nullable(),
      openTx: z.string().nullable(),
      paidWei: wei.nullable(),
      refundedWei: wei.nullable(),
      settleTx: z.string().nullable(),
    }),
  ),
  offers: count.nullable(),
})

const jobSummary = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.string(),
  state,
  submittedAtMs: z.number(),
  startedAtMs: z.number().nullable(),
  finishedAtMs: z.number().nullable(),
  engineJobId: z.string().nullable().describe('the engine\'s job id, for hearth run --resume'),
  error: z.string().nullable(),
  progress,
})

export const jobListSchema = z.object({ jobs: z.array(jobSummary) })

export const jobDetailSchema = jobSummary.extend({
  tasks: z.array(
    z.object({
      batch: z.string(),
      index: count,
      state: z.enum(['waiting', 'running', 'done', 'failed']),
      provider: z.string().nullable(),
      attempts: count,
      retries: count,
      rejected: count,
      checked: z.boolean(),
      lastError: z.string().nullable(),
    }),
  ),
  events: z.array(z.looseObject({ type: z.string() })),
  report: z
    .looseObject({
      jobId: z.string(),
      tasks: z.object({ total: count, succeeded: count }),
      settlement: z.looseObject({ payments: z.looseObject({ depositedWei: wei, paidWei: wei, refundedWei: wei }), audit: z.looseObject({ balanced: z.boolean() }) }).nullable(),
    })
    .nullable(),
})

export const jobOutputsSchema = z.object({ files: z.array(z.object({ path: z.string(), bytes: count })) })

export const jobOutputSchema = z.object({ path: z.string(), bytes: count, base64: z.string() })
