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
import { lstat, mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Address } from 'viem'
import { HearthError } from '../errors.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { AgreementTerms } from '../market/agreement.ts'
import type { DebitNote } from '../market/billing.ts'
import type { Usage } from '../market/pricing.ts'
import type { ProviderAccount, Reservation } from './provider-account.ts'
import type { Host } from '../net/host.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import { serveStreamProtocol, type StreamServer } from '../net/stream-protocol.ts'
import { createActivity, type Activity, type ActivityState } from '../exec/exescript.ts'
import {
  activityBlobProtocol,
  activityCreateProtocol,
  activityDestroyProtocol,
  activityExecProtocol,
  exeChunkBytes,
  maxActivityBlobChunkBytes,
  type BatchResult,
} from '../exec/exescript-protocols.ts'
import type { DockerRuntime } from '../exec/docker-runtime.ts'
import type { LoadedImages } from '../exec/docker-images.ts'
import type { PackageCache } from '../exec/package-cache.ts'
import type { Runtime } from '../exec/runtime.ts'
import { fetchResumable } from '../exec/transfer.ts'
import type { Store } from '../store/store.ts'

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
  runtimes: { wasi: Runtime<Uint8Array>; native?: { runtime: Runtime<string>; programs: Record<string, string> }; docker?: { runtime: DockerRuntime } }
  limits?: Partial<ActivityServiceLimits>
  /** How often running activities' life and CPU are billed (default 10 s). */
  meterEveryMs?: number
  /** Images this provider loaded from requestors' archives (untagged, removed with their archives). */
  loadedImages?: LoadedImages
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

interface Live {
  activity: Activity
  agreementId: string
  requestor: Address
  terms: AgreementTerms
  account: ProviderAccount
  /** The activity's place under the agreement's task and exposure bounds; completed (billed) when it ends. */
  reservation: Reservation
  /** Usage already billed while it ran. */
  metered: Usage
  /** Lets go of the activity's image, kept on the engine while the activity lives. */
  releaseImage?: () => void
  idleTimer: NodeJS.Timeout | undefined
}

/** What an activity used beyond what was billed already, in whole milliseconds. */
function usageSince(activity: Activity, metered: Usage): Usage {
  const usage = activity.usage()
  return {
    tasks: 0,
    cpuMs: Math.max(0, Math.round(usage.cpuSec * 1000) - metered.cpuMs),
    durationMs: Math.max(0, Math.round(usage.durationSec * 1000) - metered.durationMs),
  }
}

