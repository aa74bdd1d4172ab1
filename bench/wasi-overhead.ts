/**
 * `node --import tsx bench/wasi-overhead.ts [--json] [--runs 400]`: what the `wasi` runtime adds to a run.
 *
 * A trivial WASI command (`_start` returns at once) runs on a warm worker again and again in one task directory. The
 * overhead of a run is the wall time of runtime.run minus the guest's own durationMs (measured in its worker); the
 * baseline is a bare `WebAssembly.instantiate` + `_start` of the same bytes on this thread. Medians are reported.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { body, section, utf8, wasmModule } from '../src/exec/testdata/wasm-bytes.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '400' },
  },
})
const runs = Number(values.runs)
const warmup = 50

// (module (memory (export "memory") 1 1) (func (export "_start")))
const trivial = wasmModule([
  section(1, [1, 0x60, 0, 0]),
  section(3, [1, 0]),
  section(5, [1, 1, 1, 1]),
  section(7, [2, ...utf8('memory'), 2, 0, ...utf8('_start'), 0, 0]),
  section(10, [1, ...body([])]),
])

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

async function baseline(): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < warmup + runs; i++) {
    const startedAt = performance.now()
    const { instance } = await WebAssembly.instantiate(trivial, {})
    ;(instance.exports._start as () => void)()
    if (i >= warmup) times.push(performance.now() - startedAt)
  }
  return median(times)
}

async function wasiRuns(): Promise<{ wallMs: number; guestMs: number; overheadMs: number }> {
  const base = await mkdtemp(join(tmpdir(), 'hearth-bench-wasi-'))
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  try {
    const rootDir = join(base, 'task')
    await mkdir(rootDir)
    await writeFile(join(rootDir, 'input.txt'), 'some input\n')
    const spec = {
      module: trivial,
      args: ['trivial'],
      env: {},
      rootDir,
      stdoutPath: join(base, 'stdout'),
      stderrPath: join(base, 'stderr'),
      maxMemoryBytes: 16 << 20,
      timeoutMs: 30_000,
      maxOutputBytes: 1 << 20,
    }
    const walls: number[] = []
    const guests: number[] = []
    const overheads: number[] = []
    for (let i = 0; i < warmup + runs; i++) {
      const startedAt = performance.now()
      const result = await runtime.run(spec)
      const wallMs = performance.now() - startedAt
      if (result.exitCode !== 0) throw new Error(`the trivial guest exited with ${result.exitCode}`)
      if (i < warmup) continue
      walls.push(wallMs)
      guests.push(result.durationMs)
      overheads.push(wallMs - result.durationMs)
    }
    return { wallMs: median(walls), guestMs: median(guests), overheadMs: median(overheads) }
  } finally {
    await runtime.close()
    await rm(base, { recursive: true, force: true })
  }
}

const baselineMs = await baseline()
const wasi = await wasiRuns()
const report = {
  runs,
  baselineMs: Number(baselineMs.toFixed(4)),
  wallMs: Number(wasi.wallMs.toFixed(4)),
  guestMs: Number(wasi.guestMs.toFixed(4)),
  overheadMs: Number(wasi.overheadMs.toFixed(4)),
  overheadRatio: Number((wasi.overheadMs / baselineMs).toFixed(1)),
}
if (values.json) {
  console.log(JSON.stringify(report))
} else {
  console.log(`warm wasi runs of a trivial module (${runs}, medians):`)
  console.log(`  bare WebAssembly.instantiate + _start (main thread): ${report.baselineMs} ms`)
  console.log(`  runtime.run wall time:                               ${report.wallMs} ms`)
  console.log(`  guest's own durationMs:                              ${report.guestMs} ms`)
  console.log(`  overhead (wall - guest):                             ${report.overheadMs} ms (${report.overheadRatio}x the bare baseline)`)
}
