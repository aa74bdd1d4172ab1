import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { compileAssemblyScript } from './assemblyscript-compiler.ts'

describe('assemblyscript-compiler', () => {
  it('compiles sources in memory to a module that imports nothing but what it declares', async () => {
    const files = {
      'main.ts': 'import { twice } from "./util"\nexport function _start(): void { twice(21) }\n',
      'util.ts': 'export function twice(x: i32): i32 { if (x > 100) throw new Error("big"); return x * 2 }\n',
    }
    const bytes = await compileAssemblyScript({ files, entry: 'main.ts', optimize: false })
    const module = new WebAssembly.Module(bytes)
    // `throw` would import env.abort without `--use abort=`; a WASI host does not provide it
    assert.deepEqual(WebAssembly.Module.imports(module), [])
    assert.deepEqual(
      WebAssembly.Module.exports(module).map((entry) => entry.name),
      ['_start', 'memory'],
    )
  })

  it('reports compile errors with the compiler diagnostics', async () => {
    await assert.rejects(compileAssemblyScript({ files: { 'bad.ts': 'export function _start(): void { let x: i32 = "no" }\n' }, entry: 'bad.ts' }), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_EXEC_PACKAGE_INVALID'))
      assert.match(error.message, /bad\.ts/)
      assert.match(error.message, /not assignable/)
      return true
    })
    await assert.rejects(compileAssemblyScript({ files: {}, entry: 'missing.ts' }), (error) => isHearthError(error, 'HEARTH_ERR_INTERNAL'))
  })
})
