/**
 * Recruitment during a job (DispatchInit.recruit): when some of the scheduler's pool are gone (retired, or away for
 * now) and work remains, new providers are asked for, at most one call at a time and one every `recruitEveryMs`, and
 * the slots that come back join the pool with workers of their own.
 */
import { notify, present, type Scheduler } from './dispatch-state.ts'

/** Asks for new providers when some of the pool are gone (retired, or away for now) and work remains. */
export function maybeRecruit<R>(s: Scheduler<R>): void {
  const { init, recruitment } = s
  if (init.recruit === undefined || recruitment.running !== undefined || s.open === 0 || init.signal?.aborted === true) return
  if (performance.now() < recruitment.nextAtMs || recruitment.added >= recruitment.poolSize) return
  const missing = Math.min(recruitment.poolSize - present(s).length, recruitment.poolSize - recruitment.added)
  if (missing <= 0) return
  recruitment.nextAtMs = performance.now() + recruitment.everyMs
  recruitment.running = init
    .recruit(missing, recruitment.end.signal)
    .then(
      (added) => {
        for (const slot of added.slice(0, recruitment.poolSize - recruitment.added)) {
          recruitment.added++
          init.slots.push(slot)
          if (s.open > 0) s.startWorkers(slot)
        }
      },
      () => undefined,
    )
    .finally(() => {
      recruitment.running = undefined
      notify(s)
    })
}
