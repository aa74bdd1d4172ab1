/**
 * What the `hearth` commands share without loading anything heavy: exit codes, the checks of numeric options, and the
 * wait of a command that runs until Ctrl-C or SIGTERM.
 * main.ts re-exports `exitCodes`.
 */
import { InvalidArgumentError } from 'commander'

/** Exit codes: 0 done, 1 failed while running, 2 bad input (nothing was started or paid). */
export const exitCodes = { ok: 0, failed: 1, badInput: 2 } as const

/** Where a command's action records a failure that is not an error (a run with failed tasks, money that does not balance). */
export type SetExitCode = (code: number) => void

export function positiveInt(name: string, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`${name} must be a whole number from 1 to ${max}`)
    return n
  }
}

export function wholeNumber(name: string, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < 0 || n > max) throw new InvalidArgumentError(`${name} must be a whole number from 0 to ${max}`)
    return n
  }
}

/** Resolves on SIGINT or SIGTERM, or when `other` resolves; removes its listeners either way. */
export function untilSignal(other: Promise<unknown>): Promise<void> {
  return new Promise((done) => {
    const finish = (): void => {
      process.off('SIGINT', finish)
      process.off('SIGTERM', finish)
      done()
    }
    process.once('SIGINT', finish)
    process.once('SIGTERM', finish)
    void other.then(finish, finish)
  })
}
