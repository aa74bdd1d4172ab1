// Preloaded into a process (`node --expose-gc --import ./bench/lib/memory-probe.mjs …`) to see where its memory goes:
// on SIGUSR2 it collects garbage and writes to $HEARTH_MEMORY_PROBE_DIR/<pid>-<n>.json the process's memory by kind
// (process.memoryUsage and V8's heap spaces before and after, code and metadata) and the CommonJS files it has
// loaded (NODE_DEBUG=esm lists the ES modules), and, with HEARTH_MEMORY_PROBE_SNAPSHOT=1, a heap snapshot beside it
// (bench/lib/heap-summary.mjs sums one up).
// A tool for bench/memory.ts --probe and for looking by hand; it costs the process a little memory itself.
import { createRequire } from 'node:module'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import v8 from 'node:v8'

const dir = process.env.HEARTH_MEMORY_PROBE_DIR ?? '.'
const require = createRequire(import.meta.url)
let count = 0

function spaces() {
  return Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]))
}

process.on('SIGUSR2', () => {
  const before = { memoryUsage: process.memoryUsage(), heapSpaces: spaces() }
  globalThis.gc?.()
  globalThis.gc?.()
  const n = count++
  const base = join(dir, `${process.pid}-${n}`)
  const report = {
    pid: process.pid,
    before,
    memoryUsage: process.memoryUsage(),
    heapSpaces: spaces(),
    heap: v8.getHeapStatistics(),
    code: v8.getHeapCodeStatistics(),
    commonjs: Object.keys(require.cache),
    snapshot: process.env.HEARTH_MEMORY_PROBE_SNAPSHOT === '1' ? v8.writeHeapSnapshot(`${base}.heapsnapshot`) : undefined,
  }
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 1)}\n`)
})
