/**
 * The `wasi` runtime behind the shared Runtime interface. wasi-runtime.ts keeps its own spec (`module` rather than
 * `program`) because the provider, jobs and devnet already use it; this adapter only renames, so both stay in step.
 */
import { HearthError } from '../errors.ts'
import type { Runtime, RunOptions, RunResult, RunSpec } from './runtime.ts'
import type { WasiRuntime } from './wasi-runtime.ts'

/** A program for the `wasi` runtime: a WASI preview1 module's bytes. */
export type WasmProgram = Uint8Array

export function adaptWasiRuntime(wasi: WasiRuntime): Runtime<WasmProgram> {
  return {
    name: 'wasi',
    // node:wasi and WebAssembly ship with every Node this project supports: nothing on the machine can be missing.
    available: () => Promise.resolve({ ok: true }),
    run: async (spec: RunSpec<WasmProgram>, options?: RunOptions): Promise<RunResult> => {
      // maxCpuCores has nothing to limit: a guest runs on one thread. WASI has no way to reach a GPU.
      const { program, maxCpuCores: _cores, gpus, ...rest } = spec
      if (gpus !== undefined && gpus.length > 0) {
        throw new HearthError('HEARTH_ERR_EXEC_FAILED', 'a wasi run cannot use GPUs', { hint: 'run GPU work with the native or docker runtime' })
      }
      return wasi.run({ ...rest, module: program }, options)
    },
    close: () => wasi.close(),
  }
}
