/** The ExeScript tests' WASI guest (exescript-guest.asc), compiled once per process. */
import { readFile } from 'node:fs/promises'
import { compileAssemblyScript } from '../assemblyscript-compiler.ts'

let compiled: Promise<Uint8Array<ArrayBuffer>> | undefined

export function exeScriptGuest(): Promise<Uint8Array<ArrayBuffer>> {
  compiled ??= readFile(new URL('./exescript-guest.asc', import.meta.url), 'utf8').then((source) =>
    compileAssemblyScript({ files: { 'guest.ts': source }, entry: 'guest.ts', optimize: false }),
  )
  return compiled
}
