/**
 * The parts of a run that every runtime (wasi, native, docker) watches and reports alike: the deadline, the output
 * poll, and the errors for a run stopped by a limit. Kept in one place so that the runtimes cannot drift apart in what
 * they promise (runtime.ts) and the compliance suite checks.
 */
import { HearthError } from '../errors.ts'

const minPollMs = 20
const maxPollMs = 500
/** setTimeout fires at once for delays past 2^31-1 ms (~24.8 days): deadlines are clamped rather than hit at once. */
const maxTimerMs = 2 ** 31 - 1

/** The limits of a run that the watch and its errors speak of. */
export interface RunLimits {
  timeoutMs: number
  maxOutputBytes: number
}

/** Wall and CPU time of a run, added to the details of an error that stopped it (native and docker). */
export interface Metering {
  durationMs: number
  cpuMs: number
}

/** Ways a run ends that are a limit or the caller stopping it, alike in every runtime. */
export type StopEnding = { kind: 'timeout' } | { kind: 'abort'; reason: unknown } | { kind: 'output'; bytes: number }

export interface OutputWatch {
  /** Stops the deadline and the poll; a scan in flight still ends on its own (see settled). */
  stop(): void
  /** Resolves when no scan of the task directory is running any more (before descriptors under it are closed). */
  settled(): Promise<void>
}

/**
 * Starts the deadline and the output poll of a run: `onStop` is called once with the first limit reached. The poll
 * measures stdout, stderr and the bytes added under the task directory, and backs off when a scan is slow.
 */
export function watchLimits(limits: RunLimits, measureOutput: () => Promise<number>, onStop: (ending: StopEnding) => void): OutputWatch {
  let stopped = false
  let pollInFlight: Promise<void> | undefined
  let pollTimer: NodeJS.Timeout | undefined
  const poll = async (): Promise<void> => {
    const startedAt = performance.now()
    let bytes = 0
    try {
      bytes = await measureOutput()
    } catch {
      // A file vanishing mid-scan is the program's business; the next poll or the final check counts again.
    }
    if (stopped) return
    if (bytes > limits.maxOutputBytes) return onStop({ kind: 'output', bytes })
    // Scanning a large tree often would cost more than it protects: poll less often when a scan is slow.
    const elapsedMs = performance.now() - startedAt
    pollTimer = setTimeout(startPoll, Math.min(maxPollMs, Math.max(minPollMs, elapsedMs * 4)))
  }
  const startPoll = (): void => {
    pollInFlight = poll()
  }
  const deadline = setTimeout(() => onStop({ kind: 'timeout' }), Math.min(limits.timeoutMs, maxTimerMs))
  pollTimer = setTimeout(startPoll, minPollMs)
  return {
    stop() {
      stopped = true
      clearTimeout(deadline)
      clearTimeout(pollTimer)
    },
    settled: async () => {
      await pollInFlight
    },
  }
}

/** The error for a run stopped by its deadline, an abort or its output limit; `metering` joins the details when given. */
export function stopError(ending: StopEnding, limits: RunLimits, metering?: Metering): HearthError {
  switch (ending.kind) {
    case 'timeout':
      return new HearthError('HEARTH_ERR_EXEC_TIMEOUT', `the task ran past its deadline of ${limits.timeoutMs} ms and was stopped`, {
        hint: 'raise the task timeout or split the work into smaller tasks',
        details: { timeoutMs: limits.timeoutMs, ...metering },
      })
    case 'abort':
      return new HearthError('HEARTH_ERR_EXEC_FAILED', 'the task was aborted and stopped', { details: { aborted: true, ...metering }, cause: ending.reason })
    case 'output':
      return outputTooLarge(limits, ending.bytes, metering)
  }
}

/** A run stopped by close() of its runtime while it ran (native, docker: wasi has no metering to add). */
export function closedWhileRunning(runtime: string, metering: Metering): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_FAILED', `the ${runtime} runtime was closed while the task ran`, { details: { aborted: true, ...metering } })
}

/** `bytes` is undefined where only the budget check inside the runtime knows it was passed. */
export function outputTooLarge(limits: Pick<RunLimits, 'maxOutputBytes'>, bytes: number | undefined, metering?: Metering): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', `the task wrote more than its output limit of ${limits.maxOutputBytes} bytes and was stopped`, {
    hint: 'raise maxOutputBytes or make the program write less',
    details: { maxOutputBytes: limits.maxOutputBytes, bytes, ...metering },
  })
}

/** A process-based run killed by the kernel's OOM killer; `details` says what showed it. */
export function memoryExceeded(maxMemoryBytes: number, details: Record<string, unknown>, metering: Metering): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_MEMORY', `the task used more than its memory limit of ${maxMemoryBytes} bytes and was killed`, {
    hint: 'raise maxMemoryBytes for this task',
    details: { maxMemoryBytes, ...details, ...metering },
  })
}

/** `promise`'s value, or `fallback` when it takes longer than `ms`. */
export function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<T>((resolveLate) => (timer = setTimeout(() => resolveLate(fallback), ms)))
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

/** Milliseconds to the microsecond, as results report them. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000
}
