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
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { signPayload, verifySigned } from '../identity/signed.ts'
import { agreementId, reviewProposal, type Agreement, type AgreementState, type AgreementTerms, type ProviderPolicy } from '../market/agreement.ts'
import { createMarketNode, type MarketNode } from '../market/market-node.ts'
import { cancelAgreementProtocol, negotiateProtocol } from '../market/market-protocols.ts'
import { createOffer, offerId, type Offer, type SignedOffer } from '../market/offer.ts'
import type { Host } from '../net/host.ts'
import type { RequestContext } from '../net/protocol.ts'
import type { z } from 'zod'
import { measureCpuScore } from './cpu-score.ts'
import { createActivityService, type ActivityService } from './activity-service.ts'
import { createWrongResults, type WrongResultsOptions } from './wrong-results.ts'
import { addUsage, costWei, noUsage, pricingProperties, type Pricing, type Usage } from '../market/pricing.ts'
import type { DebitNote, Invoice } from '../market/billing.ts'

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
import { loadImageArchive } from '../exec/docker-images.ts'
import { claimVoucher, getEscrow, releaseEscrow, type EscrowContext } from '../payment/escrow.ts'
import { settleProtocol, voucherProtocol } from '../payment/payment-protocols.ts'
import { verifyVoucher, voucherFromJson, voucherToJson, type Voucher } from '../payment/voucher.ts'
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
  misbehave?: { silentNegotiation?: boolean; wrongResults?: WrongResultsOptions }
  /**
   * When to claim vouchers besides the end of each agreement: as soon as the unclaimed amount reaches `thresholdWei`
   * (none by default), and always `beforeExpirySec` before an agreement expires (default 600 s), checked every
   * `checkEveryMs` (default 30 s). Outstanding vouchers are also claimed when the agent starts.
   */
  claimPolicy?: { thresholdWei?: bigint; beforeExpirySec?: number; checkEveryMs?: number }
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

