/**
 * Which task a slot of the scheduler (dispatch.ts) runs next: tasks that need a result (retries, checks) before new
 * ones, never a task whose answer the slot's provider already gave, and, when nothing else is left, a straggler run
 * once more; for a batch, more tasks for the same exchange.
 */
import type { DispatchSlot } from './dispatch-types.ts'
import { median, present, type Scheduler, type StartReason, type TaskState } from './dispatch-state.ts'

export interface Picked<R> {
  task: TaskState<R>
  reason: StartReason
}

/** Whether the task wants more results than it has and has running. */
export function needsMore<R>(task: TaskState<R>): boolean {
  return !task.done && task.answers.length + task.running.size < task.wanted
}

/**
 * Whether `slot` may take `task`: `now` (picking work), or at all (deciding whether anyone is left for it, where a
 * recent decline does not count: the provider that declined is asked again shortly).
 */
export function mayRun<R>(s: Scheduler<R>, task: TaskState<R>, slot: DispatchSlot, when: 'now' | 'ever' = 'now'): boolean {
  if (when === 'now' && performance.now() - (task.declined.get(slot.provider) ?? -Infinity) < s.declineWaitMs) return false
  if (task.tried.has(slot.provider)) {
    // A provider runs a task twice only after a failure and when nobody else present is left to try it (one that
    // is away comes back to try it, or not); never to add to a quorum, where its two answers would count once.
    if (task.answers.some((answer) => answer.slot.provider === slot.provider)) return false
    if (task.running.has(slot)) return false
    return present(s).every((other) => task.tried.has(other.provider))
  }
  return true
}

/** The task `slot` runs next, and why; undefined when there is none for it now. */
export function pick<R>(s: Scheduler<R>, slot: DispatchSlot): Picked<R> | undefined {
  const { tasks } = s
  // Oldest first: tasks needing a result (first runs, retries, checks) before new ones.
  for (let i = 0; i < s.cursor; i++) {
    const task = tasks[i]!
    if (needsMore(task) && mayRun(s, task, slot)) return { task, reason: task.answers.length > 0 ? 'check' : 'retry' }
  }
  while (s.cursor < tasks.length) {
    const task = tasks[s.cursor]!
    if (task.done) {
      s.cursor++
      continue
    }
    if (needsMore(task) && mayRun(s, task, slot)) {
      if (task.tried.size === 0) s.cursor++
      return { task, reason: task.tried.size === 0 ? 'first' : 'retry' }
    }
    break
  }
  // Nothing new: a straggler may be run again by an idle provider.
  const limit = Math.max(s.stragglerMinMs, s.stragglerFactor * median(s))
  const now = performance.now()
  for (const task of tasks) {
    if (task.done || task.speculated || task.running.size === 0 || task.tried.has(slot.provider)) continue
    const oldest = Math.min(...[...task.running.values()].map((run) => run.startedAt))
    if (now - oldest > limit) return { task, reason: 'straggler' }
  }
  return undefined
}

/**
 * More tasks for the same exchange as `next`, up to `size` in all: only ones this slot may run and that need a result
 * now (no stragglers). Returns `next` first.
 */
export function pickBatch<R>(s: Scheduler<R>, slot: DispatchSlot, next: Picked<R>, size: number): Picked<R>[] {
  const picked = [next]
  next.task.running.set(slot, { startedAt: performance.now(), abort: new AbortController() })
  while (picked.length < size) {
    const more = pick(s, slot)
    if (more === undefined || more.reason === 'straggler' || picked.some((p) => p.task === more.task)) break
    picked.push(more)
    // pick() hands out a task again until it is marked running: mark it now
    more.task.running.set(slot, { startedAt: performance.now(), abort: new AbortController() })
  }
  for (const more of picked) more.task.running.delete(slot)
  return picked
}
