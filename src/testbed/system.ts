/**
 * Process helpers of the testbed: running a command (in a namespace or not) and collecting its output, `ip -batch`,
 * looking a program up on PATH, and where each testbed keeps its state.
 */
import { spawn } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

export interface RunResult {
  stdout: string
  stderr: string
  /** Exit status, or null when the process was ended by a signal (a timeout included). */
  code: number | null
}

export interface RunOptions {
  /** Written to the process's stdin, which is then closed. */
  input?: string | Buffer
  /** Kills the process (SIGKILL) after this long; the result then has `code: null`. */
  timeoutMs?: number
}

/** State of each testbed: which namespaces it made, linkd's pid and log, the host table. */
export const STATE_ROOT = '/run/hearth-testbed'

export function stateDir(prefix: string): string {
  return join(STATE_ROOT, prefix)
}

export function runProcess(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs)
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolvePromise({ stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString(), code })
    })
    // A process that exits without reading its stdin makes the write fail with EPIPE; its exit status says more.
    child.stdin.on('error', () => {})
    child.stdin.end(options.input ?? '')
  })
}

/** Runs a command that must succeed; its stderr becomes the error message. */
export async function must(command: string, args: readonly string[], input?: string | Buffer): Promise<string> {
  const result = await runProcess(command, args, input === undefined ? {} : { input })
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.code ?? 'killed'}): ${result.stderr.trim() || result.stdout.trim()}`)
  }
  return result.stdout
}

/** `ip -n NETNS -batch -`: one process for many commands in one namespace. */
export function ipBatch(netns: string, lines: string[]): Promise<string> {
  return must('ip', ['-n', netns, '-batch', '-'], lines.join('\n') + '\n')
}

export function onPath(program: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, program), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}
