/**
 * The built-in WASI workloads: AssemblyScript programs under workloads/, compiled by `npm run build`
 * (scripts/build-workloads.ts) into build/workloads/<name>.wasm.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HearthError } from '../errors.ts'

export const builtinWorkloadNames = ['probe', 'render', 'softmax', 'wordcount'] as const
export type BuiltinWorkloadName = (typeof builtinWorkloadNames)[number]

const defaultBuildDir = fileURLToPath(new URL('../../build/workloads/', import.meta.url))

export function isBuiltinWorkloadName(name: string): name is BuiltinWorkloadName {
  return (builtinWorkloadNames as readonly string[]).includes(name)
}

/** Where the compiled module of a built-in workload lives (it may not be built yet). */
export function builtinWorkloadPath(name: string, buildDir: string = defaultBuildDir): string {
  if (!isBuiltinWorkloadName(name)) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `there is no built-in workload named ${JSON.stringify(name)}`, {
      hint: `built-in workloads: ${builtinWorkloadNames.join(', ')}`,
    })
  }
  return join(buildDir, `${name}.wasm`)
}

/** The compiled module of a built-in workload. */
export async function loadBuiltinWorkload(name: string, buildDir: string = defaultBuildDir): Promise<Uint8Array<ArrayBuffer>> {
  const path = builtinWorkloadPath(name, buildDir)
  try {
    return new Uint8Array(await readFile(path))
  } catch (error) {
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `the built-in workload ${name} is not built (${path} is missing)`, {
      hint: 'run npm run build',
      details: { name, path },
      cause: error,
    })
  }
}
