/**
 * The scheduler of a batch of tasks over a pool of providers, apart from the network so that its rules can be read
 * and tested alone: which task goes to which provider next, when a task is run again elsewhere (a failure, a result
 * that needs a check, a straggler), and when a task's result is final.
 *
 * Verification is by agreement between providers that do not know each other's answers. A task is done when `quorum`
 * results from distinct providers are equivalent (byte-equal outputs by default). Each task starts wanting
 * `replicas` results; in adaptive mode it starts wanting one, and a result is checked (one more provider runs the same
 * task) with the probability the reputation book gives its provider, so providers with a record of valid results cost
 * little extra compute (BOINC's adaptive replication). A disagreement asks for one more result at a time until one
 * answer reaches the quorum; the providers of the other answers are told off as invalid. Results are never compared
 * with anything the provider could have seen, so a colluding pair is the only way to pass a wrong result, and the
 * random choice of who checks whom makes that a gamble.
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

interface TaskState<R> {
  index: number
  /** Results wanted before judging. */
  wanted: number
  quorum: number
  running: Map<DispatchSlot, { startedAt: number; abort: AbortController }>
  tried: Set<string>
  /** Providers that declined the task for now (no room), and when: no try, but not asked again at once. */
  declined: Map<string, number>
  answers: { slot: DispatchSlot; result: R; key: string; summary?: string }[]
  failures: number
  /** Attempts that ended with the provider unreachable. */
  vanished: number
  lastError: string
  done: boolean
  speculated: boolean
  checked: boolean
}

