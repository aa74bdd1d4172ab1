/**
 * The state of one run of the scheduler (dispatch.ts), shared by its pieces: each task's progress towards a verdict,
 * the figures, the providers that are away for now, the recruitment of new ones, and how an idle worker is woken.
 * Built once per dispatch from its init, with the defaults applied.
 */
import type { DispatchInit, DispatchOutcome, DispatchSlot } from './dispatch-types.ts'

export type StartReason = 'first' | 'retry' | 'check' | 'straggler'

export interface TaskState<R> {
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

/** A provider that is unreachable now: since when, and when it is asked again. */
export interface Away {
  sinceMs: number
  untilMs: number
  backoffMs: number
  /** One task is out to it to tell whether it is back. */
  asking?: boolean
}

export interface Scheduler<R> {
  init: DispatchInit<R>
  random: () => number
  maxFailures: number
  stragglerFactor: number
  stragglerMinMs: number
  /** How long a provider that declined a task (no room) waits before it is offered that task again. */
  declineWaitMs: number
  comeback: { firstMs: number; maxMs: number; giveUpMs: number; perTask: number }
  tasks: TaskState<R>[]
  /** Tasks not yet settled (accepted or failed). */
  open: number
  /** Tasks in dispatch order; a task stays until done, so retries keep their place near the front. */
  cursor: number
  accepted: DispatchOutcome<R>['accepted']
  failed: DispatchOutcome<R>['failed']
  figures: DispatchOutcome<R>['figures']
  /** The latest accepted attempts' times (a ring): the median is taken at every pick, so it must stay cheap. */
  durations: number[]
  durationCount: number
  /** Wakes the workers that rest (see `rest`). */
  wake: (() => void) | undefined
  /** Providers that are unreachable now. */
  away: Map<DispatchSlot, Away>
  /** The tasks that share one exchange (a batch), by its abort controller. */
  batchOf: WeakMap<AbortController, TaskState<R>[]>
  recruitment: Recruitment
  workers: Promise<void>[]
  /** Starts the workers of a slot (one per task it may run at once); set by dispatch. */
  startWorkers(slot: DispatchSlot): void
}

/** Providers asked for during the job (DispatchInit.recruit). */
export interface Recruitment {
  poolSize: number
  everyMs: number
  /** Aborted once every task is settled. */
  end: AbortController
  /** The call under way, if any: at most one at a time. */
  running: Promise<void> | undefined
  nextAtMs: number
  /** Slots added so far. */
  added: number
}

/** The scheduler's state at the start, with the init's defaults applied; `startWorkers` is the caller's. */
export function createScheduler<R>(init: DispatchInit<R>, startWorkers: (slot: DispatchSlot) => void): Scheduler<R> {
  const replicas = Math.max(1, init.replicas ?? 1)
  const baseQuorum = Math.max(1, Math.min(replicas, init.quorum ?? Math.floor(replicas / 2) + 1))
  const doneBefore = new Set(init.done ?? [])
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
  return {
    init,
    random: init.random ?? Math.random,
    maxFailures: init.maxFailures ?? 3,
    stragglerFactor: init.stragglerFactor ?? 3,
    stragglerMinMs: init.stragglerMinMs ?? 1_000,
    declineWaitMs: init.declineWaitMs ?? 250,
    comeback: { firstMs: 1_000, maxMs: 15_000, giveUpMs: 120_000, perTask: 10, ...init.comeback },
    tasks,
    open: tasks.filter((task) => !task.done).length,
    cursor: 0,
    accepted: new Map(),
    failed: new Map(),
    figures: { attempts: 0, retries: 0, checks: 0, rejected: 0, stragglers: 0, failures: 0 },
    durations: [],
    durationCount: 0,
    wake: undefined,
    away: new Map(),
    batchOf: new WeakMap(),
    recruitment: { poolSize: init.poolSize ?? init.slots.length, everyMs: init.recruitEveryMs ?? 5_000, end: new AbortController(), running: undefined, nextAtMs: 0, added: 0 },
    workers: [],
    startWorkers,
  }
}

/** Slots still given work: not retired. */
export function live<R>(s: Scheduler<R>): DispatchSlot[] {
  return s.init.slots.filter((slot) => !slot.retired)
}

/** Providers that can take work now: neither retired nor away. */
export function present<R>(s: Scheduler<R>): DispatchSlot[] {
  return live(s).filter((slot) => !s.away.has(slot))
}

/** The median of the latest accepted attempts' times; Infinity before any. */
export function median<R>(s: Scheduler<R>): number {
  if (s.durations.length === 0) return Infinity
  const sorted = [...s.durations].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** Wakes every worker that rests. */
export function notify<R>(s: Scheduler<R>): void {
  const w = s.wake
  s.wake = undefined
  w?.()
}

/** Waits `ms`, or less when something changes (a result, a failure, the end). */
export function rest<R>(s: Scheduler<R>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const previous = s.wake
    const timer = setTimeout(resolve, ms)
    s.wake = () => {
      clearTimeout(timer)
      previous?.()
      resolve()
    }
  })
}
