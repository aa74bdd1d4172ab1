/**
 * ExeScript: the batch model of an activity and its executor over a Runtime, after Golem's yagna.
 *
 * An activity is one sandboxed workspace on a provider under an agreement. The requestor drives it with batches of
 * commands, run in order: `deploy` (a wasi package by content id, an offered native program, or a container image), `start`, `run` (argv,
 * env, stdout/stderr streamed or captured at the end), `transfer` (a blob by content id into the activity directory,
 * or a file of it back to the requestor) and `terminate`. A command that fails (an error, or a non-zero exit code)
 * ends its batch: the commands after it do not run. Each command yields a result; while it runs it emits events
 * (command-started, stdout/stderr chunks, progress, file chunks, command-finished), which the network layer streams.
 *
 * States, as in yagna: New → Deploying → Initialized (deployed) → Ready (started) → Terminated, or Unresponsive when
 * the provider lost track of it (a restart). Each command is allowed only in some states; aborting a batch (the
 * requestor went away or cancelled) terminates the activity, so no sandbox outlives the one who asked for it.
 *
 * This module knows nothing of the network or the store: the caller supplies how a package is resolved and fetched,
 * and is told each state change.
 */
import { createReadStream } from 'node:fs'
import { copyFile, lstat, mkdir, open, realpath, rm, stat } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { z } from 'zod'
import { HearthError, isHearthError, toHearthError } from '../errors.ts'
import { hashFile } from './content-hash.ts'
import type { Runtime } from './runtime.ts'

export const activityStates = ['New', 'Deploying', 'Initialized', 'Ready', 'Terminated', 'Unresponsive'] as const
export type ActivityState = (typeof activityStates)[number]
export const terminalStates: readonly ActivityState[] = ['Terminated', 'Unresponsive']

const contentId = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected a content id sha256:<64 hex digits>')
const captureMode = z.enum(['stream', 'atEnd', 'none'])
export type CaptureMode = z.output<typeof captureMode>

export const deployCommandSchema = z.strictObject({
  /** wasi: the module, fetched from the requestor unless the provider holds it. */
  packageId: contentId.optional(),
  /** native: a program the provider offers (`hearth.runtime.native.programs`). */
  program: z.string().regex(/^[A-Za-z0-9._+-]{1,100}$/, 'expected a program name such as povray').optional(),
  /** docker: the image's id; `packageId` then names its archive, fetched only when the provider lacks the image. */
  imageId: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected an image id sha256:<64 hex digits>').optional(),
})
export const startCommandSchema = z.strictObject({})
export const runCommandSchema = z.strictObject({
  /** wasi: argv[0] as the guest sees it (default "program"); native: the deployed program's name, when given. */
  entryPoint: z.string().min(1).max(256).optional(),
  args: z.array(z.string().max(4096)).max(1024).default([]),
  env: z.record(z.string().max(256), z.string().max(4096)).default({}),
  capture: z.strictObject({ stdout: captureMode.optional(), stderr: captureMode.optional() }).default({}),
  timeoutMs: z.number().int().positive().max(3_600_000).optional(),
  maxOutputBytes: z.number().int().positive().optional(),
})
/** `blob:sha256:…` (a blob the requestor holds) → `container:/path`, or `container:/path` → `requestor:`. */
export const transferCommandSchema = z.strictObject({ from: z.string().min(1).max(4200), to: z.string().min(1).max(4200) })
export const terminateCommandSchema = z.strictObject({})

export const commandNames = ['deploy', 'start', 'run', 'transfer', 'terminate'] as const
export type CommandName = (typeof commandNames)[number]

export type ExeCommand =
  | { deploy: z.input<typeof deployCommandSchema> }
  | { start: z.input<typeof startCommandSchema> }
  | { run: z.input<typeof runCommandSchema> }
  | { transfer: z.input<typeof transferCommandSchema> }
  | { terminate: z.input<typeof terminateCommandSchema> }

