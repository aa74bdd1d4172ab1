/**
 * The scheduler's vocabulary (dispatch.ts): the slots it gives work to, what one attempt at a task brings back, the
 * verdict on a task, and what a caller passes in and gets out. Apart from the scheduler so that its pieces
 * (dispatch-*.ts) and the code that runs attempts can share them without importing the scheduler itself.
 */

export interface DispatchSlot {
  /** The provider's address; results of one provider never count twice towards a quorum. */
  provider: string
  /** Tasks it may run at once. */
  capacity: number
  /** Set when the provider is no longer given work (too many failures, excluded). */
  retired: boolean
}

export interface AttemptOk<R> {
  ok: true
  result: R
  /** Equivalence class of the result: attempts with the same key agree. */
  key: string
  /** What the result says, in a few words (exit code, outputs), for the message when providers disagree. */
  summary?: string
  /** Wall time of the attempt as the requestor saw it. */
  elapsedMs: number
}

export interface AttemptFailed {
  ok: false
  message: string
  /** The task itself broke a limit (deadline, memory, output): another provider would fail it too. */
  taskAtFault: boolean
  /** The provider should get no more work (it vanished, refused, or sent a result that fails its own checks). */
  providerAtFault: boolean
  /** The provider declined the task for now (no room): not a failure of the task, which goes elsewhere. */
  declined?: boolean
  /**
   * The provider could not be reached, or went away while it held the task (a closed connection): a home machine
   * that restarts, sleeps or loses its line. Not the task's fault; the provider is asked again after a backoff.
   */
  unreachable?: boolean
}

export type Attempt<R> = AttemptOk<R> | AttemptFailed

export interface Verdict<R> {
  taskIndex: number
  /** Attempts whose result is final: paid and credited. */
  valid: { slot: DispatchSlot; result: R }[]
  /** Attempts whose result disagreed with the quorum: not paid, and held against their provider. */
  invalid: { slot: DispatchSlot; result: R }[]
  /** Whether another provider's result (or a local recompute) confirmed this one. */
  checked: boolean
}

export interface DispatchInit<R> {
  taskCount: number
  slots: DispatchSlot[]
  /** Tasks already done (a resumed job): never run again. */
  done?: Iterable<number>
  /** Results wanted per task before it is judged (1 = none replicated). Default 1. */
  replicas?: number
  /** Equivalent results from distinct providers needed to accept; default: a majority of `replicas`. */
  quorum?: number
  /** Adaptive replication: the chance that a provider's result is checked by another provider. */
  checkProbability?: (provider: string) => number
  random?: () => number
  /** Attempts per task that ended in failure before it is given up (replicas come on top). Default 3. */
  maxFailures?: number
  /**
   * Churn. A provider that is unreachable gets no work for a backoff (from `firstMs`, doubling up to `maxMs`) and is
   * then asked again, under the same agreement; one unreachable for `giveUpMs` in a row is retired. Such an attempt
   * does not count among the task's failures; a task is given up after `perTask` of them (a task that makes every
   * provider vanish). Defaults: 1 s, 15 s, 120 s, 10.
   */
  comeback?: { firstMs?: number; maxMs?: number; giveUpMs?: number; perTask?: number }
  /** A provider that declined a task (no room for now) is offered that task again after this long (default 250 ms). */
  declineWaitMs?: number
  /**
   * More providers during the job. Called with how many are missing when fewer than `poolSize` (default: the slots
   * at the start) are present (neither retired nor away) while tasks remain; at most one call at a time and one every
   * `recruitEveryMs` (default 5 s), and at most `poolSize` slots added in all. The slots it returns join `slots` and
   * get work like the others. Its signal aborts once every task is settled: nothing should be committed after that.
   */
  recruit?(missing: number, signal: AbortSignal): Promise<DispatchSlot[]>
  poolSize?: number
  recruitEveryMs?: number
  /** Runs a task on a slot. Must not throw: failures are returned. */
  run(slot: DispatchSlot, taskIndex: number, signal: AbortSignal): Promise<Attempt<R>>
  /**
   * Runs several tasks on a slot in one exchange, one attempt per task in order; used when `batchSize` says more than
   * one task fits. Small tasks then share the fixed cost of a request (a stream, two signatures). Must not throw.
   */
  runBatch?(slot: DispatchSlot, taskIndices: number[], signal: AbortSignal): Promise<Attempt<R>[]>
  /**
   * Tasks one worker sends at once, given the median attempt so far (Infinity before any): default 1. A batch is not
   * aborted when one of its tasks is settled by another provider (it is small enough to let finish), only once all of
   * them are: a provider that holds a batch back holds up nothing.
   */
  batchSize?(slot: DispatchSlot, medianMs: number, openTasks: number): number
  /** A task's final verdict; the batch waits for it before it counts the task done. */
  onVerdict(verdict: Verdict<R>): Promise<void> | void
  onAttemptFailed?(taskIndex: number, slot: DispatchSlot, failure: AttemptFailed, willRetry: boolean): void
  onStarted?(taskIndex: number, slot: DispatchSlot, reason: 'first' | 'retry' | 'check' | 'straggler'): void
  /**
   * Straggler rule: a task running longer than this many times the median of accepted attempts (and at least
   * `stragglerMinMs`) is started once more on an idle provider; the first acceptable result wins. Default 3.
   */
  stragglerFactor?: number
  stragglerMinMs?: number
  signal?: AbortSignal
}

export interface DispatchOutcome<R> {
  accepted: Map<number, R>
  /** Tasks that could not be completed, with the last reason. */
  failed: Map<number, string>
  figures: { attempts: number; retries: number; checks: number; rejected: number; stragglers: number; failures: number }
}
