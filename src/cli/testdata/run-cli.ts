/** The `hearth` command run in this process, for the CLI's tests: what it printed, and its exit code. */
import { PassThrough } from 'node:stream'
import { main } from '../main.ts'

/** Streams standing in for stdout and stderr, and what was written to them so far. */
export function capture(): { io: { stdout: PassThrough; stderr: PassThrough }; text(): string; errors(): string } {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const out: Buffer[] = []
  const err: Buffer[] = []
  stdout.on('data', (c: Buffer) => out.push(c))
  stderr.on('data', (c: Buffer) => err.push(c))
  return { io: { stdout, stderr }, text: () => Buffer.concat(out).toString('utf8'), errors: () => Buffer.concat(err).toString('utf8') }
}

/** Runs `hearth ARGS` in this process; returns the exit code and what it printed. */
export async function hearth(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = capture()
  const code = await main(args, out.io)
  return { code, stdout: out.text(), stderr: out.errors() }
}
