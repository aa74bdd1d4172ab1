/**
 * Running tasks for requestors, alone or in a batch: every money check of the agreement's account and the owner's
 * bounds before any work, the inputs written into a task directory of its own, the program run in its sandbox with
 * the agreement's GPUs, the outputs read back (regular files only), and the work metered and billed, its debit note
 * carried by the answer. Work that produced no result (handed back, refused input, a sandbox limit) is not billed.
 */
import type { Address } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import { runTaskProtocol, runTasksProtocol, type FileBlob, type RunTaskRequest, type TaskResult } from '../exec/task-protocols.ts'
import { sha256Hex } from '../exec/content-hash.ts'
import type { RunResult } from '../exec/runtime.ts'
import { runTaskInDir, type TaskInput } from '../exec/task-core.ts'
import { createTaskDirs } from '../exec/task-dirs.ts'
import { hashCanonical } from '../identity/canonical-json.ts'
import type { DebitNote } from '../market/billing.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import type { FrameAdmission } from './frame-admission.ts'
import type { Lending } from './lending.ts'
import type { Programs } from './programs.ts'
import type { ProviderAccounts, Reservation } from './provider-account.ts'
import type { TaskAdmission } from './task-admission.ts'
import type { WrongResults } from './wrong-results.ts'

/** Ways a dishonest provider bills and answers (misbehave, for the devnet's failure tests). */
export interface TaskMisbehaviour {
  inflateUsage?: number
  inflateNotes?: number
  oversizeResults?: number
  stallResults?: boolean
}

export interface TaskRunnerInit {
  host: Host
  accounts: ProviderAccounts
  lending: Lending
  admission: TaskAdmission
  programs: Pick<Programs, 'programFor'>
  /** Task directories live under here (see exec/task-dirs.ts: kept for the agreement's next task when left untouched). */
  activitiesDir: string
  /** Set when this provider returns wrong results on purpose. */
  wrongResults: WrongResults | undefined
  misbehave: TaskMisbehaviour | undefined
}

export interface TaskRunner {
  /** `batched`: the task is one of a batch, whose running usage is written once before the batch's answer. */
  runTask(request: RunTaskRequest, requestor: Address, from: PeerTarget, signal: AbortSignal, options?: { batched?: boolean }): Promise<TaskResult>
  /** Serves tasks and task batches, large frames admitted by `admit`. */
  handle(admit: FrameAdmission): Promise<void>
  counts(): { tasksRun: number; tasksFailed: number; wrongResults: number }
  /** Removes the task directories kept for further tasks. */
  close(): Promise<void>
}

/** The GPUs a task of an agreement granting `count` may use: the first `count` this machine has. */
function gpuGrant(count: number | undefined): { gpus?: number[] } {
  return count === undefined ? {} : { gpus: Array.from({ length: count }, (_, index) => index) }
}

/** The task's inputs as bytes, each checked against its content id. */
function verifiedInputs(request: RunTaskRequest): TaskInput[] {
  return request.inputs.map((input) => {
    const data = Buffer.from(input.dataBase64, 'base64')
    if (data.length !== input.sizeBytes || sha256Hex(data) !== input.contentId) {
      throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `input ${input.path} does not match its content id`)
    }
    return { path: input.path, data }
  })
}

/** Bills the run; a dishonest provider may meter more than ran, and ask more than that costs. */
function meter(reservation: Reservation, run: RunResult, misbehave: TaskMisbehaviour | undefined, batched: boolean): { usage: { durationMs: number; cpuMs: number }; debitNote: DebitNote | undefined } {
  const inflate = misbehave?.inflateUsage ?? 1
  const usage = { durationMs: run.durationMs * inflate, cpuMs: run.cpuMs * inflate }
  const metered = reservation.complete({ tasks: 1, ...usage }, { deferSave: batched })
  const debitNote = metered === undefined || misbehave?.inflateNotes === undefined ? metered : { ...metered, amountDueWei: (BigInt(metered.amountDueWei) * BigInt(misbehave.inflateNotes)).toString() }
  return { usage, debitNote }
}

/** Serves tasks and task batches, large frames admitted by `admit`. */
async function serveTasks(host: Host, accounts: ProviderAccounts, runTask: TaskRunner['runTask'], admit: FrameAdmission): Promise<void> {
  await host.handle(runTaskProtocol, (request, ctx) => runTask(request, ctx.remoteAddress, ctx.peerId, ctx.signal), { admit })
  // A batch: each task runs (and is refused, checked and billed) exactly as if it came alone; the running usage of
  // its agreements is written once, before the answer that carries the work goes out.
  await host.handle(runTasksProtocol, async ({ tasks }, ctx) => {
    const settled = await Promise.allSettled(tasks.map((task) => runTask(task, ctx.remoteAddress, ctx.peerId, ctx.signal, { batched: true })))
    for (const agreementId of new Set(tasks.map((task) => task.agreementId))) {
      try {
        accounts.account(agreementId, ctx.remoteAddress).persist()
      } catch {
        // not an agreement of this requestor: none of its tasks ran, nothing was billed
      }
    }
    return {
      answers: settled.map((outcome) => {
        if (outcome.status === 'fulfilled') return { ok: true as const, result: outcome.value }
        const error = toHearthError(outcome.reason)
        return { ok: false as const, code: error.code, message: error.shortMessage.slice(0, 4000) }
      }),
    }
  }, { admit })
}

