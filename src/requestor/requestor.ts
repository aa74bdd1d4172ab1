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
import type { Offer } from '../market/offer.ts'
import { createMarketNode, type MarketNode } from '../market/market-node.ts'
import { rankOffers, type GeoPoint, type StrategyWeights } from '../market/strategy.ts'
import { negotiateMany, offerTarget } from './negotiator.ts'
import { addUsage, costWei, maxCostWei, maxTaskCostWei, noUsage, type Pricing, type Usage } from '../market/pricing.ts'
import { compileConstraints } from '../market/constraints/evaluate.ts'
import { matchDemandOffer } from '../market/constraints/match.ts'
import type { Properties } from '../market/constraints/properties.ts'
import { slaConstraints, type Sla } from '../market/sla.ts'
import type { Host } from '../net/host.ts'
import { fetchBlobProtocol, runTaskProtocol, type RunTaskRequest, type TaskResult } from '../exec/activity-protocols.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import { approveEscrow, chainTimeSec, getEscrow, openEscrows, refundEscrow, tokenBalanceOf, type EscrowContext } from '../payment/escrow.ts'
import { settleProtocol, voucherProtocol } from '../payment/payment-protocols.ts'
import { signVoucher, voucherToJson, type Voucher } from '../payment/voucher.ts'
import type { DebitNote } from '../market/billing.ts'
import type { Store } from '../store/store.ts'
import type { JobEventListener } from './events.ts'

export interface TaskSpec {
  args: string[]
  env: Record<string, string>
  /** Files placed in the task directory before it runs, by guest path. */
  inputs: { path: string; data: Uint8Array }[]
  /** Guest paths to bring back. */
  outputs: string[]
}

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
  /** How often providers send debit notes (default 60 s; the first task's result always carries one). */
  debitNoteIntervalSec?: number
  /** How long a debit note may wait for its voucher before the provider stops (default 300 s). */
  paymentTimeoutSec?: number
}

export interface TaskOutcome {
  taskIndex: number
  provider: Address
  agreementId: Hex
  exitCode: number
  outputs: { path: string; data: Uint8Array }[]
  missingOutputs: string[]
  stdout: Uint8Array
  stderr: Uint8Array
  usage: { durationMs: number; cpuMs: number }
  /** Wall time of the whole round trip as the requestor saw it. */
  roundTripMs: number
  attempts: number
}

export interface AgreementOutcome {
  agreementId: Hex
  provider: Address
  pricing: Pricing
  tasks: number
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
}

export interface Requestor {
  readonly offerBook: OfferBook
  readonly market: MarketNode
  start(): Promise<void>
  stop(): Promise<void>
  runJob(spec: JobSpec, options?: { onEvent?: JobEventListener; signal?: AbortSignal }): Promise<JobOutcome>
  /**
   * Takes back the unclaimed rest of every escrow whose provider never settled, once the agreement has expired (chain
   * time). Safe to call at any time: escrows that are closed or not yet expired are left alone.
   */
  refundExpired(): Promise<{ agreementId: string; txHash: string; refundedWei: bigint }[]>
}

interface Slot {
  agreement: Agreement
  offer: Offer
  peer: string
  pricing: Pricing
  /** Work accepted from this provider, as its signed results metered it: what the vouchers pay for. */
  acceptedUsage: Usage
  vouchers: number
  voucheredWei: bigint
  accepted: number
  failures: number
  openTx: Hex
  retired: boolean
  vouchersSent: Promise<void>
}

function offersProgram(offer: Offer, program: string | undefined): boolean {
  const programs = offer.properties['hearth.runtime.native.programs']
  return program !== undefined && Array.isArray(programs) && programs.includes(program)
}

/** Sandbox verdicts: the program, not the provider, went wrong (it may still be retried once elsewhere). */
const taskFaultCodes = new Set(['HEARTH_ERR_EXEC_TIMEOUT', 'HEARTH_ERR_EXEC_MEMORY', 'HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', 'HEARTH_ERR_EXEC_FAILED', 'HEARTH_ERR_EXEC_PACKAGE_INVALID'])

