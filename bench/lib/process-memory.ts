/**
 * Resident memory of a process and of every process it started, from /proc (Linux only): what bench/memory.ts samples.
 * Threads (WASI workers, libuv's pool) are inside their process's figure; child processes (native and docker
 * sandboxes, helpers) are found by walking /proc/<pid>/stat for parent ids.
 */
import { readdirSync, readFileSync } from 'node:fs'

/** Fields of /proc/<pid>/stat after the command name, which may itself hold spaces and parentheses. */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** `pid` and every live descendant of it. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const parent = Number(statFields(Number(name))?.[1])
    if (!Number.isInteger(parent)) continue
    const list = children.get(parent) ?? []
    list.push(Number(name))
    children.set(parent, list)
  }
  const tree: number[] = []
  const queue = [pid]
  while (queue.length > 0) {
    const next = queue.shift()!
    tree.push(next)
    queue.push(...(children.get(next) ?? []))
  }
  return tree
}

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM), or 0 when the process has gone. */
export function statusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match === null ? 0 : Number(match[1]) * 1024
  } catch {
    return 0
  }
}

export interface TreeSample {
  /** VmRSS summed over the process and its descendants. */
  rssBytes: number
  /** How many processes that was. */
  processes: number
  /** Threads of the root process. */
  threads: number
}

export function sampleTree(pid: number): TreeSample {
  const tree = processTree(pid)
  const threads = Number(statFields(pid)?.[17] ?? 0)
  return { rssBytes: tree.reduce((sum, p) => sum + statusBytes(p, 'VmRSS'), 0), processes: tree.length, threads }
}

/** CPU time (user + system) the process has used, in ms, its waited-for children included (at 100 clock ticks a second). */
export function cpuMs(pid: number): number {
  const fields = statFields(pid)
  if (fields === undefined) return 0
  // utime, stime, cutime, cstime are fields 14-17 of stat, 11-14 here (0-based, after the name).
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0)
  return (ticks * 1000) / 100
}

/** Samples the tree every `everyMs` (200) until `durationMs` have passed or `stop` settles; returns every sample. */
export async function sampleFor(pid: number, options: { durationMs?: number; everyMs?: number; stop?: Promise<unknown> }): Promise<TreeSample[]> {
  const everyMs = options.everyMs ?? 200
  const samples: TreeSample[] = []
  let stopped = false
  void options.stop?.then(
    () => (stopped = true),
    () => (stopped = true),
  )
  const until = options.durationMs === undefined ? Infinity : performance.now() + options.durationMs
  while (!stopped && performance.now() < until) {
    samples.push(sampleTree(pid))
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
  samples.push(sampleTree(pid))
  return samples
}
