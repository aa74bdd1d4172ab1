/**
 * Probing a new agreement's provider (probe.ts judges the figures): the probe's runs sent over the agreement, this
 * machine's own run of the same work for comparison (once per requestor), and what follows the verdict: an
 * over-claiming provider gets no work from the job, no pay for the probe, and a mark in the reputation book; an honest
 * one is paid for the probe like any task.
 */
import { randomUUID } from 'node:crypto'
import { toHearthError } from '../errors.ts'
import { measureCpuScore } from '../exec/cpu-score.ts'
import { runTaskProtocol, type RunTaskRequest, type TaskResult } from '../exec/task-protocols.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import type { DebitNote } from '../market/billing.ts'
import type { Host } from '../net/host.ts'
import type { JobEventListener } from './events.ts'
import { createLocalRunner } from './local-runner.ts'
import { judgeProbe, probeRounds, type ProbeVerdict } from './probe.ts'
import type { ReputationBook } from './reputation.ts'
import { checkResult } from './result-check.ts'
import { answerDebitNote, type Slot } from './slot.ts'
import { taskNetworkSlackMs } from './task-exchange.ts'
import type { TaskSpec } from './task-runner.ts'

/** Most threads a probe checks at once: enough to tell one from many, few enough to stay short. */
export const maxProbeThreads = 8

const limits = { maxMemoryBytes: 16 << 20, timeoutMs: 60_000, maxOutputBytes: 1 << 20 }
const work = (rounds: number): TaskSpec => ({ args: [String(rounds)], env: {}, inputs: [], outputs: [] })

export interface ProberInit {
  host: Host
  localRuntime: WasiRuntime
  reputation?: ReputationBook
  /** Misbehaviour for the devnet's failure tests: leave debit notes unanswered. */
  ignoreDebitNotes: boolean
}

export interface Prober {
  /**
   * Checks a provider's offered threads and CPU score. A provider that over-claims, or cannot run the probe, is
   * retired from the job. `servePackage` serves the probe's program to the job's providers.
   */
  probe(slot: Slot, jobId: string, emit: JobEventListener, servePackage: (bytes: Uint8Array) => string): Promise<void>
}

interface LocalProbe {
  localWorkMs: number
  localScore: number
  checksum: string
}

/** One probe of one provider: the runs sent so far and whether any printed a wrong checksum. */
interface ProbeRun {
  host: Host
  slot: Slot
  jobId: string
  packageId: string
  local: LocalProbe
  results: TaskResult[]
  wrongAnswer: boolean
  next: number
}

export function createProber(init: ProberInit): Prober {
  let localProbe: Promise<LocalProbe> | undefined
  return {
    async probe(slot, jobId, emit, servePackage) {
      const wasm = await loadBuiltinWorkload('probe')
      const packageId = servePackage(wasm)
      // This machine's own run of the work (after one that compiles the program), its CPU score, and the checksum.
      localProbe ??= runLocally(init.localRuntime, wasm)
      const run: ProbeRun = { host: init.host, slot, jobId, packageId, local: await localProbe, results: [], wrongAnswer: false, next: 0 }
      let verdict: ProbeVerdict
      try {
        verdict = await measureAndJudge(run)
      } catch (error) {
        // A provider that cannot even run the probe gets no work; that says nothing certain about its claims.
        slot.retired = true
        emit({ type: 'phase', message: `${slot.provider} did not complete the probe (${toHearthError(error).shortMessage}); it gets no work from this job` })
        return
      }
      emit({ type: 'probe', provider: slot.provider, measuredThreads: Number(verdict.measuredThreads.toFixed(2)), measuredScore: Math.round(verdict.measuredScore), ...(verdict.overClaimed === undefined ? {} : { overClaimed: verdict.overClaimed }) })
      if (verdict.overClaimed !== undefined) {
        slot.retired = true
        init.reputation?.record(slot.provider, 'invalid')
        emit({ type: 'phase', message: `${slot.provider} over-claims: ${verdict.overClaimed}; it is not paid for the probe and gets no work from this job` })
        return
      }
      // Honest: its probe work is paid like any accepted task.
      for (const result of run.results) slot.account.acceptTask(result.usage)
      const note = run.results.map((result) => result.debitNote).filter((n): n is DebitNote => n !== undefined).at(-1)
      if (note !== undefined && !init.ignoreDebitNotes) await answerDebitNote(slot, note, emit)
    },
  }
}