/** Slack on a task's network deadline beyond its run deadline: transfer and signing. */
const taskNetworkSlackMs = 30_000

export function createRequestor(init: RequestorInit): Requestor {
  const { identity, host, store, payment } = init
  const market = init.market ?? createMarketNode({ host })
  const blobs = new Map<string, Uint8Array>()
  /** Providers with an agreement from this requestor: only they may fetch its blobs. */
  const allowedFetchers = new Set<string>()
  let approved = false

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

  /** Signs (and records) a cumulative voucher for `cumulativeWei` under the slot's agreement. */
  async function voucherFor(slot: Slot, cumulativeWei: bigint): Promise<Voucher> {
    const voucher = await signVoucher({ privateKey: identity.privateKey, chainId: payment.client.chainId, escrowAddress: payment.escrowAddress, agreementId: slot.agreement.id as Hex, cumulativeWei })
    store.vouchers.save({ agreementId: slot.agreement.id, cumulativeWei, document: voucherToJson(voucher), receivedAtMs: Date.now() })
    slot.vouchers++
    slot.voucheredWei = cumulativeWei
    return voucher
  }

  /**
   * A debit note is paid with a voucher for what it asks, but never more than the accepted results justify under the
   * agreement's pricing: work this requestor refused is not paid, and a note it cannot cover in full stays partly
   * unpaid (the provider may then stop). The voucher travels off the task path, in order.
   */
  async function answerDebitNote(slot: Slot, note: DebitNote, emit: JobEventListener): Promise<void> {
    if (note.agreementId !== slot.agreement.id) return
    store.paymentDocuments.save({ agreementId: note.agreementId, kind: 'debit-note', seq: note.seq, document: note, createdAtMs: Date.now() })
    const justifiedWei = costWei(slot.pricing, slot.acceptedUsage)
    const payWei = BigInt(note.amountDueWei) < justifiedWei ? BigInt(note.amountDueWei) : justifiedWei
    if (payWei <= slot.voucheredWei) return
    const voucher = await voucherFor(slot, payWei)
    // A lost voucher costs the provider nothing: the next (cumulative) one covers it. Settlement waits for these.
    slot.vouchersSent = slot.vouchersSent.then(() =>
      host.request(slot.peer, voucherProtocol, voucherToJson(voucher)).then(
        (ack) => emit({ type: 'voucher-delivered', provider: slot.offer.provider, agreementId: slot.agreement.id, cumulativeWei: ack.acceptedWei }),
        () => undefined,
      ),
    )
  }

  async function runJob(spec: JobSpec, options: { onEvent?: JobEventListener; signal?: AbortSignal } = {}): Promise<JobOutcome> {
    const emit = options.onEvent ?? (() => undefined)
    const started = performance.now()
    const jobId = randomUUID()
    const maxAttempts = spec.maxAttempts ?? 3
    const packageId = spec.package === undefined ? undefined : sha256Hex(spec.package)
    if (packageId !== undefined) blobs.set(packageId, spec.package!)

    // 1. Offers: what this node knows plus a direct ask of every connected peer, until enough match or the wait ends.
    const demandConstraints = [spec.demand?.constraints ?? '', spec.sla === undefined ? '' : slaConstraints(spec.sla).toString()]
      .filter((text) => text.trim() !== '')
      .join('')
    const demand = {
      properties: { 'golem.runtime.name': spec.runtime, ...spec.demand?.properties },
      // Checked here, before any offer is looked at: a malformed filter is the job's error, not a mismatch.
      constraints: demandConstraints === '' ? '' : compileConstraints(`(&${demandConstraints})`),
    }
    const fits = (offer: Offer): boolean =>
      offeredRuntimes(offer).includes(spec.runtime) &&
      (spec.runtime !== 'native' || offersProgram(offer, spec.program)) &&
      maxTaskCostWei(offer.pricing, spec.timeoutMs) <= spec.maxPricePerTaskWei &&
      offer.payment.chainId === payment.client.chainId &&
      offer.payment.escrow.toLowerCase() === payment.escrowAddress.toLowerCase() &&
      matchDemandOffer(demand, { properties: offer.properties, constraints: offer.constraints }) === 'yes'
    emit({ type: 'phase', message: 'collecting offers' })
    await market.syncAll({ signal: options.signal })
    const wait = AbortSignal.timeout(spec.offerWaitMs ?? 3_000)
    let candidates = await market.offerBook.waitFor(spec.providers, fits, { signal: wait }).catch(() => market.offerBook.list(fits))
    if (candidates.length === 0) {
      throw new HearthError('HEARTH_ERR_MARKET_NO_OFFERS', `no provider offers runtime ${spec.runtime} at ${spec.maxPricePerTaskWei} wei per task or less that meets the job's requirements`, {
        hint: 'raise the price cap or loosen the requirements, or start providers (hearth demo starts local ones)',
      })
    }
    emit({ type: 'offers', count: candidates.length })

    // Latency is a measurement, not a claim: ping every candidate at once before choosing.
    const latencyMs = new Map<string, number>()
    await Promise.all(
      candidates.map(async (signed) => {
        const rtt = await host.ping(offerTarget(signed.payload), { signal: AbortSignal.timeout(spec.stepTimeoutMs ?? 3_000) }).catch(() => undefined)
        if (rtt !== undefined) latencyMs.set(signed.payload.provider.toLowerCase(), rtt)
      }),
    )
    if (spec.sla?.maxLatencyMs !== undefined) {
      const limit = spec.sla.maxLatencyMs
      candidates = candidates.filter((signed) => (latencyMs.get(signed.payload.provider.toLowerCase()) ?? Infinity) <= limit)
      if (candidates.length === 0) {
        throw new HearthError('HEARTH_ERR_MARKET_NO_OFFERS', `no matching provider answers within ${limit} ms`, { hint: 'raise maxLatencyMs' })
      }
    }
    const tasksEach = Math.ceil(spec.tasks.length / spec.providers)
    const ranked = rankOffers(candidates, (signed) => signed.payload, { tasks: tasksEach, taskTimeoutMs: spec.timeoutMs, weights: spec.weights, latencyMs, near: spec.near })
    // A few spares beyond the need, so providers that stay silent or refuse cost no waiting.
    const chosen = ranked.slice(0, spec.providers + Math.max(2, Math.ceil(spec.providers / 2))).map((r) => r.item)

    // Money check before anything is signed or locked: the dearest chosen offer, for every agreement wanted.
    const dearestWei = chosen.reduce((max, s) => {
      const deposit = maxCostWei(s.payload.pricing, spec.tasks.length, spec.timeoutMs)
      return deposit > max ? deposit : max
    }, 0n)
    const depositsWei = dearestWei * BigInt(Math.min(spec.providers, chosen.length))
    const balanceWei = await tokenBalanceOf(payment, identity.address)
    if (balanceWei < depositsWei) {
      throw new HearthError('HEARTH_ERR_PAYMENT_INSUFFICIENT_FUNDS', `the deposits need up to ${depositsWei} wei but the wallet holds ${balanceWei} wei`, {
        hint: 'fund the requestor wallet, use fewer providers, or lower the price cap',
      })
    }

    // 2. Agreements with the chosen providers, all at once; the first to sign are kept.
    emit({ type: 'phase', message: `negotiating with ${chosen.length} providers for ${Math.min(spec.providers, chosen.length)} agreements` })
    const termsFor = (offer: Offer): AgreementTerms =>
      proposeTerms({
        offer,
        requestor: identity.address,
        runtime: spec.runtime,
        maxTasks: spec.tasks.length,
        taskTimeoutMs: spec.timeoutMs,
        jobName: `${spec.name} (${jobId})`,
        ...(spec.debitNoteIntervalSec === undefined ? {} : { debitNoteIntervalSec: spec.debitNoteIntervalSec }),
        ...(spec.paymentTimeoutSec === undefined ? {} : { paymentTimeoutSec: spec.paymentTimeoutSec }),
      })
    const negotiated = await negotiateMany({ host, identity, store, onEvent: emit }, chosen, {
      need: spec.providers,
      termsFor,
      limits: { maxPerTaskWei: spec.maxPricePerTaskWei, minDurationSec: 600, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 },
      stepTimeoutMs: spec.stepTimeoutMs,
      signal: options.signal,
    })
    const agreements = negotiated.agreements
    if (agreements.length === 0) {
      throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'every provider refused or failed to sign an agreement', {
        hint: `reasons: ${negotiated.failures.map((f) => `${f.provider}: ${f.message}`).join('; ')}`,
      })
    }

    // 3. Escrow: one approval per requestor, then the deposits of every agreement in one transaction.
    emit({ type: 'phase', message: 'opening escrows on chain' })
    if (!approved) {
      await approveEscrow(payment)
      approved = true
    }
    // All deposits in one transaction: the chain cost of a job does not grow with its number of providers' opens.
    const opened = await openEscrows(
      payment,
      agreements.map(({ agreement, offer }) => ({
        agreementId: agreement.id as Hex,
        providerAddress: offer.provider as Address,
        amountWei: BigInt(agreement.terms.depositWei),
        expiresAtSec: agreement.terms.expiresAtSec,
      })),
    )
    const slots: Slot[] = agreements.map(({ agreement, offer }) => {
      const depositWei = BigInt(agreement.terms.depositWei)
      store.escrows.save({ agreementId: agreement.id, depositedWei: depositWei, openTx: opened.hash, claimedWei: 0n, refundedWei: 0n, closed: false })
      allowedFetchers.add(offer.provider.toLowerCase())
      emit({ type: 'escrow-opened', provider: offer.provider, agreementId: agreement.id, depositWei: depositWei.toString(), txHash: opened.hash })
      return { agreement, offer, peer: offerTarget(offer), pricing: agreement.terms.pricing, acceptedUsage: noUsage, vouchers: 0, voucheredWei: 0n, accepted: 0, failures: 0, openTx: opened.hash, retired: false, vouchersSent: Promise.resolve() }
    })

    // 4. Dispatch: each provider pulls from one queue as many tasks at once as it has threads.
    emit({ type: 'phase', message: `running ${spec.tasks.length} tasks` })
    const results: (TaskOutcome | undefined)[] = new Array(spec.tasks.length).fill(undefined)
    const attempts = new Array<number>(spec.tasks.length).fill(0)
    const triedOn = spec.tasks.map(() => new Set<string>())
    const lastError = new Map<number, string>()
    const queue: number[] = spec.tasks.map((_, i) => i)
    let done = 0
    let inFlight = 0
    let wake: (() => void) | undefined
    const notify = (): void => {
      const w = wake
      wake = undefined
      w?.()
    }

    const nextTaskFor = (slot: Slot): number | undefined => {
      const liveSlots = slots.filter((s) => !s.retired).length
      for (let i = 0; i < queue.length; i++) {
        const index = queue[i]!
        // Retry on another provider when there is one left that has not tried it.
        if (triedOn[index]!.has(slot.offer.provider) && triedOn[index]!.size < liveSlots) continue
        queue.splice(i, 1)
        return index
      }
      return undefined
    }

    const runOne = async (slot: Slot, index: number): Promise<void> => {
      const task = spec.tasks[index]!
      attempts[index]!++
      triedOn[index]!.add(slot.offer.provider)
      emit({ type: 'task-started', taskIndex: index, provider: slot.offer.provider })
      const request: RunTaskRequest = {
        agreementId: slot.agreement.id,
        jobId,
        taskIndex: index,
        activityId: randomUUID(),
        runtime: spec.runtime,
        ...(packageId === undefined ? {} : { packageId }),
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
      const sentAt = performance.now()
      try {
        const exchange = await host.exchange(slot.peer, runTaskProtocol, request, { timeoutMs: spec.timeoutMs + taskNetworkSlackMs, signal: options.signal })
        const result = exchange.response
        checkResult(result, request, performance.now() - sentAt)
        // Accepted: record it, then pay for it with a voucher for everything accepted so far.
        slot.accepted++
        slot.failures = 0
        slot.acceptedUsage = addUsage(slot.acceptedUsage, { tasks: 1, cpuMs: result.usage.cpuMs, durationMs: result.usage.durationMs })
        store.taskResults.save({ jobId, taskIndex: index, agreementId: slot.agreement.id, provider: slot.offer.provider, document: exchange.envelope, acceptedAtMs: Date.now() })
        if (result.debitNote !== undefined && init.misbehave?.ignoreDebitNotes !== true) await answerDebitNote(slot, result.debitNote, emit)
        results[index] = {
          taskIndex: index,
          provider: slot.offer.provider as Address,
          agreementId: slot.agreement.id as Hex,
          exitCode: result.exitCode,
          outputs: result.outputs.map((o) => ({ path: o.path, data: Buffer.from(o.dataBase64, 'base64') })),
          missingOutputs: result.missingOutputs,
          stdout: Buffer.from(result.stdoutBase64, 'base64'),
          stderr: Buffer.from(result.stderrBase64, 'base64'),
          usage: result.usage,
          roundTripMs: performance.now() - sentAt,
          attempts: attempts[index]!,
        }
        done++
        emit({ type: 'task-done', taskIndex: index, provider: slot.offer.provider, done, total: spec.tasks.length })
      } catch (error) {
        const hearthError = toHearthError(error)
        const remoteCode = hearthError.details?.remoteCode
        const taskAtFault = typeof remoteCode === 'string' && taskFaultCodes.has(remoteCode)
        const message = taskAtFault ? String(hearthError.details?.remoteMessage ?? hearthError.shortMessage) : hearthError.shortMessage
        lastError.set(index, message)
        // A provider that fails twice in a row gets no more tasks from this job; a task that broke its own sandbox
        // limits is the task's doing, not the provider's.
        if (!taskAtFault && ++slot.failures >= 2) slot.retired = true
        const attemptsAllowed = taskAtFault ? Math.min(2, maxAttempts) : maxAttempts
        const willRetry = attempts[index]! < attemptsAllowed && slots.some((s) => !s.retired)
        if (willRetry) queue.push(index)
        emit({ type: 'task-failed', taskIndex: index, provider: slot.offer.provider, message, willRetry })
      }
    }

    const worker = async (slot: Slot): Promise<void> => {
      for (;;) {
        if (slot.retired || options.signal?.aborted === true) return
        const index = nextTaskFor(slot)
        if (index === undefined) {
          // Nothing for us now; finish when nothing is queued or running anywhere, else wait for a change.
          if (queue.length === 0 && inFlight === 0) return notify()
          await new Promise<void>((resolve) => {
            const previous = wake
            wake = () => {
              previous?.()
              resolve()
            }
          })
          continue
        }
        inFlight++
        await runOne(slot, index)
        inFlight--
        notify()
      }
    }
    await Promise.all(
      slots.flatMap((slot) => {
        const threads = Number(slot.offer.properties['golem.inf.cpu.threads'] ?? 1)
        return Array.from({ length: Math.max(1, Math.min(threads, 8)) }, () => worker(slot))
      }),
    )

    // 5. Settle: each provider claims its latest voucher and releases the rest of the deposit back to us.
    emit({ type: 'phase', message: 'settling agreements' })
    const agreementOutcomes = await Promise.all(
      slots.map(async (slot): Promise<AgreementOutcome> => {
        const depositWei = BigInt(slot.agreement.terms.depositWei)
        let settleTx: Hex | null = null
        await slot.vouchersSent
        try {
          // The final voucher covers every accepted result; the provider answers with its invoice and claims.
          const finalWei = costWei(slot.pricing, slot.acceptedUsage)
          const final = finalWei === 0n ? null : await voucherFor(slot, finalWei)
          const answer = await host.request(slot.peer, settleProtocol, { agreementId: slot.agreement.id, voucher: final === null ? null : voucherToJson(final) })
          store.paymentDocuments.save({ agreementId: slot.agreement.id, kind: 'invoice', seq: 1, document: answer.invoice, createdAtMs: Date.now() })
          if (BigInt(answer.invoice.amountDueWei) > finalWei) {
            emit({ type: 'phase', message: `${slot.offer.provider} invoiced ${answer.invoice.amountDueWei} wei; only ${finalWei} wei is justified by accepted results` })
          }
          settleTx = answer.claimTx as Hex | null
        } catch (error) {
          emit({ type: 'phase', message: `${slot.offer.provider} did not settle (${toHearthError(error).shortMessage}); its deposit comes back after expiry` })
        }
        // The chain, not the provider's answer, says what was paid and what came back.
        const escrow = await getEscrow(payment, { requestorAddress: payment.client.address, agreementId: slot.agreement.id as Hex })
        const paidWei = escrow?.claimedWei ?? 0n
        const refundedWei = escrow?.closed === true ? depositWei - paidWei : 0n
        store.escrows.save({ agreementId: slot.agreement.id, depositedWei: depositWei, openTx: slot.openTx, claimedWei: paidWei, refundedWei, closed: escrow?.closed ?? false })
        store.agreements.setState(slot.agreement.id, 'terminated')
        emit({ type: 'settled', provider: slot.offer.provider, agreementId: slot.agreement.id, paidWei: paidWei.toString(), refundedWei: refundedWei.toString(), txHash: settleTx })
        return {
          agreementId: slot.agreement.id as Hex,
          provider: slot.offer.provider as Address,
          pricing: slot.pricing,
          tasks: slot.accepted,
          depositWei,
          vouchers: slot.vouchers,
          signedWei: slot.voucheredWei,
          paidWei,
          refundedWei,
          lockedWei: depositWei - paidWei - refundedWei,
          openTx: slot.openTx,
          settleTx,
          settled: escrow?.closed === true,
        }
      }),
    )
    if (packageId !== undefined) blobs.delete(packageId)

    const failures = results.flatMap((result, taskIndex) =>
      result === undefined ? [{ taskIndex, message: lastError.get(taskIndex) ?? 'not run: no provider was left to run it' }] : [],
    )
    return { jobId, results, failures, agreements: agreementOutcomes, wallMs: performance.now() - started }
  }

  return {
    offerBook: market.offerBook,
    market,
    runJob,
    async refundExpired() {
      const nowSec = await chainTimeSec(payment)
      const refunded: { agreementId: string; txHash: string; refundedWei: bigint }[] = []
      for (const record of store.escrows.list()) {
        if (record.closed) continue
        const agreement = store.agreements.get(record.agreementId)?.document as Agreement | undefined
        if (agreement === undefined || BigInt(agreement.terms.expiresAtSec) > nowSec) continue
        const escrow = await getEscrow(payment, { requestorAddress: identity.address, agreementId: record.agreementId as Hex })
        if (escrow === undefined || escrow.closed) {
          // Settled on chain after all (e.g. the provider claimed with release later): bring the record up to date.
          if (escrow !== undefined) store.escrows.save({ ...record, claimedWei: escrow.claimedWei, refundedWei: escrow.depositedWei - escrow.claimedWei, closed: true })
          continue
        }
        const outcome = await refundEscrow(payment, record.agreementId as Hex)
        store.escrows.save({ ...record, claimedWei: escrow.claimedWei, refundedWei: outcome.refundedWei, closed: true })
        store.agreements.setState(record.agreementId, 'expired')
        refunded.push({ agreementId: record.agreementId, txHash: outcome.hash, refundedWei: outcome.refundedWei })
      }
      return refunded
    },
    async start() {
      if (init.market === undefined) await market.start()
      await host.handle(fetchBlobProtocol, ({ contentId, offset, maxBytes }, ctx) => {
        const bytes = blobs.get(contentId)
        if (bytes === undefined || !allowedFetchers.has(ctx.remoteAddress.toLowerCase())) {
          throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `this requestor does not serve ${contentId} to you`)
        }
        const chunk = bytes.subarray(Math.min(offset, bytes.length), Math.min(offset + maxBytes, bytes.length))
        return { contentId, totalBytes: bytes.length, offset, dataBase64: Buffer.from(chunk).toString('base64') }
      })
    },
    async stop() {
      await host.unhandle(fetchBlobProtocol).catch(() => undefined)
      if (init.market === undefined) await market.stop()
    },
  }
}
