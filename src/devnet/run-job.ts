/**
 * `hearth run JOBFILE` on the embedded default: the job file is checked whole first (exit code 2, nothing started),
 * then a local network runs it and every task's outputs, stdout and stderr land under DIR/<task index>/.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { parseEther } from 'viem'
import { loadJobFile } from '../jobs/job-file.ts'
import { archiveImageId } from '../exec/docker-images.ts'
import { defaultDockerSocket } from '../exec/docker-runtime.ts'
import { existsSync } from 'node:fs'
import type { JobEventListener } from '../requestor/events.ts'
import type { JobSpec } from '../requestor/requestor.ts'
import { startDevnet } from './devnet.ts'
import { settlementReport, snapshotDevnet, type SettlementReport } from './report.ts'

export interface RunJobInit {
  jobFile: string
  outDir: string
  providers: number
  /** Native programs the local providers offer (name → absolute path); default: known renderers installed here. */
  nativePrograms?: Record<string, string>
  /** The Docker Engine API socket the local providers use; default: DOCKER_HOST or the usual socket paths. */
  dockerSocket?: string
  onEvent?: JobEventListener
}

export interface RunReport extends SettlementReport {
  job: string
  tasks: { total: number; succeeded: number }
  results: { taskIndex: number; provider: string; exitCode: number; outputs: string[]; missingOutputs: string[] }[]
  failures: { taskIndex: number; message: string }[]
  output: string
  wallMs: number
}

/** Programs a local provider offers by default when they are installed: renderers, as Golem's providers offer. */
const knownPrograms: Record<string, string> = { povray: '/usr/bin/povray', blender: '/usr/bin/blender' }

function installedPrograms(): Record<string, string> {
  return Object.fromEntries(Object.entries(knownPrograms).filter(([, path]) => existsSync(path)))
}

export async function runJobFile(init: RunJobInit): Promise<RunReport> {
  const started = performance.now()
  const job = loadJobFile(init.jobFile)
  const spec: JobSpec = {
    name: job.name,
    runtime: job.runtime,
    ...(job.packagePath === undefined ? {} : { package: await readFile(job.packagePath) }),
    ...(job.program === undefined ? {} : { program: job.program }),
    ...(job.runtime === 'docker' && job.packagePath !== undefined ? { imageId: await archiveImageId(job.packagePath) } : {}),
    tasks: await Promise.all(
      job.tasks.map(async (task) => ({
        args: task.args,
        env: task.env,
        inputs: await Promise.all(Object.entries(task.inputPaths).map(async ([path, hostPath]) => ({ path, data: await readFile(hostPath) }))),
        outputs: task.outputs,
      })),
    ),
    providers: job.providers ?? init.providers,
    maxPricePerTaskWei: job.pricePerTaskWei === undefined ? parseEther('1') : BigInt(job.pricePerTaskWei),
    timeoutMs: job.timeoutMs,
    maxMemoryBytes: job.maxMemoryMib * 1024 * 1024,
    maxOutputBytes: job.maxOutputMib * 1024 * 1024,
    ...(job.constraints === undefined ? {} : { demand: { constraints: job.constraints } }),
    ...(job.sla === undefined ? {} : { sla: job.sla }),
  }
  const emit = init.onEvent ?? (() => undefined)
  emit({ type: 'phase', message: `starting a local network: embedded chain, ${spec.providers} providers, 1 requestor` })
  const socket = init.dockerSocket ?? defaultDockerSocket()
  const dockerSocket = existsSync(socket) ? socket : undefined
  const devnet = await startDevnet({
    providers: spec.providers,
    // The embedded network offers what this machine can run: renderers found here, and a Docker-compatible engine.
    nativePrograms: init.nativePrograms ?? installedPrograms(),
    ...(dockerSocket === undefined ? {} : { dockerSocket }),
  })
  try {
    const before = await snapshotDevnet(devnet)
    const outcome = await devnet.requestor.agent.runJob(spec, { onEvent: emit })
    const settlement = await settlementReport(devnet, before, outcome)
    const outDir = resolve(init.outDir)
    const results: RunReport['results'] = []
    for (const result of outcome.results) {
      if (result === undefined) continue
      const taskDir = join(outDir, String(result.taskIndex))
      await mkdir(taskDir, { recursive: true })
      await writeFile(join(taskDir, 'stdout'), result.stdout)
      await writeFile(join(taskDir, 'stderr'), result.stderr)
      for (const output of result.outputs) {
        // Guest paths were checked to be absolute without '..', so this stays inside taskDir.
        const hostPath = join(taskDir, output.path)
        await mkdir(dirname(hostPath), { recursive: true })
        await writeFile(hostPath, output.data)
      }
      results.push({ taskIndex: result.taskIndex, provider: result.provider, exitCode: result.exitCode, outputs: result.outputs.map((o) => o.path), missingOutputs: result.missingOutputs })
    }
    return {
      job: job.name,
      tasks: { total: spec.tasks.length, succeeded: results.filter((r) => r.exitCode === 0 && r.missingOutputs.length === 0).length },
      results,
      failures: outcome.failures,
      ...settlement,
      output: outDir,
      wallMs: Math.round(performance.now() - started),
    }
  } finally {
    await devnet.stop()
  }
}
