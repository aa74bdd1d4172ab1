/**
 * requestor/ owns the job engine: it turns offers into agreements, backs each agreement with an escrow, sends tasks
 * to providers, checks every signed result, pays for what it accepts with cumulative vouchers, retries what failed on
 * another provider, and settles every agreement at the end.
 */
import { randomUUID } from 'node:crypto'
import type { Address, Hex } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { offeredRuntimes, proposeTerms, type Agreement, type AgreementTerms } from '../market/agreement.ts'
import type { OfferBook } from '../market/offer-book.ts'
import type { Offer, SignedOffer } from '../market/offer.ts'
import { createMarketNode, type MarketNode } from '../market/market-node.ts'
import { rankOffers, type GeoPoint, type StrategyWeights } from '../market/strategy.ts'
import { batchSizeFor } from './batch-size.ts'
import { negotiateMany, offerTarget } from './negotiator.ts'
import { maxCostWei, maxTaskCostWei, type Pricing, type Usage } from '../market/pricing.ts'
import { compileConstraints } from '../market/constraints/evaluate.ts'
import { matchDemandOffer } from '../market/constraints/match.ts'
import type { Properties } from '../market/constraints/properties.ts'
import { slaConstraints, type Sla } from '../market/sla.ts'
import { serveBlobProtocol } from '../net/blob-protocol.ts'
import type { Host } from '../net/host.ts'
import { fetchBlobBinaryProtocol, fetchBlobProtocol, runTaskProtocol, runTasksProtocol, type BatchAnswer, type RunTaskRequest, type TaskResult } from '../exec/activity-protocols.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import { tokenBalanceOf, type EscrowContext } from '../payment/escrow.ts'
import type { DebitNote } from '../market/billing.ts'
import { createRequestorAccounts, type RequestorAccount, type RequestorAccounts } from './requestor-account.ts'
import type { Store } from '../store/store.ts'
import type { JobEventListener } from './events.ts'
import { dispatch, type Attempt, type DispatchSlot } from './dispatch.ts'
import { createLocalRunner } from './local-runner.ts'
import { comparableContentId } from './image-key.ts'
import { storedTaskResult } from './stored-result.ts'
import { judgeProbe, probeRounds } from './probe.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import { measureCpuScore } from '../provider/cpu-score.ts'
import type { ReputationBook } from './reputation.ts'
import type { TaskOutcome, TaskRunner, TaskRunOptions, TaskSpec } from './task-runner.ts'

export type { TaskOutcome, TaskSpec } from './task-runner.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'

export interface JobSpec {
  name: string
  /** `wasi` runs `package` (a module); `native` runs a `program` the provider offers; `docker` runs `imageId`. */
  runtime: 'wasi' | 'native' | 'docker'
  /** wasi: the module; docker: the image archive, sent to providers that do not hold the image yet. */
  package?: Uint8Array
  /** native: the name of an offered program (`hearth.runtime.native.programs`), e.g. povray. */
  program?: string
  /** docker: the image id (sha256 of its config). */
  imageId?: string
  tasks: TaskSpec[]
  /** How many providers to sign agreements with (fewer if fewer offers match). */
  providers: number
  maxPricePerTaskWei: bigint
  timeoutMs: number
  maxMemoryBytes: number
  maxOutputBytes: number
  /** How long to wait for enough offers before starting with what there is. */
  offerWaitMs?: number
  /** Attempts per task, across providers. */
  maxAttempts?: number
  /**
   * How long a provider may stay unreachable before it gets no more work from this job (default 120 s). Until then it
   * is asked again after a backoff, and the job waits for it when nobody else can run a task.
   */
  awayLimitMs?: number
  /**
   * The requestor's side of the match: its properties (which providers' constraints judge) and its constraints over
   * offers' properties, in the constraint language. Only offers that match both ways ('yes') are used.
   */
  demand?: { properties?: Properties; constraints?: string }
  /** Requirements stated once: constraints where offers state them, measured latency where they cannot. */
  sla?: Sla
  /** How offers are ranked; see market/strategy.ts. */
  weights?: Partial<StrategyWeights>
  /** Prefer providers near this point. */
  near?: GeoPoint
  /** Each negotiation step's timeout (default 3 s). */
  stepTimeoutMs?: number
  /**
   * How results from providers nobody vouches for are checked. Default: adaptive replication, where the reputation
   * book says how likely each provider's result is to be run again by another provider and compared.
   */
  verification?: VerificationSpec
  /** The most this job may lock in deposits; checked before anything is signed or locked. */
  budgetWei?: bigint
  /** Tasks the whole job will run over all its batches (a map-reduce's map and reduce tasks), for deposits. */
  plannedTasks?: number
  /** Continue this earlier job: its accepted results are kept, never rerun or paid again. */
  resumeJobId?: string
  /** What identifies the job for resuming (default: a hash of the tasks, package and runtime). */
  digest?: string
  /** How often providers send debit notes (default 60 s; the first task's result always carries one). */
  debitNoteIntervalSec?: number
  /** How long a debit note may wait for its voucher before the provider stops (default 300 s). */
  paymentTimeoutSec?: number
}

export interface VerificationSpec {
  /** Results wanted for every task from distinct providers (fixed redundancy). Default 1. */
  replicas?: number
  /** Byte-equal results needed to accept; default a majority of `replicas` (and 2 after any disagreement). */
  quorum?: number
  /** Check results by reputation (BOINC's adaptive replication) when replicas is 1. Default true. */
  adaptive?: boolean
  /** Share of results recomputed on this machine and compared (wasi jobs only). Default 0. */
  spotCheckRate?: number
  /**
   * Check each provider's offered threads and CPU score with a short probe when its agreement starts (probe.ts; wasi
   * jobs, needs a local runtime). Default: when the job's SLA relies on them (minThreads, minCpuScore).
   */
  probe?: boolean
}

export interface AgreementOutcome {
  agreementId: Hex
  provider: Address
  pricing: Pricing
  tasks: number
  /** Results of this provider that verification rejected (not paid). */
  rejected: number
  /** The metered work of its accepted results (checks included): what the vouchers pay for. */
  acceptedUsage: Usage
  depositWei: bigint
  /** Vouchers signed for the provider (one per accepted result), and what the last promises in total. */
  vouchers: number
  signedWei: bigint
  /** Claimed by the provider on chain. */
  paidWei: bigint
  /** Returned to the requestor on chain. */
  refundedWei: bigint
  /** Still in the escrow: the provider may claim its vouchers, the requestor refund the rest after expiry. */
  lockedWei: bigint
  /** The least round trip measured to the provider before the agreement, in ms; null where no ping answered. */
  latencyMs: number | null
  openTx: Hex
  settleTx: Hex | null
  settled: boolean
}

export interface JobOutcome {
  jobId: string
  results: (TaskOutcome | undefined)[]
  failures: { taskIndex: number; message: string }[]
  agreements: AgreementOutcome[]
  wallMs: number
  figures: JobFigures
}

export interface JobFigures {
  /** Tasks whose result was accepted (in this run; `resumed` counts those of earlier runs). */
  accepted: number
  attempts: number
  retries: number
  /** Extra runs made to check a result (adaptive replication, disagreements). */
  checks: number
  /** Results rejected by verification. */
  rejected: number
  stragglers: number
  failures: number
  spotChecks: number
  spotRejected: number
  /** Spot checks this machine could not run (its own failure, not held against the provider). */
  spotFailed: number
  /** Tasks a resumed job found done. */
  resumed: number
}

export interface BatchOutcome {
  results: (TaskOutcome | undefined)[]
  failures: { taskIndex: number; message: string }[]
}

/**
 * An open job: its agreements and escrows, over which batches of tasks run (a map-reduce's map and reduce phases
 * share them). `await using` closes it: every agreement is settled and unspent deposits come back.
 */
