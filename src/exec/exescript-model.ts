/**
 * ExeScript's model: the states of an activity, the commands of a batch and their schemas, the events and results a
 * batch yields, and what an activity needs from the provider around it (see exescript.ts for the executor).
 */
import { z } from 'zod'
import { HearthError, toHearthError } from '../errors.ts'
import type { Runtime, ServedProgram, ServeSpec } from './runtime.ts'

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
const peerAddress = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'expected an address 0x and 40 hex digits')
/**
 * Starts the deployed program as a long-running server (a service's replica), reachable only through the provider
 * (the `/hearth/service/connect/1` tunnel). `${PORT}` in args and env values becomes `port`.
 */
export const serveCommandSchema = z.strictObject({
  /** The TCP port the server listens on inside its sandbox's own network namespace. */
  port: z.number().int().min(1).max(65_535),
  entryPoint: z.string().min(1).max(256).optional(),
  args: z.array(z.string().max(4096)).max(1024).default([]),
  env: z.record(z.string().max(256), z.string().max(4096)).default({}),
  /** Peers besides the requestor, by address, that may connect to the server: the service's gateways. */
  gateways: z.array(peerAddress).max(64).default([]),
  /** How long the server may take to listen on its port before the command fails (default 60 s). */
  listenTimeoutMs: z.number().int().positive().max(600_000).default(60_000),
})
/** The newest bytes of the server's log (stdout and stderr as they came), in the result's stdoutBase64. */
export const logsCommandSchema = z.strictObject({ tailBytes: z.number().int().positive().max(256 * 1024).default(64 * 1024) })

export const commandNames = ['deploy', 'start', 'run', 'transfer', 'serve', 'logs', 'terminate'] as const
export type CommandName = (typeof commandNames)[number]

export type ExeCommand =
  | { deploy: z.input<typeof deployCommandSchema> }
  | { start: z.input<typeof startCommandSchema> }
  | { run: z.input<typeof runCommandSchema> }
  | { transfer: z.input<typeof transferCommandSchema> }
  | { serve: z.input<typeof serveCommandSchema> }
  | { logs: z.input<typeof logsCommandSchema> }
  | { terminate: z.input<typeof terminateCommandSchema> }

export type ParsedCommand =
  | { name: 'deploy'; body: z.output<typeof deployCommandSchema> }
  | { name: 'start'; body: z.output<typeof startCommandSchema> }
  | { name: 'run'; body: z.output<typeof runCommandSchema> }
  | { name: 'transfer'; body: z.output<typeof transferCommandSchema> }
  | { name: 'serve'; body: z.output<typeof serveCommandSchema> }
  | { name: 'logs'; body: z.output<typeof logsCommandSchema> }
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
  /**
   * Starts the deployed program as a server under the provider's limits for services; absent where this provider
   * hosts no services (a `serve` command then fails with HEARTH_ERR_SERVICE_NOT_HOSTED).
   */
  serve?(deployed: { runtime: Runtime<unknown>; program: unknown }, spec: Omit<ServeSpec<unknown>, 'program' | 'maxMemoryBytes' | 'maxLogBytes' | 'maxDiskBytes'>): Promise<ServedProgram>
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
  /** The activity's server once a `serve` command started it (until the activity ends), with the peers it lets in. */
  served(): { program: ServedProgram; gateways: readonly string[] } | undefined
  /** Ends the activity (idempotent): stops a run in progress and removes its directory. */
  terminate(reason: string, state?: 'Terminated' | 'Unresponsive'): Promise<void>
}

const commandSchemas = {
  deploy: deployCommandSchema,
  start: startCommandSchema,
  run: runCommandSchema,
  transfer: transferCommandSchema,
  serve: serveCommandSchema,
  logs: logsCommandSchema,
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

/** A failure as a command result carries it. */
export function errorOf(error: unknown): { code: string; message: string; hint?: string } {
  const hearth = toHearthError(error)
  return { code: hearth.code, message: hearth.shortMessage.slice(0, 2000), ...(hearth.hint === undefined ? {} : { hint: hearth.hint.slice(0, 2000) }) }
}
