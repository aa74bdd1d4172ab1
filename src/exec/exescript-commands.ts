/**
 * The ExeScript commands that touch the task directory: `run` (the deployed program, its output streamed or captured
 * at the end) and `transfer` (a blob into the activity's root, or a file of it back to the requestor), both through
 * the execution core (task-core.ts): its guest-path guard, its placing of files, its runs and its output files.
 */
import { createReadStream } from 'node:fs'
import { open, rm, stat } from 'node:fs/promises'
import type { z } from 'zod'
import { HearthError } from '../errors.ts'
import { hashFile } from './content-hash.ts'
import type { CommandResult, ExecOptions, ExeScriptEnvironment, ExeScriptLimits, runCommandSchema, transferCommandSchema } from './exescript-model.ts'
import type { Runtime } from './runtime.ts'
import { guestPathInRoot, outputFile, placeFile, runProgram, taskDirLayout, type TaskDirLayout } from './task-core.ts'

/** What a deploy left: the runtime and program, argv[0] (undefined: the args are the whole argv) and the offered name. */
export interface DeployedProgram {
  runtime: Runtime<unknown>
  program: unknown
  argv0: string | undefined
  name: string | undefined
}

/** What the commands need of their activity. */
export interface CommandContext {
  /** The activity's own directory: its root, and the stdio files of its runs. */
  dir: string
  environment: ExeScriptEnvironment
  limits: ExeScriptLimits
  chunkBytes: number
  maxAtEndBytes: number
  pollMs: number
  /** The program the activity deployed. */
  deployed(): DeployedProgram
  /** A fresh number for the stdio files of a run. */
  nextRun(): number
  /** Counts a run's CPU time into the activity's usage. */
  addCpuMs(ms: number): void
}

/** Sends the new part of an output file as chunk events, from `offset`; returns the new offset. */
async function pump(path: string, offset: number, index: number, type: 'stdout' | 'stderr', emit: ExecOptions['emit'], chunkBytes: number): Promise<number> {
  const handle = await open(path, 'r').catch(() => undefined)
  if (handle === undefined) return offset
  try {
    const buffer = Buffer.alloc(chunkBytes)
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, chunkBytes, offset)
      if (bytesRead === 0) return offset
      offset += bytesRead
      await emit({ type, index, dataBase64: buffer.subarray(0, bytesRead).toString('base64') })
    }
  } finally {
    await handle.close()
  }
}

async function readCapped(path: string, maxBytes: number): Promise<{ data: Buffer; truncated: boolean }> {
  const size = (await stat(path).catch(() => undefined))?.size ?? 0
  if (size === 0) return { data: Buffer.alloc(0), truncated: false }
  const handle = await open(path, 'r')
  try {
    const data = Buffer.alloc(Math.min(size, maxBytes))
    const { bytesRead } = await handle.read(data, 0, data.length, 0)
    return { data: data.subarray(0, bytesRead), truncated: size > maxBytes }
  } finally {
    await handle.close()
  }
}

