/**
 * provider/ owns the provider agent: what a lending machine offers, which proposals it signs, how it runs tasks for
 * requestors it has agreements with, which vouchers it accepts, and when it claims them on chain.
 *
 * The agent never works for an agreement whose escrow is not on chain, never accepts a voucher above what it has
 * delivered, and keeps every agreement and voucher in its store so a restart loses no claim.
 *
 * This file wires the agent's parts together: the offer (offering.ts), proposals and cancellations (negotiation.ts),
 * the lending switch (lending.ts), admission of task frames (frame-admission.ts) and of tasks against the owner's
 * bounds (task-admission.ts), programs and packages (programs.ts), running and billing tasks (task-runner.ts),
 * ExeScript activities (activity-service.ts), and each agreement's money (provider-account.ts, payment-handlers.ts).
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Address } from 'viem'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { ProviderPolicy } from '../market/agreement.ts'
import { createMarketNode, type MarketNode } from '../market/market-node.ts'
import { cancelAgreementProtocol, negotiateProtocol } from '../market/market-protocols.ts'
import type { Offer, SignedOffer } from '../market/offer.ts'
import type { Pricing } from '../market/pricing.ts'
import type { Host } from '../net/host.ts'
import { runTaskProtocol, runTasksProtocol } from '../exec/task-protocols.ts'
import type { Runtime } from '../exec/runtime.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import { adaptWasiRuntime } from '../exec/wasi-adapter.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import { debitNoteProtocol, owedProtocol, settleProtocol, voucherProtocol } from '../payment/payment-protocols.ts'
import { serviceNoticeProtocol } from '../exec/exescript-protocols.ts'
import type { Store } from '../store/store.ts'
import { defaultServiceLimits, type ServiceLimits } from './activity-environment.ts'
import { createActivityService, type ActivityService } from './activity-service.ts'
import { createFrameAdmission } from './frame-admission.ts'
import { createLending, type Lending } from './lending.ts'
import { createNegotiation, requestorTarget } from './negotiation.ts'
import { createOffering, type Offering } from './offering.ts'
import { createStorageService, type StorageService } from './storage-service.ts'
import { handlePayments } from './payment-handlers.ts'
import { createPrograms, type Programs, type ProviderRuntimes } from './programs.ts'
import { createProviderAccounts, defaultAccountLimits, type AccountLimits, type ClaimPolicy, type ProviderAccounts } from './provider-account.ts'
import { createTaskAdmission, type RunningTasks } from './task-admission.ts'
import { createTaskRunner } from './task-runner.ts'
import { createWrongResults, type WrongResultsOptions } from './wrong-results.ts'

export { gpuOfferProperties } from './offering.ts'
export type { RunningTasks } from './task-admission.ts'

export interface ProviderAgentInit {
  identity: NodeIdentity
  host: Host
  store: Store
  /** The provider's own chain client and the contracts it accepts payment through. */
  payment: EscrowContext
  runtime: WasiRuntime
  /**
   * More runtimes this provider may offer: `native` programs the owner allows (name → absolute path) and `docker`.
   * Each is offered only when its `available()` says so; otherwise the offer states why not.
   */
  runtimes?: ProviderRuntimes
  /** Packages and activity directories live here. */
  workDir: string
  /** What the provider charges: per accepted task, or Golem's linear model over metered CPU and run time. */
  pricing: Pricing
  threads: number
  memGib: number
  policy?: Partial<ProviderPolicy>
  offerTtlMs?: number
  /** More offer properties: location (`golem.node.geo.country_code`, `hearth.geo.lat`/`lon`), disk, GPUs. */
  properties?: Offer['properties']
  /** The provider's conditions on demands, in the constraint language. */
  constraints?: string
  /** This node's market part (offer book, gossip, sync); one is made when absent. */
  market?: MarketNode
  /** Bounds on the package cache (default 8 GiB and 256 packages); least recently used packages go first. */
  packageCache?: { maxBytes?: number; maxEntries?: number }
  /**
   * Ways to misbehave, for the devnet's failure tests: never answer proposals; return wrong results (with probability
   * `rate`, a completed task's outputs — its stdout when it has none — are changed before the result is hashed and
   * signed: correctly signed, and wrong).
   */
  misbehave?: {
    silentNegotiation?: boolean
    wrongResults?: WrongResultsOptions
    /** Offers more than the machine has: this many threads, this CPU score whatever it measured. */
    overclaim?: { threads?: number; cpuScore?: number }
    /** Reports this many times the metered CPU and run time (billed under linear prices). */
    inflateUsage?: number
    /** Asks this many times what the delivered work costs in its debit notes. */
    inflateNotes?: number
    /** Adds this many bytes of stdout to every result, beyond the task's output limit. */
    oversizeResults?: number
    /** Holds every result back: the answer never comes. */
    stallResults?: boolean
  }
  /**
   * When to claim vouchers besides the end of each agreement: as soon as the unclaimed amount reaches `thresholdWei`
   * (none by default), and always `beforeExpirySec` before an escrow expires (default 600 s, chain time), checked
   * every `checkEveryMs` (default 30 s), with failed claims retried and claims counted after `confirmations` blocks.
   * Outstanding vouchers are also claimed when the agent starts. See provider-account.ts.
   */
  claimPolicy?: Partial<ClaimPolicy>
  /** How much unpaid work the provider risks per agreement, and how it checks escrows; see provider-account.ts. */
  accountLimits?: Partial<AccountLimits>
  /** Where failed claims and ended agreements are reported. */
  log?(message: string): void
  /** How often a running ExeScript activity's work is billed (default 10 s). */
  activityMeterEveryMs?: number
  /**
   * Hosting long-running services (replicas started by the `serve` command, reached through the provider): off
   * unless the owner turns it on, with each replica's limits (defaults: defaultServiceLimits), offered as
   * `hearth.services.enabled`; how long a replica keeps serving after its requestor is told that this machine is
   * taken back (`noticeMs`, default 0: it ends at once, the requestor told all the same); and the TCP port of direct
   * links to replicas (`directPort`, default any free port; false: gateways use libp2p tunnels only).
   */
  services?: { enabled: boolean; limits?: Partial<ServiceLimits>; noticeMs?: number; directPort?: number | false }
  /**
   * Disk lent for storage: `offeredGib` at `perGibHourWei` (wei per GiB-hour), pieces kept in `dir`, and an owner's
   * pieces kept `graceSec` after its last storage agreement ended (default a day). See storage-service.ts.
   */
  storage?: { offeredGib: number; perGibHourWei: string; dir: string; graceSec?: number }
  /** Where claimed earnings are moved (a cold wallet); default: they stay with the node's key. */
  payoutAddress?: Address
  /**
   * Bounds across all running tasks: the memory their requests may ask for together, and the disk their inputs and
   * outputs may take together. A task that would pass one is refused with a retryable error (none by default).
   */
  admission?: { maxTotalMemoryBytes?: number; maxTotalDiskBytes?: number }
}

