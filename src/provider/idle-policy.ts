/**
 * The owner's preferences, in the manner of BOINC's: lend only while the owner's own CPU load is below a threshold,
 * only on mains power, and only in given hours. A monitor samples these sources every second or so, pauses lending at
 * once when one of them says no (the owner is back), and resumes only after they have all said yes for a while, so a
 * brief quiet moment does not bring work back onto a machine in use.
 *
 * The sources (load, power, clock) are injectable: tests play the owner. The defaults read the machine's CPU times
 * (/proc on Linux, node:os elsewhere) and, on Linux, /sys for power; see exec/platform.ts.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { hasLinuxKernelFiles, readCpuTimes } from '../exec/platform.ts'

export interface IdleRules {
  /** Lend only while the owner's CPU load (0..1 of the whole machine, the provider's own work excluded) is below. */
  maxOwnerLoad: number
  /** Lend only on mains power (a machine without a battery is on mains). */
  requireMains: boolean
  /** Local-time windows "HH:MM-HH:MM" (a window may pass midnight); empty means at any hour. */
  hours: string[]
}

export interface IdleSources {
  /** The owner's CPU load now, 0..1. */
  ownerLoad(): number
  /** True on mains power. */
  onMains(): boolean
  /** Now (the monitor reads local hours and minutes from it). */
  now(): Date
}

export interface IdleVerdict {
  lend: boolean
  /** Why not, when `lend` is false: "owner load 0.72 is above 0.25", "on battery", "outside lending hours 22:00-07:00". */
  reason: string | undefined
}

const windowPattern = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$/

/** Parses "HH:MM-HH:MM" into minutes after midnight; throws RangeError naming the window otherwise. */
export function parseWindow(window: string): { from: number; to: number } {
  const match = windowPattern.exec(window.trim())
  if (match === null) throw new RangeError(`"${window}" is not a window like "22:00-07:00"`)
  return { from: Number(match[1]) * 60 + Number(match[2]), to: Number(match[3]) * 60 + Number(match[4]) }
}

/** True when the local time of `date` falls in one of the windows (or there are none). */
export function withinHours(hours: readonly string[], date: Date): boolean {
  if (hours.length === 0) return true
  const minute = date.getHours() * 60 + date.getMinutes()
  return hours.some((window) => {
    const { from, to } = parseWindow(window)
    // A window that passes midnight ("22:00-07:00") is the two pieces either side of it.
    return from <= to ? minute >= from && minute < to : minute >= from || minute < to
  })
}

/** One look at the sources: lend or not, and why not. */
export function evaluateIdle(rules: IdleRules, sources: IdleSources): IdleVerdict {
  if (rules.requireMains && !sources.onMains()) return { lend: false, reason: 'on battery' }
  if (!withinHours(rules.hours, sources.now())) return { lend: false, reason: `outside lending hours ${rules.hours.join(', ')}` }
  const load = sources.ownerLoad()
  if (load > rules.maxOwnerLoad) return { lend: false, reason: `owner load ${load.toFixed(2)} is above ${rules.maxOwnerLoad}` }
  return { lend: true, reason: undefined }
}

export interface IdleMonitorInit {
  rules: IdleRules
  sources: IdleSources
  /** How often to look (default 1000 ms; the owner's return is seen within this). */
  checkEveryMs?: number
  /** How long every source must say yes before lending resumes (default 60 s). */
  resumeAfterMs?: number
  /** Called on each change: lending paused (with the reason) or resumed. */
  onChange(state: { lending: boolean; reason: string | undefined }): void | Promise<void>
}

export interface IdleMonitor {
  start(): void
  stop(): void
  /** One check now (the timer calls this too); resolves once any change has been handled. */
  check(): Promise<void>
  state(): { lending: boolean; reason: string | undefined }
}