/** The argv[0] of a run: the deployed program's, or for wasi the entry point the run names. */
function argv0Of(program: DeployedProgram, body: z.output<typeof runCommandSchema>): string | undefined {
  if (program.name !== undefined && body.entryPoint !== undefined && body.entryPoint !== program.name) {
    throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this activity deployed ${program.name}; it cannot run ${body.entryPoint}`, {
      hint: 'leave entryPoint out, or start another activity for the other program',
    })
  }
  return program.argv0 === undefined ? undefined : program.name === undefined ? (body.entryPoint ?? program.argv0) : program.argv0
}

/** Streams the stdio files named in `streams` while `running` runs; returns a pump of what is left to send. */
async function streamWhileRunning(ctx: CommandContext, layout: TaskDirLayout, streams: ReadonlyArray<'stdout' | 'stderr'>, index: number, emit: ExecOptions['emit'], running: Promise<unknown>): Promise<() => Promise<void>> {
  let settled = false
  void running.then(() => (settled = true), () => (settled = true))
  const offsets = { stdout: 0, stderr: 0 }
  const pumpAll = async (): Promise<void> => {
    for (const name of streams) offsets[name] = await pump(name === 'stdout' ? layout.stdoutPath : layout.stderrPath, offsets[name], index, name, emit, ctx.chunkBytes)
  }
  // Each pump waits for the requestor's room (back-pressure).
  while (!settled && streams.length > 0) {
    await pumpAll()
    if (!settled) await new Promise((resolve) => setTimeout(resolve, ctx.pollMs))
  }
  return pumpAll
}

export async function runCommand(ctx: CommandContext, index: number, body: z.output<typeof runCommandSchema>, emit: ExecOptions['emit'], signal: AbortSignal): Promise<CommandResult> {
  const program = ctx.deployed()
  const argv0 = argv0Of(program, body)
  const limits = ctx.limits
  const timeoutMs = Math.min(body.timeoutMs ?? limits.maxRunMs, limits.maxRunMs)
  const maxOutputBytes = Math.min(body.maxOutputBytes ?? limits.maxOutputBytes, limits.maxOutputBytes)
  const capture = { stdout: body.capture.stdout ?? 'stream', stderr: body.capture.stderr ?? 'stream' }
  const layout = taskDirLayout(ctx.dir, ctx.nextRun())
  // Stops the program when its output can no longer be delivered (the stream's own limits, a gone requestor).
  const undeliverable = new AbortController()
  const running = runProgram(
    layout,
    { runtime: program.runtime, program: program.program, args: argv0 === undefined ? body.args : [argv0, ...body.args], env: body.env, maxMemoryBytes: limits.maxMemoryBytes, timeoutMs, maxOutputBytes },
    { signal: AbortSignal.any([signal, undeliverable.signal]) },
  )
  const streams = (['stdout', 'stderr'] as const).filter((name) => capture[name] === 'stream')
  let pumpAll: () => Promise<void>
  try {
    pumpAll = await streamWhileRunning(ctx, layout, streams, index, emit, running)
  } catch (error) {
    undeliverable.abort(error)
    await running.catch(() => undefined)
    throw error
  }
  let result
  try {
    result = await running
  } finally {
    // What the program wrote before it ended (or was stopped) still goes out, then the files go.
    await pumpAll().catch(() => undefined)
  }
  ctx.addCpuMs(result.cpuMs)
  const atEnd: Partial<CommandResult> = {}
  for (const name of ['stdout', 'stderr'] as const) {
    if (capture[name] !== 'atEnd') continue
    const captured = await readCapped(name === 'stdout' ? layout.stdoutPath : layout.stderrPath, ctx.maxAtEndBytes)
    atEnd[name === 'stdout' ? 'stdoutBase64' : 'stderrBase64'] = captured.data.toString('base64')
    if (captured.truncated) atEnd.truncated = true
  }
  await Promise.all([rm(layout.stdoutPath, { force: true }), rm(layout.stderrPath, { force: true })])
  return {
    index,
    command: 'run',
    ok: result.exitCode === 0,
    exitCode: result.exitCode,
    ...atEnd,
    usage: { durationMs: result.durationMs, cpuMs: result.cpuMs },
    ...(result.exitCode === 0 ? {} : { error: { code: 'HEARTH_ERR_EXEC_FAILED', message: `the program exited with code ${result.exitCode}` } }),
  }
}

/** A blob the requestor holds, stored at `guestPath` in the activity's root. */
async function blobIn(ctx: CommandContext, index: number, id: string, guestPath: string, emit: ExecOptions['emit'], signal: AbortSignal): Promise<CommandResult> {
  await emit({ type: 'progress', index, message: `fetching ${id}` })
  const source = await ctx.environment.fetchBlob(id, signal)
  const sizeBytes = (await stat(source)).size
  if (sizeBytes > ctx.limits.maxTransferBytes) {
    throw new HearthError('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', `${id} is ${sizeBytes} bytes, over this provider's transfer limit of ${ctx.limits.maxTransferBytes}`)
  }
  await placeFile(taskDirLayout(ctx.dir).rootDir, guestPath, { copyFrom: source })
  await emit({ type: 'progress', index, message: `stored ${id} at ${guestPath}`, doneBytes: sizeBytes, totalBytes: sizeBytes })
  return { index, command: 'transfer', ok: true, contentId: id, sizeBytes }
}

/** The file at `guestPath` in the activity's root, sent to the requestor as file events. */
async function fileOut(ctx: CommandContext, index: number, guestPath: string, emit: ExecOptions['emit'], signal: AbortSignal): Promise<CommandResult> {
  const rootDir = taskDirLayout(ctx.dir).rootDir
  // Refused with the guard's error when the path leads out (through a symlink too); only a regular file goes out.
  await guestPathInRoot(rootDir, guestPath)
  const file = await outputFile(rootDir, guestPath)
  if (file === undefined) {
    throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `${guestPath} is not a regular file in the activity directory`, { hint: 'check the path the program writes to' })
  }
  if (file.sizeBytes > ctx.limits.maxTransferBytes) {
    throw new HearthError('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', `${guestPath} is ${file.sizeBytes} bytes, over this provider's transfer limit of ${ctx.limits.maxTransferBytes}`)
  }
  const id = await hashFile(file.hostPath)
  let offset = 0
  for await (const chunk of createReadStream(file.hostPath, { highWaterMark: ctx.chunkBytes, end: file.sizeBytes - 1 })) {
    if (signal.aborted) throw signal.reason
    await emit({ type: 'file', index, offset, dataBase64: (chunk as Buffer).toString('base64') })
    offset += (chunk as Buffer).length
  }
  return { index, command: 'transfer', ok: true, contentId: id, sizeBytes: offset }
}

export async function transferCommand(ctx: CommandContext, index: number, body: z.output<typeof transferCommandSchema>, emit: ExecOptions['emit'], signal: AbortSignal): Promise<CommandResult> {
  const fromBlob = /^blob:(sha256:[0-9a-f]{64})$/.exec(body.from)
  const toContainer = /^container:(\/.*)$/s.exec(body.to)
  if (fromBlob !== null && toContainer !== null) return blobIn(ctx, index, fromBlob[1]!, toContainer[1]!, emit, signal)
  const fromContainer = /^container:(\/.*)$/s.exec(body.from)
  if (fromContainer !== null && body.to === 'requestor:') return fileOut(ctx, index, fromContainer[1]!, emit, signal)
  throw new HearthError('HEARTH_ERR_EXEC_BATCH_INVALID', `transfer from ${body.from.slice(0, 100)} to ${body.to.slice(0, 100)} is not supported`, {
    hint: 'transfer from "blob:sha256:<hex>" to "container:/path", or from "container:/path" to "requestor:"',
  })
}