export interface ProviderStats {
  tasksRun: number
  tasksFailed: number
  agreements: number
  /** Results this provider deliberately got wrong (misbehave.wrongResults). */
  wrongResults: number
}

export interface ProviderAgent {
  readonly address: Address
  readonly market: MarketNode
  start(): Promise<void>
  stop(): Promise<void>
  currentOffer(): SignedOffer | undefined
  stats(): ProviderStats
  /**
   * Stops taking work: the offer is withdrawn (republished to expire within seconds), proposals and new tasks are
   * refused with HEARTH_ERR_PROVIDER_PAUSED (retryable elsewhere), and with `handBack` service replicas are ended (their
   * owners told first and served for `noticeMs` more, default the services' notice, so they place them elsewhere
   * before they end) and running tasks are aborted and answered with the same error, so their requestors run them on
   * another provider. Agreements stay valid.
   */
  pause(reason: string, options?: { handBack?: boolean; noticeMs?: number }): Promise<void>
  /** Takes work again: a fresh offer is published. */
  resume(): Promise<void>
  lending(): { paused: boolean; reason: string | undefined }
  running(): RunningTasks
  /** Claims the newest unclaimed voucher of every agreement (used at start, so a restart loses nothing). */
  claimOutstanding(options?: { release?: boolean }): Promise<{ agreementId: string; txHash: string; paidWei: bigint }[]>
  /** Every agreement's money: work delivered, exposure, vouchers, claims. */
  readonly accounts: ProviderAccounts
}

