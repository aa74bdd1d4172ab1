/**
 * Compiles AssemblyScript sources to a WASI preview1 module in memory, through the compiler API (no child process).
 * Used by scripts/build-workloads.ts for the built-in workloads and by tests for their small guest programs.
 */
import { Worker } from 'node:worker_threads'
import { HearthError } from '../errors.ts'

export interface AssemblyScriptSources {
  /** File name (as imported, with `.ts`) → source text. Imports between them resolve by file name. */
  files: Record<string, string>
  /** Which of `files` is the entry; it should `export function _start(): void`. */
  entry: string
  /** -O3 when true (default), -O0 otherwise. */
  optimize?: boolean
}

interface WorkerAnswer {
  binary?: Uint8Array<ArrayBuffer>
  error?: string
  crashed?: string
  stderr: string
}

/** Compiles and returns the module's bytes. The module imports only what the sources declare (no `env.abort`). */
export async function compileAssemblyScript(sources: AssemblyScriptSources): Promise<Uint8Array<ArrayBuffer>> {
  if (sources.files[sources.entry] === undefined) {
    throw new HearthError('HEARTH_ERR_INTERNAL', `the entry ${sources.entry} is not among the sources`)
  }
  const argv = [
    sources.entry,
    '--outFile',
    'out.wasm',
    ...(sources.optimize === false ? ['-O0'] : ['-O3']),
    // The stub runtime never frees: right for short-lived tasks, and the smallest and fastest code.
    '--runtime',
    'stub',
    // Without this the module would import env.abort, which a WASI host does not provide; an abort becomes a trap.
    '--use',
    'abort=',
    '--noColors',
  ]
  // execArgv [] keeps tsx's loader out of the worker (see assemblyscript-worker.mjs).
  const worker = new Worker(new URL('./assemblyscript-worker.mjs', import.meta.url), {
    workerData: { files: sources.files, argv },
    execArgv: [],
  })
  let answer: WorkerAnswer
  try {
    answer = await new Promise<WorkerAnswer>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
      worker.once('exit', (code) => reject(new Error(`the compiler worker exited with code ${code} before answering`)))
    })
  } catch (error) {
    throw new HearthError('HEARTH_ERR_INTERNAL', `the AssemblyScript compiler failed to run on ${sources.entry}`, { cause: error })
  } finally {
    void worker.terminate()
  }
  if (answer.crashed !== undefined) {
    throw new HearthError('HEARTH_ERR_INTERNAL', `the AssemblyScript compiler crashed on ${sources.entry}`, {
      cause: new Error(answer.crashed),
    })
  }
  if (answer.binary === undefined) {
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `AssemblyScript compile of ${sources.entry} failed:\n${answer.stderr.trim()}`, {
      hint: 'fix the compile errors above',
      details: { entry: sources.entry },
      ...(answer.error === undefined ? {} : { cause: new Error(answer.error) }),
    })
  }
  return answer.binary
}