export interface JobSession extends TaskRunner, AsyncDisposable {
  readonly jobId: string
  /** Agreements held. */
  readonly slots: number
  runBatch(tasks: TaskSpec[], options?: TaskRunOptions): Promise<BatchOutcome>
  figures(): JobFigures
  /** What accepted results have cost so far. */
  spentWei(): bigint
  /** Settles every agreement (idempotent). */
  close(): Promise<AgreementOutcome[]>
  /** Settles and records the job's end state. */
  finish(state: 'finished' | 'failed'): Promise<{ agreements: AgreementOutcome[]; wallMs: number }>
}

export interface RequestorInit {
  identity: NodeIdentity
  host: Host
  store: Store
  payment: EscrowContext
  /** This node's market part (offer book, gossip, sync); one is made when absent. */
  market?: MarketNode
  /** Ways to misbehave, for the devnet's failure tests: leave providers' debit notes unanswered. */
  misbehave?: { ignoreDebitNotes?: boolean }
  /** Verification records of providers: who gets checked how often, who is excluded. None: every result trusted. */
  reputation?: ReputationBook
  /** Recomputes spot-checked wasi tasks on this machine. */
  localRuntime?: WasiRuntime
  /** Randomness for verification choices (spot checks, adaptive checks); seed it for reproducible runs. */
  random?: () => number
  /** Where undelivered vouchers and refunds are reported. */
  log?(message: string): void
}

export interface Requestor {
  readonly offerBook: OfferBook
  readonly market: MarketNode
  /** Every agreement's money: deposits, accepted work, vouchers signed and delivered, claims and refunds. */
  readonly accounts: RequestorAccounts
  start(): Promise<void>
  stop(): Promise<void>
  runJob(spec: JobSpec, options?: { onEvent?: JobEventListener; signal?: AbortSignal }): Promise<JobOutcome>
  /** Finds providers, signs agreements and opens escrows for a job whose tasks come in batches; see JobSession. */
  openJob(spec: JobSpec, options?: { onEvent?: JobEventListener; signal?: AbortSignal }): Promise<JobSession>
  /**
   * Takes back the unclaimed rest of every escrow whose provider never settled, once it has expired and the contract's
   * claim grace has passed (chain time). Safe to call at any time: escrows closed or still claimable are left alone.
   */
  refundExpired(): Promise<{ agreementId: string; txHash: string; refundedWei: bigint }[]>
}

interface Slot extends DispatchSlot {
  agreement: Agreement
  offer: Offer
  peer: string
  /** The agreement's money: accepted work, vouchers, settlement. */
  account: RequestorAccount
  /** Results of this provider accepted and rejected in this job. */
  accepted: number
  rejected: number
  failures: number
  /** The provider's measured round trip (ms), for the report. */
  latencyMs: number | null
  openTx: Hex
  /** The latest debit note, answered once a result of this provider is accepted. */
  pendingNote?: DebitNote
}

/** A provider's result on its way to a verdict. */
interface Delivered {
  slot: Slot
  outcome: TaskOutcome
  envelope: unknown
  usage: { durationMs: number; cpuMs: number }
}

function taskDigest(task: TaskSpec): unknown {
  return { args: task.args, env: task.env, inputs: task.inputs.map((input) => [input.path, sha256Hex(input.data)]), outputs: task.outputs }
}

/** A stored, provider-signed result as the outcome it was when accepted (a resumed job's finished tasks). */
function outcomeFromSaved(document: unknown, taskIndex: number, provider: string): TaskOutcome {
  const result = storedTaskResult(document)
  return {
    taskIndex,
    provider: provider as Address,
    agreementId: result.agreementId as Hex,
    exitCode: result.exitCode,
    outputs: result.outputs.map((o) => ({ path: o.path, data: Buffer.from(o.dataBase64, 'base64') })),
    missingOutputs: result.missingOutputs,
    stdout: Buffer.from(result.stdoutBase64, 'base64'),
    stderr: Buffer.from(result.stderrBase64, 'base64'),
    usage: result.usage,
    roundTripMs: 0,
    attempts: 0,
    checked: false,
  }
}

function offersProgram(offer: Offer, program: string | undefined): boolean {
  const programs = offer.properties['hearth.runtime.native.programs']
  return program !== undefined && Array.isArray(programs) && programs.includes(program)
}

/** Sandbox verdicts: the program, not the provider, went wrong (it may still be retried once elsewhere). */
const taskFaultCodes = new Set(['HEARTH_ERR_EXEC_TIMEOUT', 'HEARTH_ERR_EXEC_MEMORY', 'HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', 'HEARTH_ERR_EXEC_FAILED', 'HEARTH_ERR_EXEC_PACKAGE_INVALID', 'HEARTH_ERR_EXEC_ENV_NOT_ALLOWED'])

/**
 * Refusals that say "not now": the provider has no room, its inbound budget is full, or it waits for a voucher to
 * cover unpaid work. The task goes elsewhere (or here again a little later), and nothing counts against the provider.
 */
const notNowCodes = new Set(['HEARTH_ERR_PROVIDER_BUSY', 'HEARTH_ERR_NET_BUSY', 'HEARTH_ERR_PAYMENT_UNPAID'])

/** Pings per candidate provider before choosing, in rounds this far apart; the least counts. */
const latencyPings = 5
const latencyPingGapMs = 150

/** Most threads a probe checks at once: enough to tell one from many, few enough to stay short. */
const maxProbeThreads = 8

/** Slack on a task's network deadline beyond its run deadline: transfer and signing. */
const taskNetworkSlackMs = 30_000