/** The agreements' accounts, with debit notes and asks for what is owed sent to where each requestor was last seen. */
function accountsFor(init: ProviderAgentInit): ProviderAccounts {
  const { host, store } = init
  return createProviderAccounts({
    address: init.identity.address,
    store,
    payment: init.payment,
    ...(init.accountLimits === undefined ? {} : { limits: init.accountLimits }),
    ...(init.claimPolicy === undefined ? {} : { claimPolicy: init.claimPolicy }),
    ...(init.log === undefined ? {} : { log: init.log }),
    ...(init.payoutAddress === undefined ? {} : { payoutAddress: init.payoutAddress }),
    pushNote: async (note, requestor) => (await host.request(requestorTarget(host, store, requestor), debitNoteProtocol, note)).voucher,
    askOwed: async (agreementId, requestor) => (await host.request(requestorTarget(host, store, requestor), owedProtocol, { agreementId })).voucher,
  })
}

interface ActivityParts {
  wasi: Runtime<Uint8Array>
  programs: Programs
  offering: Offering
  lending: Lending
  accounts: ProviderAccounts
  storage: StorageService | undefined
}

/** ExeScript activities: the same checks as a task before any work, billed as one task each. */
function activityServiceFor(init: ProviderAgentInit, { wasi, programs, offering, lending, accounts, storage }: ActivityParts): ActivityService {
  const offered = offering.offeredRuntimes()
  return createActivityService({
    host: init.host,
    identity: init.identity,
    store: init.store,
    activitiesDir: join(init.workDir, 'exescript'),
    packages: programs.packages,
    fetching: programs.fetching,
    runtimes: {
      wasi,
      wasiHandlers: init.runtime,
      ...(offered.includes('native') && init.runtimes?.native !== undefined ? { native: init.runtimes.native } : {}),
      ...(offered.includes('docker') && init.runtimes?.docker !== undefined ? { docker: init.runtimes.docker } : {}),
    },
    account: (id, requestor) => {
      lending.ensureLending()
      return accounts.account(id, requestor)
    },
    ...(programs.loadedImages === undefined ? {} : { loadedImages: programs.loadedImages }),
    ...(init.activityMeterEveryMs === undefined ? {} : { meterEveryMs: init.activityMeterEveryMs }),
    ...(init.services?.enabled === true ? { services: { ...defaultServiceLimits, ...init.services.limits } } : {}),
    ...(init.services?.directPort === undefined ? {} : { directPort: init.services.directPort }),
    notify: (requestor, notice) => init.host.request(requestorTarget(init.host, init.store, requestor), serviceNoticeProtocol, notice, { timeoutMs: 5_000 }),
    ...(storage === undefined ? {} : { storage }),
  })
}

