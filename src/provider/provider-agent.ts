/**
 * provider/ owns the provider agent: what a lending machine offers, which proposals it signs, how it runs tasks for
 * requestors it has agreements with, which vouchers it accepts, and when it claims them on chain.
 *
 * The agent never works for an agreement whose escrow is not on chain, never accepts a voucher above what it has
 * delivered, and keeps every agreement and voucher in its store so a restart loses no claim.
 */
import { randomUUID } from 'node:crypto'
import { lstat, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import type { Address, Hex } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { signPayload, verifySigned } from '../identity/signed.ts'
import { agreementId, reviewProposal, type Agreement, type AgreementTerms, type ProviderPolicy } from '../market/agreement.ts'
import { createMarketNode, type MarketNode } from '../market/market-node.ts'
import { cancelAgreementProtocol, negotiateProtocol } from '../market/market-protocols.ts'
import { createOffer, offerId, type Offer, type SignedOffer } from '../market/offer.ts'
import type { Host } from '../net/host.ts'
import type { RequestContext } from '../net/protocol.ts'
import type { z } from 'zod'
import { measureCpuScore } from './cpu-score.ts'
import { createActivityService, type ActivityService } from './activity-service.ts'
import { createWrongResults, type WrongResultsOptions } from './wrong-results.ts'
import { pricingProperties, type Pricing } from '../market/pricing.ts'
import { createProviderAccounts, defaultAccountLimits, type AccountLimits, type ClaimPolicy, type ProviderAccounts } from './provider-account.ts'

type NegotiateAnswer = z.input<typeof negotiateProtocol.response>
import {
  maxBlobChunkBytes,
  runTaskProtocol,
  runTasksProtocol,
  type FileBlob,
  type RunTaskRequest,
  type TaskResult,
} from '../exec/activity-protocols.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import { blobChunks, fetchResumable } from '../exec/transfer.ts'
import { createPackageCache } from '../exec/package-cache.ts'
import { detectGpus, type GpuInfo } from '../exec/gpu.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import type { Runtime } from '../exec/runtime.ts'
import { adaptWasiRuntime } from '../exec/wasi-adapter.ts'
import type { NativeRuntime } from '../exec/native-runtime.ts'
import type { DockerRuntime } from '../exec/docker-runtime.ts'
import { createLoadedImages } from '../exec/docker-images.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import { debitNoteProtocol, owedProtocol, settleProtocol, voucherProtocol } from '../payment/payment-protocols.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { AdmitContext } from '../net/inbound-guard.ts'
import type { Store } from '../store/store.ts'

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
  runtimes?: { native?: { runtime: NativeRuntime; programs: Record<string, string> }; docker?: { runtime: DockerRuntime } }
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
  /** Where claimed earnings are moved (a cold wallet); default: they stay with the node's key. */
  payoutAddress?: Address
  /**
   * Bounds across all running tasks: the memory their requests may ask for together, and the disk their inputs and
   * outputs may take together. A task that would pass one is refused with a retryable error (none by default).
   */
  admission?: { maxTotalMemoryBytes?: number; maxTotalDiskBytes?: number }
}

/** Tasks running now and what they hold; `childTasks` run in processes of their own (native, docker). */
export interface RunningTasks {
  tasks: number
  childTasks: number
  memoryBytes: number
  diskBytes: number
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
   * refused with HEARTH_ERR_PROVIDER_PAUSED (retryable elsewhere), and with `handBack` running tasks are aborted and
   * answered with the same error, so their requestors run them on another provider. Agreements stay valid.
   */
  pause(reason: string, options?: { handBack?: boolean }): Promise<void>
  /** Takes work again: a fresh offer is published. */
  resume(): Promise<void>
  lending(): { paused: boolean; reason: string | undefined }
  running(): RunningTasks
  /** Claims the newest unclaimed voucher of every agreement (used at start, so a restart loses nothing). */
  claimOutstanding(options?: { release?: boolean }): Promise<{ agreementId: string; txHash: string; paidWei: bigint }[]>
  /** Every agreement's money: work delivered, exposure, vouchers, claims. */
  readonly accounts: ProviderAccounts
}

/** The host path of a guest path; the schema already refuses '..', this keeps that true whatever the caller. */
function insideRoot(rootDir: string, guestPath: string): string {
  const hostPath = resolve(rootDir, '.' + guestPath)
  if (!hostPath.startsWith(rootDir + sep)) {
    throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `guest path ${guestPath} leaves the task directory`)
  }
  return hostPath
}

