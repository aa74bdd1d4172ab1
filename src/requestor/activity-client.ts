/**
 * The requestor's side of ExeScript activities: create an activity on a provider under an agreement, send it batches
 * and read their events as they stream in, get files back verified by content id, and terminate it. An activity is
 * AsyncDisposable, so `await using activity = await createActivity(...)` terminates it however the block ends.
 *
 * Aborting a batch (its signal, or leaving the event loop early) cancels it on the provider, which terminates the
 * activity: nothing keeps running that nobody waits for. With a store, the requestor keeps each activity's state too.
 *
 * Paying: with the requestor's `accounts` in the deps, every debit note the provider hands over (or sends while an
 * activity runs) is answered through the agreement's account (requestor-account.ts) with a cumulative voucher, up to
 * what the provider's signed answers and this requestor's own observation justify. Ending an activity does not end
 * its agreement (several activities may share one): call `accounts.account(id).settle()` once done with it, so the
 * provider claims what is owed and releases the rest.
 */
import { randomUUID } from 'node:crypto'
import type { Address } from 'viem'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import type { DebitNote } from '../market/billing.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { Host } from '../net/host.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import { openStream } from '../net/stream-protocol.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import { terminalStates, type ActivityState, type ActivityUsage, type ExeCommand, type ExeEvent } from '../exec/exescript.ts'
import {
  activityBlobProtocol,
  activityCreateProtocol,
  activityDestroyProtocol,
  activityExecProtocol,
  type BatchResult,
} from '../exec/exescript-protocols.ts'
import type { Store } from '../store/store.ts'
import { plausibleUsage, type RequestorAccount, type RequestorAccounts } from './requestor-account.ts'

export interface ActivityClientDeps {
  host: Host
  identity: NodeIdentity
  /** Where this requestor keeps its activities' states (optional). */
  store?: Store
  /** The requestor's accounts: with them, debit notes are paid (without, activities run unpaid, for tests of the protocol). */
  accounts?: RequestorAccounts
}

export interface ActivityAgreement {
  /** The agreement's id (0x…). */
  id: string
  /** The provider's address (from the agreement's terms). */
  provider: Address
  /** Where to reach the provider: a multiaddr from its offer, or its PeerId. */
  target: PeerTarget
}

export interface ActivityOptions {
  /** Largest file a transfer back may deliver (default 64 MiB). */
  maxFileBytes?: number
}

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

export interface ActivityHandle extends AsyncDisposable {
  readonly id: string
  readonly agreementId: string
  /** The state as this requestor last heard it. */
  state(): ActivityState
  /** Makes a blob available to the provider (for deploy's packageId and transfer's blob:…); returns its content id. */
  provide(bytes: Uint8Array): string
  /** Sends a batch; iterate the call (at once, in the same tick) for its events, or just await `result`. */
  exec(batch: ExeCommand[] | unknown[], options?: { signal?: AbortSignal }): ExecCall
  /**
   * Ends the activity on the provider (a no-op once it ended); returns its metered usage when the provider answered,
   * once the debit note that came with the answer (if any) has been answered. The agreement stays open.
   */
  terminate(): Promise<ActivityUsage | undefined>
}

/** Blobs a host serves to providers of its activities; one per host, since a protocol has one handler per node. */
interface BlobServer {
  blobs: Map<string, { bytes: Uint8Array; users: number }>
  allowed: Map<string, number>
  activities: number
}
const servers = new WeakMap<Host, Promise<BlobServer>>()

async function blobServer(host: Host): Promise<BlobServer> {
  let server = servers.get(host)
  if (server === undefined) {
    server = (async () => {
      const state: BlobServer = { blobs: new Map(), allowed: new Map(), activities: 0 }
      await host.handle(activityBlobProtocol, ({ contentId, offset, maxBytes }, ctx) => {
        const blob = state.blobs.get(contentId)
        // Only providers running one of our activities may fetch, and only what we provided.
        if (blob === undefined || (state.allowed.get(ctx.remoteAddress.toLowerCase()) ?? 0) === 0) {
          throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `this requestor offers no blob ${contentId} to you`, { hint: 'blobs are served only to providers of this requestor\'s activities' })
        }
        const bytes = blob.bytes
        const end = Math.min(bytes.length, offset + maxBytes)
        return { contentId, totalBytes: bytes.length, offset, dataBase64: Buffer.from(bytes.subarray(Math.min(offset, end), end)).toString('base64') }
      })
      return state
    })()
    servers.set(host, server)
    server.catch(() => servers.delete(host))
  }
  return server
}