const defaultPolicy: ProviderPolicy = { maxConcurrentAgreements: 16, maxAgreementSec: 24 * 3600, minDebitNoteIntervalSec: 0, maxPaymentTimeoutSec: 600 }

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
  /** Work delivered per agreement, as this provider metered it (kept in the store too: it is what it is owed). */
  const delivered = new Map<string, Usage>()
  /** Debit notes sent and not yet covered by a voucher, per agreement. */
  const unpaidNotes = new Map<string, DebitNote[]>()
  const lastNoteAtMs = new Map<string, number>()
  const noteSeq = new Map<string, number>()

  function deliveredUsage(agreementId: string): Usage {
    const known = delivered.get(agreementId)
    if (known !== undefined) return known
    const stored = store.paymentDocuments.list({ agreementId, kind: 'usage' })[0]?.document as Usage | undefined
    return stored ?? noUsage
  }

  /** Work stops under an agreement whose oldest unpaid debit note is older than the agreed payment timeout. */
  function ensureNotOverdue(terms: AgreementTerms, agreementId: string, nowMs: number): void {
    const oldest = unpaidNotes.get(agreementId)?.[0]
    if (oldest !== undefined && nowMs - oldest.issuedAtMs > terms.paymentTimeoutSec * 1000) {
      throw new HearthError('HEARTH_ERR_PAYMENT_OVERDUE', `debit note ${oldest.seq} of agreement ${agreementId} (${oldest.amountDueWei} wei) has gone unpaid for more than ${terms.paymentTimeoutSec} s; this provider has stopped working under it`, {
        hint: 'answer the debit note with a voucher for its amount, or settle the agreement',
        details: { agreementId, seq: oldest.seq, amountDueWei: oldest.amountDueWei },
      })
    }
  }

  /** Records a task's metered work; returns a debit note when the agreed interval has passed since the last one. */
  function meter(terms: AgreementTerms, agreementId: string, usage: Usage, nowMs: number): DebitNote | undefined {
    const total = addUsage(deliveredUsage(agreementId), usage)
    delivered.set(agreementId, total)
    store.paymentDocuments.save({ agreementId, kind: 'usage', seq: 0, document: total, createdAtMs: nowMs })
    if (nowMs - (lastNoteAtMs.get(agreementId) ?? 0) < terms.debitNoteIntervalSec * 1000) return undefined
    lastNoteAtMs.set(agreementId, nowMs)
    // Numbered from the store once per agreement (a restart continues the sequence), then counted here.
    const seq = (noteSeq.get(agreementId) ?? store.paymentDocuments.list({ agreementId, kind: 'debit-note' }).length) + 1
    noteSeq.set(agreementId, seq)
    const note: DebitNote = { agreementId, seq, usage: total, amountDueWei: costWei(terms.pricing, total).toString(), issuedAtMs: nowMs }
    store.paymentDocuments.save({ agreementId, kind: 'debit-note', seq, document: note, createdAtMs: nowMs })
    unpaidNotes.set(agreementId, [...(unpaidNotes.get(agreementId) ?? []), note])
    return note
  }
  const escrowChecked = new Set<string>()
  const stats: ProviderStats = { tasksRun: 0, tasksFailed: 0, agreements: 0, wrongResults: 0 }
  const wrongResults = init.misbehave?.wrongResults === undefined ? undefined : createWrongResults(init.misbehave.wrongResults)
  const market = init.market ?? createMarketNode({ host })
  const claimPolicy = { thresholdWei: init.claimPolicy?.thresholdWei, beforeExpirySec: init.claimPolicy?.beforeExpirySec ?? 600, checkEveryMs: init.claimPolicy?.checkEveryMs ?? 30_000 }
  const settling = new Map<string, Promise<{ claimTx: Hex | null; paidWei: bigint; refundedWei: bigint }>>()
  let claimTimer: NodeJS.Timeout | undefined
  let cpuScore = 0
  let gpuProperties: Offer['properties'] = {}
  const packagesDir = join(init.workDir, 'packages')
  const packages = createPackageCache({ dir: packagesDir, maxBytes: init.packageCache?.maxBytes ?? 8 * 1024 ** 3, maxEntries: init.packageCache?.maxEntries ?? 256 })
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
    for (const task of runningTasks.values()) {
      memoryInUse += task.memoryBytes
      diskInUse += task.diskBytes
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
    return { memoryBytes, diskBytes }
  }

  async function publishOffer(options: { ttlMs?: number } = {}): Promise<void> {
    current = await createOffer({
      identity,
      multiaddrs: host.multiaddrs(),
      properties: {
        'golem.runtime.name': offeredRuntimes,
        ...(offeredRuntimes.includes('native') ? { 'hearth.runtime.native.programs': Object.keys(init.runtimes?.native?.programs ?? {}) } : {}),
        ...(unavailableRuntimes.length === 0 ? {} : { 'hearth.runtime.unavailable': unavailableRuntimes }),
        'golem.inf.cpu.threads': init.threads,
        'golem.inf.mem.gib': init.memGib,
        ...pricingProperties(init.pricing),
        'hearth.inf.cpu.score': cpuScore,
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
  function activeAgreements(nowMs: number): number {
    let active = 0
    for (const record of store.agreements.list({ state: 'approved' })) {
      if (record.role !== 'provider') continue
      if ((record.document as Agreement).terms.expiresAtSec * 1000 <= nowMs) store.agreements.setState(record.id, 'expired', nowMs)
      else active++
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
    const decision = reviewProposal(terms, { offer, offerIds: new Set(offers.keys()), policy, activeAgreements: activeAgreements(nowMs), nowMs })
    const id = agreementId(terms)
    const record = (state: AgreementState, document: unknown): void =>
      store.agreements.save({ id, role: 'provider', requestor: terms.requestor, provider: terms.provider, state, document, createdAtMs: nowMs, updatedAtMs: nowMs })
    if (decision.decision === 'reject') {
      record('rejected', { terms, reason: decision.reason })
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', decision.reason)
    }
    if (decision.decision === 'counter') {
      // The counter-proposal waits for the requestor's signature; it comes back as a new proposal with these terms.
      const counterId = agreementId(decision.terms)
      store.agreements.save({ id: counterId, role: 'provider', requestor: terms.requestor, provider: terms.provider, state: 'pending', document: { terms: decision.terms }, createdAtMs: nowMs, updatedAtMs: nowMs })
      return { decision: 'counter', terms: decision.terms, reasons: decision.reasons }
    }
    const own = await signPayload(identity, terms)
    const agreement: Agreement = { id, terms, requestorSignature, providerSignature: own.signature }
    record('approved', agreement)
    stats.agreements++
    return { decision: 'approve', terms, providerSignature: own.signature }
  }

  function agreementFor(agreementId: string, requestor: Address): AgreementTerms {
    const record = store.agreements.get(agreementId)
    if (record === undefined || record.role !== 'provider') {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `no agreement ${agreementId} with this provider`, {
        hint: 'negotiate an agreement before sending tasks or vouchers',
      })
    }
    const agreement = record.document as Agreement
    if (agreement.terms.requestor.toLowerCase() !== requestor.toLowerCase()) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${agreementId} belongs to another requestor`)
    }
    if (record.state !== 'approved') {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `agreement ${agreementId} is ${record.state}, not approved`)
    }
    return agreement.terms
  }

  /** Work starts only once the requestor's deposit is on chain, naming this provider. */
  async function ensureEscrow(terms: AgreementTerms, agreementId: string): Promise<void> {
    if (escrowChecked.has(agreementId)) return
    const escrow = await getEscrow(payment, { requestorAddress: terms.requestor as Address, agreementId: agreementId as Hex })
    // Only an escrow from this agreement's requestor (escrows are keyed by requestor and id), naming this provider and
    // holding the agreed deposit, backs the work.
    const backed =
      escrow !== undefined &&
      !escrow.closed &&
      escrow.providerAddress.toLowerCase() === identity.address.toLowerCase() &&
      escrow.requestorAddress.toLowerCase() === terms.requestor.toLowerCase() &&
      escrow.depositedWei >= BigInt(terms.depositWei)
    if (!backed) {
      throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `agreement ${agreementId} has no open escrow from its requestor holding the agreed deposit`, {
        hint: 'open the escrow (escrow.open) for the agreed deposit before sending tasks',
      })
    }
    escrowChecked.add(agreementId)
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
  async function programFor(request: RunTaskRequest, from: Parameters<Host['request']>[0]): Promise<{ runtime: Runtime<unknown>; program: unknown; argv0: string[] }> {
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
    if (!(await docker.runtime.hasImage(request.imageId))) {
      if (request.packageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_IMAGE_MISSING', `this provider does not hold image ${request.imageId} and no archive was named`)
      // The archive is checked twice: by content id on arrival, and by image id when the engine loads it.
      const { packageId, imageId } = request
      await packages.using(packageId, async () => loadImageArchive(docker.runtime, await packageFile(packageId, from), imageId))
    }
    // The container's command is the whole argv: the request's args, command first.
    return { runtime: docker.runtime, program: { image: request.imageId }, argv0: [] }
  }

  async function runTask(request: RunTaskRequest, requestor: Address, from: Parameters<Host['request']>[0], signal: AbortSignal): Promise<TaskResult> {
    if (paused !== undefined) throw pausedError()
    const terms = agreementFor(request.agreementId, requestor)
    await ensureEscrow(terms, request.agreementId)
    ensureNotOverdue(terms, request.agreementId, Date.now())
    const done = deliveredUsage(request.agreementId)
    if (done.tasks >= terms.maxTasks) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', `agreement ${request.agreementId} already had its ${terms.maxTasks} tasks`)
    }
    const held = admit(request)
    const handBack = new AbortController()
    const taskKey = randomUUID()
    runningTasks.set(taskKey, { ...held, child: request.runtime !== 'wasi', abort: handBack })
    // A pause may have come while the escrow was checked, before this task was registered to be handed back.
    if (paused !== undefined) handBack.abort()
    const activityDir = join(activitiesDir, request.activityId + '-' + randomUUID().slice(0, 8))
    const rootDir = join(activityDir, 'root')
    try {
      if (handBack.signal.aborted) throw pausedError()
      const { runtime, program, argv0 } = await programFor(request, from)
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
          ...gpuGrant(agreementFor(request.agreementId, requestor).gpus),
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
      const debitNote = meter(terms, request.agreementId, { tasks: 1, cpuMs: run.cpuMs, durationMs: run.durationMs }, Date.now())
      stats.tasksRun++
      if (wrong) stats.wrongResults++
      const stdout = await readFile(stdoutPath).catch(() => Buffer.alloc(0))
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
        usage: { durationMs: run.durationMs, cpuMs: run.cpuMs },
        ...(debitNote === undefined ? {} : { debitNote }),
      }
    } catch (error) {
      stats.tasksFailed++
      if (handBack.signal.aborted) throw pausedError()
      throw error
    } finally {
      runningTasks.delete(taskKey)
      await rm(activityDir, { recursive: true, force: true })
    }
  }

  async function acceptVoucher(voucher: Voucher, requestor: Address): Promise<bigint> {
    const terms = agreementFor(voucher.agreementId, requestor)
    await verifyVoucher(voucher, {
      expectedSigner: terms.requestor as Address,
      chainId: payment.client.chainId,
      escrowAddress: payment.escrowAddress,
      agreementId: voucher.agreementId,
    })
    // Never more than the delivered work costs, by this provider's own metering.
    const owedAtMost = costWei(terms.pricing, deliveredUsage(voucher.agreementId))
    if (voucher.cumulativeWei > BigInt(terms.depositWei) || voucher.cumulativeWei > owedAtMost) {
      throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', `voucher for ${voucher.cumulativeWei} wei exceeds what this agreement allows`)
    }
    store.vouchers.save({ agreementId: voucher.agreementId, cumulativeWei: voucher.cumulativeWei, document: voucherToJson(voucher), receivedAtMs: Date.now() })
    const latestWei = store.vouchers.latest(voucher.agreementId)?.cumulativeWei ?? voucher.cumulativeWei
    // A voucher pays every debit note it covers.
    unpaidNotes.set(voucher.agreementId, (unpaidNotes.get(voucher.agreementId) ?? []).filter((note) => BigInt(note.amountDueWei) > latestWei))
    if (claimPolicy.thresholdWei !== undefined && latestWei - store.vouchers.claimedWei(voucher.agreementId) >= claimPolicy.thresholdWei) {
      // Off the answer's path: the requestor need not wait for our transaction.
      void settle(voucher.agreementId, false).catch(() => undefined)
    }
    return latestWei
  }

  /**
   * Claims the newest voucher; with `release` also gives the unclaimed rest of the deposit back and closes the
   * escrow (in the same tx when there is something to claim, else by `release` alone).
   */
  function settle(agreementId: string, release: boolean): Promise<{ claimTx: Hex | null; paidWei: bigint; refundedWei: bigint }> {
    // One claim at a time per agreement: two in flight would claim the same voucher and the second would revert.
    const previous = settling.get(agreementId) ?? Promise.resolve()
    const next = previous.catch(() => undefined).then(() => settleNow(agreementId, release))
    settling.set(agreementId, next)
    void next.finally(() => {
      if (settling.get(agreementId) === next) settling.delete(agreementId)
    }).catch(() => undefined)
    return next
  }

  async function settleNow(agreementId: string, release: boolean): Promise<{ claimTx: Hex | null; paidWei: bigint; refundedWei: bigint }> {
    const latest = store.vouchers.latest(agreementId)
    if (latest !== undefined && latest.claimedTx === null) {
      const voucher = voucherFromJson(latest.document)
      const outcome = await claimVoucher(payment, { voucher, release })
      store.vouchers.markClaimed(agreementId, voucher.cumulativeWei, outcome.hash)
      return { claimTx: outcome.hash, paidWei: outcome.paidWei, refundedWei: outcome.refundedWei }
    }
    if (!release) return { claimTx: null, paidWei: 0n, refundedWei: 0n }
    const escrow = await getEscrow(payment, { requestorAddress: store.agreements.get(agreementId)!.requestor as Address, agreementId: agreementId as Hex })
    if (escrow === undefined || escrow.closed) return { claimTx: null, paidWei: 0n, refundedWei: 0n }
    const outcome = await releaseEscrow(payment, { requestorAddress: escrow.requestorAddress, agreementId: agreementId as Hex })
    return { claimTx: outcome.hash, paidWei: 0n, refundedWei: outcome.refundedWei }
  }

  async function claimOutstanding(options: { release?: boolean } = {}): Promise<{ agreementId: string; txHash: string; paidWei: bigint }[]> {
    const claimed: { agreementId: string; txHash: string; paidWei: bigint }[] = []
    for (const voucher of store.vouchers.unclaimed()) {
      try {
        const outcome = await settle(voucher.agreementId, options.release === true)
        if (outcome.claimTx !== null) claimed.push({ agreementId: voucher.agreementId, txHash: outcome.claimTx, paidWei: outcome.paidWei })
      } catch (error) {
        // One agreement's failed claim (e.g. already claimed by an earlier run) must not stop the others.
        if (!isHearthError(error)) throw error
      }
    }
    return claimed
  }

  /** After expiry the requestor may refund: whatever is owed must be claimed before then. */
  async function claimBeforeExpiry(nowMs = Date.now()): Promise<void> {
    for (const voucher of store.vouchers.unclaimed()) {
      const record = store.agreements.get(voucher.agreementId)
      if (record === undefined) continue
      const expiresAtSec = (record.document as Agreement).terms.expiresAtSec
      if (expiresAtSec - nowMs / 1000 <= claimPolicy.beforeExpirySec) await settle(voucher.agreementId, false).catch(() => undefined)
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

      await host.handle(cancelAgreementProtocol, ({ agreementId: id }, ctx) => {
        agreementFor(id, ctx.remoteAddress)
        // Once money is in escrow the agreement ends by settlement, not by a word from one side.
        if (escrowChecked.has(id) || deliveredUsage(id).tasks > 0) {
          throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', `agreement ${id} has started; settle it instead`)
        }
        store.agreements.setState(id, 'cancelled')
        return { agreementId: id, state: 'cancelled' }
      })

      await host.handle(runTaskProtocol, (request, ctx) => runTask(request, ctx.remoteAddress, ctx.peerId, ctx.signal))
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
      })

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
        authorize: async (id, requestor) => {
          if (paused !== undefined) throw pausedError()
          const terms = agreementFor(id, requestor)
          await ensureEscrow(terms, id)
          ensureNotOverdue(terms, id, Date.now())
          return terms
        },
        meter: (terms, id, usage) => meter(terms, id, usage, Date.now()),
      })
      await activityService.start()

      await host.handle(voucherProtocol, async (json, ctx) => {
        const voucher = voucherFromJson(json)
        const acceptedWei = await acceptVoucher(voucher, ctx.remoteAddress)
        return { agreementId: voucher.agreementId, acceptedWei: acceptedWei.toString() }
      })

      await host.handle(settleProtocol, async ({ agreementId, voucher }, ctx) => {
        const terms = agreementFor(agreementId, ctx.remoteAddress)
        if (voucher !== null) {
          const final = voucherFromJson(voucher)
          if (final.agreementId !== agreementId) throw new HearthError('HEARTH_ERR_PAYMENT_VOUCHER_INVALID', 'the final voucher is for another agreement')
          await acceptVoucher(final, ctx.remoteAddress)
        }
        // The invoice: all the work delivered, what it costs, and what the requestor's vouchers actually cover.
        const usage = deliveredUsage(agreementId)
        const invoice: Invoice = {
          agreementId,
          usage,
          amountDueWei: costWei(terms.pricing, usage).toString(),
          paidWei: (store.vouchers.latest(agreementId)?.cumulativeWei ?? 0n).toString(),
          issuedAtMs: Date.now(),
        }
        store.paymentDocuments.save({ agreementId, kind: 'invoice', seq: 1, document: invoice, createdAtMs: invoice.issuedAtMs })
        const outcome = await settle(agreementId, true)
        store.agreements.setState(agreementId, 'terminated')
        escrowChecked.delete(agreementId)
        unpaidNotes.delete(agreementId)
        return { agreementId, invoice, claimTx: outcome.claimTx, paidWei: outcome.paidWei.toString(), refundedWei: outcome.refundedWei.toString() }
      })

      started = true
      if (paused === undefined) await publishOffer()
      // Vouchers left from before a restart are money owed: claim them first thing, in the background.
      void claimOutstanding().catch(() => undefined)
      claimTimer = setInterval(() => void claimBeforeExpiry().catch(() => undefined), claimPolicy.checkEveryMs)
      claimTimer.unref()
      if (paused === undefined) {
        republishTimer = setInterval(() => void publishOffer().catch(() => undefined), Math.max(1000, Math.floor(offerTtlMs / 2)))
        republishTimer.unref()
      }
    },

    async stop() {
      if (republishTimer !== undefined) clearInterval(republishTimer)
      if (claimTimer !== undefined) clearInterval(claimTimer)
      await activityService?.stop()
      await Promise.allSettled(settling.values())
      for (const protocol of [negotiateProtocol, cancelAgreementProtocol, runTaskProtocol, runTasksProtocol, voucherProtocol, settleProtocol]) {
        await host.unhandle(protocol).catch(() => undefined)
      }
      if (init.market === undefined) await market.stop()
    },

    claimOutstanding,
  }
}
