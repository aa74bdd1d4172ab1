/**
 * A worker of the scheduler (dispatch.ts): one per task a slot may run at once. It picks the slot's next task (or a
 * batch of them), runs it through the caller's `run`/`runBatch` and hands the answer on; it rests while there is
 * nothing for its slot, waits out a provider that is away, and stops when the tasks are settled or its slot retired.
 */
import type { Attempt, DispatchSlot } from './dispatch-types.ts'
import { live, median, notify, rest, type Scheduler, type StartReason, type TaskState } from './dispatch-state.ts'
import { pick, pickBatch, type Picked } from './dispatch-pick.ts'
import { maybeRecruit } from './dispatch-recruit.ts'
import { finish, giveUpStranded, settleUnchecked, stranded } from './dispatch-verdict.ts'

export async function worker<R>(s: Scheduler<R>, slot: DispatchSlot): Promise<void> {
  const { init } = s
  for (;;) {
    if (s.open === 0 || init.signal?.aborted === true) return notify(s)
    if (slot.retired) {
      // Work this provider can no longer take may be stuck waiting for it: let the others look again.
      notify(s)
      return
    }
    maybeRecruit(s)
    const gone = s.away.get(slot)
    if (gone !== undefined && (gone.asking === true || gone.untilMs > performance.now())) {
      // Unreachable for now: asked again once its backoff is over, with one task by one worker.
      await rest(s, gone.asking === true ? 1_000 : gone.untilMs - performance.now())
      continue
    }
    const next = pick(s, slot)
    if (next === undefined) {
      // No work for this provider now: wait for a change (a result, a failure), or for a straggler to appear.
      await rest(s, Math.max(50, Math.min(1_000, median(s))))
      // Tasks nobody left can run: answers that all agree are taken unchecked, anything else has failed.
      for (const task of s.tasks) {
        if (stranded(s, task) && !(await settleUnchecked(s, task))) giveUpStranded(s, task)
      }
      continue
    }
    // Never more than a fair share of what is left, so one provider does not take work the others could run now.
    const capacity = live(s).reduce((n, other) => n + other.capacity, 0)
    const fairShare = Math.max(1, Math.ceil(s.open / Math.max(1, capacity)))
    if (gone !== undefined) {
      // Back from away, perhaps: one task tells, before it is given more.
      gone.asking = true
      await runOne(s, slot, next.task, next.reason)
      notify(s)
      continue
    }
    const size = init.runBatch === undefined ? 1 : Math.min(fairShare, Math.max(1, Math.floor(init.batchSize?.(slot, median(s), s.open) ?? 1)))
    if (size > 1 && next.reason !== 'straggler') {
      const picked = pickBatch(s, slot, next, size)
      if (picked.length > 1) {
        await runMany(s, slot, picked)
        notify(s)
        continue
      }
    }
    await runOne(s, slot, next.task, next.reason)
    notify(s)
  }
}

/** Marks a task as running on a slot and counts why. */
function begin<R>(s: Scheduler<R>, slot: DispatchSlot, task: TaskState<R>, reason: StartReason, abort: AbortController): void {
  task.running.set(slot, { startedAt: performance.now(), abort })
  task.tried.add(slot.provider)
  if (reason === 'straggler') {
    task.speculated = true
    s.figures.stragglers++
  }
  if (reason === 'retry') s.figures.retries++
  if (reason === 'check') s.figures.checks++
  s.figures.attempts++
  s.init.onStarted?.(task.index, slot, reason)
}

async function runOne<R>(s: Scheduler<R>, slot: DispatchSlot, task: TaskState<R>, reason: StartReason): Promise<void> {
  const { init } = s
  const abort = new AbortController()
  const onOuterAbort = (): void => abort.abort(init.signal?.reason)
  init.signal?.addEventListener('abort', onOuterAbort, { once: true })
  begin(s, slot, task, reason, abort)
  let attempt: Attempt<R>
  try {
    attempt = await init.run(slot, task.index, abort.signal)
  } catch (error) {
    attempt = { ok: false, message: error instanceof Error ? error.message : String(error), taskAtFault: false, providerAtFault: true }
  } finally {
    init.signal?.removeEventListener('abort', onOuterAbort)
  }
  await finish(s, slot, task, attempt)
}

async function runMany<R>(s: Scheduler<R>, slot: DispatchSlot, picked: Picked<R>[]): Promise<void> {
  const { init } = s
  const abort = new AbortController()
  s.batchOf.set(abort, picked.map(({ task }) => task))
  const onOuterAbort = (): void => abort.abort(init.signal?.reason)
  init.signal?.addEventListener('abort', onOuterAbort, { once: true })
  for (const { task, reason } of picked) begin(s, slot, task, reason, abort)
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
  for (let i = 0; i < picked.length; i++) await finish(s, slot, picked[i]!.task, attempts[i]!)
}