/** Starts lending at once if the first check allows it; pauses on the first no; resumes after `resumeAfterMs` of yes. */
export function createIdleMonitor(init: IdleMonitorInit): IdleMonitor {
  const checkEveryMs = init.checkEveryMs ?? 1000
  const resumeAfterMs = init.resumeAfterMs ?? 60_000
  let lending: boolean | undefined
  let reason: string | undefined
  let idleSinceMs: number | undefined
  let timer: NodeJS.Timeout | undefined
  let checking: Promise<void> = Promise.resolve()

  async function checkNow(): Promise<void> {
    let verdict: IdleVerdict
    try {
      verdict = evaluateIdle(init.rules, init.sources)
    } catch (error) {
      // A source that cannot be read must not lend the machine by mistake.
      verdict = { lend: false, reason: `cannot read the owner's state: ${(error as Error).message}` }
    }
    const nowMs = init.sources.now().getTime()
    if (!verdict.lend) {
      idleSinceMs = undefined
      if (lending !== false || reason !== verdict.reason) {
        const changed = lending !== false
        lending = false
        reason = verdict.reason
        if (changed) await init.onChange({ lending: false, reason })
      }
      return
    }
    idleSinceMs ??= nowMs
    // The very first check lends at once: the owner started the provider on a machine that is idle now.
    if (lending === undefined || (lending === false && nowMs - idleSinceMs >= resumeAfterMs)) {
      lending = true
      reason = undefined
      await init.onChange({ lending: true, reason: undefined })
    }
  }

  const check = (): Promise<void> => {
    // Checks never overlap: a slow pause (aborting tasks) finishes before the next look.
    checking = checking.then(checkNow, checkNow)
    return checking
  }

  return {
    start() {
      timer = setInterval(() => void check().catch(() => undefined), checkEveryMs)
      timer.unref()
    },
    stop() {
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
    },
    check,
    state: () => ({ lending: lending === true, reason: lending === undefined ? 'not checked yet' : reason }),
  }
}

/**
 * Mains or battery from /sys/class/power_supply: on mains when a mains supply is online, or when there is no battery
 * at all (a desktop); on battery when there is a battery and no mains supply online.
 */
export function readOnMains(root = '/sys/class/power_supply'): boolean {
  let names: string[]
  try {
    names = readdirSync(root)
  } catch {
    return true
  }
  let battery = false
  for (const name of names) {
    const type = readText(join(root, name, 'type'))
    if (type === 'Mains' && readText(join(root, name, 'online')) === '1') return true
    if (type === 'Battery') battery = true
  }
  return !battery
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim()
  } catch {
    return undefined
  }
}

/**
 * The owner's CPU load: the machine's busy share since the last call (exec/platform.ts reads it from /proc/stat on
 * Linux, from os.cpus() elsewhere), less this process's own share (its worker threads run wasi tasks) and one thread
 * per running child task (native and docker tasks run in their own processes, each held to one core). What is left is
 * the owner's. Returns 0 on the first call.
 */
export function createOwnerLoadSource(runningChildTasks: () => number = () => 0): () => number {
  const threads = Math.max(1, cpus().length)
  let last: { busy: number; total: number; ownUs: number; atMs: number } | undefined
  return () => {
    const { busy, total } = readCpuTimes()
    const usage = process.cpuUsage()
    const sample = { busy, total, ownUs: usage.user + usage.system, atMs: performance.now() }
    const previous = last
    last = sample
    if (previous === undefined || sample.total <= previous.total) return 0
    const machineBusy = (sample.busy - previous.busy) / (sample.total - previous.total)
    const wallUs = Math.max(1, (sample.atMs - previous.atMs) * 1000)
    const own = (sample.ownUs - previous.ownUs) / wallUs / threads
    const children = runningChildTasks() / threads
    return Math.max(0, Math.min(1, machineBusy - own - children))
  }
}

/**
 * The real sources: the machine's CPU times for load, the system clock, and /sys for power on Linux. Elsewhere the
 * power source is not known (node:os does not say), and the machine counts as on mains: see `powerKnown`.
 */
export function systemIdleSources(runningChildTasks?: () => number): IdleSources {
  return { ownerLoad: createOwnerLoadSource(runningChildTasks), onMains: powerKnown() ? () => readOnMains() : () => true, now: () => new Date() }
}

/** Whether this system tells mains from battery (Linux, through /sys); `idle.requireMains` means nothing elsewhere. */
export function powerKnown(): boolean {
  return hasLinuxKernelFiles()
}
