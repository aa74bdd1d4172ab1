/**
 * The messages of a task: the requestor asks a provider to run one task (or a batch) under an agreement; the
 * provider fetches the package by content id if it does not hold it yet, runs the task in its sandbox and answers
 * with a signed result naming the hash of every output, so a wrong result is provably the provider's.
 */
import { z } from 'zod'
import { hexSchema } from '../identity/wire-schemas.ts'
import { debitNoteSchema } from '../market/billing.ts'
import { defineBlobProtocol } from '../net/blob-protocol.ts'
import { defineProtocol } from '../net/protocol.ts'

const contentId = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected a content id sha256:<64 hex digits>')
export const guestPathSchema = z
  .string()
  .max(4096)
  .refine((path) => path.startsWith('/') && path !== '/' && !path.split('/').includes('..') && !path.includes('\0'), {
    message: 'expected an absolute guest path without ".."',
  })
const notBase64 = /[^A-Za-z0-9+/=]/
/**
 * The same strings as /^[A-Za-z0-9+/]*={0,2}$/, checked ~5x faster: a search for one bad character is much cheaper in
 * V8 than matching a 5 MiB string against an anchored pattern, and this check runs on both ends of every blob chunk.
 */
const isBase64 = (text: string): boolean => {
  if (notBase64.test(text)) return false
  const padding = text.indexOf('=')
  return padding === -1 || (padding >= text.length - 2 && (padding === text.length - 1 || text[text.length - 1] === '='))
}
const base64 = z.string().refine(isBase64, 'expected base64')

export const fileBlobSchema = z.strictObject({
  path: guestPathSchema,
  contentId,
  sizeBytes: z.number().int().nonnegative(),
  dataBase64: base64,
})
export type FileBlob = z.output<typeof fileBlobSchema>

export const runTaskRequestSchema = z.strictObject({
  agreementId: hexSchema,
  jobId: z.string().min(1).max(200),
  taskIndex: z.number().int().nonnegative(),
  /** A fresh id per attempt, so a retried task is a distinct activity. */
  activityId: z.string().regex(/^[A-Za-z0-9-]{1,100}$/, 'expected letters, digits and dashes'),
  runtime: z.enum(['wasi', 'native', 'docker']),
  /** wasi: the module; docker: the image archive (fetched only when the provider lacks the image). */
  packageId: contentId.optional(),
  /** native: the name of a program the provider offers (`hearth.runtime.native.programs`). */
  program: z.string().regex(/^[A-Za-z0-9._+-]{1,100}$/, 'expected a program name such as povray').optional(),
  /** docker: the image's id (sha256 of its config), checked against the archive when it is loaded. */
  imageId: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected an image id sha256:<64 hex digits>').optional(),
  args: z.array(z.string().max(4096)).max(1024),
  env: z.record(z.string().max(256), z.string().max(4096)),
  inputs: z.array(fileBlobSchema).max(1024),
  outputs: z.array(guestPathSchema).max(1024),
  timeoutMs: z.number().int().positive().max(3_600_000),
  maxMemoryBytes: z.number().int().positive(),
  maxOutputBytes: z.number().int().positive(),
})
export type RunTaskRequest = z.output<typeof runTaskRequestSchema>

export const taskResultSchema = z.strictObject({
  agreementId: hexSchema,
  jobId: z.string(),
  taskIndex: z.number().int().nonnegative(),
  activityId: z.string(),
  /** Hash of the canonical request: what the provider says it was asked to run, inputs included. */
  requestHash: hexSchema,
  exitCode: z.number().int(),
  outputs: z.array(fileBlobSchema),
  /** Requested outputs the program did not write. */
  missingOutputs: z.array(guestPathSchema),
  stdoutBase64: base64,
  stderrBase64: base64,
  usage: z.strictObject({ durationMs: z.number().nonnegative(), cpuMs: z.number().nonnegative() }),
  /** Present when the agreed debit-note interval has passed since the provider's last one. */
  debitNote: debitNoteSchema.optional(),
})
export type TaskResult = z.output<typeof taskResultSchema>

const maxActivityBytes = 96 * 1024 * 1024
/**
 * Run-task streams open at once on one connection, each way: a requestor runs at most a few tasks per provider at
 * once (its slot capacity), so 32 leaves room for several jobs, while a peer opening streams to hold frames gets 32, not
 * the 256 of other request/response protocols. (What those streams may buffer is bounded by the node's inbound budget, see net/inbound-budget.ts.)
 */
const maxActivityStreams = 32

/** What run-task and run-tasks share: their limits, signatures both ways, and one stream reused task after task. */
const taskExchange = {
  maxRequestBytes: maxActivityBytes,
  maxResponseBytes: maxActivityBytes,
  // The requestor sets each call's timeout from the task's own deadline; this is the ceiling.
  timeoutMs: 3_700_000,
  signed: true,
  maxConcurrentStreams: maxActivityStreams,
  // A requestor sends its provider task after task: each goes on the stream of the one before.
  session: true,
} as const

