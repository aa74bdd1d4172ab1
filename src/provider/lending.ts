/**
 * Whether the provider takes work now: paused (by its owner, its idle policy, or a stop) with a reason, or lending.
 * While paused, proposals, tasks, task frames and activities are refused with HEARTH_ERR_PROVIDER_PAUSED, which a
 * requestor takes as "run it elsewhere".
 */
import { HearthError } from '../errors.ts'

export interface Lending {
  /** Why the provider takes no work; undefined while it lends. */
  pausedReason(): string | undefined
  pause(reason: string): void
  resume(): void
  /** The refusal for work that comes while paused (or that is handed back). */
  pausedError(): HearthError
  /** Throws pausedError() while paused. */
  ensureLending(): void
}

export function createLending(): Lending {
  let paused: string | undefined
  const pausedError = (): HearthError =>
    new HearthError('HEARTH_ERR_PROVIDER_PAUSED', `this provider is not taking work now: ${paused ?? 'paused'}`, {
      hint: 'run the task on another provider, or try this one later',
      details: { reason: paused ?? 'paused' },
    })
  return {
    pausedReason: () => paused,
    pause(reason) {
      paused = reason
    },
    resume() {
      paused = undefined
    },
    pausedError,
    ensureLending() {
      if (paused !== undefined) throw pausedError()
    },
  }
}
