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
 *
 * The scheduler's pieces: its state (dispatch-state.ts), which task goes where next (dispatch-pick.ts), what an
 * answer or a failure does to its task (dispatch-verdict.ts), the workers that run them (dispatch-worker.ts), and
 * recruitment during the job (dispatch-recruit.ts).
 */
import type { DispatchInit, DispatchOutcome, DispatchSlot } from './dispatch-types.ts'
import { createScheduler, live } from './dispatch-state.ts'
import { worker } from './dispatch-worker.ts'

export type { Attempt, AttemptFailed, AttemptOk, DispatchInit, DispatchOutcome, DispatchSlot, Verdict } from './dispatch-types.ts'

export async function dispatch<R>(init: DispatchInit<R>): Promise<DispatchOutcome<R>> {
  const s = createScheduler(init, (slot: DispatchSlot): void => {
    for (let i = 0; i < Math.max(1, slot.capacity); i++) s.workers.push(worker(s, slot))
  })
  const { tasks, accepted, failed, figures, workers, recruitment } = s
  if (s.open > 0 && live(s).length === 0) {
    for (const task of tasks) if (!task.done) failed.set(task.index, 'no provider to run it')
  } else {
    for (const slot of [...init.slots]) s.startWorkers(slot)
    // Workers of recruited providers join while others run; done when all have stopped and nobody is being recruited.
    for (let waited = 0; waited < workers.length || recruitment.running !== undefined; ) {
      waited = workers.length
      await Promise.all(workers)
      if (s.open === 0 || init.signal?.aborted === true) recruitment.end.abort(new Error('the tasks are settled'))
      await recruitment.running
    }
  }
  // Anything still open when every worker stopped (an abort) has failed.
  for (const task of tasks) if (!task.done && !accepted.has(task.index) && !failed.has(task.index)) failed.set(task.index, task.lastError || 'not run')
  return { accepted, failed, figures }
}