export const runTaskProtocol = defineProtocol({
  id: '/hearth/exec/run-task/1',
  request: runTaskRequestSchema,
  response: taskResultSchema,
  ...taskExchange,
})

/** Most tasks one run-tasks request carries. */
export const maxTasksPerBatch = 64

/** One task's answer within a batch: its signed-with-the-batch result, or why it did not run. */
export const batchAnswerSchema = z.union([
  z.strictObject({ ok: z.literal(true), result: taskResultSchema }),
  z.strictObject({ ok: z.literal(false), code: z.string().max(100), message: z.string().max(4000) }),
])
export type BatchAnswer = z.output<typeof batchAnswerSchema>

/**
 * Several small tasks under one agreement in one exchange: one stream and one signature each way instead of one per
 * task, which for tasks of a few milliseconds is most of their cost. Each task is run, checked and billed as if sent
 * alone; the answers come back in the order of the tasks, and the provider's signature over the whole answer binds
 * every result in it.
 */
export const runTasksProtocol = defineProtocol({
  id: '/hearth/exec/run-tasks/1',
  request: z.strictObject({ tasks: z.array(runTaskRequestSchema).min(1).max(maxTasksPerBatch) }),
  response: z.strictObject({ answers: z.array(batchAnswerSchema).max(maxTasksPerBatch) }),
  ...taskExchange,
})

/** Largest chunk one fetch-blob answer carries. */
export const maxBlobChunkBytes = 4 * 1024 * 1024

const fetchBlobRequestSchema = z.strictObject({ contentId, offset: z.number().int().nonnegative(), maxBytes: z.number().int().positive().max(maxBlobChunkBytes) })

/**
 * The provider fetches a package it does not hold (a wasi module, an image archive) from the requestor that asked it
 * to run one, chunk by chunk, so a broken connection costs only the chunk in flight (see transfer.ts). The chunk's
 * bytes follow a small JSON header as a binary frame of their own. The header's `bodyBytes` (see blob-protocol.ts) is
 * the chunk's length; the requester bounds it by the `maxBytes` it asked for.
 */
export const fetchBlobBinaryProtocol = defineBlobProtocol({
  id: '/hearth/exec/fetch-blob/3',
  request: fetchBlobRequestSchema,
  header: z.strictObject({ contentId, totalBytes: z.number().int().nonnegative(), offset: z.number().int().nonnegative() }),
  maxRequestBytes: 1024,
  maxHeaderBytes: 1024,
  maxBodyBytes: maxBlobChunkBytes,
  timeoutMs: 60_000,
})

/** The largest blob one fetch-blob/4 answer may carry: the largest package a provider takes. */
export const maxBlobRangeBytes = 2 * 1024 * 1024 * 1024

/** Largest frame of a fetch-blob/4 body. */
export const blobRangeFrameBytes = 1024 * 1024

/**
 * The provider fetches a package as one range: from an offset (0, or where a broken transfer stopped) to the end, on
 * one stream, the bytes following a small JSON header as frames of up to 1 MiB that the requestor writes as fast as
 * the provider takes them in (see blob-protocol.ts): no stream and no round trip per chunk. The header's `bodyBytes`
 * is the range's length, bounded by the `maxBytes` asked for. Each frame has its own deadline, so the exchange's
 * (the time to the header, and an upper bound on the whole) can be long.
 */
export const fetchBlobRangeProtocol = defineBlobProtocol({
  id: '/hearth/exec/fetch-blob/4',
  request: z.strictObject({ contentId, offset: z.number().int().nonnegative(), maxBytes: z.number().int().positive().max(maxBlobRangeBytes) }),
  header: z.strictObject({ contentId, totalBytes: z.number().int().nonnegative(), offset: z.number().int().nonnegative() }),
  maxRequestBytes: 1024,
  maxHeaderBytes: 1024,
  maxBodyBytes: maxBlobRangeBytes,
  bodyFrameBytes: blobRangeFrameBytes,
  timeoutMs: 3_600_000,
})

/** The same as fetch-blob/3 with the chunk as base64 inside JSON (5x slower); still served for older providers. */
export const fetchBlobProtocol = defineProtocol({
  id: '/hearth/exec/fetch-blob/2',
  request: fetchBlobRequestSchema,
  response: z.strictObject({ contentId, totalBytes: z.number().int().nonnegative(), offset: z.number().int().nonnegative(), dataBase64: base64 }),
  maxRequestBytes: 1024,
  maxResponseBytes: Math.ceil((maxBlobChunkBytes * 4) / 3) + 1024,
  timeoutMs: 60_000,
})
