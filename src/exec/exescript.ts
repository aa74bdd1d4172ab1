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
import { mkdir, rm } from 'node:fs/promises'
import { HearthError, isHearthError } from '../errors.ts'
import { runCommand, transferCommand, type DeployedProgram } from './exescript-commands.ts'
import { createServerHold, logsCommand, serveCommand, type ServeContext } from './exescript-serve.ts'
import { errorOf, parseBatch, terminalStates, type Activity, type ActivityInit, type ActivityState, type ActivityUsage, type CommandName, type CommandResult, type ExecOptions, type ParsedCommand } from './exescript-model.ts'
import { taskDirLayout } from './task-core.ts'

export * from './exescript-model.ts'

const allowedIn: Record<CommandName, readonly ActivityState[]> = {
  deploy: ['New'],
  start: ['Initialized'],
  run: ['Ready'],
  transfer: ['Initialized', 'Ready'],
  serve: ['Ready'],
  logs: ['Ready'],
  terminate: ['New', 'Deploying', 'Initialized', 'Ready'],
}

/**
 * One command of a batch, between its command-started and command-finished events: a command that fails is a failed
 * result, unless the batch was aborted (then the error goes up and ends the activity).
 */
async function commandOfBatch(index: number, command: ParsedCommand, emit: ExecOptions['emit'], signal: AbortSignal, step: (index: number, command: ParsedCommand, emit: ExecOptions['emit'], signal: AbortSignal) => Promise<CommandResult>): Promise<CommandResult> {
  await emit({ type: 'command-started', index, command: command.name })
  let result: CommandResult
  try {
    result = await step(index, command, emit, signal)
  } catch (error) {
    if (signal.aborted) throw error
    result = { index, command: command.name, ok: false, error: errorOf(error) }
  }
  await emit({
    type: 'command-finished',
    index,
    command: command.name,
    ok: result.ok,
    ...(result.exitCode === undefined ? {} : { exitCode: result.exitCode }),
    ...(result.error === undefined ? {} : { error: result.error }),
  })
  return result
}

function notAllowedIn(state: ActivityState, command: CommandName): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', `${command} is not allowed while the activity is ${state}`, {
    hint: 'run deploy, then start, then run or serve; transfers need a deployed activity',
    details: { state, command },
  })
}

/** What every command of an activity sees that does not change while it lives. */
function contextBase(init: ActivityInit): Pick<ServeContext, 'dir' | 'environment' | 'limits' | 'chunkBytes' | 'maxAtEndBytes' | 'pollMs'> {
  return {
    dir: init.dir,
    environment: init.environment,
    limits: init.limits,
    chunkBytes: init.limits.chunkBytes ?? 32 * 1024,
    maxAtEndBytes: init.limits.maxAtEndBytes ?? 256 * 1024,
    pollMs: init.pollMs ?? 25,
  }
}

export function createActivity(init: ActivityInit): Activity {
  const root = taskDirLayout(init.dir).rootDir
  const createdAtMs = Date.now()
  let endedAtMs: number | undefined
  let state: ActivityState = 'New'
  let cpuMs = 0
  let deployed: DeployedProgram | undefined
  let busy = false
  let runCounter = 0
  let current: AbortController | undefined // aborts what runs now when the activity is terminated from outside
  let prepared: Promise<void> | undefined
  const server = createServerHold()

  const setState = (next: ActivityState, error?: string): void => {
    state = next
    if (terminalStates.includes(next)) endedAtMs ??= Date.now()
    init.onState?.(next, error === undefined ? {} : { error })
  }
  const usage = (): ActivityUsage => ({ durationSec: ((endedAtMs ?? Date.now()) - createdAtMs) / 1000, cpuSec: (cpuMs + server.cpuMs()) / 1000 })

  async function terminate(reason: string, final: 'Terminated' | 'Unresponsive' = 'Terminated'): Promise<void> {
    if (terminalStates.includes(state)) return
    current?.abort(new HearthError('HEARTH_ERR_EXEC_FAILED', `the activity was terminated: ${reason}`, { details: { aborted: true } }))
    setState(final, reason)
    await server.stop()
    await rm(init.dir, { recursive: true, force: true })
  }

  const context: ServeContext = {
    ...contextBase(init),
    deployed: () => deployed!,
    nextRun: () => ++runCounter,
    addCpuMs: (ms) => void (cpuMs += ms),
    server: () => server.program(),
    // A server that ends by itself ends its replica: the requestor sees the activity terminated and replaces it.
    adopt: (program, gateways) => server.adopt(program, gateways, (why) => void terminate(why).catch(() => undefined)),
  }

  async function step(index: number, command: ParsedCommand, emit: ExecOptions['emit'], signal: AbortSignal): Promise<CommandResult> {
    if (!allowedIn[command.name].includes(state)) throw notAllowedIn(state, command.name)
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
        return runCommand(context, index, command.body, emit, signal)
      case 'transfer':
        return transferCommand(context, index, command.body, emit, signal)
      case 'serve':
        return serveCommand(context, index, command.body, signal)
      case 'logs':
        return logsCommand(context, index, command.body)
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
    served: () => {
      const program = server.program()
      return program === undefined || terminalStates.includes(state) ? undefined : { program, gateways: server.gateways() }
    },
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
          const result = await commandOfBatch(index, command, options.emit, signal, step)
          results.push(result)
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