type ParsedCommand =
  | { name: 'deploy'; body: z.output<typeof deployCommandSchema> }
  | { name: 'start'; body: z.output<typeof startCommandSchema> }
  | { name: 'run'; body: z.output<typeof runCommandSchema> }
  | { name: 'transfer'; body: z.output<typeof transferCommandSchema> }
  | { name: 'terminate'; body: z.output<typeof terminateCommandSchema> }

/** On the wire a batch is a list of one-key objects; each is checked here, so an unknown command gets a clear error. */
export const batchSchema = z.array(z.record(z.string().max(100), z.unknown())).min(1).max(256)

const errorSchema = z.strictObject({ code: z.string().max(200), message: z.string().max(2000), hint: z.string().max(2000).optional() })
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64')

export const exeEventSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('state'), state: z.enum(activityStates) }),
  z.strictObject({ type: z.literal('command-started'), index: z.number().int().nonnegative(), command: z.enum(commandNames) }),
  z.strictObject({ type: z.literal('stdout'), index: z.number().int().nonnegative(), dataBase64: base64 }),
  z.strictObject({ type: z.literal('stderr'), index: z.number().int().nonnegative(), dataBase64: base64 }),
  z.strictObject({
    type: z.literal('progress'),
    index: z.number().int().nonnegative(),
    message: z.string().max(500),
    doneBytes: z.number().int().nonnegative().optional(),
    totalBytes: z.number().int().nonnegative().optional(),
  }),
  z.strictObject({ type: z.literal('file'), index: z.number().int().nonnegative(), offset: z.number().int().nonnegative(), dataBase64: base64 }),
  z.strictObject({
    type: z.literal('command-finished'),
    index: z.number().int().nonnegative(),
    command: z.enum(commandNames),
    ok: z.boolean(),
    exitCode: z.number().int().optional(),
    error: errorSchema.optional(),
  }),
])
export type ExeEvent = z.output<typeof exeEventSchema>

export const commandResultSchema = z.strictObject({
  index: z.number().int().nonnegative(),
  command: z.enum(commandNames),
  ok: z.boolean(),
  exitCode: z.number().int().optional(),
  /** `atEnd` capture: the output, up to the cap (`truncated` says when more was written). */
  stdoutBase64: base64.optional(),
  stderrBase64: base64.optional(),
  truncated: z.boolean().optional(),
  /** transfer: the content id and size of what moved. */
  contentId: contentId.optional(),
  sizeBytes: z.number().int().nonnegative().optional(),
  usage: z.strictObject({ durationMs: z.number().nonnegative(), cpuMs: z.number().nonnegative() }).optional(),
  error: errorSchema.optional(),
})
export type CommandResult = z.output<typeof commandResultSchema>

export const activityUsageSchema = z.strictObject({
  /** golem.usage.duration_sec: the activity's life so far. */
  durationSec: z.number().nonnegative(),
  /** golem.usage.cpu_sec: CPU time of every run. */
  cpuSec: z.number().nonnegative(),
})
export type ActivityUsage = z.output<typeof activityUsageSchema>

export interface BatchOutcome {
  state: ActivityState
  results: CommandResult[]
  usage: ActivityUsage
}

/** What the executor needs from the provider around it. */
export interface ExeScriptEnvironment {
  /** The runtime and program a deploy command names; throws a HearthError when this provider cannot run it. */
  /** `argv0` goes before a run's args (the program's name); undefined where the args are the whole argv (docker). */
  resolveDeploy(deploy: z.output<typeof deployCommandSchema>, signal: AbortSignal): Promise<{ runtime: Runtime<unknown>; program: unknown; argv0: string | undefined }>
  /** A verified local copy of the blob with this content id (fetched from the requestor when not cached). */
  fetchBlob(contentId: string, signal: AbortSignal): Promise<string>
}

export interface ExeScriptLimits {
  maxMemoryBytes: number
  /** Deadline of one run, and the default when a run names none. */
  maxRunMs: number
  /** Output budget of one run (stdout + stderr + files it writes), and the default. */
  maxOutputBytes: number
  /** Largest file a transfer moves either way. */
  maxTransferBytes: number
  /** Most bytes of each stream an `atEnd` capture returns (default 256 KiB). */
  maxAtEndBytes?: number
  /** Bytes per stdout/stderr/file event (default 32 KiB). */
  chunkBytes?: number
}