export function createActivityService(init: ActivityServiceInit): ActivityService {
  const { host, store } = init
  const limits: ActivityServiceLimits = { ...defaults, ...init.limits }
  const live = new Map<string, Live>()
  const { packages, fetching } = init
  /** The newest debit note per agreement not yet handed to its requestor (notes are cumulative: newer covers older). */
  const undelivered = new Map<string, DebitNote>()
  let server: StreamServer | undefined
  let meterTimer: NodeJS.Timeout | undefined

  /** Bills what each running activity used since the last round; a note that falls due goes to its requestor now. */
  function meterRunning(): void {
    for (const entry of live.values()) {
      const delta = usageSince(entry.activity, entry.metered)
      if (delta.cpuMs === 0 && delta.durationMs === 0) continue
      entry.metered = { tasks: 0, cpuMs: entry.metered.cpuMs + delta.cpuMs, durationMs: entry.metered.durationMs + delta.durationMs }
      const note = entry.account.meter(delta)
      if (note !== undefined) entry.account.deliver(note)
    }
  }

  /** The debit note to hand over with an answer under `agreementId`, if any; it is handed over once. */
  function takeNote(agreementId: string): { debitNote?: DebitNote } {
    const note = undelivered.get(agreementId)
    if (note === undefined) return {}
    undelivered.delete(agreementId)
    return { debitNote: note }
  }

  /** The blob with this id: from the package cache, else fetched from the requestor and checked. */
  function blobFile(contentId: string, from: PeerTarget, maxBytes = limits.maxPackageBytes): Promise<string> {
    const running = fetching.get(contentId)
    if (running !== undefined) return running
    const path = packages.pathOf(contentId)
    const fetched = (async () => {
      if ((await lstat(path).catch(() => undefined))?.isFile() === true) {
        await packages.touch(contentId)
        return path
      }
      await fetchResumable({
        contentId,
        path,
        maxBytes,
        chunkBytes: maxActivityBlobChunkBytes,
        fetchChunk: async (offset, maxBytes) => {
          const chunk = await host.request(from, activityBlobProtocol, { contentId, offset, maxBytes })
          return { totalBytes: chunk.totalBytes, offset: chunk.offset, data: Buffer.from(chunk.dataBase64, 'base64') }
        },
      })
      return path
    })().finally(() => fetching.delete(contentId))
    fetching.set(contentId, fetched)
    return fetched
  }

  function record(id: string, state: ActivityState, error?: string): void {
    store.activities.setState('provider', id, state, error)
  }

  /** Ends an activity: its sandbox stops, its directory goes, its work is metered and billed. */
  async function end(id: string, reason: string, state: 'Terminated' | 'Unresponsive' = 'Terminated'): Promise<void> {
    const entry = live.get(id)
    if (entry === undefined) return
    live.delete(id)
    if (entry.idleTimer !== undefined) clearTimeout(entry.idleTimer)
    await entry.activity.terminate(reason, state)
    entry.releaseImage?.()
    store.activities.setUsage('provider', id, entry.activity.usage())
    // The rest of its work, and the activity itself as one task.
    const note = entry.reservation.complete({ ...usageSince(entry.activity, entry.metered), tasks: 1 })
    if (note !== undefined) undelivered.set(entry.agreementId, note)
  }

  function armIdle(id: string): void {
    const entry = live.get(id)
    if (entry === undefined) return
    if (entry.idleTimer !== undefined) clearTimeout(entry.idleTimer)
    entry.idleTimer = setTimeout(() => void end(id, `no batch for ${limits.idleTimeoutMs} ms`).catch(() => undefined), limits.idleTimeoutMs)
    entry.idleTimer.unref()
  }

  /** The live activity `id` of `requestor` under `agreementId`, or a clear error. */
  function owned(id: string, agreementId: string, requestor: Address): Live {
    const entry = live.get(id)
    if (entry === undefined || entry.requestor.toLowerCase() !== requestor.toLowerCase() || entry.agreementId !== agreementId) {
      const known = store.activities.get('provider', id)
      const ended = known !== undefined && known.peer.toLowerCase() === requestor.toLowerCase() ? ` (it is ${known.state}${known.lastError === null ? '' : `: ${known.lastError}`})` : ''
      throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `this provider runs no activity ${id} of yours under agreement ${agreementId}${ended}`, {
        hint: 'create an activity first; an ended activity cannot be reused',
      })
    }
    return entry
  }

  async function create(agreementId: string, activityId: string, requestor: Address, from: PeerTarget): Promise<ActivityState> {
    const account = init.account(agreementId, requestor)
    const terms = account.terms
    if (live.size >= limits.maxActivities) {
      throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `this provider already runs ${limits.maxActivities} activities`, { hint: 'try again later or with another provider' })
    }
    if ([...live.values()].filter((entry) => entry.agreementId === agreementId).length >= limits.maxActivitiesPerAgreement) {
      throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `agreement ${agreementId} already has ${limits.maxActivitiesPerAgreement} activities`, { hint: 'destroy one first' })
    }
    if (live.has(activityId) || store.activities.get('provider', activityId) !== undefined) {
      throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `activity ${activityId} exists already`, { hint: 'use a fresh activity id' })
    }
    // Counted as a task of the agreement from now on, under the same checks and caps as a task.
    const reservation = await account.reserve()
    const dir = join(init.activitiesDir, `${activityId}-${randomUUID().slice(0, 8)}`)
    await mkdir(dir, { recursive: true }).catch((error: unknown) => {
      reservation.cancel()
      throw error
    })
    const activity = createActivity({
      id: activityId,
      dir,
      environment: {
        async resolveDeploy(deploy) {
          if (terms.runtime === 'wasi') {
            if (deploy.packageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'a wasi deploy names no package', { hint: 'deploy { packageId: "sha256:…" }' })
            const packageId = deploy.packageId
            const module = await packages.using(packageId, async () => readFile(await blobFile(packageId, from)))
            return { runtime: init.runtimes.wasi as Runtime<unknown>, program: new Uint8Array(module), argv0: 'program' }
          }
          if (terms.runtime === 'native') {
            const native = init.runtimes.native
            const path = deploy.program === undefined ? undefined : native?.programs[deploy.program]
            if (native === undefined || path === undefined) {
              throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this provider does not offer the native program ${deploy.program ?? '(none named)'}`, {
                hint: 'name one of the programs in the offer (hearth.runtime.native.programs)',
              })
            }
            return { runtime: native.runtime as Runtime<unknown>, program: path, argv0: path }
          }
          const docker = init.runtimes.docker
          if (terms.runtime !== 'docker' || docker === undefined) {
            throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', `this provider runs no ${terms.runtime} activities`, { hint: 'agree on a runtime the offer names (golem.runtime.name)' })
          }
          if (deploy.imageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'a docker deploy names no image', { hint: 'deploy { imageId: "sha256:…", packageId: "sha256:…" (its archive) }' })
          const imageId = deploy.imageId
          const loaded = init.loadedImages
          if (loaded === undefined) throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', 'this provider keeps no record of loaded images', { hint: 'run docker activities on a provider agent' })
          // Kept on the engine while the activity lives: an eviction must not remove it between load and use.
          const release = await loaded.hold(imageId)
          const entry = live.get(activityId)
          if (entry !== undefined) {
            entry.releaseImage?.()
            entry.releaseImage = release
          }
          if (!(await docker.runtime.hasImage(imageId))) {
            const archiveId = deploy.packageId
            if (archiveId === undefined) throw new HearthError('HEARTH_ERR_EXEC_IMAGE_MISSING', `this provider does not hold image ${imageId} and no archive was named`, { hint: 'name the image archive as packageId' })
            // Checked twice: by content id on arrival, and by image id when the engine loads it (untagged).
            await packages.using(archiveId, async () => loaded.load(archiveId, await blobFile(archiveId, from), imageId))
          }
          // The container's command is the whole argv.
          return { runtime: docker.runtime as Runtime<unknown>, program: { image: imageId }, argv0: undefined }
        },
        // Inputs are held to the transfer limit while they arrive, not only once they are here.
        fetchBlob: (contentId) => blobFile(contentId, from, limits.maxTransferBytes),
      },
      limits: {
        maxMemoryBytes: limits.maxMemoryBytes,
        maxRunMs: terms.taskTimeoutMs,
        maxOutputBytes: limits.maxOutputBytes,
        maxTransferBytes: limits.maxTransferBytes,
        chunkBytes: exeChunkBytes,
      },
      onState: (state, detail) => record(activityId, state, detail.error),
    })
    store.activities.create({ role: 'provider', id: activityId, agreementId, peer: requestor, state: 'New', createdAtMs: Date.now() })
    live.set(activityId, { activity, agreementId, requestor, terms, account, reservation, metered: { tasks: 0, cpuMs: 0, durationMs: 0 }, idleTimer: undefined })
    armIdle(activityId)
    return 'New'
  }

  return {
    active: () => live.size,

    async start() {
      // Directories left by a crash belong to activities that are over.
      await rm(init.activitiesDir, { recursive: true, force: true })
      await mkdir(init.activitiesDir, { recursive: true })
      // What was running when this provider last stopped cannot be resumed: say so instead of leaving it "Ready".
      store.activities.endUnfinished('provider', 'Unresponsive', 'the provider restarted while the activity was running')
      meterTimer = setInterval(meterRunning, init.meterEveryMs ?? 10_000)
      meterTimer.unref()

      await host.handle(activityCreateProtocol, async ({ agreementId, activityId }, ctx) => {
        const state = await create(agreementId, activityId, ctx.remoteAddress, ctx.peerId)
        return { agreementId, activityId, state, ...takeNote(agreementId) }
      })

      await host.handle(activityDestroyProtocol, async ({ agreementId, activityId }, ctx) => {
        const entry = owned(activityId, agreementId, ctx.remoteAddress)
        await end(activityId, 'the requestor destroyed it')
        return { activityId, state: entry.activity.state(), usage: entry.activity.usage(), ...takeNote(agreementId) }
      })

      server = await serveStreamProtocol({ libp2p: host.libp2p, identity: init.identity }, activityExecProtocol, async (request, ctx) => {
        const entry = owned(request.activityId, request.agreementId, ctx.remoteAddress)
        // The agreement may have ended or gone unpaid since the activity was created.
        await init.account(request.agreementId, ctx.remoteAddress).check()
        store.activities.addBatch('provider', request.activityId, request.batchId)
        if (entry.idleTimer !== undefined) clearTimeout(entry.idleTimer)
        let outcome
        try {
          outcome = await entry.activity.exec(request.commands, { emit: ctx.emit, signal: ctx.signal })
        } catch (error) {
          // An aborted batch terminated the activity: meter and forget it.
          if (entry.activity.state() === 'Terminated') await end(request.activityId, 'the batch was aborted')
          else armIdle(request.activityId)
          throw error
        }
        store.activities.setUsage('provider', request.activityId, outcome.usage)
        if (outcome.state === 'Terminated') await end(request.activityId, 'the requestor terminated it')
        else armIdle(request.activityId)
        const result: BatchResult = {
          agreementId: request.agreementId,
          activityId: request.activityId,
          batchId: request.batchId,
          state: outcome.state,
          results: outcome.results,
          usage: outcome.usage,
          ...takeNote(request.agreementId),
        }
        return result
      })
    },

    async stop() {
      if (meterTimer !== undefined) clearInterval(meterTimer)
      await host.unhandle(activityCreateProtocol).catch(() => undefined)
      await host.unhandle(activityDestroyProtocol).catch(() => undefined)
      // Batches in progress are cancelled (their requestors get an error) before their activities are ended.
      await server?.close()
      server = undefined
      await Promise.allSettled([...live.keys()].map((id) => end(id, 'the provider stopped')))
      await rm(init.activitiesDir, { recursive: true, force: true }).catch(() => undefined)
    },
  }
}