async function runLocally(runtime: WasiRuntime, wasm: Uint8Array): Promise<LocalProbe> {
  const runner = createLocalRunner({ runtime, concurrency: 1, ...limits })
  await runner.run([work(1)], { phase: 'probe', package: wasm })
  const [local] = await runner.run([work(probeRounds)], { phase: 'probe', package: wasm })
  return { localWorkMs: local!.usage.durationMs, localScore: measureCpuScore(), checksum: Buffer.from(local!.stdout).toString('utf8') }
}

/** Sends one probe task of `rounds` rounds; returns its round trip. */
async function send(run: ProbeRun, rounds: number): Promise<number> {
  const { slot } = run
  const task = work(rounds)
  const request: RunTaskRequest = {
    agreementId: slot.agreement.id, jobId: `${run.jobId}:probe`, taskIndex: run.next++, activityId: randomUUID(), runtime: 'wasi', packageId: run.packageId,
    args: task.args, env: task.env, inputs: [], outputs: task.outputs, ...limits,
  }
  const sentAt = performance.now()
  const exchange = await run.host.exchange(slot.peer, runTaskProtocol, request, { timeoutMs: limits.timeoutMs + taskNetworkSlackMs })
  const roundTripMs = performance.now() - sentAt
  checkResult(exchange.response, request, roundTripMs)
  run.results.push(exchange.response)
  if (rounds === probeRounds && Buffer.from(exchange.response.stdoutBase64, 'base64').toString('utf8') !== run.local.checksum) run.wrongAnswer = true
  return roundTripMs
}

/** A run that costs a round trip and almost no work, the work alone, and the work on every offered thread at once. */
async function measure(run: ProbeRun, threads: number): Promise<{ emptyWallMs: number; soloWallMs: number; parallelWallMs: number }> {
  const emptyWallMs = await send(run, 1)
  const soloWallMs = await send(run, probeRounds)
  const parallelAt = performance.now()
  await Promise.all(Array.from({ length: threads }, () => send(run, probeRounds)))
  return { emptyWallMs, soloWallMs, parallelWallMs: performance.now() - parallelAt }
}

/** Runs the probe on the provider and judges its claims; throws when the provider cannot run it. */
async function measureAndJudge(run: ProbeRun): Promise<ProbeVerdict> {
  const { offer } = run.slot
  const threads = Math.max(1, Math.min(maxProbeThreads, Math.floor(Number(offer.properties['golem.inf.cpu.threads'] ?? 1)) || 1))
  const claimedScore = Number(offer.properties['hearth.inf.cpu.score'])
  // The first run fetches and compiles the program: not timed.
  await send(run, 1)
  const claims = { threads, cpuScore: Number.isFinite(claimedScore) ? claimedScore : undefined }
  const reference = { localWorkMs: run.local.localWorkMs, localScore: run.local.localScore }
  const first = await measure(run, threads)
  let verdict = judgeProbe(claims, { ...first, ...reference })
  if (verdict.overClaimed !== undefined && !run.wrongAnswer) {
    // A busy moment on either machine looks like a slow provider: an over-claim counts only if a second
    // measurement finds it too (each figure the better of the two). A real over-claim is far outside the margin.
    const second = await measure(run, threads)
    verdict = judgeProbe(claims, {
      emptyWallMs: Math.min(first.emptyWallMs, second.emptyWallMs),
      soloWallMs: Math.min(first.soloWallMs, second.soloWallMs),
      parallelWallMs: Math.min(first.parallelWallMs, second.parallelWallMs),
      ...reference,
    })
  }
  if (run.wrongAnswer) verdict = { ...verdict, overClaimed: `its probe printed another checksum than the work gives${verdict.overClaimed === undefined ? '' : `; ${verdict.overClaimed}`}` }
  return verdict
}