/** The GPUs a task of an agreement granting `count` may use: the first `count` this machine has. */
function gpuGrant(count: number | undefined): { gpus?: number[] } {
  return count === undefined ? {} : { gpus: Array.from({ length: count }, (_, index) => index) }
}

/** What an offer says about the machine's GPUs; `hearth.inf.gpu.count` is 0 where there are none. */
export function gpuOfferProperties(gpus: readonly GpuInfo[]): Offer['properties'] {
  const memoryMib = gpus.map((gpu) => gpu.memoryMib).filter((m): m is number => m !== undefined)
  return {
    'hearth.inf.gpu.count': gpus.length,
    ...(gpus.length === 0 ? {} : { 'hearth.inf.gpu.model': gpus.map((gpu) => gpu.model) }),
    // The smallest card bounds what one task can count on.
    ...(memoryMib.length === 0 ? {} : { 'hearth.inf.gpu.mem.gib': Math.floor((Math.min(...memoryMib) / 1024) * 10) / 10 }),
  }
}

/** Largest package (module or image archive) a provider takes. */
const maxPackageBytes = 2 * 1024 * 1024 * 1024

/** An agreement whose escrow is not open this long after it was signed lapses: it holds none of the provider's slots. */
const unbackedLapseMs = 120_000

const defaultPolicy: ProviderPolicy = { maxConcurrentAgreements: 16, maxAgreementSec: 24 * 3600, minDebitNoteIntervalSec: 0, maxDebitNoteIntervalSec: 300, maxPaymentTimeoutSec: 600 }

