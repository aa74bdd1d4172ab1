/**
 * What an attempt's answer does to its task in the scheduler (dispatch.ts): an answer counts towards a quorum (and
 * may call for a check by another provider), answers that agree settle the task and those that disagree ask for
 * more; a failure is retried, waited out (a provider away or out of room for now), or ends the task.
 */
import type { Attempt, DispatchSlot } from './dispatch-types.ts'
import { live, present, type Scheduler, type TaskState } from './dispatch-state.ts'
import { mayRun, needsMore } from './dispatch-pick.ts'
import { maybeRecruit } from './dispatch-recruit.ts'

/** Settles the task when one answer has its quorum; otherwise, on a disagreement, asks for more answers. */
export async function judge<R>(s: Scheduler<R>, task: TaskState<R>): Promise<void> {
  const groups = new Map<string, { slot: DispatchSlot; result: R }[]>()
  for (const answer of task.answers) groups.set(answer.key, [...(groups.get(answer.key) ?? []), answer])
  const best = [...groups.entries()].sort((a, b) => b[1].length - a[1].length)[0]
  if (best === undefined) return
  const [winningKey, winners] = best
  if (winners.length >= task.quorum && task.answers.length >= Math.min(task.wanted, task.quorum)) {
    task.done = true
    s.open--
    for (const run of task.running.values()) {
      // A batch's exchange carries other tasks too: it is given up only when none of them needs it any more.
      const batch = s.batchOf.get(run.abort)
      if (batch === undefined || batch.every((member) => member.done)) run.abort.abort(new Error('another provider finished this task first'))
    }
    const losers = task.answers.filter((answer) => answer.key !== winningKey)
    s.figures.rejected += losers.length
    s.accepted.set(task.index, winners[0]!.result)
    await s.init.onVerdict({ taskIndex: task.index, valid: winners, invalid: losers, checked: task.checked })
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

/** Answers that all agree are taken unchecked: nobody is left to check them now. */
export async function settleUnchecked<R>(s: Scheduler<R>, task: TaskState<R>): Promise<boolean> {
  if (task.answers.length === 0 || new Set(task.answers.map((answer) => answer.key)).size !== 1) return false
  task.quorum = 1
  task.checked = false
  await judge(s, task)
  return task.done
}

/** What an attempt's answer does to its task: an answer towards a verdict, or a failure to retry or give up. */
export async function finish<R>(s: Scheduler<R>, slot: DispatchSlot, task: TaskState<R>, attempt: Attempt<R>): Promise<void> {
  task.running.delete(slot)
  if (task.done) return // another provider's answer settled it while this one ran
  if (attempt.ok || attempt.unreachable !== true) s.away.delete(slot)
  if (attempt.ok) {
    s.durations[s.durationCount++ % 256] = attempt.elapsedMs
    task.answers.push({ slot, result: attempt.result, key: attempt.key, ...(attempt.summary === undefined ? {} : { summary: attempt.summary }) })
    // Adaptive replication: decide once, on the first answer, whether it is checked by another provider.
    if (task.answers.length === 1 && task.wanted === 1 && s.init.checkProbability !== undefined) {
      const others = live(s).some((other) => other.provider !== slot.provider)
      if (others && s.random() < s.init.checkProbability(slot.provider)) {
        task.wanted = 2
        task.quorum = 2
        task.checked = true
      }
    }
    await judge(s, task)
    return
  }
  s.figures.failures++
  task.lastError = attempt.message
  if (attempt.unreachable === true) {
    // Gone for now: it may come back (a restart, a new route). The task may run there again once it does.
    task.vanished++
    task.tried.delete(slot.provider)
    markAway(s, slot)
  } else if (attempt.declined === true) {
    // No room for now is no try: the provider may take the task once it has room (after a short wait).
    task.tried.delete(slot.provider)
    task.declined.set(slot.provider, performance.now())
  } else task.failures++
  if (attempt.providerAtFault) slot.retired = true
  maybeRecruit(s)
  const allowed = attempt.taskAtFault ? Math.min(2, s.maxFailures) : s.maxFailures
  const willRetry = task.failures < allowed && task.vanished < s.comeback.perTask && (live(s).length > 0 || s.recruitment.running !== undefined)
  s.init.onAttemptFailed?.(task.index, slot, attempt, willRetry)
  if (!willRetry && task.running.size === 0 && !task.done && !(await settleUnchecked(s, task))) {
    task.done = true
    s.open--
    s.failed.set(task.index, attempt.message)
  }
}

/** An unreachable provider gets no work for a backoff (doubling), and is retired once away for too long. */
function markAway<R>(s: Scheduler<R>, slot: DispatchSlot): void {
  const { comeback } = s
  const now = performance.now()
  const was = s.away.get(slot)
  if (was === undefined || was.untilMs <= now) {
    const backoffMs = was === undefined ? comeback.firstMs : Math.min(comeback.maxMs, was.backoffMs * 2)
    s.away.set(slot, { sinceMs: was?.sinceMs ?? now, untilMs: now + backoffMs, backoffMs })
    if (now - (was?.sinceMs ?? now) >= comeback.giveUpMs) slot.retired = true
  }
}

/**
 * Whether nobody left can run a task that still wants a result. Results that agree do not wait for a check by a
 * provider that is away; a task with none, or a disagreement, waits for it to return.
 */
export function stranded<R>(s: Scheduler<R>, task: TaskState<R>): boolean {
  if (task.done || task.running.size > 0 || !needsMore(task)) return false
  const keys = new Set(task.answers.map((answer) => answer.key))
  return !(keys.size === 1 ? present(s) : live(s)).some((slot) => mayRun(s, task, slot, 'ever'))
}

/** Ends a stranded task that `settleUnchecked` could not settle: failed, with why. */
export function giveUpStranded<R>(s: Scheduler<R>, task: TaskState<R>): void {
  const keys = new Set(task.answers.map((answer) => answer.key))
  task.done = true
  s.open--
  const said = task.answers.map((answer) => `${answer.slot.provider}: ${answer.summary ?? answer.key}`).join('; ')
  s.failed.set(task.index, keys.size > 1 ? `providers disagreed (${said}) and no provider was left to settle it` : task.lastError || 'no provider was left to run it')
}
