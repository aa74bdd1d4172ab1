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
 *
 * The pieces: an activity's own record as it lives (activity-session.ts), its batches (activity-exec.ts), and the
 * blobs served to its provider (a scope of the requestor's blob server, blob-server.ts: the same server and protocol
 * as jobs' packages).
 */
import { randomUUID } from 'node:crypto'
import type { Address } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { Host } from '../net/host.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import { terminalStates, type ActivityState, type ActivityUsage, type ExeCommand } from '../exec/exescript.ts'
import { activityCreateProtocol, activityDestroyProtocol } from '../exec/exescript-protocols.ts'
import type { Store } from '../store/store.ts'
import type { BlobServer } from './blob-server.ts'
import { execBatch, type ExecCall } from './activity-exec.ts'
import { answerNote, observed, recordUsage, release, setState, type ActivitySession } from './activity-session.ts'
import type { RequestorAccount, RequestorAccounts } from './requestor-account.ts'

export type { ExecCall, ExecOutcome, ReceivedFile } from './activity-exec.ts'

export interface ActivityClientDeps {
  host: Host
  identity: NodeIdentity
  /** Where this requestor keeps its activities' states (optional). */
  store?: Store
  /** The requestor's accounts: with them, debit notes are paid (without, activities run unpaid, for tests of the protocol). */
  accounts?: RequestorAccounts
  /** The requestor's blob server (started), which serves the activity's provider what it provides. */
  blobs: BlobServer
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
  /**
   * The most of the activity's life, in ms from its creation, that its work is justified for (undefined: all of it):
   * a storage holding that failed an audit is paid up to the last audit it passed.
   */
  justifiedLifeMs?: () => number | undefined
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

export async function createActivity(deps: ActivityClientDeps, agreement: ActivityAgreement, options: ActivityOptions = {}): Promise<ActivityHandle> {
  const session = openSession(deps, agreement, randomUUID(), options)
  let created
  try {
    created = await deps.host.request(agreement.target, activityCreateProtocol, { agreementId: agreement.id, activityId: session.activityId })
    session.state = created.state
  } catch (error) {
    release(session)
    throw error
  }
  deps.store?.activities.create({ role: 'requestor', id: session.activityId, agreementId: agreement.id, peer: agreement.provider, state: session.state, createdAtMs: Date.now() })
  void answerNote(session, created.debitNote)
  return handleOf(session)
}

/**
 * A handle on an activity this requestor created before, in an earlier run of its node (a service's replica), to go
 * on with it: batches, its end, and its life justified from its creation on (`known.createdAtMs`), as if the node had
 * never stopped. An activity its provider has ended since answers its next batch with the error that says so.
 */
export function attachActivity(deps: ActivityClientDeps, agreement: ActivityAgreement, known: { id: string; createdAtMs: number; state: ActivityState }, options: ActivityOptions = {}): ActivityHandle {
  const session = openSession(deps, agreement, known.id, options)
  session.state = known.state
  session.sentCreateAt = performance.now() - Math.max(0, Date.now() - known.createdAtMs)
  return handleOf(session)
}

/** An activity's session under `agreement`, before its provider has heard of it (or after this node restarted). */
function openSession(deps: ActivityClientDeps, agreement: ActivityAgreement, activityId: string, options: ActivityOptions): ActivitySession {
  const peer = agreement.provider.toLowerCase()
  const account: RequestorAccount | undefined = deps.accounts?.account(agreement.id)
  if (account !== undefined && account.provider.toLowerCase() !== peer) {
    throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${agreement.id} is with ${account.provider}, not ${agreement.provider}`, { hint: 'name the agreement\'s own provider' })
  }
  const blobs = deps.blobs.openScope()
  blobs.allow(peer)
  return {
    host: deps.host,
    identity: deps.identity,
    store: deps.store,
    account,
    blobs,
    activityId,
    agreementId: agreement.id,
    target: agreement.target,
    peer,
    maxFileBytes: options.maxFileBytes ?? 64 * 1024 * 1024,
    state: 'New',
    batches: 0,
    sentCreateAt: performance.now(),
    released: false,
    running: undefined,
    justifiedLifeMs: options.justifiedLifeMs,
  }
}

/** The handle of a live session: its work is tracked on the agreement's account until it ends. */
function handleOf(session: ActivitySession): ActivityHandle {
  const terminate = (): Promise<ActivityUsage | undefined> => terminateActivity(session)
  session.account?.trackActivity(session.activityId, () => observed(session), terminate)
  return {
    id: session.activityId,
    agreementId: session.agreementId,
    state: () => session.state,
    provide: (bytes) => session.blobs.serve(bytes),
    exec: (batch, execOptions) => execBatch(session, batch, execOptions),
    terminate,
    async [Symbol.asyncDispose]() {
      await terminate()
    },
  }
}

/** Ends the activity on the provider (a no-op once it ended); its metered usage when the provider answered. */
async function terminateActivity(session: ActivitySession): Promise<ActivityUsage | undefined> {
  if (terminalStates.includes(session.state)) {
    release(session)
    return undefined
  }
  try {
    const answer = await session.host.exchange(session.target, activityDestroyProtocol, { agreementId: session.agreementId, activityId: session.activityId })
    setState(session, answer.response.state)
    const kept = recordUsage(session, answer.envelope?.signer, answer.response.usage, true)
    await answerNote(session, answer.response.debitNote)
    return kept ?? answer.response.usage
  } catch (error) {
    // Gone already (a batch ended it, the provider restarted): record what we know.
    setState(session, 'Terminated', toHearthError(error).shortMessage)
    return undefined
  } finally {
    session.running?.cancel('the activity is being terminated')
    release(session)
  }
}