export function createRequestor(init: RequestorInit): Requestor {
  const { identity, host, store, payment, reputation } = init
  const market = init.market ?? createMarketNode({ host })
  const accounts = createRequestorAccounts({ identity, host, store, payment, ...(init.log === undefined ? {} : { log: init.log }) })
  const blobs = new Map<string, Uint8Array>()
  /** Providers with an agreement from this requestor: only they may fetch its blobs. */
  const allowedFetchers = new Set<string>()

  function checkResult(result: TaskResult, request: RunTaskRequest, roundTripMs: number): void {
    const problems: string[] = []
    // Metering is billed under linear pricing: it must fit what this requestor saw. A task cannot have run longer
    // than the round trip that carried it, nor past its deadline, nor used more CPU than its one core in that time:
    // exactly so for a wasi guest (one thread); native and docker runs are held to one core by a cgroup quota, which
    // the kernel enforces per 100 ms period, so a short burst of several processes may pass it by up to one period.
    const { durationMs, cpuMs } = result.usage
    const cpuSlackMs = request.runtime === 'wasi' ? 1 : 100
    if (durationMs > roundTripMs + 1 || durationMs > request.timeoutMs + 1000 || cpuMs > durationMs + cpuSlackMs) {
      problems.push(`its metering (${durationMs.toFixed(1)} ms run, ${cpuMs.toFixed(1)} ms CPU) does not fit a ${roundTripMs.toFixed(1)} ms round trip`)
    }
    if (result.agreementId !== request.agreementId || result.taskIndex !== request.taskIndex || result.activityId !== request.activityId) {
      problems.push('the result names another task')
    }
    if (result.requestHash !== hashCanonical(request)) problems.push('the result was computed for a different request')
    // What comes back is bounded as in the sandbox: the output limit, plus the inputs (an output may be an input the
    // program left as it was, which the sandbox does not count).
    const returnedBytes = result.outputs.reduce((sum, output) => sum + output.sizeBytes, 0) + Buffer.byteLength(result.stdoutBase64, 'base64') + Buffer.byteLength(result.stderrBase64, 'base64')
    const allowedBytes = request.maxOutputBytes + request.inputs.reduce((sum, input) => sum + input.sizeBytes, 0)
    if (returnedBytes > allowedBytes) problems.push(`it returns ${returnedBytes} bytes, more than the task's output limit allows (${allowedBytes})`)
    const wanted = new Set(request.outputs)
    for (const output of result.outputs) {
      const bytes = Buffer.from(output.dataBase64, 'base64')
      if (!wanted.has(output.path)) problems.push(`unrequested output ${output.path}`)
      if (bytes.length !== output.sizeBytes || sha256Hex(bytes) !== output.contentId) problems.push(`output ${output.path} does not match its hash`)
    }
    if (problems.length > 0) {
      throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `result of task ${request.taskIndex} refused: ${problems.join('; ')}`)
    }
  }

  /** A debit note is paid through the agreement's account: never more than the accepted results justify. */
  async function answerDebitNote(slot: Slot, note: DebitNote, emit: JobEventListener): Promise<void> {
    await slot.account.answer(note, {
      onDelivered: (acceptedWei) => emit({ type: 'voucher-delivered', provider: slot.offer.provider, agreementId: slot.agreement.id, cumulativeWei: acceptedWei.toString() }),
    })
  }

  let localProbe: Promise<{ localWorkMs: number; localScore: number; checksum: string }> | undefined

  /**
   * Checks a provider's offered threads and CPU score (probe.ts). One that over-claims gets no work from this job, no
   * pay for the probe, and a mark in the reputation book; an honest one is paid for the probe like any task.
   */
  async function probe(slot: Slot, localRuntime: WasiRuntime, jobId: string, emit: JobEventListener, servePackage: (bytes: Uint8Array) => string): Promise<void> {
    const wasm = await loadBuiltinWorkload('probe')
    const packageId = servePackage(wasm)
    const limits = { maxMemoryBytes: 16 << 20, timeoutMs: 60_000, maxOutputBytes: 1 << 20 }
    const work = (rounds: number): TaskSpec => ({ args: [String(rounds)], env: {}, inputs: [], outputs: [] })
    // This machine's own run of the work (after one that compiles the program), its CPU score, and the checksum.
    localProbe ??= (async () => {
      const runner = createLocalRunner({ runtime: localRuntime, concurrency: 1, ...limits })
      await runner.run([work(1)], { phase: 'probe', package: wasm })
      const [local] = await runner.run([work(probeRounds)], { phase: 'probe', package: wasm })
      return { localWorkMs: local!.usage.durationMs, localScore: measureCpuScore(), checksum: Buffer.from(local!.stdout).toString('utf8') }
    })()
    const local = await localProbe
    const threads = Math.max(1, Math.min(maxProbeThreads, Math.floor(Number(slot.offer.properties['golem.inf.cpu.threads'] ?? 1)) || 1))
    const claimedScore = Number(slot.offer.properties['hearth.inf.cpu.score'])
    const results: TaskResult[] = []
    let wrongAnswer = false
    const send = async (index: number, rounds: number): Promise<number> => {
      const task = work(rounds)
      const request: RunTaskRequest = {
        agreementId: slot.agreement.id, jobId: `${jobId}:probe`, taskIndex: index, activityId: randomUUID(), runtime: 'wasi', packageId,
        args: task.args, env: task.env, inputs: [], outputs: task.outputs, ...limits,
      }
      const sentAt = performance.now()
      const exchange = await host.exchange(slot.peer, runTaskProtocol, request, { timeoutMs: limits.timeoutMs + taskNetworkSlackMs })
      const roundTripMs = performance.now() - sentAt
      checkResult(exchange.response, request, roundTripMs)
      results.push(exchange.response)
      if (rounds === probeRounds && Buffer.from(exchange.response.stdoutBase64, 'base64').toString('utf8') !== local.checksum) wrongAnswer = true
      return roundTripMs
    }
    let verdict: ReturnType<typeof judgeProbe>
    try {
      // The first run fetches and compiles the program: not timed. Then a run that costs a round trip and almost no
      // work, the work alone, and the work on every offered thread at once.
      await send(0, 1)
      let next = 1
      const measure = async (): Promise<{ emptyWallMs: number; soloWallMs: number; parallelWallMs: number }> => {
        const emptyWallMs = await send(next++, 1)
        const soloWallMs = await send(next++, probeRounds)
        const parallelAt = performance.now()
        await Promise.all(Array.from({ length: threads }, () => send(next++, probeRounds)))
        return { emptyWallMs, soloWallMs, parallelWallMs: performance.now() - parallelAt }
      }
      const claims = { threads, cpuScore: Number.isFinite(claimedScore) ? claimedScore : undefined }
      const reference = { localWorkMs: local.localWorkMs, localScore: local.localScore }
      const first = await measure()
      verdict = judgeProbe(claims, { ...first, ...reference })
      if (verdict.overClaimed !== undefined && !wrongAnswer) {
        // A busy moment on either machine looks like a slow provider: an over-claim counts only if a second
        // measurement finds it too (each figure the better of the two). A real over-claim is far outside the margin.
        const second = await measure()
        verdict = judgeProbe(claims, {
          emptyWallMs: Math.min(first.emptyWallMs, second.emptyWallMs),
          soloWallMs: Math.min(first.soloWallMs, second.soloWallMs),
          parallelWallMs: Math.min(first.parallelWallMs, second.parallelWallMs),
          ...reference,
        })
      }
      if (wrongAnswer) verdict = { ...verdict, overClaimed: `its probe printed another checksum than the work gives${verdict.overClaimed === undefined ? '' : `; ${verdict.overClaimed}`}` }
    } catch (error) {
      // A provider that cannot even run the probe gets no work; that says nothing certain about its claims.
      slot.retired = true
      emit({ type: 'phase', message: `${slot.provider} did not complete the probe (${toHearthError(error).shortMessage}); it gets no work from this job` })
      return
    }
    emit({ type: 'probe', provider: slot.provider, measuredThreads: Number(verdict.measuredThreads.toFixed(2)), measuredScore: Math.round(verdict.measuredScore), ...(verdict.overClaimed === undefined ? {} : { overClaimed: verdict.overClaimed }) })
    if (verdict.overClaimed !== undefined) {
      slot.retired = true
      reputation?.record(slot.provider, 'invalid')
      emit({ type: 'phase', message: `${slot.provider} over-claims: ${verdict.overClaimed}; it is not paid for the probe and gets no work from this job` })
      return
    }
    // Honest: its probe work is paid like any accepted task.
    for (const result of results) slot.account.acceptTask(result.usage)
    const note = results.map((result) => result.debitNote).filter((n): n is DebitNote => n !== undefined).at(-1)
    if (note !== undefined && init.misbehave?.ignoreDebitNotes !== true) await answerDebitNote(slot, note, emit)
  }

  /** A few words on a result: its exit code and each output's comparable id (short), for disagreement messages. */
  function describeOutcome(outcome: TaskOutcome): string {
    const outputs = outcome.outputs.map((o) => `${o.path} ${comparableContentId(o.data).slice(0, 24)}…`)
    const missing = outcome.missingOutputs.map((path) => `${path} missing`)
    return [`exit ${outcome.exitCode}`, ...outputs, ...missing].join(', ')
  }

  /** What a task's result says, reduced to what must agree between providers: exit code and outputs (images by pixels). */
  function resultKey(outcome: TaskOutcome): string {
    return hashCanonical({
      exitCode: outcome.exitCode,
      outputs: outcome.outputs.map((o) => [o.path, comparableContentId(o.data)]),
      missing: outcome.missingOutputs,
      // Without output files the program's answer is its stdout.
      ...(outcome.outputs.length === 0 && outcome.missingOutputs.length === 0 ? { stdout: sha256Hex(outcome.stdout) } : {}),
    })
  }

  async function openJob(spec: JobSpec, options: { onEvent?: JobEventListener; signal?: AbortSignal } = {}): Promise<JobSession> {
    const emit = options.onEvent ?? (() => undefined)
    const started = performance.now()
    const replicas = Math.max(1, spec.verification?.replicas ?? 1)
    const adaptive = spec.verification?.adaptive ?? replicas === 1
    const spotCheckRate = spec.verification?.spotCheckRate ?? 0
    if (spotCheckRate > 0 && (spec.runtime !== 'wasi' || init.localRuntime === undefined)) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'spot checks recompute results on this machine, which only the wasi runtime can do here', {
        hint: 'use replicas (redundancy) to verify native and docker tasks, or set spotCheckRate to 0',
      })
    }
    const digest = spec.digest ?? hashCanonical({ runtime: spec.runtime, package: spec.package === undefined ? null : sha256Hex(spec.package), program: spec.program ?? null, imageId: spec.imageId ?? null, tasks: spec.tasks.map(taskDigest) })

    // A resumed job must be the same job: its results so far are reused, never rerun or paid again.
    let jobId: string
    const resumed = new Map<number, TaskOutcome>()
    if (spec.resumeJobId !== undefined) {
      const record = store.jobs.get(spec.resumeJobId)
      if (record === undefined) {
        throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `there is no job ${spec.resumeJobId} in this requestor's data directory`, {
          hint: 'pass the job id `hearth run` printed, and the same --data-dir',
        })
      }
      if (record.specDigest !== digest) {
        throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `job ${spec.resumeJobId} was started from a different job file`, {
          hint: 'resume with the job file the job was started with, unchanged',
        })
      }
      jobId = record.id
      for (const saved of store.taskResults.listByJob(jobId)) resumed.set(saved.taskIndex, outcomeFromSaved(saved.document, saved.taskIndex, saved.provider))
      store.jobs.setState(jobId, 'running')
      emit({ type: 'phase', message: `resuming job ${jobId}: ${resumed.size} tasks already done` })
    } else {
      jobId = randomUUID()
      store.jobs.create({ id: jobId, name: spec.name, specDigest: digest, taskCount: spec.tasks.length, state: 'running', createdAtMs: Date.now(), updatedAtMs: Date.now() })
    }
    emit({ type: 'job', jobId, resumedTasks: resumed.size })

    const packages = new Set<string>()
    const servePackage = (bytes: Uint8Array): string => {
      const id = sha256Hex(bytes)
      blobs.set(id, bytes)
      packages.add(id)
      return id
    }
    const packageId = spec.package === undefined ? undefined : servePackage(spec.package)

    // 1. Offers: what this node knows plus a direct ask of every connected peer, until enough match or the wait ends.
    const demandConstraints = [spec.demand?.constraints ?? '', spec.sla === undefined ? '' : slaConstraints(spec.sla).toString()]
      .filter((text) => text.trim() !== '')
      .join('')
    const demand = {
      properties: { 'golem.runtime.name': spec.runtime, ...spec.demand?.properties },
      // Checked here, before any offer is looked at: a malformed filter is the job's error, not a mismatch.
      constraints: demandConstraints === '' ? '' : compileConstraints(`(&${demandConstraints})`),
    }
    const excludedProviders = new Set<string>()
    const fits = (offer: Offer): boolean =>
      !(reputation?.excluded(offer.provider) ?? false) &&
      offeredRuntimes(offer).includes(spec.runtime) &&
      (spec.runtime !== 'native' || offersProgram(offer, spec.program)) &&
      maxTaskCostWei(offer.pricing, spec.timeoutMs) <= spec.maxPricePerTaskWei &&
      offer.payment.chainId === payment.client.chainId &&
      offer.payment.escrow.toLowerCase() === payment.escrowAddress.toLowerCase() &&
      matchDemandOffer(demand, { properties: offer.properties, constraints: offer.constraints }) === 'yes'
    emit({ type: 'phase', message: 'collecting offers' })
    await market.syncAll({ signal: options.signal })
    if (spec.resumeJobId !== undefined) await settleEarlierAgreements(jobId, emit)
    const wait = AbortSignal.timeout(spec.offerWaitMs ?? 3_000)
    let candidates = await market.offerBook.waitFor(spec.providers, fits, { signal: wait }).catch(() => market.offerBook.list(fits))
    for (const signed of market.offerBook.list(() => true)) if (reputation?.excluded(signed.payload.provider) === true) excludedProviders.add(signed.payload.provider)
    if (candidates.length === 0) {
      throw new HearthError('HEARTH_ERR_MARKET_NO_OFFERS', `no provider offers runtime ${spec.runtime} at ${spec.maxPricePerTaskWei} wei per task or less that meets the job's requirements`, {
        hint: `raise the price cap or loosen the requirements, or start providers (hearth demo starts local ones)${excludedProviders.size > 0 ? `; ${excludedProviders.size} providers are excluded for invalid results` : ''}`,
      })
    }
    emit({ type: 'offers', count: candidates.length })

    // Latency is a measurement, not a claim. Every candidate is dialled first (handshakes cost CPU on both sides, which
    // a ping taken meanwhile would count as distance), then pinged in a few rounds over about half a second; the least
    // of its pings is the distance, since one ping alone also measures whichever machine was busy at that moment. A
    // candidate that fails twice in a row (dial or ping; a ping dials again) is not asked any more: one failure may be
    // a busy moment, and a provider that is not measured ranks last on latency.
    const latencyMs = new Map<string, number>()
    const stepMs = spec.stepTimeoutMs ?? 3_000
    /** Measures the distance to each of `offers` (into `latencyMs`). */
    const measure = async (offers: readonly SignedOffer[]): Promise<void> => {
      const failures = new Map<string, number>()
      const failed = (key: string, ok: boolean): void => void failures.set(key, ok ? 0 : (failures.get(key) ?? 0) + 1)
      const dialling = AbortSignal.timeout(stepMs)
      await Promise.all(
        offers.map(async (signed) => {
          const ok = (await host.dial(offerTarget(signed.payload), { signal: dialling }).catch(() => undefined)) !== undefined
          failed(signed.payload.provider.toLowerCase(), ok)
        }),
      )
      for (let round = 0; round < latencyPings; round++) {
        // Apart in time, so that one busy spell (new connections sync their offers at first) does not mark every ping.
        if (round > 0) await new Promise((resolve) => setTimeout(resolve, latencyPingGapMs))
        const pinging = AbortSignal.timeout(stepMs)
        await Promise.all(
          offers.map(async (signed) => {
            const key = signed.payload.provider.toLowerCase()
            if ((failures.get(key) ?? 0) >= 2) return
            const rtt = await host.ping(offerTarget(signed.payload), { signal: pinging }).catch(() => undefined)
            failed(key, rtt !== undefined)
            if (rtt !== undefined) latencyMs.set(key, Math.min(latencyMs.get(key) ?? Infinity, rtt))
          }),
        )
      }
    }
    await measure(candidates)
    const nearest = Math.min(...latencyMs.values())
    emit({ type: 'phase', message: `measured the distance to ${latencyMs.size} of ${candidates.length} providers${latencyMs.size === 0 ? '' : ` (nearest ${nearest.toFixed(1)} ms)`}` })
    // Reached directly: their offers outrank offers only relayed by others when the book is full.
    for (const signed of candidates) if (latencyMs.has(signed.payload.provider.toLowerCase())) market.offerBook.markReached(signed.payload.provider)
    const nearEnough = (signed: SignedOffer): boolean => (latencyMs.get(signed.payload.provider.toLowerCase()) ?? Infinity) <= (spec.sla?.maxLatencyMs ?? Infinity)
    if (spec.sla?.maxLatencyMs !== undefined) {
      const limit = spec.sla.maxLatencyMs
      candidates = candidates.filter(nearEnough)
      if (candidates.length === 0) {
        throw new HearthError('HEARTH_ERR_MARKET_NO_OFFERS', `no matching provider answers within ${limit} ms`, { hint: 'raise maxLatencyMs' })
      }
    }
    // Every agreement may have to carry every task of the job (the others may all fail), replicas and later phases
    // included: the deposit covers that, and what is not spent comes back at settlement.
    const plannedTasks = Math.max(1, (spec.plannedTasks ?? spec.tasks.length) - resumed.size)
    const probing = spec.runtime === 'wasi' && (spec.verification?.probe ?? (spec.sla?.minThreads !== undefined || spec.sla?.minCpuScore !== undefined))
    // A probe runs up to 5 + 2 * maxProbeThreads tasks on each provider before the job's own (two measurements).
    const maxTasks = Math.min(1_000_000, plannedTasks * (replicas + 1) + (probing ? 5 + 2 * maxProbeThreads : 0))
    const tasksEach = Math.ceil(plannedTasks / spec.providers)
    const rank = (offers: readonly SignedOffer[]) =>
      rankOffers(offers, (signed) => signed.payload, {
        tasks: tasksEach,
        taskTimeoutMs: spec.timeoutMs,
        weights: spec.weights,
        latencyMs,
        near: spec.near,
        ...(reputation === undefined ? {} : { reputation: (provider: string) => reputation.score(provider) }),
      })
    const ranked = rank(candidates)
    // Verification needs several providers: as many agreements as results wanted per task, at least.
    const wanted = Math.max(spec.providers, replicas)
    // A few spares beyond the need, so providers that stay silent or refuse cost no waiting.
    const chosen = ranked.slice(0, wanted + Math.max(2, Math.ceil(wanted / 2))).map((r) => r.item)

    // Money check before anything is signed or locked: the dearest chosen offer, for every agreement wanted.
    /** The largest deposit any of `offers` needs: what each agreement wanted is budgeted at. */
    const dearestOf = (offers: readonly SignedOffer[]): bigint =>
      offers.reduce((max, signed) => {
        const deposit = maxCostWei(signed.payload.pricing, maxTasks, spec.timeoutMs)
        return deposit > max ? deposit : max
      }, 0n)
    const dearestWei = dearestOf(chosen)
    let agreementsWanted = Math.min(wanted, chosen.length)
    // The pool is sized to the budget: fewer agreements when all would lock more than it allows, never fewer than
    // verification needs; and when not even that fits, the job stops here with what to change.
    if (spec.budgetWei !== undefined && dearestWei * BigInt(agreementsWanted) > spec.budgetWei) {
      const affordable = dearestWei === 0n ? agreementsWanted : Number(spec.budgetWei / dearestWei)
      const minimum = Math.min(Math.max(1, replicas), chosen.length)
      if (affordable < minimum) {
        const cheapestWei = ranked.reduce((min, r) => {
          const cost = maxCostWei(r.item.payload.pricing, plannedTasks * replicas, spec.timeoutMs)
          return min === undefined || cost < min ? cost : min
        }, undefined as bigint | undefined)
        throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `the budget of ${spec.budgetWei} wei is too small: each agreement's deposit is up to ${dearestWei} wei (it covers ${maxTasks} tasks at the provider's price), and ${minimum} are needed`, {
          hint: `raise the budget to at least ${dearestWei * BigInt(minimum)} wei (the work itself costs about ${cheapestWei ?? 0n} wei; unspent deposits come back), use fewer replicas, or lower the price cap`,
        })
      }
      emit({ type: 'phase', message: `the budget allows ${affordable} of ${agreementsWanted} agreements` })
      agreementsWanted = affordable
    }
    const depositsWei = dearestWei * BigInt(agreementsWanted)
    const balanceWei = await tokenBalanceOf(payment, identity.address)
    if (balanceWei < depositsWei) {
      throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `the deposits need up to ${depositsWei} wei but the wallet holds ${balanceWei} wei`, {
        hint: 'fund the requestor wallet, use fewer providers, or lower the price cap',
      })
    }

    // 2. Agreements with the chosen providers, all at once; the first to sign are kept.
    emit({ type: 'phase', message: `negotiating with ${chosen.length} providers for ${agreementsWanted} agreements` })
    const termsFor = (offer: Offer): AgreementTerms =>
      proposeTerms({
        offer,
        requestor: identity.address,
        runtime: spec.runtime,
        maxTasks,
        taskTimeoutMs: spec.timeoutMs,
        jobName: `${spec.name} (${jobId})`,
        ...(spec.sla?.minGpus === undefined ? {} : { gpus: spec.sla.minGpus }),
        ...(spec.debitNoteIntervalSec === undefined ? {} : { debitNoteIntervalSec: spec.debitNoteIntervalSec }),
        ...(spec.paymentTimeoutSec === undefined ? {} : { paymentTimeoutSec: spec.paymentTimeoutSec }),
      })
    const limits = { maxPerTaskWei: spec.maxPricePerTaskWei, minDurationSec: 600, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 }
    const negotiated = await negotiateMany({ host, identity, store, onEvent: emit }, chosen, {
      need: agreementsWanted,
      termsFor,
      limits,
      stepTimeoutMs: spec.stepTimeoutMs,
      signal: options.signal,
    })
    const agreements = negotiated.agreements
    for (const { offer } of agreements) market.offerBook.markReached(offer.provider, 'answered')
    if (agreements.length === 0) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'every provider refused or failed to sign an agreement', {
        hint: `reasons: ${negotiated.failures.map((f) => `${f.provider}: ${f.message}`).join('; ')}`,
      })
    }

    // 3. Escrow: the deposits of every agreement in one transaction, through their accounts.
    emit({ type: 'phase', message: 'opening escrows on chain' })
    const opened = await accounts.open(agreements)
    const slotFor = ({ agreement, offer }: { agreement: Agreement; offer: Offer }, openTx: Hex): Slot => {
      const depositWei = BigInt(agreement.terms.depositWei)
      allowedFetchers.add(offer.provider.toLowerCase())
      emit({ type: 'escrow-opened', provider: offer.provider, agreementId: agreement.id, depositWei: depositWei.toString(), txHash: openTx })
      const threads = Number(offer.properties['golem.inf.cpu.threads'] ?? 1)
      return {
        provider: offer.provider,
        // One task more than the provider has threads: the next one waits there while a result travels back, so a
        // provider does not idle for a round trip between tasks.
        capacity: Math.max(1, Math.min(Number.isFinite(threads) ? threads : 1, 8)) + 1,
        retired: false,
        agreement,
        offer,
        peer: offerTarget(offer),
        account: accounts.account(agreement.id),
        accepted: 0,
        rejected: 0,
        failures: 0,
        latencyMs: latencyMs.get(offer.provider.toLowerCase()) ?? null,
        openTx,
      }
    }
    /**
     * Providers reached through a relay: a hole punch to them may be under way (hole-punch.ts). Tasks wait for it, so
     * they go over the punched connection, not through the relay, and outlive it.
     */
    const awaitPaths = async (fresh: readonly Slot[]): Promise<void> => {
      await Promise.all(fresh.map(async (slot) => {
        const kind = await host.reachedBy(slot.peer, options.signal === undefined ? {} : { signal: options.signal }).catch(() => undefined)
        if (kind === 'hole-punched') emit({ type: 'phase', message: `${slot.provider} is reached directly, hole-punched through both NATs` })
        else if (kind === 'relayed') emit({ type: 'phase', message: `${slot.provider} is reached through a relay` })
      }))
    }
    const slots: Slot[] = agreements.map((signed) => slotFor(signed, opened.txHash))
    await awaitPaths(slots)

    if (probing) {
      if (init.localRuntime === undefined) emit({ type: 'phase', message: 'probes compare providers with this machine, which has no wasi runtime here: skipped' })
      else {
        emit({ type: 'phase', message: `probing ${slots.length} providers: do they have the threads and speed they offer?` })
        for (const slot of slots) await probe(slot, init.localRuntime, jobId, emit, servePackage)
      }
    }

    /**
     * Churn: more agreements while the job runs, when some of its providers are gone (for now or for good). From the
     * offers that match now (providers that appeared since, or were not chosen), ranked as at the start, within the
     * budget; providers that refused once are not asked again in this job. Nothing is committed once `signal` aborts:
     * an agreement without an escrow lapses on the provider's side.
     */
    const refusedMidJob = new Set<string>()
    const recruit = async (missing: number, signal: AbortSignal): Promise<Slot[]> => {
      const inPool = new Set(slots.map((slot) => slot.provider.toLowerCase()))
      let fresh = market.offerBook.list(fits).filter((signed) => !inPool.has(signed.payload.provider.toLowerCase()) && !refusedMidJob.has(signed.payload.provider.toLowerCase()))
      if (fresh.length === 0) return []
      await measure(fresh)
      fresh = fresh.filter(nearEnough)
      const picked = rank(fresh).slice(0, missing + 1).map((r) => r.item)
      if (picked.length === 0 || signal.aborted) return []
      const dearest = dearestOf(picked)
      const lockedWei = slots.reduce((sum, slot) => sum + BigInt(slot.agreement.terms.depositWei), 0n)
      let need = Math.min(missing, picked.length)
      if (spec.budgetWei !== undefined && dearest > 0n) need = Math.min(need, Number((spec.budgetWei - lockedWei) / dearest))
      if (need > 0 && (await tokenBalanceOf(payment, identity.address)) < dearest * BigInt(need)) need = 0
      if (need <= 0) {
        emit({ type: 'phase', message: `${missing} providers are gone, and the budget or the wallet allows no new agreement` })
        return []
      }
      emit({ type: 'phase', message: `${missing} providers are gone: negotiating with ${picked.length} others for ${need} agreements` })
      const more = await negotiateMany({ host, identity, store, onEvent: emit }, picked, {
        need,
        termsFor,
        limits,
        stepTimeoutMs: spec.stepTimeoutMs,
        signal: options.signal === undefined ? signal : AbortSignal.any([signal, options.signal]),
      })
      for (const failure of more.failures) refusedMidJob.add(failure.provider.toLowerCase())
      if (more.agreements.length === 0 || signal.aborted) return []
      for (const { offer } of more.agreements) market.offerBook.markReached(offer.provider, 'answered')
      const openedMore = await accounts.open(more.agreements)
      const added = more.agreements.map((signed) => slotFor(signed, openedMore.txHash))
      await awaitPaths(added)
      if (probing && init.localRuntime !== undefined) for (const slot of added) await probe(slot, init.localRuntime, jobId, emit, servePackage)
      return added
    }

    if (slots.length < 2 && (replicas > 1 || (adaptive && reputation !== undefined))) {
      emit({ type: 'phase', message: 'only one provider: its results cannot be checked by another, and are taken as they come (add providers, or spot checks for wasi)' })
    }
    const figures = { accepted: 0, attempts: 0, retries: 0, checks: 0, rejected: 0, stragglers: 0, failures: 0, spotChecks: 0, spotRejected: 0, spotFailed: 0, resumed: resumed.size }
    const spotChecker = spotCheckRate > 0 && init.localRuntime !== undefined ? createLocalRunner({ runtime: init.localRuntime, concurrency: 1, maxMemoryBytes: spec.maxMemoryBytes, timeoutMs: spec.timeoutMs, maxOutputBytes: spec.maxOutputBytes }) : undefined
    const random = init.random ?? Math.random
    let nextTaskIndex = 0
    let closed: AgreementOutcome[] | undefined

    /** One batch of tasks over the pool; task indices continue from batch to batch, so a job's results stay apart. */
    async function runBatch(tasks: TaskSpec[], batchOptions: { phase?: string; package?: Uint8Array } = {}): Promise<BatchOutcome> {
      if (closed !== undefined) throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'this job is closed', { hint: 'open a new job' })
      const base = nextTaskIndex
      nextTaskIndex += tasks.length
      const batchPackageId = batchOptions.package === undefined ? packageId : servePackage(batchOptions.package)
      const phase = batchOptions.phase ?? 'tasks'
      const total = tasks.length
      const results: (TaskOutcome | undefined)[] = tasks.map((_, i) => resumed.get(base + i))
      let done = results.filter((r) => r !== undefined).length
      const spotChecked = new Set<number>()
      emit({ type: 'phase', message: `running ${total} ${phase}${done > 0 ? ` (${done} done before)` : ''}` })
      emit({ type: 'batch', phase, total, done })

      /** The latest tasks' run times as the providers metered them (a ring of 256). */
      const computeSamples: number[] = []
      let computeCount = 0

      const buildRequest = (slot: Slot, index: number): RunTaskRequest => {
        const task = tasks[index]!
        return {
          agreementId: slot.agreement.id,
          jobId,
          taskIndex: base + index,
          activityId: randomUUID(),
          runtime: spec.runtime,
          ...(batchPackageId === undefined ? {} : { packageId: batchPackageId }),
          ...(spec.program === undefined ? {} : { program: spec.program }),
          ...(spec.imageId === undefined ? {} : { imageId: spec.imageId }),
          args: task.args,
          env: task.env,
          inputs: task.inputs.map((input) => ({
            path: input.path,
            contentId: sha256Hex(input.data),
            sizeBytes: input.data.length,
            dataBase64: Buffer.from(input.data).toString('base64'),
          })),
          outputs: task.outputs,
          timeoutMs: spec.timeoutMs,
          maxMemoryBytes: spec.maxMemoryBytes,
          maxOutputBytes: spec.maxOutputBytes,
        }
      }

      /** A provider's signed result for one task, checked (and perhaps spot-checked) on its way to a verdict. */
      const accept = async (slot: Slot, index: number, request: RunTaskRequest, result: TaskResult, envelope: unknown, roundTripMs: number): Promise<Attempt<Delivered>> => {
        checkResult(result, request, roundTripMs)
        if (result.debitNote !== undefined) slot.pendingNote = result.debitNote
        const outcome: TaskOutcome = {
          taskIndex: index,
          provider: slot.offer.provider as Address,
          agreementId: slot.agreement.id as Hex,
          exitCode: result.exitCode,
          outputs: result.outputs.map((o) => ({ path: o.path, data: Buffer.from(o.dataBase64, 'base64') })),
          missingOutputs: result.missingOutputs,
          stdout: Buffer.from(result.stdoutBase64, 'base64'),
          stderr: Buffer.from(result.stderrBase64, 'base64'),
          usage: result.usage,
          roundTripMs,
          attempts: 0,
        }
        const key = resultKey(outcome)
        if (computeSamples.length < 256) computeSamples.push(result.usage.durationMs)
        else computeSamples[computeCount % 256] = result.usage.durationMs
        computeCount++
        // A spot check: this machine computes the same task and compares. The provider cannot tell it apart from
        // any other task, so a provider that cheats now and then is caught in proportion.
        if (spotChecker !== undefined && random() < spotCheckRate * (reputation?.checkProbability(slot.provider) ?? 1)) {
          figures.spotChecks++
          let local: TaskOutcome | undefined
          try {
            local = (await spotChecker.run([tasks[index]!], { phase: 'spot check', ...(batchOptions.package === undefined ? { package: spec.package } : { package: batchOptions.package }) }))[0]
          } catch (error) {
            // This machine could not recompute the task (out of memory, a deadline, a runtime closed): that says nothing
            // about the provider's result, which goes on to the usual verification, and nothing counts against it.
            figures.spotFailed++
            emit({ type: 'phase', message: `spot check of task ${base + index} could not run here (${toHearthError(error).shortMessage}); the result is verified as usual` })
          }
          const localKey = local === undefined ? key : resultKey(local)
          if (localKey !== key) {
            figures.spotRejected++
            figures.rejected++
            slot.rejected++
            reputation?.record(slot.provider, 'invalid')
            emit({ type: 'task-rejected', taskIndex: base + index, provider: slot.provider, reason: 'a local recompute gave other outputs' })
            return { ok: false, message: `${slot.provider} returned a result that a local recompute contradicts`, taskAtFault: false, providerAtFault: true }
          }
          if (local !== undefined) spotChecked.add(index)
        }
        return { ok: true, result: { slot, outcome, envelope, usage: result.usage }, key, summary: describeOutcome(outcome), elapsedMs: roundTripMs }
      }

      /** Why an attempt failed, and whose doing it was. */
      const failure = async (slot: Slot, error: unknown, signal: AbortSignal): Promise<Attempt<Delivered>> => {
        const hearthError = toHearthError(error)
        const remoteCode = hearthError.details?.remoteCode
        const taskAtFault = typeof remoteCode === 'string' && taskFaultCodes.has(remoteCode)
        const message = taskAtFault ? String(hearthError.details?.remoteMessage ?? hearthError.shortMessage) : hearthError.shortMessage
        // Given up by this requestor (another provider finished the task first, or the job was cancelled): nobody's fault.
        if (signal.aborted) return { ok: false, message, taskAtFault: false, providerAtFault: false }
        const timedOut = hearthError.code === 'HEARTH_ERR_NET_TIMEOUT'
        // A provider whose owner came back (paused) or that has no room right now declined the task: no mark
        // against it, but a paused one gets no more work from this job, and either way the task goes elsewhere.
        const notNow = notNowCodes.has(typeof remoteCode === 'string' ? remoteCode : hearthError.code)
        const declined = remoteCode === 'HEARTH_ERR_PROVIDER_PAUSED' || remoteCode === 'HEARTH_ERR_PROVIDER_TOO_SMALL' || notNow
        if (!taskAtFault && !declined && !signal.aborted) reputation?.record(slot.provider, timedOut ? 'timeout' : 'failed')
        if (remoteCode === 'HEARTH_ERR_PROVIDER_TOO_SMALL') {
          // It lends too little for this job's tasks: no more of them go there, and the task is not at fault.
          return { ok: false, message, taskAtFault: false, providerAtFault: true, declined: true }
        }
        if (notNow) {
          // Full for now, or waiting to be paid: the task goes elsewhere, and this provider is asked again a little later.
          await new Promise((resolve) => setTimeout(resolve, 250))
          return { ok: false, message, taskAtFault: false, providerAtFault: false, declined: true }
        }
        // Not reachable, or gone while it held the task (its connection closed without an answer): a home machine that
        // restarts or loses its line. The scheduler asks it again after a backoff; nothing counts against the task.
        // With this node itself stopped, every provider looks unreachable: that is no provider's churn.
        const unreachable =
          host.libp2p.status === 'started' &&
          ((hearthError.code === 'HEARTH_ERR_NET_DIAL' && hearthError.details?.reason !== 'unsupported-protocol') ||
            (hearthError.code === 'HEARTH_ERR_NET_REMOTE' && remoteCode === undefined))
        if (unreachable) return { ok: false, message, taskAtFault: false, providerAtFault: false, unreachable: true }
        // A provider that fails twice in a row gets no more tasks from this job; a task that broke its own sandbox
        // limits is the task's doing, not the provider's. A result that fails its own checks is the provider's, and so
        // is no answer at all: its sandbox ends a task at the deadline, and the network deadline adds 30 s to that.
        const providerAtFault =
          remoteCode === 'HEARTH_ERR_PROVIDER_PAUSED' || (!taskAtFault && (hearthError.code === 'HEARTH_ERR_SIGNATURE_INVALID' || (timedOut && remoteCode === undefined) || ++slot.failures >= 2))
        return { ok: false, message, taskAtFault, providerAtFault }
      }

      const attempt = async (slot: Slot, index: number, signal: AbortSignal): Promise<Attempt<Delivered>> => {
        const request = buildRequest(slot, index)
        const sentAt = performance.now()
        try {
          const exchange = await host.exchange(slot.peer, runTaskProtocol, request, { timeoutMs: spec.timeoutMs + taskNetworkSlackMs, signal })
          return await accept(slot, index, request, exchange.response, exchange.envelope, performance.now() - sentAt)
        } catch (error) {
          return failure(slot, error, signal)
        }
      }

      /** Several tasks in one signed exchange; each answer is then judged as if it came alone. */
      const attemptMany = async (slot: Slot, indices: number[], signal: AbortSignal): Promise<Attempt<Delivered>[]> => {
        const requests = indices.map((index) => buildRequest(slot, index))
        const sentAt = performance.now()
        let exchange: { response: { answers: BatchAnswer[] }; envelope: unknown }
        try {
          exchange = await host.exchange(slot.peer, runTasksProtocol, { tasks: requests }, { timeoutMs: spec.timeoutMs * indices.length + taskNetworkSlackMs, signal })
          if (exchange.response.answers.length !== requests.length) {
            throw new HearthError('HEARTH_ERR_SIGNATURE_INVALID', `the provider answered ${exchange.response.answers.length} of ${requests.length} tasks`)
          }
        } catch (error) {
          const failed = await failure(slot, error, signal)
          return indices.map(() => failed)
        }
        const roundTripMs = performance.now() - sentAt
        return Promise.all(
          exchange.response.answers.map(async (answer, i) => {
            if (!answer.ok) {
              const remote = new HearthError('HEARTH_ERR_NET_REMOTE', answer.message, { details: { remoteCode: answer.code, remoteMessage: answer.message } })
              return failure(slot, remote, signal)
            }
            // The batch's signed answer is what binds this result: it is kept with it.
            return accept(slot, indices[i]!, requests[i]!, answer.result, { batch: exchange.envelope, index: i }, roundTripMs).catch((error: unknown) => failure(slot, error, signal))
          }),
        )
      }

      const outcome = await dispatch<Delivered>({
        taskCount: total,
        slots,
        poolSize: agreementsWanted,
        recruit: (missing, signal) => recruit(missing, signal),
        done: results.flatMap((r, i) => (r === undefined ? [] : [i])),
        replicas,
        ...(spec.verification?.quorum === undefined ? {} : { quorum: spec.verification.quorum }),
        ...(adaptive && replicas === 1 && reputation !== undefined ? { checkProbability: (provider: string) => reputation.checkProbability(provider), random } : {}),
        maxFailures: spec.maxAttempts ?? 3,
        ...(spec.awayLimitMs === undefined ? {} : { comeback: { giveUpMs: spec.awayLimitMs } }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        run: (slot, index, signal) => attempt(slot as Slot, index, signal),
        runBatch: (slot, indices, signal) => attemptMany(slot as Slot, indices, signal),
        // Tasks of a few milliseconds go several to a request, so that its fixed cost (a stream, two signatures) is
        // shared; anything slower goes alone, where batching would only delay results.
        batchSize: (slot) => batchSizeFor(medianOf(computeSamples), slot.capacity, (slot as Slot).offer.properties['hearth.payment.maxUnpaidTasks']),
        onStarted: (index, slot, reason) => emit({ type: 'task-started', taskIndex: base + index, provider: slot.provider, reason }),
        onAttemptFailed: (index, slot, failure, willRetry) => emit({ type: 'task-failed', taskIndex: base + index, provider: slot.provider, message: failure.message, willRetry }),
        onVerdict: async (verdict) => {
          const checked = verdict.checked || spotChecked.has(verdict.taskIndex)
          for (const { result } of verdict.invalid) {
            const slot = result.slot
            slot.rejected++
            reputation?.record(slot.provider, 'invalid')
            emit({ type: 'task-rejected', taskIndex: base + verdict.taskIndex, provider: slot.provider, reason: 'its outputs disagree with the other providers' })
            if (reputation?.excluded(slot.provider) === true) slot.retired = true
          }
          for (const { result } of verdict.valid) {
            const slot = result.slot
            // Accepted: pay for it with a voucher for everything accepted so far (when a debit note asks).
            slot.accepted++
            slot.failures = 0
            slot.account.acceptTask(result.usage)
            reputation?.record(slot.provider, checked ? 'valid' : 'unchecked')
            const note = slot.pendingNote
            slot.pendingNote = undefined
            if (note !== undefined && init.misbehave?.ignoreDebitNotes !== true) await answerDebitNote(slot, note, emit)
          }
          const winner = verdict.valid[0]!.result
          store.taskResults.save({ jobId, taskIndex: base + verdict.taskIndex, agreementId: winner.slot.agreement.id, provider: winner.slot.provider, document: winner.envelope, acceptedAtMs: Date.now() })
          results[verdict.taskIndex] = { ...winner.outcome, taskIndex: verdict.taskIndex, attempts: verdict.valid.length + verdict.invalid.length, checked, agreeingProviders: verdict.valid.length }
          done++
          figures.accepted++
          emit({ type: 'task-done', taskIndex: base + verdict.taskIndex, provider: winner.slot.provider, done, total, checked, spentWei: spentWei().toString(), agreeing: verdict.valid.map((v) => v.slot.provider) })
        },
      })
      for (const key of Object.keys(outcome.figures) as (keyof typeof outcome.figures)[]) figures[key] += outcome.figures[key]
      const failures = [...outcome.failed.entries()].sort((a, b) => a[0] - b[0]).map(([taskIndex, message]) => ({ taskIndex, message }))
      return { results, failures }
    }

    const spentWei = (): bigint => slots.reduce((sum, slot) => sum + slot.account.owedWei(), 0n)

    async function close(): Promise<AgreementOutcome[]> {
      if (closed !== undefined) return closed
      closed = []
      // 5. Settle: each provider claims its latest voucher and releases the rest of the deposit back to us.
      emit({ type: 'phase', message: 'settling agreements' })
      closed = await Promise.all(slots.map((slot) => settleSlot(slot, emit)))
      for (const id of packages) blobs.delete(id)
      return closed
    }

    return {
      jobId,
      get slots() {
        return slots.length
      },
      runBatch,
      async run(tasks, runOptions) {
        const batch = await runBatch(tasks, runOptions)
        if (batch.failures.length > 0) {
          const first = batch.failures[0]!
          throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `${batch.failures.length} of ${tasks.length} ${runOptions?.phase ?? 'tasks'} could not be completed; task ${first.taskIndex}: ${first.message}`, {
            hint: 'see the task errors; rerun with hearth run --resume to finish the job without redoing the tasks that were done',
            details: { failures: batch.failures },
          })
        }
        return batch.results as TaskOutcome[]
      },
      figures: () => ({ ...figures }),
      spentWei,
      close,
      async finish(state) {
        const agreementsOut = await close()
        store.jobs.setState(jobId, state)
        return { agreements: agreementsOut, wallMs: performance.now() - started }
      },
      async [Symbol.asyncDispose]() {
        await close()
        const record = store.jobs.get(jobId)
        if (record?.state === 'running') store.jobs.setState(jobId, 'failed')
      },
    }
  }

  /** Settles one agreement through its account; the outcome's figures come from the account and the chain. */
  async function settleSlot(slot: Slot, emit: JobEventListener): Promise<AgreementOutcome> {
    const { account } = slot
    const settlement = await account.settle()
    if (settlement.failure !== undefined) {
      emit({ type: 'phase', message: `${account.provider} did not settle (${settlement.failure}); its vouchers are delivered again while the escrow lasts, and the rest comes back after expiry` })
    } else if (settlement.invoice !== undefined && BigInt(settlement.invoice.amountDueWei) > settlement.finalWei) {
      emit({ type: 'phase', message: `${account.provider} invoiced ${settlement.invoice.amountDueWei} wei; only ${settlement.finalWei} wei is justified by accepted results` })
    }
    emit({ type: 'settled', provider: account.provider, agreementId: account.agreementId, paidWei: settlement.paidWei.toString(), refundedWei: settlement.refundedWei.toString(), txHash: settlement.settleTx })
    return {
      agreementId: account.agreementId as Hex,
      provider: account.provider,
      pricing: account.terms.pricing,
      tasks: slot.accepted,
      rejected: slot.rejected,
      acceptedUsage: account.accepted(),
      depositWei: account.depositWei,
      vouchers: account.vouchers(),
      signedWei: account.signedWei(),
      paidWei: settlement.paidWei,
      refundedWei: settlement.refundedWei,
      lockedWei: account.depositWei - settlement.paidWei - settlement.refundedWei,
      latencyMs: slot.latencyMs,
      openTx: slot.openTx,
      settleTx: settlement.settleTx,
      settled: settlement.closed,
    }
  }

  /**
   * A resumed job first settles the agreements its earlier run left open: each provider gets a final voucher for what
   * this requestor accepted from it (its account kept every accepted result, the checking providers' included) and
   * claims it. Nothing is paid twice: vouchers are cumulative per agreement, and the new run makes new agreements. A
   * provider that does not answer keeps getting its voucher while the escrow lasts; the rest comes back after expiry.
   */
  async function settleEarlierAgreements(jobId: string, emit: JobEventListener): Promise<void> {
    for (const record of store.agreements.list()) {
      const agreement = record.document as Agreement
      if (record.role !== 'requestor' || agreement.terms === undefined || !agreement.terms.jobName.endsWith(`(${jobId})`)) continue
      if (record.state === 'terminated' || record.state === 'expired') continue
      const escrow = store.escrows.get(agreement.id)
      if (escrow === undefined || escrow.closed) continue
      allowedFetchers.add(agreement.terms.provider.toLowerCase())
      const account = accounts.account(agreement.id)
      const settlement = await account.settle()
      if (settlement.failure !== undefined) emit({ type: 'phase', message: `${agreement.terms.provider} of an earlier agreement did not settle (${settlement.failure}); its vouchers are delivered again while the escrow lasts` })
      emit({ type: 'settled', provider: account.provider, agreementId: account.agreementId, paidWei: settlement.paidWei.toString(), refundedWei: settlement.refundedWei.toString(), txHash: settlement.settleTx })
    }
  }

  async function runJob(spec: JobSpec, options: { onEvent?: JobEventListener; signal?: AbortSignal } = {}): Promise<JobOutcome> {
    const session = await openJob(spec, options)
    let batch: BatchOutcome
    try {
      batch = await session.runBatch(spec.tasks)
    } catch (error) {
      await session[Symbol.asyncDispose]()
      throw error
    }
    const finished = await session.finish(batch.failures.length === 0 ? 'finished' : 'failed')
    return { jobId: session.jobId, results: batch.results, failures: batch.failures, agreements: finished.agreements, wallMs: finished.wallMs, figures: session.figures() }
  }

  return {
    offerBook: market.offerBook,
    market,
    accounts,
    runJob,
    openJob,
    refundExpired: () => accounts.refundExpired(),
    async start() {
      if (init.market === undefined) await market.start()
      // Serves providers asking what they are owed and sending debit notes; refunds expired escrows and delivers
      // vouchers that did not arrive before this requestor last stopped.
      await accounts.start()
      // Only providers with an agreement from this requestor may fetch its blobs, over either version.
      const blobChunk = (contentId: string, offset: number, maxBytes: number, remoteAddress: string): { totalBytes: number; chunk: Uint8Array } => {
        const bytes = blobs.get(contentId)
        if (bytes === undefined || !allowedFetchers.has(remoteAddress.toLowerCase())) {
          throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `this requestor does not serve ${contentId} to you`)
        }
        return { totalBytes: bytes.length, chunk: bytes.subarray(Math.min(offset, bytes.length), Math.min(offset + maxBytes, bytes.length)) }
      }
      await serveBlobProtocol({ libp2p: host.libp2p }, fetchBlobBinaryProtocol, ({ contentId, offset, maxBytes }, ctx) => {
        const { totalBytes, chunk } = blobChunk(contentId, offset, maxBytes, ctx.remoteAddress)
        return { header: { contentId, totalBytes, offset }, body: chunk }
      })
      // fetch-blob/2 stays for providers that do not speak /3 yet.
      await host.handle(fetchBlobProtocol, ({ contentId, offset, maxBytes }, ctx) => {
        const { totalBytes, chunk } = blobChunk(contentId, offset, maxBytes, ctx.remoteAddress)
        return { contentId, totalBytes, offset, dataBase64: Buffer.from(chunk).toString('base64') }
      })
    },
    async stop() {
      await accounts.stop()
      await host.libp2p.unhandle(fetchBlobBinaryProtocol.id).catch(() => undefined)
      await host.unhandle(fetchBlobProtocol).catch(() => undefined)
      if (init.market === undefined) await market.stop()
    },
  }
}

function medianOf(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}
