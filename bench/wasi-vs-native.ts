/**
 * `node --import tsx bench/wasi-vs-native.ts [--json] [--runs 5]`: the same program under the `wasi` runtime and as a
 * native program, to say what running portable wasm instead of a native binary costs in CPU-bound work.
 *
 * One C file (below) is compiled twice with the same clang and -O2, at bench time, into build/bench/: for this machine
 * and for wasm32-wasi. It has two workloads, each printing a hash of what it computed, so the bench checks that both
 * builds did the same work: `mandelbrot` (floating point, escape-time iterations of a grid) and `sieve` (integers and
 * memory: the sieve of Eratosthenes over a 20 MB array, several rounds). Each workload runs
 * - natively by a plain child_process spawn (baseline),
 * - under the `native` runtime (bubblewrap + cgroup), the provider's way of running a native program,
 * - under the `wasi` runtime (node:wasi in a worker, module compiled and worker warm after a warm-up run),
 * and the ratios are wall times against the baseline; medians of `--runs` runs. The CPU time each runtime measures is
 * reported too, and wasi against native in CPU time: on a loaded machine it is the steadier of the two ratios.
 *
 * Needs (Debian 12): clang lld wasi-libc libclang-rt-14-dev-wasm32 (apt-get install -y --no-install-recommends ...);
 * without them the bench says what is missing and skips. The native runtime's line needs bubblewrap.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createNativeRuntime } from '../src/exec/native-runtime.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '5' },
  },
})
const runs = Number(values.runs)
const MiB = 1 << 20
const packages = 'clang lld wasi-libc libclang-rt-14-dev-wasm32'

const source = String.raw`#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv(uint64_t hash, uint64_t value) { return (hash ^ value) * 1099511628211ULL; }

/* Floating point: escape-time iterations of a size x size Mandelbrot grid. */
static uint64_t mandelbrot(int size, int maxIter) {
  uint64_t hash = 1469598103934665603ULL;
  for (int y = 0; y < size; y++) {
    double ci = (double)y * 2.0 / size - 1.0;
    for (int x = 0; x < size; x++) {
      double cr = (double)x * 3.0 / size - 2.0, zr = 0, zi = 0;
      int i = 0;
      while (i < maxIter && zr * zr + zi * zi <= 4.0) {
        double t = zr * zr - zi * zi + cr;
        zi = 2 * zr * zi + ci;
        zr = t;
        i++;
      }
      hash = fnv(hash, (uint64_t)i);
    }
  }
  return hash;
}

