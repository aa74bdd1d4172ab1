/**
 * `node --import tsx bench/exec-startup.ts [--json] [--runs 20] [--docker-runs 10]`: what starting a sandbox costs.
 *
 * The time from the call to the end of a run of a program that does nothing (`true`): the baseline is a plain
 * child_process spawn of /usr/bin/true; then the `native` runtime (bubblewrap + one cgroup per run) running the same
 * binary, and the `docker` runtime running busybox's `true` in a container (create, start, attach, wait, remove).
 * Docker uses $DOCKER_HOST or /var/run/docker.sock when an engine answers there, else a private podman service, as the
 * docker tests do. A runtime this machine cannot run is skipped with the reason (Debian packages: bubblewrap for
 * native; podman runc catatonit busybox-static for docker). Medians after a warm-up run; each run reuses one task
 * directory, as a provider's runs each get a fresh but empty one.
 */
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createDockerRuntime } from '../src/exec/docker-runtime.ts'
import { importBusyboxImage, startTestEngine } from '../src/exec/docker-test-image.ts'
import { createNativeRuntime } from '../src/exec/native-runtime.ts'
import type { RunResult, RunSpec, Runtime } from '../src/exec/runtime.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '20' },
    'docker-runs': { type: 'string', default: '10' },
  },
})
const runs = Number(values.runs)
const dockerRuns = Number(values['docker-runs'])
const program = '/usr/bin/true'
const MiB = 1 << 20

const log = lineLogger(values.json)

interface Measured {
  ms: number
  /** What the runtime itself says the run took (its durationMs), for comparison with the wall time. */
  reportedMs: number
}

/** Median wall time of `count` calls of `once`, after one warm-up call. */
async function timed(count: number, once: () => Promise<number>): Promise<Measured> {
  await once()
  const walls: number[] = []
  const reported: number[] = []
  for (let i = 0; i < count; i++) {
    const startedAt = performance.now()
    const reportedMs = await once()
    walls.push(performance.now() - startedAt)
    reported.push(reportedMs)
  }
  return { ms: median(walls), reportedMs: median(reported) }
}

function spawnOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const startedAt = performance.now()
    const child = spawn(program, [], { stdio: 'ignore' })
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve(performance.now() - startedAt) : reject(new Error(`${program} exited with ${code}`))))
  })
}

/** Runs `args` under `runtime` in one task directory of `base`; the run's own durationMs is the answer. */
async function runtimeOnce<P>(runtime: Runtime<P>, base: string, what: P, args: string[]): Promise<() => Promise<number>> {
  const rootDir = join(base, 'root')
  await mkdir(rootDir, { recursive: true })
  const spec: RunSpec<P> = {
    program: what,
    args,
    env: {},
    rootDir,
    stdoutPath: join(base, 'stdout'),
    stderrPath: join(base, 'stderr'),
    maxMemoryBytes: 64 * MiB,
    timeoutMs: 60_000,
    maxOutputBytes: MiB,
  }
  return async () => {
    const result: RunResult = await runtime.run(spec)
    if (result.exitCode !== 0) throw new Error(`${runtime.name}: true exited with ${result.exitCode}`)
    return result.durationMs
  }
}

type Line = { ok: true; runs: number; ms: number; reportedMs: number; vsSpawn: number } | { ok: false; skipped: string }

const base = await mkdtemp(join(tmpdir(), 'hearth-bench-startup-'))
const report: { program: string; spawn: { runs: number; ms: number }; native: Line; docker: Line & { engine?: string } } = {
  program,
  spawn: { runs, ms: 0 },
  native: { ok: false, skipped: '' },
  docker: { ok: false, skipped: '' },
}
try {
  log(`bench: start-up of a run of \`true\`, from the call to the end (medians)`)
  const baseline = await timed(runs, spawnOnce)
  report.spawn = { runs, ms: round(baseline.ms) }
  log(`  child_process.spawn (baseline)    ${report.spawn.ms} ms  (${runs} runs)`)

  const native = createNativeRuntime({ programs: [program] })
  try {
    const availability = await native.available()
    if (!availability.ok) {
      report.native = { ok: false, skipped: availability.reason }
    } else {
      const once = await runtimeOnce(native, join(base, 'native'), program, [program])
      const measured = await timed(runs, once)
      report.native = { ok: true, runs, ms: round(measured.ms), reportedMs: round(measured.reportedMs), vsSpawn: round(measured.ms / baseline.ms) }
    }
  } finally {
    await native.close()
  }
  if (report.native.ok) {
    log(`  native (bubblewrap + cgroup)      ${report.native.ms} ms  (${report.native.vsSpawn}x spawn; runtime's durationMs ${report.native.reportedMs} ms; ${runs} runs)`)
  } else {
    log(`  native: skipped: ${report.native.skipped}`)
  }

  let engine: Awaited<ReturnType<typeof startTestEngine>> | undefined
  try {
    engine = await startTestEngine(join(base, 'podman'))
  } catch (error) {
    report.docker = { ok: false, skipped: (error as Error).message.split('\n').join('; ') }
  }
  if (engine !== undefined) {
    const docker = createDockerRuntime({ socketPath: engine.socketPath })
    try {
      const availability = await docker.available()
      if (!availability.ok) {
        report.docker = { ok: false, skipped: availability.reason, engine: engine.kind }
      } else {
        const image = await importBusyboxImage(docker, join(base, 'image'))
        const once = await runtimeOnce(docker, join(base, 'docker'), { image }, ['/bin/true'])
        const measured = await timed(dockerRuns, once)
        report.docker = { ok: true, runs: dockerRuns, ms: round(measured.ms), reportedMs: round(measured.reportedMs), vsSpawn: round(measured.ms / baseline.ms), engine: engine.kind }
      }
    } catch (error) {
      report.docker = { ok: false, skipped: (error as Error).message, engine: engine.kind }
    } finally {
      await docker.close()
      await engine.stop()
    }
  }
  if (report.docker.ok) {
    log(`  docker (${report.docker.engine}, busybox true)     ${report.docker.ms} ms  (${report.docker.vsSpawn}x spawn; runtime's durationMs ${report.docker.reportedMs} ms; ${dockerRuns} runs)`)
  } else {
    log(`  docker: skipped: ${report.docker.skipped}`)
  }
  if (values.json) console.log(JSON.stringify(report))
} finally {
  await rm(base, { recursive: true, force: true })
}