export function createTaskRunner(init: TaskRunnerInit): TaskRunner {
  const { accounts, lending, admission, programs, wrongResults, misbehave } = init
  const counts = { tasksRun: 0, tasksFailed: 0, wrongResults: 0 }
  const dirs = createTaskDirs({ base: init.activitiesDir })

  async function runTask(request: RunTaskRequest, requestor: Address, from: PeerTarget, signal: AbortSignal, options: { batched?: boolean } = {}): Promise<TaskResult> {
    lending.ensureLending()
    const account = accounts.account(request.agreementId, requestor)
    const terms = account.terms
    // Every money check (escrow, expiry, overdue notes, tasks left, unpaid work) before any work; released if none is done.
    const reservation = await account.reserve()
    const handBack = new AbortController()
    let leave: () => void
    try {
      leave = admission.admit(request, handBack)
    } catch (error) {
      reservation.cancel()
      throw error
    }
    let billed = false
    let releaseProgram: (() => void) | undefined
    // A pause may have come while the escrow was checked, before this task was registered to be handed back.
    if (lending.pausedReason() !== undefined) handBack.abort()
    let activityDir: string | undefined
    try {
      if (handBack.signal.aborted) throw lending.pausedError()
      // A directory of its own, empty: made now, or one a task of this agreement left untouched.
      activityDir = dirs.take(request.agreementId)
      const { runtime, program, programId, argv0, release } = await programs.programFor(request, from)
      releaseProgram = release
      if (handBack.signal.aborted) throw lending.pausedError()
      let wrong = false
      const done = await runTaskInDir(
        activityDir,
        {
          runtime,
          program,
          ...(programId === undefined ? {} : { programId }),
          args: [...argv0, ...request.args],
          env: request.env,
          inputs: verifiedInputs(request),
          outputs: request.outputs,
          maxMemoryBytes: request.maxMemoryBytes,
          timeoutMs: request.timeoutMs,
          maxOutputBytes: request.maxOutputBytes,
          // The agreement's GPUs, by index as detected; the sandbox shows no other device.
          ...gpuGrant(terms.gpus),
        },
        {
          signal: AbortSignal.any([signal, handBack.signal]),
          afterRun: (run) => {
            // A task handed back (the owner came back) is not billed: the requestor runs it elsewhere.
            if (handBack.signal.aborted) throw lending.pausedError()
            // A dishonest provider changes the work before it is hashed and signed.
            wrong = wrongResults !== undefined && run.exitCode === 0 && wrongResults.strikes()
            return wrong ? (bytes) => wrongResults!.corrupt(bytes) : undefined
          },
        },
      )
      const { run } = done
      const outputs: FileBlob[] = done.outputs.map((output) => ({ path: output.path, contentId: output.contentId, sizeBytes: output.sizeBytes, dataBase64: output.data.toString('base64') }))
      const { usage, debitNote } = meter(reservation, run, misbehave, options.batched === true)
      billed = true
      counts.tasksRun++
      if (wrong) counts.wrongResults++
      const padding = misbehave?.oversizeResults ?? 0
      const stdout = Buffer.concat([done.stdout, Buffer.alloc(padding, 0x41)])
      if (misbehave?.stallResults === true) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
      return {
        agreementId: request.agreementId,
        jobId: request.jobId,
        taskIndex: request.taskIndex,
        activityId: request.activityId,
        requestHash: hashCanonical(request),
        exitCode: run.exitCode,
        outputs,
        missingOutputs: done.missingOutputs,
        stdoutBase64: (wrong && outputs.length === 0 ? wrongResults!.corrupt(stdout) : stdout).toString('base64'),
        stderrBase64: done.stderr.toString('base64'),
        usage,
        ...(debitNote === undefined ? {} : { debitNote }),
      }
    } catch (error) {
      counts.tasksFailed++
      if (handBack.signal.aborted) throw lending.pausedError()
      throw error
    } finally {
      // Work that did not produce a result (handed back, refused input, a sandbox limit) is not billed.
      if (!billed) reservation.cancel()
      releaseProgram?.()
      leave()
      if (activityDir !== undefined) await dirs.give(request.agreementId, activityDir)
    }
  }

  return {
    runTask,
    counts: () => ({ ...counts }),
    handle: (admit) => serveTasks(init.host, accounts, runTask, admit),
    close: () => dirs.close(),
  }
}
