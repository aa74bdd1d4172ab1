/**
 * The `wasi` runtime behind the shared Runtime interface. wasi-runtime.ts keeps its own spec (`module` rather than
 * `program`) because the provider, jobs and devnet already use it; this adapter only renames, so both stay in step.
 */
import { HearthError } from '../errors.ts'
import type { KeptStdioRunResult, KeptStdioRunSpec, Runtime, RunOptions, RunResult, RunSpec } from './runtime.ts'
import type { WasiRunSpec, WasiRuntime } from './wasi-runtime.ts'

/** A program for the `wasi` runtime: a WASI preview1 module's bytes. */
export type WasmProgram = Uint8Array

/** The wasi runtime's own spec for a shared one: maxCpuCores has nothing to limit (a guest runs on one thread), and WASI has no way to reach a GPU. */
function wasiSpec(spec: KeptStdioRunSpec<WasmProgram> & Partial<Pick<RunSpec<WasmProgram>, 'stdoutPath' | 'stderrPath'>>): WasiRunSpec {
  const { program, maxCpuCores: _cores, gpus, programId, ...rest } = spec
  if (gpus !== undefined && gpus.length > 0) {
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'a wasi run cannot use GPUs', { hint: 'run GPU work with the native or docker runtime' })
  }
  return { ...rest, module: program, ...(programId === undefined ? {} : { moduleId: programId }) }
}

export function adaptWasiRuntime(wasi: WasiRuntime): Runtime<WasmProgram> {
  return {
    name: 'wasi',
    // node:wasi and WebAssembly ship with every Node this project supports: nothing on the machine can be missing.
    available: () => Promise.resolve({ ok: true }),
    run: async (spec: RunSpec<WasmProgram>, options?: RunOptions): Promise<RunResult> => {
      const { stdout: _stdout, stderr: _stderr, ...result } = await wasi.run(wasiSpec(spec), options)
      return result
    },
    runKeepingStdio: async (spec: KeptStdioRunSpec<WasmProgram>, options?: RunOptions): Promise<KeptStdioRunResult> => {
      const { stdout, stderr, ...result } = await wasi.run(wasiSpec({ ...spec, stdoutPath: undefined, stderrPath: undefined }), options)
      return { ...result, stdout: stdout ?? new Uint8Array(0), stderr: stderr ?? new Uint8Array(0) }
    },
    close: () => wasi.close(),
  }
}