/* Integers and memory: primes up to n by the sieve of Eratosthenes, rounds times. */
static uint64_t sieve(int n, int rounds) {
  uint64_t hash = 1469598103934665603ULL;
  unsigned char *composite = malloc((size_t)n + 1);
  if (composite == NULL) return 0;
  for (int r = 0; r < rounds; r++) {
    memset(composite, 0, (size_t)n + 1);
    uint64_t count = 0;
    for (int i = 2; i <= n; i++) {
      if (composite[i]) continue;
      count++;
      for (int64_t j = (int64_t)i * i; j <= n; j += i) composite[j] = 1;
    }
    hash = fnv(hash, count);
  }
  free(composite);
  return hash;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "mandelbrot") == 0) {
    printf("%016llx\n", (unsigned long long)mandelbrot(atoi(argv[2]), atoi(argv[3])));
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "sieve") == 0) {
    printf("%016llx\n", (unsigned long long)sieve(atoi(argv[2]), atoi(argv[3])));
    return 0;
  }
  fprintf(stderr, "usage: %s mandelbrot SIZE MAX_ITER | sieve N ROUNDS\n", argv[0]);
  return 2;
}
`

const workloads: { name: string; args: string[] }[] = [
  { name: 'mandelbrot', args: ['mandelbrot', '1000', '500'] },
  { name: 'sieve', args: ['sieve', '20000000', '5'] },
]

const log = lineLogger(values.json)

/** The first clang on PATH that answers --version. */
function findClang(): string | undefined {
  for (const name of ['clang', ...Array.from({ length: 8 }, (_, i) => `clang-${21 - i}`)]) {
    if (spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0) return name
  }
  return undefined
}

/** Compiles the source for this machine and for wasm32-wasi; the reason when the toolchain cannot. */
async function build(dir: string): Promise<{ ok: true; native: string; wasm: string; clang: string } | { ok: false; reason: string }> {
  const clang = findClang()
  if (clang === undefined) return { ok: false, reason: `no clang on PATH (Debian: apt-get install -y --no-install-recommends ${packages})` }
  await mkdir(dir, { recursive: true })
  const file = join(dir, 'wasi-vs-native.c')
  await writeFile(file, source)
  const native = join(dir, 'wasi-vs-native')
  const wasm = join(dir, 'wasi-vs-native.wasm')
  for (const [what, args] of [
    ['native', ['-O2', '-o', native, file]],
    ['wasm32-wasi', ['--target=wasm32-wasi', '-O2', '-o', wasm, file]],
  ] as const) {
    const compiled = spawnSync(clang, args, { encoding: 'utf8' })
    if (compiled.status !== 0) {
      const firstError = (compiled.stderr || String(compiled.error ?? '')).split('\n').find((line) => /error/i.test(line)) ?? compiled.stderr
      return { ok: false, reason: `${clang} cannot build for ${what}: ${firstError.trim()} (Debian: apt-get install -y --no-install-recommends ${packages})` }
    }
  }
  return { ok: true, native, wasm, clang }
}

function spawnOnce(program: string, args: string[]): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const startedAt = performance.now()
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    child.stdout.on('data', (data: Buffer) => {
      stdout += data.toString('utf8')
    })
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve({ ms: performance.now() - startedAt, stdout }) : reject(new Error(`${program} exited with ${code}`))))
  })
}

interface Line {
  wallMs: number
  /** The runtime's own durationMs (for the baseline: the wall time). */
  durationMs: number
  /** CPU time the runtime measured (the guest's thread for wasi, the run's cgroup for native); absent for the baseline. */
  cpuMs?: number
  vsBaseline: number
}

/** Median of `runs` calls of `once` after a warm-up call; every call must print `expected`. */
async function measure(once: () => Promise<{ durationMs: number; cpuMs?: number; stdout: string }>, expected: string | undefined, baselineMs?: number): Promise<Line & { stdout: string }> {
  const first = await once()
  const walls: number[] = []
  const durations: number[] = []
  const cpu: number[] = []
  for (let i = 0; i < runs; i++) {
    const startedAt = performance.now()
    const result = await once()
    walls.push(performance.now() - startedAt)
    durations.push(result.durationMs)
    if (result.cpuMs !== undefined) cpu.push(result.cpuMs)
    if (result.stdout !== first.stdout) throw new Error(`two runs printed different results: ${first.stdout.trim()} and ${result.stdout.trim()}`)
  }
  if (expected !== undefined && first.stdout !== expected) {
    throw new Error(`the builds disagree: native printed ${expected.trim()}, this one ${first.stdout.trim()}`)
  }
  const wallMs = median(walls)
  return { wallMs: round(wallMs), durationMs: round(median(durations)), ...(cpu.length === 0 ? {} : { cpuMs: round(median(cpu)) }), vsBaseline: round(wallMs / (baselineMs ?? wallMs)), stdout: first.stdout }
}

const buildDir = fileURLToPath(new URL('../build/bench/', import.meta.url))
const built = await build(buildDir)
if (!built.ok) {
  if (values.json) console.log(JSON.stringify({ skipped: built.reason }))
  else log(`skipped: ${built.reason}`)
  process.exit(0)
}

const base = await mkdtemp(join(tmpdir(), 'hearth-bench-wasi-native-'))
const rootDir = join(base, 'root')
await mkdir(rootDir)
const spec = {
  env: {},
  rootDir,
  stdoutPath: join(base, 'stdout'),
  stderrPath: join(base, 'stderr'),
  maxMemoryBytes: 256 * MiB,
  timeoutMs: 120_000,
  maxOutputBytes: MiB,
}
const wasi = createWasiRuntime({ maxWorkers: 1 })
const native = createNativeRuntime({ programs: [built.native] })
const wasm = await readFile(built.wasm)
const report: Record<string, unknown> = { compiler: built.clang, runs, workloads: {} as Record<string, unknown> }
try {
  const nativeAvailability = await native.available()
  if (!nativeAvailability.ok) report.nativeRuntimeSkipped = nativeAvailability.reason
  log(`bench: one C program built by ${built.clang} -O2 for this machine and for wasm32-wasi, ${runs} runs each (medians of wall time)`)
  for (const workload of workloads) {
    const bare = await measure(async () => {
      const run = await spawnOnce(built.native, workload.args)
      return { durationMs: run.ms, stdout: run.stdout }
    }, undefined)
    const expected = bare.stdout
    const underNative = nativeAvailability.ok
      ? await measure(async () => {
        const result = await native.run({ ...spec, program: built.native, args: [built.native, ...workload.args] })
        if (result.exitCode !== 0) throw new Error(`native runtime: exit code ${result.exitCode}`)
        return { durationMs: result.durationMs, cpuMs: result.cpuMs, stdout: await readFile(spec.stdoutPath, 'utf8') }
      }, expected, bare.wallMs)
      : undefined
    const underWasi = await measure(async () => {
      const result = await wasi.run({ ...spec, module: wasm, args: ['wasi-vs-native', ...workload.args] })
      if (result.exitCode !== 0) throw new Error(`wasi runtime: exit code ${result.exitCode}`)
      return { durationMs: result.durationMs, cpuMs: result.cpuMs, stdout: await readFile(spec.stdoutPath, 'utf8') }
    }, expected, bare.wallMs)
    const strip = ({ stdout: _stdout, ...line }: Line & { stdout: string }): Line => line
    const entry = {
      args: workload.args.join(' '),
      result: expected.trim(),
      spawn: strip(bare),
      ...(underNative === undefined ? {} : { nativeRuntime: strip(underNative) }),
      wasiRuntime: strip(underWasi),
      ...(underNative === undefined ? {} : {
        wasiVsNativeRuntime: round(underWasi.wallMs / underNative.wallMs),
        wasiVsNativeRuntimeCpu: round(underWasi.cpuMs! / underNative.cpuMs!),
      }),
    }
    ;(report.workloads as Record<string, unknown>)[workload.name] = entry
    log(`  ${workload.name} (${entry.args}; both print ${entry.result})`)
    log(`    native, plain spawn (baseline)    ${bare.wallMs} ms`)
    if (underNative !== undefined) log(`    native runtime (bwrap + cgroup)   ${underNative.wallMs} ms  (${underNative.vsBaseline}x; CPU ${underNative.cpuMs} ms)`)
    log(`    wasi runtime (warm worker)        ${underWasi.wallMs} ms  (${underWasi.vsBaseline}x; CPU ${underWasi.cpuMs} ms)`)
    if (underNative !== undefined) log(`    wasi / native runtime             ${entry.wasiVsNativeRuntime}x wall, ${entry.wasiVsNativeRuntimeCpu}x CPU`)
  }
  if (report.nativeRuntimeSkipped !== undefined) log(`  native runtime skipped: ${String(report.nativeRuntimeSkipped)}`)
  if (values.json) console.log(JSON.stringify(report))
} finally {
  await wasi.close()
  await native.close()
  await rm(base, { recursive: true, force: true })
}
