/**
 * What this system offers Hearth beyond Node's portable APIs, decided once per process. Linux gives /proc and /sys
 * (CPU times, open descriptors, power supplies, GPU driver files) and cgroups (the native sandbox's limits, docker
 * metering); other systems (macOS, Windows) give only what `node:os` and `process` report. Every Linux-only read in
 * Hearth goes through here or asks `platform()` first, so that the requestor, the provider agent and the wasi runtime
 * run anywhere, and the native and docker runtimes say why they cannot.
 *
 * `HEARTH_PLATFORM_EMULATE=generic` (for tests) makes a Linux process behave as on a system without /proc, /sys and
 * cgroups, so the non-Linux path runs for real where the tests run. It is read once, at the first call.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { cpus } from 'node:os'
import { HearthError } from '../errors.ts'

export const platformEmulateVariable = 'HEARTH_PLATFORM_EMULATE'

export interface Platform {
  /** 'linux': /proc, /sys and cgroups are there to read. 'generic': only `node:os` and `process`. */
  kind: 'linux' | 'generic'
  /** What to call this system in messages: 'linux', 'darwin', 'win32', …, or 'generic' when emulated. */
  name: string
  /** True when HEARTH_PLATFORM_EMULATE made a Linux process generic. */
  emulated: boolean
}

/** The platform that `env` and `system` describe; throws on an emulation it does not know. */
export function detectPlatform(env: NodeJS.ProcessEnv = process.env, system: NodeJS.Platform = process.platform): Platform {
  const emulate = env[platformEmulateVariable]
  if (emulate === undefined || emulate === '') return system === 'linux' ? { kind: 'linux', name: 'linux', emulated: false } : { kind: 'generic', name: system, emulated: false }
  if (emulate === 'generic') return { kind: 'generic', name: 'generic', emulated: true }
  throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `${platformEmulateVariable}=${emulate}: expected "generic" or nothing`, {
    hint: `unset ${platformEmulateVariable}; it exists so that tests can run the non-Linux path on Linux`,
  })
}

let current: Platform | undefined

/** This process's platform, decided at the first call (the environment is not read again). */
export function platform(): Platform {
  current ??= detectPlatform()
  return current
}

/** True where /proc, /sys and cgroups may be read. */
export function hasLinuxKernelFiles(): boolean {
  return platform().kind === 'linux'
}

/** Cumulative CPU time of the whole machine, busy and in all, in a unit only ratios between two readings make sense of. */
export interface CpuTimes {
  busy: number
  total: number
}

/**
 * The machine's CPU times: from the first line of /proc/stat on Linux (clock ticks), from os.cpus() elsewhere
 * (milliseconds, summed over the CPUs). Either way, the busy share between two readings is the machine's load.
 */
export function readCpuTimes(): CpuTimes {
  if (hasLinuxKernelFiles()) {
    const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
    const total = fields.reduce((sum, n) => sum + n, 0)
    return { busy: total - idle, total }
  }
  let busy = 0
  let total = 0
  for (const { times } of cpus()) {
    const all = times.user + times.nice + times.sys + times.idle + times.irq
    total += all
    busy += all - times.idle
  }
  return { busy, total }
}

/** This process's open descriptors and what each points at (from /proc/self/fd); undefined where that cannot be seen. */
export function openDescriptors(): { fd: number; target: string }[] | undefined {
  if (!hasLinuxKernelFiles()) return undefined
  let names: string[]
  try {
    names = readdirSync('/proc/self/fd')
  } catch {
    return undefined
  }
  const open: { fd: number; target: string }[] = []
  for (const name of names) {
    try {
      open.push({ fd: Number(name), target: readlinkSync(`/proc/self/fd/${name}`) })
    } catch {
      // gone already (e.g. the descriptor of the listing itself)
    }
  }
  return open
}

/** Why the native runtime cannot run here, or undefined on Linux (where it checks bubblewrap and cgroups itself). */
export function nativeUnavailableReason(): string | undefined {
  const { kind, name } = platform()
  return kind === 'linux' ? undefined : `native tasks need Linux (bubblewrap, cgroups); this system is ${name}`
}