export interface ActivityInit {
  id: string
  /** The activity's own directory (created; removed on termination). The guest sees only `<dir>/root`. */
  dir: string
  environment: ExeScriptEnvironment
  limits: ExeScriptLimits
  /** Told every state change (to persist it) before the matching event goes out. */
  onState?: (state: ActivityState, detail: { error?: string }) => void
  /** How often a running command's output files are read for streaming (default 25 ms). */
  pollMs?: number
}

export interface ExecOptions {
  emit: (event: ExeEvent) => Promise<void>
  /** Aborting stops the batch and terminates the activity. */
  signal: AbortSignal
}

export interface Activity {
  readonly id: string
  state(): ActivityState
  usage(): ActivityUsage
  /** Runs one batch; rejects (and refuses to start) when another batch runs or the activity has ended. */
  exec(batch: readonly unknown[], options: ExecOptions): Promise<BatchOutcome>
  /** Ends the activity (idempotent): stops a run in progress and removes its directory. */
  terminate(reason: string, state?: 'Terminated' | 'Unresponsive'): Promise<void>
}

const allowedIn: Record<CommandName, readonly ActivityState[]> = {
  deploy: ['New'],
  start: ['Initialized'],
  run: ['Ready'],
  transfer: ['Initialized', 'Ready'],
  terminate: ['New', 'Deploying', 'Initialized', 'Ready'],
}

const commandSchemas = {
  deploy: deployCommandSchema,
  start: startCommandSchema,
  run: runCommandSchema,
  transfer: transferCommandSchema,
  terminate: terminateCommandSchema,
} as const

/** Checks every command of a batch before any runs, so a malformed batch changes nothing. */
export function parseBatch(batch: readonly unknown[]): ParsedCommand[] {
  return batch.map((raw, index) => {
    const keys = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? Object.keys(raw) : []
    const name = keys[0]
    if (keys.length !== 1 || name === undefined || !(commandNames as readonly string[]).includes(name)) {
      throw new HearthError('HEARTH_ERR_EXEC_BATCH_INVALID', `command ${index} of the batch is ${keys.length === 1 ? `"${keys[0]!.slice(0, 100)}"` : 'not a one-key object'}; expected one of ${commandNames.join(', ')}`, {
        hint: 'write each command as an object with one key, e.g. { "run": { "args": ["-v"] } }',
        details: { index },
      })
    }
    const parsed = commandSchemas[name as CommandName].safeParse((raw as Record<string, unknown>)[name])
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      throw new HearthError('HEARTH_ERR_EXEC_BATCH_INVALID', `command ${index} (${name}) is malformed: ${issue === undefined ? 'invalid' : `${issue.path.join('.') || '(body)'}: ${issue.message}`}`, {
        hint: 'see the ExeScript section of docs/design.md for the fields of each command',
        details: { index, command: name },
      })
    }
    return { name, body: parsed.data } as ParsedCommand
  })
}

/** The host path of a guest path inside `root`, refusing anything that leaves it (by `..` or a symlink on the way). */
export async function guestPathInRoot(root: string, guestPath: string): Promise<string> {
  const refuse = (why: string): HearthError =>
    new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `the path ${JSON.stringify(guestPath.slice(0, 300))} ${why}`, {
      hint: 'name a file inside the activity directory by an absolute path without "..", e.g. /out/result.txt',
    })
  if (!guestPath.startsWith('/') || guestPath === '/' || guestPath.includes('\0') || guestPath.split('/').includes('..')) {
    throw refuse('is not an absolute path inside the activity directory')
  }
  const host = resolve(root, '.' + guestPath)
  if (!host.startsWith(root + sep)) throw refuse('leaves the activity directory')
  // A program may have made a symlink on the way: the nearest existing ancestor must really be inside root.
  let existing = dirname(host)
  while (existing !== root && (await lstat(existing).catch(() => undefined)) === undefined) existing = dirname(existing)
  const real = await realpath(existing).catch(() => existing)
  const realRoot = await realpath(root)
  if (real !== realRoot && !real.startsWith(realRoot + sep)) throw refuse('leads out of the activity directory through a symlink')
  return host
}

