/**
 * Builds the built-in WASI workloads (AssemblyScript under workloads/<name>/) into build/workloads/<name>.wasm.
 * Skips a workload whose output is newer than its sources and the compiler; `npm run build` calls this.
 */
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { compileAssemblyScript } from '../src/exec/assemblyscript-compiler.ts'
import { builtinWorkloadNames, builtinWorkloadPath } from '../src/exec/workloads.ts'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))

export async function buildWorkloads(): Promise<void> {
  for (const name of builtinWorkloadNames) await buildWorkload(name)
}

async function buildWorkload(name: string): Promise<void> {
  const sourceDir = join(repoRoot, 'workloads', name)
  const outPath = builtinWorkloadPath(name)
  const libDir = join(repoRoot, 'workloads', 'lib')
  const sourceNames = (await readdir(sourceDir)).filter((file) => file.endsWith('.ts'))
  // Shared code (the WASI bindings) is compiled into every workload; a workload's own file of the same name wins.
  const libNames = (await readdir(libDir)).filter((file) => file.endsWith('.ts') && !sourceNames.includes(file))
  // The compiler and this script are inputs too: a new compiler version or flag must rebuild.
  const inputs = [
    ...sourceNames.map((file) => join(sourceDir, file)),
    ...libNames.map((file) => join(libDir, file)),
    fileURLToPath(import.meta.url),
    fileURLToPath(new URL('../src/exec/assemblyscript-compiler.ts', import.meta.url)),
    join(repoRoot, 'node_modules', 'assemblyscript', 'package.json'),
  ]
  const newestInputMs = Math.max(...(await Promise.all(inputs.map(async (path) => (await stat(path)).mtimeMs))))
  const outputMs = (await stat(outPath).catch(() => undefined))?.mtimeMs
  if (outputMs !== undefined && outputMs >= newestInputMs) {
    console.log(`hearth build: workloads/${name} is up to date`)
    return
  }
  const startedAt = performance.now()
  const files: Record<string, string> = {}
  for (const file of libNames) files[file] = await readFile(join(libDir, file), 'utf8')
  for (const file of sourceNames) files[file] = await readFile(join(sourceDir, file), 'utf8')
  const binary = await compileAssemblyScript({ files, entry: 'index.ts', optimize: true })
  await mkdir(join(outPath, '..'), { recursive: true })
  // Write then rename, so that a reader never sees half a module.
  const temporary = `${outPath}.${process.pid}.tmp`
  await writeFile(temporary, binary)
  await rename(temporary, outPath)
  console.log(
    `hearth build: workloads/${name} -> build/workloads/${name}.wasm (${binary.length} bytes, ${Math.round(performance.now() - startedAt)} ms)`,
  )
}
