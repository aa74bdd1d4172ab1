/**
 * `hearth` commands as processes of their own, for tests across processes: each started from the repository's
 * bin/hearth.js, resolved once it prints its JSON ready line, and all killed by `killAll` when the tests are done.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'

const repoRoot = resolve(import.meta.dirname, '..', '..')

export interface HearthProcess {
  child: ChildProcess
  /** Its first JSON line whose event is "ready". */
  ready: Record<string, unknown>
  exited: Promise<number | null>
  stderr(): string
}

export function hearthProcesses() {
  const children: ChildProcess[] = []
  return {
    /** `hearth ARGS` as its own process; resolves with its ready line, rejects when it exits first. */
    async start(args: string[]): Promise<HearthProcess> {
      const child = spawn(process.execPath, ['bin/hearth.js', ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
      children.push(child)
      let stderr = ''
      child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
      const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)))
      const ready = await new Promise<Record<string, unknown>>((done, fail) => {
        createInterface({ input: child.stdout! }).on('line', (line) => {
          const parsed = JSON.parse(line) as Record<string, unknown>
          if (parsed['event'] === 'ready') done(parsed)
        })
        void exited.then((code) => fail(new Error(`hearth ${args[0]} exited with ${code} before it was ready:\n${stderr}`)))
      })
      assert.equal(ready['event'], 'ready')
      return { child, ready, exited, stderr: () => stderr }
    },
    /** Kills every process still running (a failed test must leave none). */
    killAll(): void {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    },
  }
}
