/**
 * One batch of an ExeScript activity (activity-client.ts): sent to the provider, its events read as they stream in
 * (the caller's iteration, or a reader of its own when the caller only awaits the result), the files a `transfer`
 * brings back put together and checked against the content ids the provider stated, and the batch's signed result
 * turned into the activity's state, its usage and the debit note to answer.
 */
import { randomUUID } from 'node:crypto'
import type { Address } from 'viem'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import { terminalStates, type ExeCommand, type ExeEvent, type exeEventSchema } from '../exec/exescript.ts'
import { activityExecProtocol, type BatchResult, type batchResultSchema } from '../exec/exescript-protocols.ts'
import type { StreamCall } from '../net/stream-protocol.ts'
import { answerNote, recordUsage, release, setState, type ActivitySession } from './activity-session.ts'

/** A file a `transfer` command brought back, checked against the content id the provider stated. */
export interface ReceivedFile {
  index: number
  contentId: string
  bytes: Uint8Array
}

export interface ExecOutcome extends BatchResult {
  files: ReceivedFile[]
}

export interface ExecCall extends AsyncIterable<ExeEvent> {
  /** The batch's result once it ends; rejects with a HearthError (a cancelled batch: HEARTH_ERR_NET_REMOTE). */
  readonly result: Promise<ExecOutcome>
  /** Cancels the batch; the provider terminates the activity. */
  cancel(reason?: string): void
}

/** One batch's stream to the provider. */
type BatchStream = StreamCall<typeof exeEventSchema, typeof batchResultSchema>

/** Chunks of files coming back, per command. */
type Chunks = Map<number, { parts: Buffer[]; bytes: number }>

/** Sends a batch; iterate the call (at once, in the same tick) for its events, or just await `result`. */
export function execBatch(session: ActivitySession, batch: ExeCommand[] | unknown[], execOptions: { signal?: AbortSignal } = {}): ExecCall {
  const { state, activityId } = session
  if (terminalStates.includes(state)) {
    const ended = Promise.reject(new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `activity ${activityId} is ${state}`, { hint: 'create a new activity' }))
    ended.catch(() => undefined)
    return { result: ended, cancel: () => undefined, [Symbol.asyncIterator]: () => ({ next: () => ended }) as AsyncIterator<ExeEvent> }
  }
  const batchId = randomUUID()
  session.batches++
  session.store?.activities.addBatch('requestor', activityId, batchId)
  const call = session.host.openStream(session.target, activityExecProtocol, { agreementId: session.agreementId, activityId, batchId, commands: batch as Record<string, unknown>[] }, execOptions)
  const chunks: Chunks = new Map()
  const result = batchResult(session, call, batch, chunks)
  result.catch(() => undefined)
  const reading = { iterated: false }
  const execCall = eventsOf(session, call, result, chunks, reading)
  // A caller that only awaits the result still gets its files: the events are read here, unless it iterates at once.
  setImmediate(() => {
    if (reading.iterated) return
    void (async () => {
      for await (const _event of execCall) {
        // observed on the way
      }
    })().catch(() => undefined)
  })
  session.running = execCall
  void result.finally(() => {
    if (session.running === execCall) session.running = undefined
  }).catch(() => undefined)
  return execCall
}

/** What an event says to this requestor: the activity's state, or a chunk of a file coming back. */
function observe(session: ActivitySession, chunks: Chunks, event: ExeEvent): void {
  if (event.type === 'state') setState(session, event.state)
  if (event.type === 'file') {
    const { maxFileBytes } = session
    const entry = chunks.get(event.index) ?? { parts: [], bytes: 0 }
    const data = Buffer.from(event.dataBase64, 'base64')
    if (event.offset !== entry.bytes) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `file chunk of command ${event.index} at offset ${event.offset}, expected ${entry.bytes}`)
    entry.bytes += data.length
    if (entry.bytes > maxFileBytes) {
      throw new HearthError('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', `the file of command ${event.index} is over ${maxFileBytes} bytes`, { hint: 'raise maxFileBytes, or transfer smaller files' })
    }
    entry.parts.push(data)
    chunks.set(event.index, entry)
  }
}

/** The batch's result once it ends, with its files; the activity's state, usage and debit note taken from it. */
async function batchResult(session: ActivitySession, call: BatchStream, batch: ExeCommand[] | unknown[], chunks: Chunks): Promise<ExecOutcome> {
  let outcome: BatchResult
  let signer: Address
  try {
    const answered = await call.result
    outcome = answered.result
    signer = answered.envelope.signer
  } catch (error) {
    const hearth = toHearthError(error)
    // A refusal before the batch ran leaves the activity as it was; any other failure (cancelled, aborted, timed
    // out, the provider stopping or gone) ended the batch mid-way, and with it the activity.
    const remoteCode = typeof hearth.details?.remoteCode === 'string' ? hearth.details.remoteCode : ''
    const refused = /^HEARTH_ERR_(EXEC_BATCH_INVALID|EXEC_ACTIVITY_STATE|MARKET_|PAYMENT_|PROVIDER_|SIGNATURE_|NET_MESSAGE_)/.test(remoteCode)
    if (!refused) {
      setState(session, 'Terminated', hearth.shortMessage)
      release(session)
    }
    throw hearth
  }
  const files = receivedFiles(outcome, batch, chunks)
  setState(session, outcome.state, outcome.results.find((r) => !r.ok)?.error?.message)
  recordUsage(session, signer, outcome.usage, terminalStates.includes(outcome.state))
  // Paid off the result's path, in order with the agreement's other vouchers.
  void answerNote(session, outcome.debitNote)
  if (terminalStates.includes(outcome.state)) release(session)
  return { ...outcome, files }
}

/** The files the batch's transfers to `requestor:` brought back, each checked against the content id stated. */
function receivedFiles(outcome: BatchResult, batch: ExeCommand[] | unknown[], chunks: Chunks): ReceivedFile[] {
  const files: ReceivedFile[] = []
  for (const command of outcome.results) {
    const sent = (batch[command.index] as { transfer?: { to?: unknown } } | undefined)?.transfer
    if (command.command !== 'transfer' || !command.ok || sent?.to !== 'requestor:') continue
    const bytes = Buffer.concat(chunks.get(command.index)?.parts ?? [])
    if (command.contentId === undefined || sha256Hex(bytes) !== command.contentId || bytes.length !== command.sizeBytes) {
      throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the file of command ${command.index} does not match the content id ${command.contentId ?? '(none)'} the provider stated`, {
        hint: 'the provider sent a broken file; do not trust its result',
      })
    }
    files.push({ index: command.index, contentId: command.contentId, bytes })
  }
  return files
}

/** The call as the caller sees it: its events, read once (`reading.iterated` says whether), each observed on the way. */
function eventsOf(session: ActivitySession, call: BatchStream, result: Promise<ExecOutcome>, chunks: Chunks, reading: { iterated: boolean }): ExecCall {
  return {
    result,
    cancel: (reason) => call.cancel(reason),
    [Symbol.asyncIterator]() {
      if (reading.iterated) throw new HearthError('HEARTH_ERR_INTERNAL', 'the events of a batch can be read once')
      reading.iterated = true
      const inner = call.events[Symbol.asyncIterator]()
      return {
        async next() {
          const step = await inner.next()
          if (step.done === true) {
            await result
            return step
          }
          try {
            observe(session, chunks, step.value)
          } catch (error) {
            call.cancel(isHearthError(error) ? error.shortMessage : String(error))
            throw error
          }
          return step
        },
        async return() {
          await inner.return?.()
          return { value: undefined, done: true }
        },
      }
    },
  }
}