export async function createActivity(deps: ActivityClientDeps, agreement: ActivityAgreement, options: ActivityOptions = {}): Promise<ActivityHandle> {
  const { host, identity, store } = deps
  const maxFileBytes = options.maxFileBytes ?? 64 * 1024 * 1024
  const activityId = randomUUID()
  const peer = agreement.provider.toLowerCase()
  const account: RequestorAccount | undefined = deps.accounts?.account(agreement.id)
  if (account !== undefined && account.provider.toLowerCase() !== peer) {
    throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${agreement.id} is with ${account.provider}, not ${agreement.provider}`, { hint: 'name the agreement\'s own provider' })
  }
  const server = await blobServer(host)
  server.activities++
  server.allowed.set(peer, (server.allowed.get(peer) ?? 0) + 1)
  const provided = new Set<string>()
  let released = false
  const release = (): void => {
    if (released) return
    released = true
    account?.untrackActivity(activityId)
    server.activities--
    server.allowed.set(peer, (server.allowed.get(peer) ?? 1) - 1)
    for (const id of provided) {
      const blob = server.blobs.get(id)
      if (blob !== undefined && --blob.users === 0) server.blobs.delete(id)
    }
  }

  let state: ActivityState = 'New'
  const setState = (next: ActivityState, error?: string): void => {
    state = next
    store?.activities.setState('requestor', activityId, next, error)
  }
  /** Usage a signed answer reported, as far as it is believable; kept in the store and on the agreement's bill. */
  let batches = 0
  const sentCreateAt = performance.now()
  const recordUsage = (signer: Address | undefined, usage: ActivityUsage, ended: boolean): ActivityUsage | undefined => {
    if (signer === undefined) return undefined
    const observed = { lifeMs: performance.now() - sentCreateAt, batches }
    // An ended activity is justified by its final signed report alone, no longer by its life so far.
    if (ended) account?.untrackActivity(activityId)
    if (account !== undefined) return account.reportActivity(activityId, signer, usage, observed)
    if (signer.toLowerCase() !== peer) return undefined
    const kept = plausibleUsage(usage, observed)
    store?.activities.setUsage('requestor', activityId, kept)
    return kept
  }
  const answerNote = (note: DebitNote | undefined): Promise<void> =>
    note === undefined || account === undefined ? Promise.resolve() : account.answer(note).then(() => account.sent()).catch(() => undefined)

  let created
  try {
    created = await host.request(agreement.target, activityCreateProtocol, { agreementId: agreement.id, activityId })
    state = created.state
  } catch (error) {
    release()
    throw error
  }
  store?.activities.create({ role: 'requestor', id: activityId, agreementId: agreement.id, peer: agreement.provider, state, createdAtMs: Date.now() })
  void answerNote(created.debitNote)
  let running: ExecCall | undefined

  function exec(batch: ExeCommand[] | unknown[], execOptions: { signal?: AbortSignal } = {}): ExecCall {
    if (terminalStates.includes(state)) {
      const ended = Promise.reject(new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `activity ${activityId} is ${state}`, { hint: 'create a new activity' }))
      ended.catch(() => undefined)
      return { result: ended, cancel: () => undefined, [Symbol.asyncIterator]: () => ({ next: () => ended }) as AsyncIterator<ExeEvent> }
    }
    const batchId = randomUUID()
    batches++
    store?.activities.addBatch('requestor', activityId, batchId)
    const call = openStream({ libp2p: host.libp2p, identity }, agreement.target, activityExecProtocol, { agreementId: agreement.id, activityId, batchId, commands: batch as Record<string, unknown>[] }, execOptions)
    /** Chunks of files coming back, per command. */
    const chunks = new Map<number, { parts: Buffer[]; bytes: number }>()
    let iterated = false

    const observe = (event: ExeEvent): void => {
      if (event.type === 'state') setState(event.state)
      if (event.type === 'file') {
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

    const result = (async (): Promise<ExecOutcome> => {
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
          setState('Terminated', hearth.shortMessage)
          release()
        }
        throw hearth
      }
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
      setState(outcome.state, outcome.results.find((r) => !r.ok)?.error?.message)
      recordUsage(signer, outcome.usage, terminalStates.includes(outcome.state))
      // Paid off the result's path, in order with the agreement's other vouchers.
      void answerNote(outcome.debitNote)
      if (terminalStates.includes(outcome.state)) release()
      return { ...outcome, files }
    })()
    result.catch(() => undefined)

    const execCall: ExecCall = {
      result,
      cancel: (reason) => call.cancel(reason),
      [Symbol.asyncIterator]() {
        if (iterated) throw new HearthError('HEARTH_ERR_INTERNAL', 'the events of a batch can be read once')
        iterated = true
        const inner = call.events[Symbol.asyncIterator]()
        return {
          async next() {
            const step = await inner.next()
            if (step.done === true) {
              await result
              return step
            }
            try {
              observe(step.value)
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
    // A caller that only awaits the result still gets its files: the events are read here, unless it iterates at once.
    setImmediate(() => {
      if (iterated) return
      void (async () => {
        for await (const _event of execCall) {
          // observed on the way
        }
      })().catch(() => undefined)
    })
    running = execCall
    void result.finally(() => {
      if (running === execCall) running = undefined
    }).catch(() => undefined)
    return execCall
  }

  async function terminate(): Promise<ActivityUsage | undefined> {
    if (terminalStates.includes(state)) {
      release()
      return undefined
    }
    try {
      const answer = await host.exchange(agreement.target, activityDestroyProtocol, { agreementId: agreement.id, activityId })
      setState(answer.response.state)
      const kept = recordUsage(answer.envelope?.signer, answer.response.usage, true)
      await answerNote(answer.response.debitNote)
      return kept ?? answer.response.usage
    } catch (error) {
      // Gone already (a batch ended it, the provider restarted): record what we know.
      setState('Terminated', toHearthError(error).shortMessage)
      return undefined
    } finally {
      running?.cancel('the activity is being terminated')
      release()
    }
  }

  account?.trackActivity(activityId, () => ({ lifeMs: performance.now() - sentCreateAt, batches }), terminate)
  return {
    id: activityId,
    agreementId: agreement.id,
    state: () => state,
    provide(bytes) {
      const id = sha256Hex(bytes)
      if (!provided.has(id)) {
        provided.add(id)
        const blob = server.blobs.get(id)
        if (blob === undefined) server.blobs.set(id, { bytes, users: 1 })
        else blob.users++
      }
      return id
    },
    exec,
    terminate,
    async [Symbol.asyncDispose]() {
      await terminate()
    },
  }
}
