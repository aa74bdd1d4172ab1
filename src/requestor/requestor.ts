/**
 * requestor/ owns the job engine: it turns offers into agreements, backs each agreement with an escrow, sends tasks
 * to providers, checks every signed result, pays for what it accepts with cumulative vouchers, retries what failed on
 * another provider, and settles every agreement at the end.
 *
 * This file is the requestor itself (its public API and its life: start, stop) and the wiring of its parts: a job is
 * opened in job-session.ts, its providers found in sourcing.ts, its batches run in batch-runner.ts over the task
 * exchange (task-exchange.ts), checked by verification.ts, and settled in settlement.ts; blob-server.ts serves the
 * packages providers fetch. The job types live in job-types.ts and are re-exported here.
 */
import type { EscrowContext } from '../payment/escrow.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { OfferBook } from '../market/offer-book.ts'
import { createMarketNode, type MarketNode } from '../market/market-node.ts'
import type { Host } from '../net/host.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import type { Store } from '../store/store.ts'
import { createBlobServer, type BlobServer } from './blob-server.ts'
import type { JobEventListener } from './events.ts'
import { openJob, type JobEngine } from './job-session.ts'
import type { BatchOutcome, JobOutcome, JobSession, JobSpec } from './job-types.ts'
import { createProber } from './provider-probe.ts'
import { createRequestorAccounts, type RequestorAccounts } from './requestor-account.ts'
import type { ReputationBook } from './reputation.ts'
import type { MeasuredLatencies } from './sourcing.ts'

export type { TaskOutcome, TaskSpec } from './task-runner.ts'
export type { AgreementOutcome, BatchOutcome, JobFigures, JobOutcome, JobSession, JobSpec, VerificationSpec } from './job-types.ts'

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
  /** Round trips measured to providers when choosing them, by provider address (lower case). */
  readonly latencies: MeasuredLatencies
  /** What this requestor serves its providers by content id: jobs' packages and what its ExeScript activities provide. */
  readonly blobs: BlobServer
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

export function createRequestor(init: RequestorInit): Requestor {
  const { identity, host, store, payment, reputation } = init
  const market = init.market ?? createMarketNode({ host })
  const accounts = createRequestorAccounts({ identity, host, store, payment, ...(init.log === undefined ? {} : { log: init.log }) })
  const blobs = createBlobServer({ host })
  const ignoreDebitNotes = init.misbehave?.ignoreDebitNotes === true
  const latencies: MeasuredLatencies = new Map()
  const engine: JobEngine = {
    identity, host, store, payment, market, accounts, blobs, reputation, ignoreDebitNotes, latencies,
    ...(init.random === undefined ? {} : { random: init.random }),
    ...(init.localRuntime === undefined ? {} : { localRuntime: init.localRuntime, prober: createProber({ host, localRuntime: init.localRuntime, reputation, ignoreDebitNotes }) }),
  }

  async function runJob(spec: JobSpec, options: { onEvent?: JobEventListener; signal?: AbortSignal } = {}): Promise<JobOutcome> {
    const session: JobSession = await openJob(engine, spec, options)
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
    blobs,
    latencies,
    runJob,
    openJob: (spec, options = {}) => openJob(engine, spec, options),
    refundExpired: () => accounts.refundExpired(),
    async start() {
      if (init.market === undefined) await market.start()
      // Serves providers asking what they are owed and sending debit notes; refunds expired escrows and delivers
      // vouchers that did not arrive before this requestor last stopped.
      await accounts.start()
      await blobs.start()
    },
    async stop() {
      await accounts.stop()
      await blobs.stop()
      if (init.market === undefined) await market.stop()
    },
  }
}