export function createProviderAgent(init: ProviderAgentInit): ProviderAgent {
  const { identity, host, store, payment } = init
  const wasiRuntime = adaptWasiRuntime(init.runtime)
  let offeredRuntimes: string[] = ['wasi']
  let unavailableRuntimes: string[] = []
  const policy: ProviderPolicy = { ...defaultPolicy, ...init.policy }
  const offerTtlMs = init.offerTtlMs ?? 5 * 60_000
  const offers = new Map<string, SignedOffer>()
  let current: SignedOffer | undefined
  let republishTimer: NodeJS.Timeout | undefined
  const stats: ProviderStats = { tasksRun: 0, tasksFailed: 0, agreements: 0, wrongResults: 0 }
  const wrongResults = init.misbehave?.wrongResults === undefined ? undefined : createWrongResults(init.misbehave.wrongResults)
  const market = init.market ?? createMarketNode({ host })
  /** Where a requestor can be reached: connected now, or at the addresses it had when it signed. */
  const requestorTarget = (requestor: Address): PeerTarget => {
    const known = store.peers.get(requestor)
    if (known === undefined) throw new HearthError('HEARTH_ERR_NET_DIAL', `this provider does not know where requestor ${requestor} is`)
    if (host.peers().some((peer) => peer.toString() === known.peerId)) return known.peerId
    const address = known.multiaddrs[0]
    return address === undefined ? known.peerId : `${address}/p2p/${known.peerId}`
  }
  const accounts: ProviderAccounts = createProviderAccounts({
    address: identity.address,
    store,
    payment,
    ...(init.accountLimits === undefined ? {} : { limits: init.accountLimits }),
    ...(init.claimPolicy === undefined ? {} : { claimPolicy: init.claimPolicy }),
    ...(init.log === undefined ? {} : { log: init.log }),
    ...(init.payoutAddress === undefined ? {} : { payoutAddress: init.payoutAddress }),
    pushNote: async (note, requestor) => (await host.request(requestorTarget(requestor), debitNoteProtocol, note)).voucher,
    askOwed: async (agreementId, requestor) => (await host.request(requestorTarget(requestor), owedProtocol, { agreementId })).voucher,
  })
  let cpuScore = 0
  let gpuProperties: Offer['properties'] = {}
  const packagesDir = join(init.workDir, 'packages')
  // Images loaded from requestors' archives leave with those archives (only ours, only unused, never forced).
  const loadedImages = init.runtimes?.docker === undefined ? undefined : createLoadedImages({ runtime: init.runtimes.docker.runtime, file: join(packagesDir, 'loaded-images.json') })
  const packages = createPackageCache({
    dir: packagesDir,
    maxBytes: init.packageCache?.maxBytes ?? 8 * 1024 ** 3,
    maxEntries: init.packageCache?.maxEntries ?? 256,
    onEvict: async (contentId) => void (await loadedImages?.archiveEvicted(contentId)),
  })
  const fetching = new Map<string, Promise<string>>()
  const activitiesDir = join(init.workDir, 'activities')
  let paused: string | undefined
  let started = false
  /** Running tasks, each with what it holds and a way to hand it back. */
  const runningTasks = new Map<string, { memoryBytes: number; diskBytes: number; child: boolean; abort: AbortController }>()

  function pausedError(): HearthError {
    return new HearthError('HEARTH_ERR_PROVIDER_PAUSED', `this provider is not taking work now: ${paused ?? 'paused'}`, {
      hint: 'run the task on another provider, or try this one later',
      details: { reason: paused ?? 'paused' },
    })
  }

  /** Refuses a task that would take the running tasks past the owner's memory or disk bound. */
  function admit(request: RunTaskRequest): { memoryBytes: number; diskBytes: number } {
    const memoryBytes = request.maxMemoryBytes
    const diskBytes = request.inputs.reduce((sum, input) => sum + input.sizeBytes, 0) + request.maxOutputBytes
    let memoryInUse = 0
    let diskInUse = 0
    let childTasks = 0
    for (const task of runningTasks.values()) {
      memoryInUse += task.memoryBytes
      diskInUse += task.diskBytes
      if (task.child) childTasks++
    }
    const { maxTotalMemoryBytes, maxTotalDiskBytes } = init.admission ?? {}
    const over =
      maxTotalMemoryBytes !== undefined && memoryInUse + memoryBytes > maxTotalMemoryBytes
        ? `memory: ${memoryInUse} bytes in use + ${memoryBytes} asked > ${maxTotalMemoryBytes} lent`
        : maxTotalDiskBytes !== undefined && diskInUse + diskBytes > maxTotalDiskBytes
          ? `disk: ${diskInUse} bytes in use + ${diskBytes} asked > ${maxTotalDiskBytes} lent`
          : undefined
    // A task asking more than all the owner lends never fits here: not busy, or its requestor would wait for room forever.
    const never = (maxTotalMemoryBytes !== undefined && memoryBytes > maxTotalMemoryBytes) || (maxTotalDiskBytes !== undefined && diskBytes > maxTotalDiskBytes)
    if (over !== undefined && never) {
      throw new HearthError('HEARTH_ERR_PROVIDER_TOO_SMALL', `this provider has no room for the task now (${over}) and never will: the task alone asks more than it lends to all its tasks together`, {
        hint: 'run the task on a provider that lends more, or ask for less memory (maxMemoryBytes) or output (maxOutputBytes)',
        details: { memoryBytes, diskBytes, maxTotalMemoryBytes, maxTotalDiskBytes },
      })
    }
    if (over !== undefined) {
      throw new HearthError('HEARTH_ERR_PROVIDER_BUSY', `this provider has no room for the task now (${over})`, {
        hint: 'run the task on another provider, or try this one once its running tasks finish',
        details: { memoryInUse, diskInUse, memoryBytes, diskBytes },
      })
    }
    // Programs and containers run in processes of their own, one core each at most: no more at once than the threads lent.
    if (request.runtime !== 'wasi' && childTasks >= init.threads) {
      throw new HearthError('HEARTH_ERR_PROVIDER_BUSY', `this provider has no room for the task now (${childTasks} of its ${init.threads} threads run tasks)`, {
        hint: 'run the task on another provider, or try this one once its running tasks finish',
        details: { childTasks, threads: init.threads },
      })
    }
    return { memoryBytes, diskBytes }
  }

  let addressesTimer: NodeJS.Timeout | undefined
  function onAddressesChanged(): void {
    if (addressesTimer !== undefined) clearTimeout(addressesTimer)
    addressesTimer = setTimeout(() => {
      addressesTimer = undefined
      const published = current?.payload.multiaddrs ?? []
      const now = host.multiaddrs()
      if (paused !== undefined || (published.length === now.length && published.every((a) => now.includes(a)))) return
      void publishOffer().catch(() => undefined)
    }, 500)
    addressesTimer.unref()
  }

  async function publishOffer(options: { ttlMs?: number } = {}): Promise<void> {
    const multiaddrs = host.multiaddrs()
    const relayed = multiaddrs.length > 0 && multiaddrs.every((address) => address.includes('/p2p-circuit'))
    // Behind a cone NAT a requestor behind its own NAT punches a direct connection; behind a symmetric one (or where
    // no relay could tell) all bulk data goes through the relay.
    const nat = relayed ? await host.natKind().catch(() => undefined) : undefined
    current = await createOffer({
      identity,
      multiaddrs,
      properties: {
        // Announced through a relay only (behind a NAT, no port forward): requestors may rank or filter on it, e.g.
        // with the constraint (hearth.net.relayOnly=false): relay only is slower for bulk data.
        'hearth.net.relayed': relayed,
        'hearth.net.relayOnly': relayed && nat !== 'cone',
        'golem.runtime.name': offeredRuntimes,
        ...(offeredRuntimes.includes('native') ? { 'hearth.runtime.native.programs': Object.keys(init.runtimes?.native?.programs ?? {}) } : {}),
        ...(unavailableRuntimes.length === 0 ? {} : { 'hearth.runtime.unavailable': unavailableRuntimes }),
        'golem.inf.cpu.threads': init.misbehave?.overclaim?.threads ?? init.threads,
        'golem.inf.mem.gib': init.memGib,
        ...pricingProperties(init.pricing),
        'hearth.inf.cpu.score': init.misbehave?.overclaim?.cpuScore ?? cpuScore,
        // Work it delivers before a voucher must cover it: a requestor sizes its batches to keep within it.
        'hearth.payment.maxUnpaidTasks': init.accountLimits?.maxUnpaidTasks ?? defaultAccountLimits.maxUnpaidTasks,
        ...gpuProperties,
        ...init.properties,
      },
      constraints: init.constraints ?? '',
      pricing: init.pricing,
      payment: { chainId: payment.client.chainId, escrow: payment.escrowAddress, token: payment.tokenAddress },
      ttlMs: options.ttlMs ?? offerTtlMs,
    })
    const id = offerId(current.payload)
    offers.set(id, current)
    for (const [key, offer] of offers) if (offer.payload.expiresAtMs <= Date.now()) offers.delete(key)
    await market.publish(current)
  }

  /** Approved agreements still running; those past their expiry are marked expired on the way. */
  async function activeAgreements(nowMs: number): Promise<number> {
    let active = 0
    for (const record of store.agreements.list({ state: 'approved' })) {
      if (record.role !== 'provider') continue
      const terms = (record.document as Agreement).terms
      if (terms.expiresAtSec * 1000 <= nowMs) {
        store.agreements.setState(record.id, 'expired', nowMs)
        continue
      }
      // Negotiating costs nothing and a deposit does: an agreement left without its escrow holds no slot for long.
      if (nowMs - record.createdAtMs > unbackedLapseMs && !(await accounts.account(record.id, terms.requestor as Address).backed())) {
        store.agreements.setState(record.id, 'expired', nowMs)
        continue
      }
      active++
    }
    return active
  }

  async function negotiate({ terms, requestorSignature }: { terms: AgreementTerms; requestorSignature: string }, ctx: RequestContext): Promise<NegotiateAnswer> {
    if (init.misbehave?.silentNegotiation === true) {
      // Holds the stream until the requester gives up: the unresponsive provider the requestor must not wait for.
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))
      throw new HearthError('HEARTH_ERR_NET_TIMEOUT', 'no answer')
    }
    if (terms.requestor.toLowerCase() !== ctx.remoteAddress.toLowerCase()) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'the proposal names a requestor other than the peer sending it')
    }
    // The requestor's signature over the terms is half of the agreement: check it before anything is recorded.
    await verifySigned({ payload: terms, signer: ctx.remoteAddress, signature: requestorSignature as Hex }, { expectedSigner: ctx.remoteAddress })
    if (paused !== undefined) throw pausedError()
    const offer = current?.payload
    if (offer === undefined) throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'this provider has no live offer')
    const nowMs = Date.now()
    const id = agreementId(terms)
    // An agreement is made once: the same terms proposed again (after it ended, say) do not bring it back.
    if (store.agreements.get(id) !== undefined) throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', `agreement ${id} exists already`, { hint: 'propose new terms (a new nonce)' })
    const decision = reviewProposal(terms, { offer, offerIds: new Set(offers.keys()), policy, activeAgreements: await activeAgreements(nowMs), nowMs })
    // Refusals and counters are answered, not stored: anyone may send proposals, and only agreements are worth a row.
    if (decision.decision === 'reject') throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', decision.reason)
    // The counter-proposal waits for the requestor's signature; it comes back as a new proposal with these terms.
    if (decision.decision === 'counter') return { decision: 'counter', terms: decision.terms, reasons: decision.reasons }
    const own = await signPayload(identity, terms)
    const agreement: Agreement = { id, terms, requestorSignature, providerSignature: own.signature }
    store.agreements.save({ id, role: 'provider', requestor: terms.requestor, provider: terms.provider, state: 'approved', document: agreement, createdAtMs: nowMs, updatedAtMs: nowMs })
    // Where the requestor can be found again: debit notes go there, and a restarted provider asks it what it is owed.
    const addresses = await host.libp2p.peerStore.get(ctx.peerId).then((peer) => peer.addresses.map((a) => a.multiaddr.toString())).catch(() => [] as string[])
    store.peers.remember({ address: terms.requestor, peerId: ctx.peerId.toString(), multiaddrs: addresses, updatedAtMs: nowMs })
    stats.agreements++
    return { decision: 'approve', terms, providerSignature: own.signature }
  }

  /** The blob named by content id: from the package cache, else fetched from the requestor and checked. */
  function packageFile(contentId: string, from: Parameters<Host['request']>[0]): Promise<string> {
    const path = packages.pathOf(contentId)
    // Tasks that need the same package at once share one transfer.
    const running = fetching.get(contentId)
    if (running !== undefined) return running
    const fetched = (async () => {
      if ((await lstat(path).catch(() => undefined))?.isFile() === true) {
        await packages.touch(contentId)
        return path
      }
      await fetchResumable({
        contentId,
        path,
        maxBytes: maxPackageBytes,
        chunkBytes: maxBlobChunkBytes,
        // fetch-blob/3 (raw bytes), or /2 from a requestor that does not speak /3.
        fetchChunk: blobChunks(host, from, contentId),
      })
      // A new package may push the cache past its bounds: the least recently used others make room.
      void packages.evict().catch(() => undefined)
      return path
    })().finally(() => fetching.delete(contentId))
    fetching.set(contentId, fetched)
    return fetched
  }

  /** What the request asks to run, resolved on this provider: a runtime and its program. */
  async function programFor(request: RunTaskRequest, from: Parameters<Host['request']>[0]): Promise<{ runtime: Runtime<unknown>; program: unknown; argv0: string[]; release?: () => void }> {
    if (request.runtime === 'wasi') {
      if (request.packageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'a wasi task names no package')
      // argv[0] is the program's name; the request carries only what follows it.
      const packageId = request.packageId
      const module = await packages.using(packageId, async () => readFile(await packageFile(packageId, from)))
      return { runtime: wasiRuntime, program: module, argv0: ['program'] }
    }
    if (request.runtime === 'native') {
      const native = init.runtimes?.native
      const path = request.program === undefined ? undefined : native?.programs[request.program]
      if (native === undefined || path === undefined) {
        throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this provider does not offer the native program ${request.program ?? '(none named)'}`)
      }
      return { runtime: native.runtime, program: path, argv0: [path] }
    }
    const docker = init.runtimes?.docker
    if (docker === undefined) throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', 'this provider does not offer docker')
    if (request.imageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'a docker task names no image')
    // Held while the task runs, so that an eviction cannot remove the image between its load and the container.
    const release = await loadedImages!.hold(request.imageId)
    try {
      if (!(await docker.runtime.hasImage(request.imageId))) {
        if (request.packageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_IMAGE_MISSING', `this provider does not hold image ${request.imageId} and no archive was named`)
        // The archive is checked twice: by content id on arrival, and by image id when the engine loads it (untagged).
        const { packageId, imageId } = request
        await packages.using(packageId, async () => loadedImages!.load(packageId, await packageFile(packageId, from), imageId))
      }
    } catch (error) {
      release()
      throw error
    }
    // The container's command is the whole argv: the request's args, command first.
    return { runtime: docker.runtime, program: { image: request.imageId }, argv0: [], release }
  }

  /**
   * Admission for large task frames, decided on the length prefix before the body is read: only a requestor holding
   * an approved agreement with this provider whose escrow is open may make it buffer one. Peer ids cost nothing; a
   * funded escrow does. Answers are kept for a few seconds, so a flood of frames costs one chain read per agreement.
   */
  const admitted = new Map<string, { ok: boolean; atMs: number }>()
  async function admitTaskFrame({ remoteAddress }: AdmitContext): Promise<void> {
    if (paused !== undefined) throw pausedError()
    const nowMs = Date.now()
    const known = admitted.get(remoteAddress.toLowerCase())
    if (known !== undefined && nowMs - known.atMs < 5_000) {
      if (known.ok) return
    } else {
      let ok = false
      for (const record of store.agreements.list({ state: 'approved' })) {
        if (record.role !== 'provider' || record.requestor.toLowerCase() !== remoteAddress.toLowerCase()) continue
        if ((record.document as Agreement).terms.expiresAtSec * 1000 <= nowMs) continue
        if (await accounts.account(record.id, remoteAddress).backed()) {
          ok = true
          break
        }
      }
      if (admitted.size > 4096) admitted.clear()
      admitted.set(remoteAddress.toLowerCase(), { ok, atMs: nowMs })
      if (ok) return
    }
    throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', 'this provider takes large task frames only from a requestor holding an approved agreement with it whose escrow is open', {
      hint: 'negotiate an agreement and open its escrow before sending tasks',
    })
  }

  async function runTask(request: RunTaskRequest, requestor: Address, from: Parameters<Host['request']>[0], signal: AbortSignal): Promise<TaskResult> {
    if (paused !== undefined) throw pausedError()
    const account = accounts.account(request.agreementId, requestor)
    const terms = account.terms
    // Every money check (escrow, expiry, overdue notes, tasks left, unpaid work) before any work; released if none is done.
    const reservation = await account.reserve()
    let held: { memoryBytes: number; diskBytes: number }
    try {
      held = admit(request)
    } catch (error) {
      reservation.cancel()
      throw error
    }
    let billed = false
    let releaseProgram: (() => void) | undefined
    const handBack = new AbortController()
    const taskKey = randomUUID()
    runningTasks.set(taskKey, { ...held, child: request.runtime !== 'wasi', abort: handBack })
    // A pause may have come while the escrow was checked, before this task was registered to be handed back.
    if (paused !== undefined) handBack.abort()
    const activityDir = join(activitiesDir, request.activityId + '-' + randomUUID().slice(0, 8))
    const rootDir = join(activityDir, 'root')
    try {
      if (handBack.signal.aborted) throw pausedError()
      const { runtime, program, argv0, release } = await programFor(request, from)
      releaseProgram = release
      if (handBack.signal.aborted) throw pausedError()
      await mkdir(rootDir, { recursive: true })
      for (const input of request.inputs) {
        const bytes = Buffer.from(input.dataBase64, 'base64')
        if (bytes.length !== input.sizeBytes || sha256Hex(bytes) !== input.contentId) {
          throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `input ${input.path} does not match its content id`)
        }
        const hostPath = insideRoot(rootDir, input.path)
        await mkdir(dirname(hostPath), { recursive: true })
        await writeFile(hostPath, bytes)
      }
      // Programs expect the folders of their outputs to exist.
      for (const output of request.outputs) await mkdir(dirname(insideRoot(rootDir, output)), { recursive: true })
      const stdoutPath = join(activityDir, 'stdout')
      const stderrPath = join(activityDir, 'stderr')
      const run = await runtime.run(
        {
          program,
          args: [...argv0, ...request.args],
          env: request.env,
          rootDir,
          stdoutPath,
          stderrPath,
          maxMemoryBytes: request.maxMemoryBytes,
          timeoutMs: request.timeoutMs,
          maxOutputBytes: request.maxOutputBytes,
          // The agreement's GPUs, by index as detected; the sandbox shows no other device.
          ...gpuGrant(terms.gpus),
        },
        { signal: AbortSignal.any([signal, handBack.signal]) },
      )
      // A task handed back (the owner came back) is not billed: the requestor runs it elsewhere.
      if (handBack.signal.aborted) throw pausedError()
      // A dishonest provider changes the work before it is hashed and signed.
      const wrong = wrongResults !== undefined && run.exitCode === 0 && wrongResults.strikes()
      const outputs: FileBlob[] = []
      const missingOutputs: string[] = []
      for (const path of request.outputs) {
        const hostPath = insideRoot(rootDir, path)
        const info = await lstat(hostPath).catch(() => undefined)
        // Only regular files come back: a symlink the program made must not leak the provider's files.
        if (info === undefined || !info.isFile()) {
          missingOutputs.push(path)
          continue
        }
        const bytes = wrong ? wrongResults.corrupt(await readFile(hostPath)) : await readFile(hostPath)
        outputs.push({ path, contentId: sha256Hex(bytes), sizeBytes: bytes.length, dataBase64: bytes.toString('base64') })
      }
      // A dishonest provider may meter more than ran, and ask more than that costs.
      const inflate = init.misbehave?.inflateUsage ?? 1
      const usage = { durationMs: run.durationMs * inflate, cpuMs: run.cpuMs * inflate }
      const metered = reservation.complete({ tasks: 1, ...usage })
      const debitNote = metered === undefined || init.misbehave?.inflateNotes === undefined ? metered : { ...metered, amountDueWei: (BigInt(metered.amountDueWei) * BigInt(init.misbehave.inflateNotes)).toString() }
      billed = true
      stats.tasksRun++
      if (wrong) stats.wrongResults++
      const padding = init.misbehave?.oversizeResults ?? 0
      const stdout = Buffer.concat([await readFile(stdoutPath).catch(() => Buffer.alloc(0)), Buffer.alloc(padding, 0x41)])
      if (init.misbehave?.stallResults === true) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
      return {
        agreementId: request.agreementId,
        jobId: request.jobId,
        taskIndex: request.taskIndex,
        activityId: request.activityId,
        requestHash: hashCanonical(request),
        exitCode: run.exitCode,
        outputs,
        missingOutputs,
        stdoutBase64: (wrong && outputs.length === 0 ? wrongResults.corrupt(stdout) : stdout).toString('base64'),
        stderrBase64: (await readFile(stderrPath).catch(() => Buffer.alloc(0))).toString('base64'),
        usage,
        ...(debitNote === undefined ? {} : { debitNote }),
      }
    } catch (error) {
      stats.tasksFailed++
      if (handBack.signal.aborted) throw pausedError()
      throw error
    } finally {
      // Work that did not produce a result (handed back, refused input, a sandbox limit) is not billed.
      if (!billed) reservation.cancel()
      releaseProgram?.()
      runningTasks.delete(taskKey)
      await rm(activityDir, { recursive: true, force: true })
    }
  }

  let activityService: ActivityService | undefined

  return {
    address: identity.address,
    market,
    currentOffer: () => current,
    stats: () => ({ ...stats }),

    async pause(reason, options = {}) {
      paused = reason
      if (republishTimer !== undefined) clearInterval(republishTimer)
      republishTimer = undefined
      if (options.handBack === true) for (const task of runningTasks.values()) task.abort.abort()
      // Offers cannot be recalled from other nodes' books: a short-lived replacement makes ours lapse within seconds.
      if (started) await publishOffer({ ttlMs: 2000 }).catch(() => undefined)
    },

    async resume() {
      if (paused === undefined) return
      paused = undefined
      if (!started) return
      await publishOffer().catch(() => undefined)
      republishTimer ??= setInterval(() => void publishOffer().catch(() => undefined), Math.max(1000, Math.floor(offerTtlMs / 2)))
      republishTimer.unref()
    },

    lending: () => ({ paused: paused !== undefined, reason: paused }),

    running() {
      const running: RunningTasks = { tasks: 0, childTasks: 0, memoryBytes: 0, diskBytes: 0 }
      for (const task of runningTasks.values()) {
        running.tasks++
        if (task.child) running.childTasks++
        running.memoryBytes += task.memoryBytes
        running.diskBytes += task.diskBytes
      }
      return running
    },

    async start() {
      await mkdir(activitiesDir, { recursive: true })
      cpuScore = measureCpuScore()
      // Offer only what runs here; say why the rest does not, so an owner (and a requestor) can tell.
      offeredRuntimes = ['wasi']
      unavailableRuntimes = []
      for (const [name, configured] of Object.entries(init.runtimes ?? {})) {
        if (configured === undefined) continue
        const availability = await configured.runtime.available()
        if (availability.ok) offeredRuntimes.push(name)
        else unavailableRuntimes.push(`${name}: ${availability.reason}`)
      }
      gpuProperties = gpuOfferProperties(await detectGpus())
      if (init.market === undefined) await market.start()

      await host.handle(negotiateProtocol, negotiate)

      await host.handle(cancelAgreementProtocol, async ({ agreementId: id }, ctx) => {
        const account = accounts.account(id, ctx.remoteAddress)
        if (store.agreements.get(id)?.state !== 'approved') throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${id} is not approved`)
        // Once money is in escrow or work was done, the agreement ends by settlement, not by a word from one side.
        if (account.delivered().tasks > 0 || account.exposure().runningTasks > 0 || (await account.backed())) {
          throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', `agreement ${id} has started; settle it instead`)
        }
        store.agreements.setState(id, 'cancelled')
        return { agreementId: id, state: 'cancelled' }
      })

      await host.handle(runTaskProtocol, (request, ctx) => runTask(request, ctx.remoteAddress, ctx.peerId, ctx.signal), { admit: admitTaskFrame })
      // A batch: each task runs (and is refused, checked and billed) exactly as if it came alone.
      await host.handle(runTasksProtocol, async ({ tasks }, ctx) => {
        const settled = await Promise.allSettled(tasks.map((task) => runTask(task, ctx.remoteAddress, ctx.peerId, ctx.signal)))
        return {
          answers: settled.map((outcome) => {
            if (outcome.status === 'fulfilled') return { ok: true as const, result: outcome.value }
            const error = toHearthError(outcome.reason)
            return { ok: false as const, code: error.code, message: error.shortMessage.slice(0, 4000) }
          }),
        }
      }, { admit: admitTaskFrame })

      // ExeScript activities: the same checks as a task before any work, billed as one task each.
      activityService = createActivityService({
        host,
        identity,
        store,
        activitiesDir: join(init.workDir, 'exescript'),
        packages,
        fetching,
        runtimes: {
          wasi: wasiRuntime,
          ...(offeredRuntimes.includes('native') && init.runtimes?.native !== undefined ? { native: init.runtimes.native } : {}),
          ...(offeredRuntimes.includes('docker') && init.runtimes?.docker !== undefined ? { docker: init.runtimes.docker } : {}),
        },
        account: (id, requestor) => {
          if (paused !== undefined) throw pausedError()
          return accounts.account(id, requestor)
        },
        ...(loadedImages === undefined ? {} : { loadedImages }),
        ...(init.activityMeterEveryMs === undefined ? {} : { meterEveryMs: init.activityMeterEveryMs }),
      })
      await activityService.start()

      await host.handle(voucherProtocol, async (json, ctx) => {
        const acceptedWei = await accounts.account(json.agreementId, ctx.remoteAddress).acceptVoucher(json)
        return { agreementId: json.agreementId, acceptedWei: acceptedWei.toString() }
      }, { admit: admitTaskFrame })

      await host.handle(settleProtocol, async ({ agreementId, voucher }, ctx) => {
        const outcome = await accounts.settle(agreementId, ctx.remoteAddress, voucher)
        return { agreementId, invoice: outcome.invoice, claimTx: outcome.claimTx, paidWei: outcome.paidWei.toString(), refundedWei: outcome.refundedWei.toString() }
      }, { admit: admitTaskFrame })

      // Checks the escrow contract's claim grace, reconciles claims left by an earlier run, claims what is owed, and
      // asks requestors for vouchers signed while this provider was away.
      await accounts.start()
      started = true
      if (paused === undefined) await publishOffer()
      if (paused === undefined) {
        republishTimer = setInterval(() => void publishOffer().catch(() => undefined), Math.max(1000, Math.floor(offerTtlMs / 2)))
        republishTimer.unref()
      }
      // The offer carries the addresses to dial: published again (once things settle) when they change, as when a
      // relay slot is reserved or a public address is confirmed.
      host.libp2p.addEventListener('self:peer:update', onAddressesChanged)
    },

    async stop() {
      host.libp2p.removeEventListener('self:peer:update', onAddressesChanged)
      if (addressesTimer !== undefined) clearTimeout(addressesTimer)
      if (republishTimer !== undefined) clearInterval(republishTimer)
      await activityService?.stop()
      await accounts.stop()
      for (const protocol of [negotiateProtocol, cancelAgreementProtocol, runTaskProtocol, runTasksProtocol, voucherProtocol, settleProtocol]) {
        await host.unhandle(protocol).catch(() => undefined)
      }
      if (init.market === undefined) await market.stop()
    },

    claimOutstanding: (options) => accounts.claimOutstanding(options),
    accounts,
  }
}