export function createProviderAgent(init: ProviderAgentInit): ProviderAgent {
  const { identity, host, store } = init
  const lending = createLending()
  const wrongResults = init.misbehave?.wrongResults === undefined ? undefined : createWrongResults(init.misbehave.wrongResults)
  const market = init.market ?? createMarketNode({ host })
  const accounts = accountsFor(init)
  const wasi = adaptWasiRuntime(init.runtime)
  const programs = createPrograms({ host, workDir: init.workDir, wasi, runtimes: init.runtimes, packageCache: init.packageCache })
  const offering = createOffering({
    identity,
    host,
    market,
    payment: init.payment,
    lending,
    runtimes: init.runtimes,
    pricing: init.pricing,
    threads: init.threads,
    memGib: init.memGib,
    maxUnpaidTasks: init.accountLimits?.maxUnpaidTasks ?? defaultAccountLimits.maxUnpaidTasks,
    properties: init.services?.enabled === true ? { ...init.properties, 'hearth.services.enabled': true } : init.properties,
    constraints: init.constraints,
    offerTtlMs: init.offerTtlMs ?? 5 * 60_000,
    overclaim: init.misbehave?.overclaim,
    storage: init.storage === undefined ? undefined : { offeredGib: init.storage.offeredGib, perGibHourWei: init.storage.perGibHourWei },
  })
  const storage = init.storage === undefined ? undefined : createStorageService({
    host,
    dir: init.storage.dir,
    offeredBytes: Math.floor(init.storage.offeredGib * 1024 ** 3),
    ...(init.storage.graceSec === undefined ? {} : { graceMs: init.storage.graceSec * 1000 }),
    ...(init.log === undefined ? {} : { log: init.log }),
  })
  const negotiation = createNegotiation({ identity, host, store, accounts, lending, offering, policy: init.policy, silent: init.misbehave?.silentNegotiation === true })
  const admitTaskFrame = createFrameAdmission({ store, accounts, lending })
  const admission = createTaskAdmission({ threads: init.threads, admission: init.admission })
  const activitiesDir = join(init.workDir, 'activities')
  const tasks = createTaskRunner({
    host,
    accounts,
    lending,
    admission,
    programs,
    activitiesDir,
    wrongResults,
    misbehave: init.misbehave,
  })
  let started = false
  let activityService: ActivityService | undefined

  return {
    address: identity.address,
    market,
    currentOffer: () => offering.current(),
    stats: () => {
      const { tasksRun, tasksFailed, wrongResults } = tasks.counts()
      return { tasksRun, tasksFailed, agreements: negotiation.agreements(), wrongResults }
    },

    async pause(reason, options = {}) {
      lending.pause(reason)
      offering.stopRepublishing()
      if (options.handBack === true) {
        admission.handBackAll()
        await activityService?.handBackServers(reason, options.noticeMs ?? init.services?.noticeMs ?? 0)
      }
      // Offers cannot be recalled from other nodes' books: a short-lived replacement makes ours lapse within seconds.
      if (started) await offering.publish({ ttlMs: 2000 }).catch(() => undefined)
    },

    async resume() {
      if (lending.pausedReason() === undefined) return
      lending.resume()
      if (!started) return
      await offering.publish().catch(() => undefined)
      offering.keepPublished()
    },

    lending: () => ({ paused: lending.pausedReason() !== undefined, reason: lending.pausedReason() }),
    running: () => admission.running(),

    async start() {
      await mkdir(activitiesDir, { recursive: true })
      await offering.detect()
      if (init.market === undefined) await market.start()
      await negotiation.handle()
      await tasks.handle(admitTaskFrame)
      await storage?.start()
      activityService = activityServiceFor(init, { wasi, programs, offering, lending, accounts, storage })
      await activityService.start()
      await handlePayments(host, accounts, admitTaskFrame)
      // Checks the escrow contract's claim grace, reconciles claims left by an earlier run, claims what is owed, and
      // asks requestors for vouchers signed while this provider was away.
      await accounts.start()
      started = true
      if (lending.pausedReason() === undefined) await offering.publish()
      if (lending.pausedReason() === undefined) offering.keepPublished()
      // The offer carries the addresses to dial: published again (once things settle) when they change, as when a
      // relay slot is reserved or a public address is confirmed.
      offering.watchAddresses()
    },

    async stop() {
      offering.unwatchAddresses()
      offering.stopRepublishing()
      await activityService?.stop()
      await storage?.stop()
      await accounts.stop()
      for (const protocol of [negotiateProtocol, cancelAgreementProtocol, runTaskProtocol, runTasksProtocol, voucherProtocol, settleProtocol]) {
        await host.unhandle(protocol).catch(() => undefined)
      }
      await tasks.close()
      if (init.market === undefined) await market.stop()
    },

    claimOutstanding: (options) => accounts.claimOutstanding(options),
    accounts,
  }
}