export async function dispatch<R>(init: DispatchInit<R>): Promise<DispatchOutcome<R>> {
  const replicas = Math.max(1, init.replicas ?? 1)
  const baseQuorum = Math.max(1, Math.min(replicas, init.quorum ?? Math.floor(replicas / 2) + 1))
  const random = init.random ?? Math.random
  const maxFailures = init.maxFailures ?? 3
  const stragglerFactor = init.stragglerFactor ?? 3
  const stragglerMinMs = init.stragglerMinMs ?? 1_000
  const doneBefore = new Set(init.done ?? [])
  const accepted = new Map<number, R>()
  const failed = new Map<number, string>()
  const figures = { attempts: 0, retries: 0, checks: 0, rejected: 0, stragglers: 0, failures: 0 }
  /** The latest accepted attempts' times (a ring): the median is taken at every pick, so it must stay cheap. */
  const durations: number[] = []
  let durationCount = 0
  const tasks: TaskState<R>[] = []
  for (let index = 0; index < init.taskCount; index++) {
    tasks.push({
      index,
      wanted: replicas,
      quorum: baseQuorum,
      running: new Map(),
      tried: new Set(),
      declined: new Map(),
      answers: [],
      failures: 0,
      vanished: 0,
      lastError: '',
      done: doneBefore.has(index),
      speculated: false,
      checked: replicas > 1,
    })
  }
  let open = tasks.filter((task) => !task.done).length
  /** Tasks in dispatch order; a task stays until done, so retries keep their place near the front. */
  let cursor = 0
  let wake: (() => void) | undefined
  const notify = (): void => {
    const w = wake
    wake = undefined
    w?.()
  }
  const live = (): DispatchSlot[] => init.slots.filter((slot) => !slot.retired)
  const comeback = { firstMs: 1_000, maxMs: 15_000, giveUpMs: 120_000, perTask: 10, ...init.comeback }
  /** Providers that are unreachable now: since when, and when they are asked again. */
  const away = new Map<DispatchSlot, { sinceMs: number; untilMs: number; backoffMs: number; asking?: boolean }>()
  /** Providers that can take work now: neither retired nor away. */
  const present = (): DispatchSlot[] => live().filter((slot) => !away.has(slot))
  /** Answers that all agree are taken unchecked: nobody is left to check them now. */
  const settleUnchecked = async (task: TaskState<R>): Promise<boolean> => {
    if (task.answers.length === 0 || new Set(task.answers.map((answer) => answer.key)).size !== 1) return false
    task.quorum = 1
    task.checked = false
    await judge(task)
    return task.done
  }

  const poolSize = init.poolSize ?? init.slots.length
  const recruitEveryMs = init.recruitEveryMs ?? 5_000
  const recruitEnd = new AbortController()
  let recruiting: Promise<void> | undefined
  let nextRecruitAtMs = 0
  let recruited = 0
  const workers: Promise<void>[] = []
  const startWorkers = (slot: DispatchSlot): void => {
    for (let i = 0; i < Math.max(1, slot.capacity); i++) workers.push(worker(slot))
  }
  /** Asks for new providers when some of the pool are gone (retired, or away for now) and work remains. */
  const maybeRecruit = (): void => {
    if (init.recruit === undefined || recruiting !== undefined || open === 0 || init.signal?.aborted === true) return
    if (performance.now() < nextRecruitAtMs || recruited >= poolSize) return
    const missing = Math.min(poolSize - present().length, poolSize - recruited)
    if (missing <= 0) return
    nextRecruitAtMs = performance.now() + recruitEveryMs
    recruiting = init
      .recruit(missing, recruitEnd.signal)
      .then(
        (added) => {
          for (const slot of added.slice(0, poolSize - recruited)) {
            recruited++
            init.slots.push(slot)
            if (open > 0) startWorkers(slot)
          }
        },
        () => undefined,
      )
      .finally(() => {
        recruiting = undefined
        notify()
      })
  }

  /** How long a provider that declined a task (no room) waits before it is offered that task again. */
  const declineWaitMs = init.declineWaitMs ?? 250
  const needsMore = (task: TaskState<R>): boolean => !task.done && task.answers.length + task.running.size < task.wanted
  /**
   * Whether `slot` may take `task`: `now` (picking work), or at all (deciding whether anyone is left for it, where a
   * recent decline does not count: the provider that declined is asked again shortly).
   */
  const mayRun = (task: TaskState<R>, slot: DispatchSlot, when: 'now' | 'ever' = 'now'): boolean => {
    if (when === 'now' && performance.now() - (task.declined.get(slot.provider) ?? -Infinity) < declineWaitMs) return false
    if (task.tried.has(slot.provider)) {
      // A provider runs a task twice only after a failure and when nobody else present is left to try it (one that
      // is away comes back to try it, or not); never to add to a quorum, where its two answers would count once.
      if (task.answers.some((answer) => answer.slot.provider === slot.provider)) return false
      if (task.running.has(slot)) return false
      return present().every((other) => task.tried.has(other.provider))
    }
    return true
  }

  const median = (): number => {
    if (durations.length === 0) return Infinity
    const sorted = [...durations].sort((a, b) => a - b)
    return sorted[Math.floor(sorted.length / 2)]!
  }

  const pick = (slot: DispatchSlot): { task: TaskState<R>; reason: 'first' | 'retry' | 'check' | 'straggler' } | undefined => {
    // Oldest first: tasks needing a result (first runs, retries, checks) before new ones.
    for (let i = 0; i < cursor; i++) {
      const task = tasks[i]!
      if (needsMore(task) && mayRun(task, slot)) return { task, reason: task.answers.length > 0 ? 'check' : 'retry' }
    }
    while (cursor < tasks.length) {
      const task = tasks[cursor]!
      if (task.done) {
        cursor++
        continue
      }
      if (needsMore(task) && mayRun(task, slot)) {
        if (task.tried.size === 0) cursor++
        return { task, reason: task.tried.size === 0 ? 'first' : 'retry' }
      }
      break
    }
    // Nothing new: a straggler may be run again by an idle provider.
    const limit = Math.max(stragglerMinMs, stragglerFactor * median())
    const now = performance.now()
    for (const task of tasks) {
      if (task.done || task.speculated || task.running.size === 0 || task.tried.has(slot.provider)) continue
      const oldest = Math.min(...[...task.running.values()].map((run) => run.startedAt))
      if (now - oldest > limit) return { task, reason: 'straggler' }
    }
    return undefined
  }

  const judge = async (task: TaskState<R>): Promise<void> => {
    const groups = new Map<string, { slot: DispatchSlot; result: R }[]>()
    for (const answer of task.answers) groups.set(answer.key, [...(groups.get(answer.key) ?? []), answer])
    const best = [...groups.entries()].sort((a, b) => b[1].length - a[1].length)[0]
    if (best === undefined) return
    const [winningKey, winners] = best
    if (winners.length >= task.quorum && task.answers.length >= Math.min(task.wanted, task.quorum)) {
      task.done = true
      open--
      for (const run of task.running.values()) {
        // A batch's exchange carries other tasks too: it is given up only when none of them needs it any more.
        const batch = batchOf.get(run.abort)
        if (batch === undefined || batch.every((member) => member.done)) run.abort.abort(new Error('another provider finished this task first'))
      }
      const losers = task.answers.filter((answer) => answer.key !== winningKey)
      figures.rejected += losers.length
      accepted.set(task.index, winners[0]!.result)
      await init.onVerdict({ taskIndex: task.index, valid: winners, invalid: losers, checked: task.checked })
      return
    }
    if (groups.size > 1) {
      // Disagreement: the answers so far cannot all be right. Ask for more until one answer has a quorum of at
      // least two, never fewer than the largest group so far plus one.
      task.quorum = Math.max(task.quorum, 2)
      task.checked = true
      const needed = task.quorum - winners.length
      task.wanted = Math.max(task.wanted, task.answers.length + Math.max(1, needed))
    }
  }

  type Reason = 'first' | 'retry' | 'check' | 'straggler'

  /** Marks a task as running on a slot and counts why. */
  /** The tasks that share one exchange (a batch), by its abort controller. */
  const batchOf = new WeakMap<AbortController, TaskState<R>[]>()

  const begin = (slot: DispatchSlot, task: TaskState<R>, reason: Reason, abort: AbortController): void => {
    task.running.set(slot, { startedAt: performance.now(), abort })
    task.tried.add(slot.provider)
    if (reason === 'straggler') {
      task.speculated = true
      figures.stragglers++
    }
    if (reason === 'retry') figures.retries++
    if (reason === 'check') figures.checks++
    figures.attempts++
    init.onStarted?.(task.index, slot, reason)
  }

  /** What an attempt's answer does to its task: an answer towards a verdict, or a failure to retry or give up. */
  const finish = async (slot: DispatchSlot, task: TaskState<R>, attempt: Attempt<R>): Promise<void> => {
    task.running.delete(slot)
    if (task.done) return // another provider's answer settled it while this one ran
    if (attempt.ok || attempt.unreachable !== true) away.delete(slot)
    if (attempt.ok) {
      durations[durationCount++ % 256] = attempt.elapsedMs
      task.answers.push({ slot, result: attempt.result, key: attempt.key, ...(attempt.summary === undefined ? {} : { summary: attempt.summary }) })
      // Adaptive replication: decide once, on the first answer, whether it is checked by another provider.
      if (task.answers.length === 1 && task.wanted === 1 && init.checkProbability !== undefined) {
        const others = live().some((other) => other.provider !== slot.provider)
        if (others && random() < init.checkProbability(slot.provider)) {
          task.wanted = 2
          task.quorum = 2
          task.checked = true
        }
      }
      await judge(task)
      return
    }
    figures.failures++
    task.lastError = attempt.message
    if (attempt.unreachable === true) {
      // Gone for now: it may come back (a restart, a new route). The task may run there again once it does.
      task.vanished++
      task.tried.delete(slot.provider)
      const now = performance.now()
      const was = away.get(slot)
      if (was === undefined || was.untilMs <= now) {
        const backoffMs = was === undefined ? comeback.firstMs : Math.min(comeback.maxMs, was.backoffMs * 2)
        away.set(slot, { sinceMs: was?.sinceMs ?? now, untilMs: now + backoffMs, backoffMs })
        if (now - (was?.sinceMs ?? now) >= comeback.giveUpMs) slot.retired = true
      }
    } else if (attempt.declined === true) {
      // No room for now is no try: the provider may take the task once it has room (after a short wait).
      task.tried.delete(slot.provider)
      task.declined.set(slot.provider, performance.now())
    } else task.failures++
    if (attempt.providerAtFault) slot.retired = true
    maybeRecruit()
    const allowed = attempt.taskAtFault ? Math.min(2, maxFailures) : maxFailures
    const willRetry = task.failures < allowed && task.vanished < comeback.perTask && (live().length > 0 || recruiting !== undefined)
    init.onAttemptFailed?.(task.index, slot, attempt, willRetry)
    if (!willRetry && task.running.size === 0 && !task.done && !(await settleUnchecked(task))) {
      task.done = true
      open--
      failed.set(task.index, attempt.message)
    }
  }

  const runOne = async (slot: DispatchSlot, task: TaskState<R>, reason: Reason): Promise<void> => {
    const abort = new AbortController()
    const onOuterAbort = (): void => abort.abort(init.signal?.reason)
    init.signal?.addEventListener('abort', onOuterAbort, { once: true })
    begin(slot, task, reason, abort)
    let attempt: Attempt<R>
    try {
      attempt = await init.run(slot, task.index, abort.signal)
    } catch (error) {
      attempt = { ok: false, message: error instanceof Error ? error.message : String(error), taskAtFault: false, providerAtFault: true }
    } finally {
      init.signal?.removeEventListener('abort', onOuterAbort)
    }
    await finish(slot, task, attempt)
  }

  const runMany = async (slot: DispatchSlot, picked: { task: TaskState<R>; reason: Reason }[]): Promise<void> => {
    const abort = new AbortController()
    batchOf.set(abort, picked.map(({ task }) => task))
    const onOuterAbort = (): void => abort.abort(init.signal?.reason)
    init.signal?.addEventListener('abort', onOuterAbort, { once: true })
    for (const { task, reason } of picked) begin(slot, task, reason, abort)
    let attempts: Attempt<R>[]
    try {
      attempts = await init.runBatch!(slot, picked.map(({ task }) => task.index), abort.signal)
      if (attempts.length !== picked.length) throw new Error(`${attempts.length} answers for ${picked.length} tasks`)
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      attempts = picked.map(() => ({ ok: false, message, taskAtFault: false, providerAtFault: true }))
    } finally {
      init.signal?.removeEventListener('abort', onOuterAbort)
    }
    for (let i = 0; i < picked.length; i++) await finish(slot, picked[i]!.task, attempts[i]!)
  }

  /** Waits `ms`, or less when something changes (a result, a failure, the end). */
  const rest = (ms: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const previous = wake
      const timer = setTimeout(resolve, ms)
      wake = () => {
        clearTimeout(timer)
        previous?.()
        resolve()
      }
    })

  const worker = async (slot: DispatchSlot): Promise<void> => {
    for (;;) {
      if (open === 0 || init.signal?.aborted === true) return notify()
      if (slot.retired) {
        // Work this provider can no longer take may be stuck waiting for it: let the others look again.
        notify()
        return
      }
      maybeRecruit()
      const gone = away.get(slot)
      if (gone !== undefined && (gone.asking === true || gone.untilMs > performance.now())) {
        // Unreachable for now: asked again once its backoff is over, with one task by one worker.
        await rest(gone.asking === true ? 1_000 : gone.untilMs - performance.now())
        continue
      }
      const next = pick(slot)
      if (next === undefined) {
        // No work for this provider now: wait for a change (a result, a failure), or for a straggler to appear.
        await rest(Math.max(50, Math.min(1_000, median())))
        // Tasks nobody left can run: answers that all agree are taken unchecked, anything else has failed. Results
        // that agree do not wait for a check by a provider that is away; a task with none, or a disagreement, waits
        // for it to return.
        for (const task of tasks) {
          if (task.done || task.running.size > 0 || !needsMore(task)) continue
          const keys = new Set(task.answers.map((answer) => answer.key))
          if ((keys.size === 1 ? present() : live()).some((s) => mayRun(task, s, 'ever'))) continue
          if (!(await settleUnchecked(task))) {
            task.done = true
            open--
            const said = task.answers.map((answer) => `${answer.slot.provider}: ${answer.summary ?? answer.key}`).join('; ')
            failed.set(task.index, keys.size > 1 ? `providers disagreed (${said}) and no provider was left to settle it` : task.lastError || 'no provider was left to run it')
          }
        }
        continue
      }
      // Never more than a fair share of what is left, so one provider does not take work the others could run now.
      const capacity = live().reduce((n, s) => n + s.capacity, 0)
      const fairShare = Math.max(1, Math.ceil(open / Math.max(1, capacity)))
      if (gone !== undefined) {
        // Back from away, perhaps: one task tells, before it is given more.
        gone.asking = true
        await runOne(slot, next.task, next.reason)
        notify()
        continue
      }
      const size = init.runBatch === undefined ? 1 : Math.min(fairShare, Math.max(1, Math.floor(init.batchSize?.(slot, median(), open) ?? 1)))
      if (size > 1 && next.reason !== 'straggler') {
        // More tasks for the same exchange: only ones this slot may run and that need a result now (no stragglers).
        const picked = [next]
        next.task.running.set(slot, { startedAt: performance.now(), abort: new AbortController() })
        while (picked.length < size) {
          const more = pick(slot)
          if (more === undefined || more.reason === 'straggler' || picked.some((p) => p.task === more.task)) break
          picked.push(more)
          // pick() hands out a task again until it is marked running: mark it now
          more.task.running.set(slot, { startedAt: performance.now(), abort: new AbortController() })
        }
        for (const more of picked) more.task.running.delete(slot)
        if (picked.length > 1) {
          await runMany(slot, picked)
          notify()
          continue
        }
      }
      await runOne(slot, next.task, next.reason)
      notify()
    }
  }

  if (open > 0 && live().length === 0) {
    for (const task of tasks) if (!task.done) failed.set(task.index, 'no provider to run it')
  } else {
    for (const slot of [...init.slots]) startWorkers(slot)
    // Workers of recruited providers join while others run; done when all have stopped and nobody is being recruited.
    for (let waited = 0; waited < workers.length || recruiting !== undefined; ) {
      waited = workers.length
      await Promise.all(workers)
      if (open === 0 || init.signal?.aborted === true) recruitEnd.abort(new Error('the tasks are settled'))
      await recruiting
    }
  }
  // Anything still open when every worker stopped (an abort) has failed.
  for (const task of tasks) if (!task.done && !accepted.has(task.index) && !failed.has(task.index)) failed.set(task.index, task.lastError || 'not run')
  return { accepted, failed, figures }
}
