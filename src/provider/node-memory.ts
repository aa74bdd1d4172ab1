/**
 * Gives memory back once a provider process has gone quiet. V8 collects garbage when JavaScript allocates, so a node
 * that has just loaded its modules, or just finished a job, keeps the heap that work grew to (its young generation
 * grown to tens of MB, old pages full of garbage) for as long as it stays idle: nothing allocates, so nothing
 * collects. This watch looks at the process's CPU time and resident memory every few seconds and, once the process
 * has been quiet for a while after start-up or after growing, runs one full collection. Run after a quiet spell (little
 * allocated since the last collection), that collection also shrinks the young generation back to 1 MB, and V8 returns
 * the free pages to the system: an idle provider goes from ~135 to ~105 MB (bench/memory.ts).
 *
 * For the process that owns the node (`hearth provider start`): a collection stops the whole process for a few tens
 * of ms, which only the owner of the process should decide; it happens only while the node is idle, and once per
 * growth, never on a timer alone.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

export interface MemoryTrimInit {
  /** How often to look (default 5 s). */
  checkEveryMs?: number
  /** The process counts as quiet when it used less CPU than this share of one core since the last look (default 2%). */
  quietCpuShare?: number
  /**
   * Quiet looks in a row before a collection (default 2: quiet for 5-10 s). V8 shrinks its young generation in a
   * collection only when little was allocated since the one before; a collection right after a burst of work keeps it
   * grown.
   */
  quietLooks?: number
  /** A collection runs when RSS has grown by this much over its low since the last one (default 8 MiB; the first needs no growth). */
  growthBytes?: number
  /** The collection to run; default: V8's full collection. Tests count calls here. */
  collect?: () => void
  /** The process's CPU time (µs) and RSS (bytes), and the time (ms); default: this process's. Tests play them here. */
  sample?: () => { cpuMicros: number; rssBytes: number; atMs: number }
}

export interface MemoryTrim {
  /** How many collections it has run. */
  readonly collections: number
  /** One look: collects when the process has been quiet for `quietLooks` looks and has grown; says whether it did. */
  check(): boolean
  stop(): void
}

/**
 * V8's full collection, as `--expose-gc` would give it, without that flag on the command line: the flag is set just
 * long enough to take the function from a fresh context, so no other context sees a `gc` global.
 */
export function fullCollection(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (typeof exposed === 'function') return exposed
  setFlagsFromString('--expose-gc')
  try {
    return runInNewContext('gc') as () => void
  } finally {
    setFlagsFromString('--no-expose-gc')
  }
}

function processSample(): { cpuMicros: number; rssBytes: number; atMs: number } {
  const { user, system } = process.cpuUsage()
  return { cpuMicros: user + system, rssBytes: process.memoryUsage.rss(), atMs: performance.now() }
}

/** Looks every `checkEveryMs` (an unref'd timer: it keeps no process alive). */
export function startMemoryTrim(init: MemoryTrimInit = {}): MemoryTrim {
  const trim = createMemoryTrim(init)
  const timer = setInterval(() => trim.check(), init.checkEveryMs ?? 5_000)
  timer.unref()
  return {
    get collections() {
      return trim.collections
    },
    check: trim.check,
    stop: () => clearInterval(timer),
  }
}

/** The trim's logic without its timer: each `check()` is one look. */
export function createMemoryTrim(init: MemoryTrimInit = {}): MemoryTrim {
  const quietCpuShare = init.quietCpuShare ?? 0.02
  const quietLooks = init.quietLooks ?? 2
  const growthBytes = init.growthBytes ?? 8 * 1024 * 1024
  const sample = init.sample ?? processSample
  let collect = init.collect
  let collections = 0
  /**
   * The lowest RSS seen since the last collection (none yet: the first quiet look collects). The low, not the figure
   * right after it: V8 gives most pages back in the memory-reducing collections that its own collection sets off
   * some seconds later.
   */
  let lowRss = -Infinity
  let last = sample()
  let quietInRow = 0
  const check = (): boolean => {
    const now = sample()
    const cpuShare = (now.cpuMicros - last.cpuMicros) / 1000 / Math.max(1, now.atMs - last.atMs)
    last = now
    lowRss = Math.min(lowRss, now.rssBytes)
    quietInRow = cpuShare < quietCpuShare ? quietInRow + 1 : 0
    if (quietInRow < quietLooks || now.rssBytes < lowRss + growthBytes) return false
    collect ??= fullCollection()
    collect()
    collections++
    last = sample()
    lowRss = last.rssBytes
    return true
  }
  return {
    get collections() {
      return collections
    },
    check,
    stop: () => undefined,
  }
}
