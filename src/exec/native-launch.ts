/**
 * How the native runtime starts bubblewrap: a tiny shell wrapper puts itself into the run's cgroups and sets its
 * rlimits, then execs bwrap, so the limits hold from the sandbox's first instruction. bwrap reads the seccomp filter
 * from fd 4 and reports on fd 3 whether the sandbox started and how the program exited.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { HearthError } from '../errors.ts'

/** Puts itself into the run's cgroups and sets rlimits, then becomes bwrap: the limits apply before bwrap's first instruction. */
const wrapperScript = [
  'blocks=$1; shift',
  'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift',
  // RLIMIT_FSIZE in 512-byte blocks (hard and soft: the program cannot raise it); no core files in the task directory.
  'ulimit -c 0 && ulimit -f "$blocks" || exit 125',
  'exec "$@"',
].join('\n')

/**
 * /bin/sh's arguments: the wrapper, the file size limit in 512-byte blocks, the cgroups' procs files, then bwrap and its
 * arguments. `mergeStderr`: the sandbox's stderr goes where its stdout goes (one log, in the order written).
 */
export function wrapperArgs(fileBlocks: number, procsFiles: string[], bwrap: string, bwrapArgs: string[], mergeStderr = false): string[] {
  const script = mergeStderr ? `exec 2>&1\n${wrapperScript}` : wrapperScript
  return ['-c', script, 'hearth-sandbox', String(fileBlocks), ...procsFiles, '--', bwrap, ...bwrapArgs]
}

/** Starts a run's wrapper on the task's stdio (descriptors, or a pipe to read), in its own process group, and feeds it the seccomp filter. */
export function startSandbox(args: string[], stdio: [number, number | 'pipe', number | 'ignore'], seccomp: Buffer): ChildProcess {
  let child: ChildProcess
  try {
    child = spawn('/bin/sh', args, {
      // fd 3 carries bwrap's JSON status: whether the sandbox started, and the program's exit code; bwrap reads the
      // seccomp filter from fd 4.
      stdio: [...stdio, 'pipe', 'pipe'],
      // Its own process group, so that the wrapper and bwrap can be killed together.
      detached: true,
      env: {},
      cwd: '/',
    })
  } catch (error) {
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', `could not start the sandbox: ${(error as Error).message}`, { cause: error })
  }
  feedSeccomp(child, seccomp)
  return child
}

/** Writes the seccomp filter into the child's fd 4 and closes it: bwrap reads it to its end before it sets up the sandbox. */
export function feedSeccomp(child: ChildProcess, filter: Buffer): void {
  const pipe = child.stdio[4] as NodeJS.WritableStream | null | undefined
  if (pipe === null || pipe === undefined) return
  // A sandbox that dies before it reads the filter fails on its own (bwrap refuses a short filter): nothing runs unfiltered.
  pipe.on('error', () => {})
  pipe.end(filter)
}

/** Reads bwrap's status pipe (fd 3) to its end; bounded, as only two short JSON lines are expected. */
export function collect(child: ChildProcess): Promise<string> {
  const stream = child.stdio[3] as NodeJS.ReadableStream | null | undefined
  if (stream === null || stream === undefined) return Promise.resolve('')
  return new Promise((resolve) => {
    let text = ''
    stream.on('data', (chunk: Buffer) => {
      if (text.length < 65_536) text += chunk.toString('utf8')
    })
    stream.on('end', () => resolve(text))
    stream.on('error', () => resolve(text))
    stream.on('close', () => resolve(text))
  })
}

/** What bwrap reported on its status pipe. */
export interface Status {
  childPid?: number
  exitCode?: number
}

/** bwrap writes one JSON document per line: {"child-pid": N, …} once the sandbox is up, {"exit-code": N} at the end. */
export function parseStatus(text: string): Status {
  const status: Status = {}
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    try {
      const document = JSON.parse(line) as Record<string, unknown>
      if (typeof document['child-pid'] === 'number') status.childPid = document['child-pid']
      if (typeof document['exit-code'] === 'number') status.exitCode = document['exit-code']
    } catch {
      // not ours to judge: an incomplete line from a killed bwrap
    }
  }
  return status
}

/** Kills the wrapper's process group (the wrapper and bwrap). */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // the group is gone already
  }
}
