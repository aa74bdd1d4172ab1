/**
 * The messages of ExeScript activities (see exescript.ts). A requestor creates an activity under an agreement, sends
 * it batches over a streaming protocol (events while the batch runs, then a signed result), and destroys it; the
 * provider fetches packages and input blobs it lacks from the requestor by content id, over fetch-blob as a task's
 * package is fetched (task-protocols.ts, transfer.ts).
 *
 * Billing rides on the answers: when an activity's end gives the provider a debit note for the agreement (activities
 * are metered as they end), the next answer under that agreement (create, a batch's result, destroy) carries it, and
 * the requestor answers with a voucher on /hearth/payment/voucher/1. The field is optional, so answers without it
 * (from providers that bill otherwise) stay valid.
 */
import { z } from 'zod'
import { hexSchema } from '../identity/wire-schemas.ts'
import { debitNoteSchema } from '../market/billing.ts'
import { directGrantSchema } from '../net/direct-link.ts'
import { defineProtocol } from '../net/protocol.ts'
import { defineStreamProtocol } from '../net/stream-protocol.ts'
import { defineTunnelProtocol } from '../net/tunnel.ts'
import { activityStates, activityUsageSchema, batchSchema, commandResultSchema, exeEventSchema } from './exescript.ts'

export const activityIdSchema = z.string().regex(/^[A-Za-z0-9-]{1,100}$/, 'expected letters, digits and dashes')
const batchIdSchema = z.string().regex(/^[A-Za-z0-9-]{1,100}$/, 'expected letters, digits and dashes')

export const activityCreateProtocol = defineProtocol({
  id: '/hearth/exec/activity-create/1',
  request: z.strictObject({ agreementId: hexSchema, activityId: activityIdSchema }),
  response: z.strictObject({ agreementId: hexSchema, activityId: activityIdSchema, state: z.enum(activityStates), debitNote: debitNoteSchema.optional() }),
  maxRequestBytes: 4096,
  maxResponseBytes: 4096,
  timeoutMs: 30_000,
  signed: true,
})

export const activityDestroyProtocol = defineProtocol({
  id: '/hearth/exec/activity-destroy/1',
  request: z.strictObject({ agreementId: hexSchema, activityId: activityIdSchema }),
  response: z.strictObject({ activityId: activityIdSchema, state: z.enum(activityStates), usage: activityUsageSchema, debitNote: debitNoteSchema.optional() }),
  maxRequestBytes: 4096,
  maxResponseBytes: 4096,
  timeoutMs: 30_000,
  signed: true,
})

export const batchResultSchema = z.strictObject({
  agreementId: hexSchema,
  activityId: activityIdSchema,
  batchId: batchIdSchema,
  state: z.enum(activityStates),
  results: z.array(commandResultSchema).max(256),
  usage: activityUsageSchema,
  /** The provider's newest debit note under the agreement not yet handed to the requestor. */
  debitNote: debitNoteSchema.optional(),
})
export type BatchResult = z.output<typeof batchResultSchema>

/** Bytes of stdout/stderr or file per event; a base64 event frame stays well under maxEventBytes. */
export const exeChunkBytes = 32 * 1024

export const activityExecProtocol = defineStreamProtocol({
  id: '/hearth/exec/activity-exec/1',
  request: z.strictObject({ agreementId: hexSchema, activityId: activityIdSchema, batchId: batchIdSchema, commands: batchSchema }),
  event: exeEventSchema,
  result: batchResultSchema,
  maxRequestBytes: 1024 * 1024,
  maxEventBytes: 64 * 1024,
  maxResultBytes: 8 * 1024 * 1024,
  maxTotalBytes: 1024 * 1024 * 1024,
  maxEvents: 200_000,
  // A batch may run as long as a task may; the requestor also sees a frame at least every few seconds.
  timeoutMs: 3_700_000,
  idleTimeoutMs: 30_000,
  window: 64,
})

/**
 * A connection to the server a replica's activity runs (the `serve` command): the opener names the activity; the
 * provider lets in the activity's requestor and the gateways its serve command named, and joins the tunnel to a new
 * TCP connection to the server's port inside its sandbox. The bytes are the server's protocol (HTTP), unread.
 */
export const serviceConnectProtocol = defineTunnelProtocol({
  id: '/hearth/service/connect/1',
  open: z.strictObject({ activityId: activityIdSchema }),
  maxOpenBytes: 1024,
  openTimeoutMs: 15_000,
  // A keep-alive connection a gateway holds open between requests; gateways close theirs well before.
  idleTimeoutMs: 5 * 60_000,
  maxConcurrentStreams: 1024,
})

/**
 * A direct link to a replica's server (net/direct-link.ts): the provider grants a ticket to the peers the connect
 * tunnel lets in, the gateway then connects over TCP and TLS with the ticket's key, and libp2p stays out of the data
 * path. Unsigned: the ticket binds nobody, and the connection it comes over is authenticated and encrypted.
 */
export const serviceDirectProtocol = defineProtocol({
  id: '/hearth/service/direct/2',
  request: z.strictObject({ activityId: activityIdSchema }),
  response: directGrantSchema,
  maxRequestBytes: 1024,
  maxResponseBytes: 8 * 1024,
  timeoutMs: 10_000,
})

/**
 * A provider's notice to a replica's requestor that it will end the replica's activity in `endsInMs` (its owner took
 * the machine back, or it is stopping): the requestor starts a replacement elsewhere at once, so that it serves before
 * this one ends. Signed by the provider; the requestor acts only on a notice from the provider of that agreement.
 */
export const serviceNoticeProtocol = defineProtocol({
  id: '/hearth/service/notice/1',
  request: z.strictObject({
    agreementId: hexSchema,
    activityId: activityIdSchema,
    endsInMs: z.number().int().min(0).max(600_000),
    reason: z.string().max(500),
  }),
  response: z.strictObject({ moving: z.boolean() }),
  maxRequestBytes: 2048,
  maxResponseBytes: 256,
  timeoutMs: 10_000,
  signed: true,
})
export type ServiceNotice = z.output<typeof serviceNoticeProtocol.request>
