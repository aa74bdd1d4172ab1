/**
 * The provider's side of ExeScript activities: it creates activities for requestors holding a live agreement with
 * this provider, runs their batches (exescript.ts) with events streamed back, keeps every state change in the store,
 * meters each activity (golem.usage.duration_sec and cpu_sec) and destroys activities when asked, when idle too long,
 * or when the provider stops. Activities are billed through their agreement's account (provider-account.ts): each
 * counts as one task against the agreement's maxTasks and the provider's cap on unpaid work from its creation, its
 * life and CPU are metered while it runs (a debit note that falls due then is sent to the requestor at once), and
 * the rest when it ends, whose note is handed over on the next answer under that agreement (the destroy answer, a
 * batch's result, a create answer); the requestor pays each with a voucher. Activities that were running when the provider
 * went down are marked Unresponsive at the next start: the requestor sees that they ended, nothing is lost silently.
 */
import { randomUUID } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Address } from 'viem'
import type { z } from 'zod'
import { HearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { ProviderAccount, Reservation } from './provider-account.ts'
import type { Activity } from '../exec/exescript-model.ts'
import type { AgreementTerms } from '../market/agreement.ts'
import { storageRuntime } from '../market/storage-terms.ts'
import type { Host } from '../net/host.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { StreamContext, StreamServer } from '../net/stream-protocol.ts'
import { createActivity, terminalStates, type ActivityState } from '../exec/exescript.ts'
import {
  activityCreateProtocol,
  activityDestroyProtocol,
  activityExecProtocol,
  exeChunkBytes,
  serviceConnectProtocol,
  type ServiceNotice,
  type BatchResult,
} from '../exec/exescript-protocols.ts'
import type { LoadedImages } from '../exec/docker-images.ts'
import type { PackageCache } from '../exec/package-cache.ts'
import type { Store } from '../store/store.ts'
import { activityEnvironment, type ActivityEnvironmentInit, type ActivityRuntimes, type ServiceLimits } from './activity-environment.ts'
import { createLiveActivities, type LiveActivities } from './live-activities.ts'
import { serveServiceDirect, type ServiceDirect } from './service-direct.ts'

export interface ActivityServiceInit {
  host: Host
  identity: NodeIdentity
  store: Store
  /** Activity directories live under here. */
  activitiesDir: string
  /**
   * The provider's package cache and its transfers in flight, shared with tasks: one set of bounds and evictions, a
   * package in use by either is never removed, and a package is fetched once whoever needs it first.
   */
  packages: PackageCache
  fetching: Map<string, Promise<string>>
  /**
   * The account of an agreement this requestor holds with the provider (throws when there is none, or when the
   * provider takes no work now): every activity is admitted, checked before each batch, and billed through it.
   */
  account(agreementId: string, requestor: Address): ProviderAccount
  runtimes: ActivityRuntimes
  limits?: Partial<ActivityServiceLimits>
  /** How often running activities' life and CPU are billed (default 10 s). */
  meterEveryMs?: number
  /** Images this provider loaded from requestors' archives (untagged, removed with their archives). */
  loadedImages?: LoadedImages
  /**
   * Hosting services (the `serve` command) is the owner's opt-in: the limits of each replica, or undefined (default)
   * to host none.
   */
  services?: ServiceLimits
  /** Tells a replica's requestor that its activity ends soon (service-notice); rejects when it cannot be reached. */
  notify?(requestor: Address, notice: ServiceNotice): Promise<unknown>
  /**
   * The TCP port of the direct links to replicas (service-direct.ts; default any free port), or false to offer none:
   * gateways then reach replicas through libp2p tunnels only.
   */
  directPort?: number | false
  /** The disk this provider lends: activities of storage agreements are its holdings (storage-service.ts). */
  storage?: { hold(activityId: string, requestor: Address, terms: AgreementTerms): Activity }
}

export interface ActivityServiceLimits {
  maxActivities: number
  maxActivitiesPerAgreement: number
  maxMemoryBytes: number
  maxOutputBytes: number
  maxTransferBytes: number
  maxPackageBytes: number
  /** An activity without a batch for this long is terminated. */
  idleTimeoutMs: number
}

export interface ActivityService {
  start(): Promise<void>
  /** Terminates every activity and stops serving. */
  stop(): Promise<void>
  /** Activities not yet ended. */
  active(): number
  /**
   * Ends every activity that runs a server (a service's replica), as running tasks are handed back when the owner
   * takes the machine back: each requestor is first told (service-notice) and its replica served for `noticeMs` more
   * (default 0), so it can start a replacement elsewhere that serves before this one ends; each ends with `reason`,
   * which its requestor reads as the activity's last error. Resolves once they ended (early when the service stops).
   * Other activities go on (they end by the idle timeout if no batch comes).
   */
  handBackServers(reason: string, noticeMs?: number): Promise<void>
}

const defaults: ActivityServiceLimits = {
  maxActivities: 64,
  maxActivitiesPerAgreement: 16,
  maxMemoryBytes: 512 * 1024 * 1024,
  maxOutputBytes: 64 * 1024 * 1024,
  maxTransferBytes: 256 * 1024 * 1024,
  maxPackageBytes: 2 * 1024 * 1024 * 1024,
  idleTimeoutMs: 10 * 60_000,
}

/** Runs one batch of a live activity, its events streamed back; the activity ends when the batch terminates it. */
async function runBatch(
  init: ActivityServiceInit,
  live: LiveActivities,
  request: z.output<typeof activityExecProtocol.request>,
  ctx: StreamContext<typeof activityExecProtocol.event>,
): Promise<BatchResult> {
  const { store } = init
  const entry = live.owned(request.activityId, request.agreementId, ctx.remoteAddress)
  // The agreement may have ended or gone unpaid since the activity was created.
  await init.account(request.agreementId, ctx.remoteAddress).check()
  store.activities.addBatch('provider', request.activityId, request.batchId)
  live.disarmIdle(entry)
  let outcome
  try {
    outcome = await entry.activity.exec(request.commands, { emit: ctx.emit, signal: ctx.signal })
  } catch (error) {
    // An aborted batch terminated the activity: meter and forget it.
    if (entry.activity.state() === 'Terminated') await live.end(request.activityId, 'the batch was aborted')
    else live.armIdle(request.activityId)
    throw error
  }
  store.activities.setUsage('provider', request.activityId, outcome.usage)
  if (outcome.state === 'Terminated') await live.end(request.activityId, 'the requestor terminated it')
  // A replica's server is watched by its requestor's health checks, not by the batches it is sent.
  else if (entry.activity.served() === undefined) live.armIdle(request.activityId)
  const result: BatchResult = {
    agreementId: request.agreementId,
    activityId: request.activityId,
    batchId: request.batchId,
    state: outcome.state,
    results: outcome.results,
    usage: outcome.usage,
    ...live.takeNote(request.agreementId),
  }
  return result
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done(): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

/** Ends the activities that run servers, each requestor told first and its replica served `noticeMs` more. */
async function endServers(init: ActivityServiceInit, live: LiveActivities, stopping: AbortSignal, how: { reason: string; noticeMs: number; ending: string }): Promise<void> {
  const { reason, noticeMs, ending } = how
  const serving = live.ids().filter((id) => live.get(id)?.activity.served() !== undefined)
  await Promise.allSettled(serving.map(async (id) => {
    const entry = live.get(id)
    if (entry === undefined) return
    const notice = { agreementId: entry.agreementId, activityId: id, endsInMs: noticeMs, reason }
    // A requestor that cannot be reached finds its replica gone at its next health check, as without notice.
    await init.notify?.(entry.requestor, notice).catch(() => undefined)
    if (noticeMs > 0) await abortableDelay(noticeMs, stopping)
    await live.end(id, `${ending}: ${reason}`)
  }))
}

/** What an activity's environment draws on: the provider's packages, runtimes and limits. */
function environmentOf(init: ActivityServiceInit, limits: ActivityServiceLimits): ActivityEnvironmentInit {
  return {
    host: init.host,
    packages: init.packages,
    fetching: init.fetching,
    runtimes: init.runtimes,
    loadedImages: init.loadedImages,
    maxPackageBytes: limits.maxPackageBytes,
    maxTransferBytes: limits.maxTransferBytes,
    services: init.services,
  }
}

/** A storage agreement's activity: a holding of disk, metered by time, never idle while it lives. */
function hold(init: ActivityServiceInit, live: LiveActivities, ids: { agreementId: string; activityId: string; requestor: Address }, { account, reservation }: { account: ProviderAccount; reservation: Reservation }): ActivityState {
  const { agreementId, activityId, requestor } = ids
  if (init.storage === undefined) {
    reservation.cancel()
    throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', 'this provider lends no storage', { hint: 'place storage with a provider whose offer names the runtime storage' })
  }
  const activity = init.storage.hold(activityId, requestor, account.terms)
  init.store.activities.create({ role: 'provider', id: activityId, agreementId, peer: requestor, state: 'Ready', createdAtMs: Date.now() })
  live.add(activityId, { activity, agreementId, requestor, terms: account.terms, account, reservation, metered: { tasks: 0, cpuMs: 0, durationMs: 0 }, idleTimer: undefined })
  live.disarmIdle(live.get(activityId)!)
  return 'Ready'
}

/** The way into replica `activityId`'s server, for its requestor and the gateways its serve command named. */
function reachServer(live: LiveActivities, activityId: string, from: Address): { connect(): Promise<Duplex> } {
  const entry = live.get(activityId)
  const served = entry?.activity.served()
  if (entry === undefined || served === undefined) {
    throw new HearthError('HEARTH_ERR_SERVICE_NOT_HOSTED', `this provider runs no server for activity ${activityId}`, { hint: 'the replica ended or moved: ask its owner for the current replicas' })
  }
  const peer = from.toLowerCase()
  if (peer !== entry.requestor.toLowerCase() && !served.gateways.some((gateway) => gateway.toLowerCase() === peer)) {
    throw new HearthError('HEARTH_ERR_SERVICE_NOT_ALLOWED', `peer ${from} may not connect to activity ${activityId}`, { hint: 'only the service owner and the gateways it names may connect' })
  }
  return served.program
}

export function createActivityService(init: ActivityServiceInit): ActivityService {
  const { host, store } = init
  const limits: ActivityServiceLimits = { ...defaults, ...init.limits }
  const live = createLiveActivities({ store, idleTimeoutMs: limits.idleTimeoutMs })
  const environment = environmentOf(init, limits)
  let server: StreamServer | undefined
  let meterTimer: NodeJS.Timeout | undefined
  /** Aborted by stop(): replicas serving out a notice end at once. */
  const stopping = new AbortController()

  const handBackServers = (reason: string, noticeMs = 0, ending = 'handed back'): Promise<void> => endServers(init, live, stopping.signal, { reason, noticeMs, ending })
  let direct: ServiceDirect | undefined

  const reach = (activityId: string, from: Address): { connect(): Promise<Duplex> } => reachServer(live, activityId, from)

  async function create(agreementId: string, activityId: string, requestor: Address, from: PeerTarget): Promise<ActivityState> {
    const account = init.account(agreementId, requestor)
    const terms = account.terms
    if (live.size() >= limits.maxActivities) {
      throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `this provider already runs ${limits.maxActivities} activities`, { hint: 'try again later or with another provider' })
    }
    if (live.countFor(agreementId) >= limits.maxActivitiesPerAgreement) {
      throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `agreement ${agreementId} already has ${limits.maxActivitiesPerAgreement} activities`, { hint: 'destroy one first' })
    }
    if (live.has(activityId) || store.activities.get('provider', activityId) !== undefined) {
      throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `activity ${activityId} exists already`, { hint: 'use a fresh activity id' })
    }
    // Counted as a task of the agreement from now on, under the same checks and caps as a task.
    const reservation = await account.reserve()
    if (terms.runtime === storageRuntime) return hold(init, live, { agreementId, activityId, requestor }, { account, reservation })
    const dir = join(init.activitiesDir, `${activityId}-${randomUUID().slice(0, 8)}`)
    await mkdir(dir, { recursive: true }).catch((error: unknown) => {
      reservation.cancel()
      throw error
    })
    const activity = createActivity({
      id: activityId,
      dir,
      environment: activityEnvironment(environment, terms, from, (release) => {
        const entry = live.get(activityId)
        if (entry !== undefined) {
          entry.releaseImage?.()
          entry.releaseImage = release
        }
      }),
      limits: {
        maxMemoryBytes: limits.maxMemoryBytes,
        maxRunMs: terms.taskTimeoutMs,
        maxOutputBytes: limits.maxOutputBytes,
        maxTransferBytes: limits.maxTransferBytes,
        chunkBytes: exeChunkBytes,
      },
      onState: (state, detail) => {
        store.activities.setState('provider', activityId, state, detail.error)
        // Ended from inside (its server exited): billed and forgotten now, not at the requestor's destroy.
        if (terminalStates.includes(state) && live.has(activityId)) queueMicrotask(() => void live.end(activityId, detail.error ?? 'the activity ended').catch(() => undefined))
      },
    })
    store.activities.create({ role: 'provider', id: activityId, agreementId, peer: requestor, state: 'New', createdAtMs: Date.now() })
    live.add(activityId, { activity, agreementId, requestor, terms, account, reservation, metered: { tasks: 0, cpuMs: 0, durationMs: 0 }, idleTimer: undefined })
    return 'New'
  }

  return {
    active: () => live.size(),

    handBackServers,

    async start() {
      // Directories left by a crash belong to activities that are over.
      await rm(init.activitiesDir, { recursive: true, force: true })
      await mkdir(init.activitiesDir, { recursive: true })
      // What was running when this provider last stopped cannot be resumed: say so instead of leaving it "Ready".
      store.activities.endUnfinished('provider', 'Unresponsive', 'the provider restarted while the activity was running')
      meterTimer = setInterval(() => live.meterRunning(), init.meterEveryMs ?? 10_000)
      meterTimer.unref()

      await host.handle(activityCreateProtocol, async ({ agreementId, activityId }, ctx) => {
        const state = await create(agreementId, activityId, ctx.remoteAddress, ctx.peerId)
        return { agreementId, activityId, state, ...live.takeNote(agreementId) }
      })

      await host.handle(activityDestroyProtocol, async ({ agreementId, activityId }, ctx) => {
        const entry = live.owned(activityId, agreementId, ctx.remoteAddress)
        await live.end(activityId, 'the requestor destroyed it')
        return { activityId, state: entry.activity.state(), usage: entry.activity.usage(), ...live.takeNote(agreementId) }
      })

      server = await host.serveStream(activityExecProtocol, (request, ctx) => runBatch(init, live, request, ctx))
      await host.serveTunnel(serviceConnectProtocol, async ({ activityId }, ctx) => reach(activityId, ctx.remoteAddress).connect())
      if (init.services !== undefined && init.directPort !== false) {
        direct = await serveServiceDirect({ host, reach, ...(init.directPort === undefined ? {} : { port: init.directPort }) })
      }
    },

    async stop() {
      stopping.abort()
      if (meterTimer !== undefined) clearInterval(meterTimer)
      await host.unhandle(activityCreateProtocol).catch(() => undefined)
      await host.unhandle(activityDestroyProtocol).catch(() => undefined)
      await host.unhandle(serviceConnectProtocol).catch(() => undefined)
      await direct?.close()
      direct = undefined
      // Batches in progress are cancelled (their requestors get an error) before their activities are ended.
      await server?.close()
      server = undefined
      // Replicas' requestors are told at once, so they place them elsewhere without waiting for a failed check.
      await handBackServers('the provider stopped', 0, 'ended')
      await Promise.allSettled(live.ids().map((id) => live.end(id, 'the provider stopped')))
      await rm(init.activitiesDir, { recursive: true, force: true }).catch(() => undefined)
    },
  }
}