function errorOf(error: unknown): { code: string; message: string; hint?: string } {
  const hearth = toHearthError(error)
  return { code: hearth.code, message: hearth.shortMessage.slice(0, 2000), ...(hearth.hint === undefined ? {} : { hint: hearth.hint.slice(0, 2000) }) }
}

export function createActivity(init: ActivityInit): Activity {
  const root = join(init.dir, 'root')
  const chunkBytes = init.limits.chunkBytes ?? 32 * 1024
  const maxAtEndBytes = init.limits.maxAtEndBytes ?? 256 * 1024
  const pollMs = init.pollMs ?? 25
  const createdAtMs = Date.now()
  let endedAtMs: number | undefined
  let state: ActivityState = 'New'
  let cpuMs = 0
  let deployed: { runtime: Runtime<unknown>; program: unknown; argv0: string | undefined; name: string | undefined } | undefined
  let busy = false
  let runCounter = 0
  /** Aborts whatever runs now when the activity is terminated from outside. */
  let current: AbortController | undefined
  let prepared: Promise<void> | undefined

  const setState = (next: ActivityState, error?: string): void => {
    state = next
    if (terminalStates.includes(next)) endedAtMs ??= Date.now()
    init.onState?.(next, error === undefined ? {} : { error })
  }
  const usage = (): ActivityUsage => ({ durationSec: ((endedAtMs ?? Date.now()) - createdAtMs) / 1000, cpuSec: cpuMs / 1000 })

  async function terminate(reason: string, final: 'Terminated' | 'Unresponsive' = 'Terminated'): Promise<void> {
    if (terminalStates.includes(state)) return
    current?.abort(new HearthError('HEARTH_ERR_EXEC_FAILED', `the activity was terminated: ${reason}`, { details: { aborted: true } }))
    setState(final, reason)
    await rm(init.dir, { recursive: true, force: true })
  }

  /** Sends the new part of an output file as chunk events, from `offset`; returns the new offset. */
  async function pump(path: string, offset: number, index: number, type: 'stdout' | 'stderr', emit: ExecOptions['emit']): Promise<number> {
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

  async function readCapped(path: string): Promise<{ data: Buffer; truncated: boolean }> {
    const size = (await stat(path).catch(() => undefined))?.size ?? 0
    if (size === 0) return { data: Buffer.alloc(0), truncated: false }
    const handle = await open(path, 'r')
    try {
      const data = Buffer.alloc(Math.min(size, maxAtEndBytes))
      const { bytesRead } = await handle.read(data, 0, data.length, 0)
      return { data: data.subarray(0, bytesRead), truncated: size > maxAtEndBytes }
    } finally {
      await handle.close()
    }
  }

  async function runCommand(index: number, body: z.output<typeof runCommandSchema>, emit: ExecOptions['emit'], signal: AbortSignal): Promise<CommandResult> {
    const program = deployed!
    if (program.name !== undefined && body.entryPoint !== undefined && body.entryPoint !== program.name) {
      throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this activity deployed ${program.name}; it cannot run ${body.entryPoint}`, {
        hint: 'leave entryPoint out, or start another activity for the other program',
      })
    }
    const limits = init.limits
    const timeoutMs = Math.min(body.timeoutMs ?? limits.maxRunMs, limits.maxRunMs)
    const maxOutputBytes = Math.min(body.maxOutputBytes ?? limits.maxOutputBytes, limits.maxOutputBytes)
    const capture = { stdout: body.capture.stdout ?? 'stream', stderr: body.capture.stderr ?? 'stream' }
    const run = ++runCounter
    const stdoutPath = join(init.dir, `stdout-${run}`)
    const stderrPath = join(init.dir, `stderr-${run}`)
    const argv0 = program.argv0 === undefined ? undefined : program.name === undefined ? (body.entryPoint ?? program.argv0) : program.argv0
    // Stops the program when its output can no longer be delivered (the stream's own limits, a gone requestor).
    const undeliverable = new AbortController()
    const running = program.runtime.run(
      { program: program.program, args: argv0 === undefined ? body.args : [argv0, ...body.args], env: body.env, rootDir: root, stdoutPath, stderrPath, maxMemoryBytes: limits.maxMemoryBytes, timeoutMs, maxOutputBytes },
      { signal: AbortSignal.any([signal, undeliverable.signal]) },
    )
    // Stream the output files while the program fills them; each pump waits for the requestor's room (back-pressure).
    let settled = false
    void running.then(() => (settled = true), () => (settled = true))
    const offsets = { stdout: 0, stderr: 0 }
    const streams = (['stdout', 'stderr'] as const).filter((name) => capture[name] === 'stream')
    const pumpAll = async (): Promise<void> => {
      for (const name of streams) offsets[name] = await pump(name === 'stdout' ? stdoutPath : stderrPath, offsets[name], index, name, emit)
    }
    try {
      while (!settled && streams.length > 0) {
        await pumpAll()
        if (!settled) await new Promise((resolve) => setTimeout(resolve, pollMs))
      }
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
    cpuMs += result.cpuMs
    const atEnd: Partial<CommandResult> = {}
    for (const name of ['stdout', 'stderr'] as const) {
      if (capture[name] !== 'atEnd') continue
      const captured = await readCapped(name === 'stdout' ? stdoutPath : stderrPath)
      atEnd[name === 'stdout' ? 'stdoutBase64' : 'stderrBase64'] = captured.data.toString('base64')
      if (captured.truncated) atEnd.truncated = true
    }
    await Promise.all([rm(stdoutPath, { force: true }), rm(stderrPath, { force: true })])
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

  async function transferCommand(index: number, body: z.output<typeof transferCommandSchema>, emit: ExecOptions['emit'], signal: AbortSignal): Promise<CommandResult> {
    const fromBlob = /^blob:(sha256:[0-9a-f]{64})$/.exec(body.from)
    const toContainer = /^container:(\/.*)$/s.exec(body.to)
    if (fromBlob !== null && toContainer !== null) {
      const id = fromBlob[1]!
      await emit({ type: 'progress', index, message: `fetching ${id}` })
      const source = await init.environment.fetchBlob(id, signal)
      const sizeBytes = (await stat(source)).size
      if (sizeBytes > init.limits.maxTransferBytes) {
        throw new HearthError('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', `${id} is ${sizeBytes} bytes, over this provider's transfer limit of ${init.limits.maxTransferBytes}`)
      }
      const target = await guestPathInRoot(root, toContainer[1]!)
      await mkdir(dirname(target), { recursive: true })
      // Re-checked after mkdir: nothing on the way may lead out, and the target itself must not be a link or folder.
      await guestPathInRoot(root, toContainer[1]!)
      const existing = await lstat(target).catch(() => undefined)
      if (existing !== undefined && !existing.isFile()) {
        throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `${toContainer[1]} exists and is not a regular file`, { hint: 'transfer to a new path' })
      }
      await rm(target, { force: true })
      await copyFile(source, target)
      await emit({ type: 'progress', index, message: `stored ${id} at ${toContainer[1]}`, doneBytes: sizeBytes, totalBytes: sizeBytes })
      return { index, command: 'transfer', ok: true, contentId: id, sizeBytes }
    }
    const fromContainer = /^container:(\/.*)$/s.exec(body.from)
    if (fromContainer !== null && body.to === 'requestor:') {
      const source = await guestPathInRoot(root, fromContainer[1]!)
      const info = await lstat(source).catch(() => undefined)
      // Only regular files go out: a symlink the program made must not leak the provider's files.
      if (info === undefined || !info.isFile()) {
        throw new HearthError('HEARTH_ERR_EXEC_PATH_INVALID', `${fromContainer[1]} is not a regular file in the activity directory`, { hint: 'check the path the program writes to' })
      }
      if (info.size > init.limits.maxTransferBytes) {
        throw new HearthError('HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', `${fromContainer[1]} is ${info.size} bytes, over this provider's transfer limit of ${init.limits.maxTransferBytes}`)
      }
      const id = await hashFile(source)
      let offset = 0
      for await (const chunk of createReadStream(source, { highWaterMark: chunkBytes, end: info.size - 1 })) {
        if (signal.aborted) throw signal.reason
        await emit({ type: 'file', index, offset, dataBase64: (chunk as Buffer).toString('base64') })
        offset += (chunk as Buffer).length
      }
      return { index, command: 'transfer', ok: true, contentId: id, sizeBytes: offset }
    }
    throw new HearthError('HEARTH_ERR_EXEC_BATCH_INVALID', `transfer from ${body.from.slice(0, 100)} to ${body.to.slice(0, 100)} is not supported`, {
      hint: 'transfer from "blob:sha256:<hex>" to "container:/path", or from "container:/path" to "requestor:"',
    })
  }

  async function step(index: number, command: ParsedCommand, emit: ExecOptions['emit'], signal: AbortSignal): Promise<CommandResult> {
    if (!allowedIn[command.name].includes(state)) {
      throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `${command.name} is not allowed while the activity is ${state}`, {
        hint: 'run deploy, then start, then run; transfers need a deployed activity',
        details: { state, command: command.name },
      })
    }
    switch (command.name) {
      case 'deploy': {
        setState('Deploying')
        await emit({ type: 'state', state: 'Deploying' })
        try {
          prepared ??= mkdir(root, { recursive: true }).then(() => undefined)
          await prepared
          const resolved = await init.environment.resolveDeploy(command.body, signal)
          deployed = { ...resolved, name: command.body.program }
        } catch (error) {
          setState('New', errorOf(error).message)
          await emit({ type: 'state', state: 'New' })
          throw error
        }
        setState('Initialized')
        await emit({ type: 'state', state: 'Initialized' })
        return { index, command: 'deploy', ok: true }
      }
      case 'start':
        setState('Ready')
        await emit({ type: 'state', state: 'Ready' })
        return { index, command: 'start', ok: true }
      case 'run':
        return runCommand(index, command.body, emit, signal)
      case 'transfer':
        return transferCommand(index, command.body, emit, signal)
      case 'terminate':
        await terminate('the requestor asked')
        await emit({ type: 'state', state: 'Terminated' })
        return { index, command: 'terminate', ok: true }
    }
  }

  return {
    id: init.id,
    state: () => state,
    usage,
    terminate,
    async exec(batch, options) {
      if (terminalStates.includes(state)) {
        throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `activity ${init.id} is ${state}`, { hint: 'create a new activity' })
      }
      if (busy) {
        throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `activity ${init.id} is running another batch`, { hint: 'wait for its result; batches of one activity run one at a time' })
      }
      const commands = parseBatch(batch)
      busy = true
      const controller = new AbortController()
      current = controller
      const signal = AbortSignal.any([options.signal, controller.signal])
      const results: CommandResult[] = []
      try {
        for (const [index, command] of commands.entries()) {
          if (signal.aborted) throw signal.reason
          await options.emit({ type: 'command-started', index, command: command.name })
          let result: CommandResult
          try {
            result = await step(index, command, options.emit, signal)
          } catch (error) {
            if (signal.aborted) throw error
            result = { index, command: command.name, ok: false, error: errorOf(error) }
          }
          results.push(result)
          await options.emit({
            type: 'command-finished',
            index,
            command: command.name,
            ok: result.ok,
            ...(result.exitCode === undefined ? {} : { exitCode: result.exitCode }),
            ...(result.error === undefined ? {} : { error: result.error }),
          })
          // As in yagna, a failed command ends the batch.
          if (!result.ok) break
        }
        return { state, results, usage: usage() }
      } catch (error) {
        // Aborted mid-batch (the requestor cancelled or went away, or the provider stops): nothing may keep running.
        const reason = signal.aborted ? signal.reason : error
        await terminate(`the batch was aborted: ${isHearthError(reason) ? reason.shortMessage : String((reason as Error)?.message ?? reason)}`)
        throw reason
      } finally {
        busy = false
        current = undefined
      }
    },
  }
}
