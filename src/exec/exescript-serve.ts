/**
 * The ExeScript commands of a service's replica: `serve` starts the deployed program as a long-running server in the
 * activity's sandbox (no network but the provider's path to its port) and waits until it listens; `logs` returns the
 * newest part of its log. The server lives as long as the activity: it stops when the activity is terminated, and the
 * activity ends when the server does.
 */
import { open, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { z } from 'zod'
import { HearthError } from '../errors.ts'
import type { CommandContext } from './exescript-commands.ts'
import type { CommandResult, logsCommandSchema, serveCommandSchema } from './exescript-model.ts'
import type { ServedProgram } from './runtime.ts'
import { taskDirLayout } from './task-core.ts'

/** What the serve and logs commands need of their activity beyond a run's context. */
export interface ServeContext extends CommandContext {
  /** The server the activity holds, if one was started. */
  server(): ServedProgram | undefined
  /** Hands the started server to the activity, with the peers (addresses) besides the requestor it lets in. */
  adopt(server: ServedProgram, gateways: readonly string[]): void
}

/** The server's log: stdout and stderr as they came, next to (not inside) the activity's root. */
export function serverLogPath(dir: string): string {
  return join(dir, 'server.log')
}

const portPattern = /\$\{PORT\}/g
/** How often a server's CPU time is read from its cgroup into the activity's usage. */
const serverUsageEveryMs = 2_000

/** An activity's hold on its server: CPU sampled into its usage, stopped with it, and its end reported. */
export interface ServerHold {
  program(): ServedProgram | undefined
  gateways(): readonly string[]
  /** CPU time the server used, as last sampled. */
  cpuMs(): number
  /** Takes the server; `onEnded` is told when it ends by itself (not by stop). */
  adopt(program: ServedProgram, gateways: readonly string[], onEnded: (why: string) => void): void
  /** Samples its CPU one last time and stops it (nothing when none is held). */
  stop(): Promise<void>
}

export function createServerHold(): ServerHold {
  let held: { program: ServedProgram; gateways: readonly string[]; cpuMs: number; sampler: NodeJS.Timeout; stopping: boolean } | undefined
  const sample = async (): Promise<void> => {
    const current = held
    if (current === undefined) return
    const used = await current.program.usage().catch(() => undefined)
    if (used !== undefined) current.cpuMs = Math.max(current.cpuMs, used.cpuMs)
  }
  return {
    program: () => held?.program,
    gateways: () => held?.gateways ?? [],
    cpuMs: () => held?.cpuMs ?? 0,
    adopt(program, gateways, onEnded) {
      const sampler = setInterval(() => void sample(), serverUsageEveryMs)
      sampler.unref()
      const hold = { program, gateways, cpuMs: 0, sampler, stopping: false }
      held = hold
      void program.ended.then((ending) => {
        clearInterval(sampler)
        if (hold.stopping) return
        onEnded(ending.reason === 'memory' ? 'the server was killed at its memory limit' : `the server exited with code ${ending.exitCode}`)
      })
    },
    async stop() {
      if (held === undefined) return
      held.stopping = true
      clearInterval(held.sampler)
      await sample()
      await held.program.stop()
    },
  }
}

export async function serveCommand(ctx: ServeContext, index: number, body: z.output<typeof serveCommandSchema>, signal: AbortSignal): Promise<CommandResult> {
  if (ctx.server() !== undefined) {
    throw new HearthError('HEARTH_ERR_EXEC_ACTIVITY_STATE', 'this activity already runs a server', { hint: 'start another activity for another server' })
  }
  const serve = ctx.environment.serve
  if (serve === undefined) {
    throw new HearthError('HEARTH_ERR_SERVICE_NOT_HOSTED', 'this provider does not host services', { hint: 'deploy to providers whose offer says hearth.services.enabled' })
  }
  const deployed = ctx.deployed()
  const port = String(body.port)
  const args = body.args.map((arg) => arg.replace(portPattern, port))
  const argv0 = deployed.argv0 === undefined ? undefined : (body.entryPoint ?? deployed.argv0)
  const env = Object.fromEntries(Object.entries(body.env).map(([key, value]) => [key, value.replace(portPattern, port)]))
  const server = await serve(deployed, {
    args: argv0 === undefined ? args : [argv0, ...args],
    env,
    port: body.port,
    rootDir: taskDirLayout(ctx.dir).rootDir,
    logPath: serverLogPath(ctx.dir),
  })
  // Held from now on, so that a terminate during the wait below stops it too.
  ctx.adopt(server, body.gateways)
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason)
    signal.addEventListener('abort', () => reject(signal.reason), { once: true })
  })
  aborted.catch(() => undefined)
  await Promise.race([server.waitListening(body.listenTimeoutMs), aborted])
  return { index, command: 'serve', ok: true }
}

export async function logsCommand(ctx: ServeContext, index: number, body: z.output<typeof logsCommandSchema>): Promise<CommandResult> {
  const path = serverLogPath(ctx.dir)
  const size = (await stat(path).catch(() => undefined))?.size ?? 0
  const want = Math.min(size, body.tailBytes, ctx.maxAtEndBytes)
  const data = Buffer.alloc(want)
  if (want > 0) {
    const handle = await open(path, 'r')
    try {
      const { bytesRead } = await handle.read(data, 0, want, size - want)
      return { index, command: 'logs', ok: true, stdoutBase64: data.subarray(0, bytesRead).toString('base64'), truncated: size > bytesRead }
    } finally {
      await handle.close()
    }
  }
  return { index, command: 'logs', ok: true, stdoutBase64: '', truncated: false }
}
