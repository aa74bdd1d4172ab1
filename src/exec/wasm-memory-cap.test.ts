import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { leb, limits, section, utf8, wasmModule } from './testdata/wasm-bytes.ts'
import { capWasmMemory, memoryCapPages, wasmPageBytes } from './wasm-memory-cap.ts'

// Tiny modules assembled by hand: `grow(pages) -> old size or -1` over one memory, defined or imported.
function growModule(memory: { imported?: boolean; limits: number[] }, extra: number[] = []): Uint8Array<ArrayBuffer> {
  const type = section(1, [1, 0x60, 1, 0x7f, 1, 0x7f])
  const imports = memory.imported ? section(2, [1, ...utf8('env'), ...utf8('memory'), 0x02, ...memory.limits]) : []
  const functions = section(3, [1, 0])
  const memories = memory.imported ? [] : section(5, [1, ...memory.limits])
  const exports = section(7, [1, ...utf8('grow'), 0x00, 0])
  const code = section(10, [1, ...leb(6), 0, 0x20, 0, 0x40, 0, 0x0b])
  return wasmModule([type, imports, functions, memories, exports, code, extra])
}

const customSection = section(0, [...utf8('note'), 1, 2, 3])

function instantiate(bytes: Uint8Array<ArrayBuffer>, imports: WebAssembly.Imports = {}): (pages: number) => number {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports)
  return instance.exports.grow as (pages: number) => number
}

describe('wasm-memory-cap', () => {
  it('counts whole 64 KiB pages in a byte budget', () => {
    assert.equal(memoryCapPages(0), 0)
    assert.equal(memoryCapPages(wasmPageBytes * 3 + 1), 3)
    assert.equal(memoryCapPages(2 ** 40), 65_536)
  })

  it('rewrites a defined memory without maximum so that growing past the cap fails in the guest', () => {
    const original = growModule({ limits: limits(0x00, 1) }, customSection)
    assert.equal(instantiate(original)(100), 1, 'uncapped, the module grows freely')

    const capped = capWasmMemory(original, 4 * wasmPageBytes + 100)
    assert.deepEqual(capped.definedMemory, { declared: { minPages: 1, maxPages: undefined }, minPages: 1, maxPages: 4 })
    assert.equal(capped.importedMemory, undefined)
    assert.equal(capped.capPages, 4)
    const grow = instantiate(capped.bytes)
    assert.equal(grow(3), 1)
    assert.equal(grow(1), -1)
    // everything else is kept, including sections after the rewritten one
    const sections = WebAssembly.Module.customSections(new WebAssembly.Module(capped.bytes), 'note')
    assert.deepEqual([...new Uint8Array(sections[0]!)], [1, 2, 3])
  })

  it('keeps a declared maximum below the cap and lowers one above it', () => {
    const low = capWasmMemory(growModule({ limits: limits(0x01, 1, 2) }), 1024 * wasmPageBytes)
    assert.equal(low.definedMemory?.maxPages, 2)
    const high = capWasmMemory(growModule({ limits: limits(0x01, 2, 50_000) }), 300 * wasmPageBytes)
    assert.equal(high.definedMemory?.maxPages, 300)
    // multi-byte LEB128 values on both sides of the rewrite
    const grow = instantiate(high.bytes)
    assert.equal(grow(298), 2)
    assert.equal(grow(1), -1)
  })

  it('refuses a module whose initial memory already exceeds the cap', () => {
    assert.throws(
      () => capWasmMemory(growModule({ limits: limits(0x00, 17) }), 16 * wasmPageBytes),
      (error) => isHearthError(error, 'HEARTH_ERR_EXEC_MEMORY') && /limit/.test(error.message),
    )
    assert.throws(
      () => capWasmMemory(growModule({ imported: true, limits: limits(0x00, 17) }), 16 * wasmPageBytes),
      (error) => isHearthError(error, 'HEARTH_ERR_EXEC_MEMORY'),
    )
  })

  it('reports an imported memory with the limits the runtime must supply', () => {
    const module = growModule({ imported: true, limits: limits(0x01, 2, 1000) })
    const capped = capWasmMemory(module, 8 * wasmPageBytes)
    assert.equal(capped.bytes, module, 'nothing to rewrite')
    assert.equal(capped.definedMemory, undefined)
    assert.deepEqual(capped.importedMemory, {
      module: 'env',
      name: 'memory',
      declared: { minPages: 2, maxPages: 1000 },
      minPages: 2,
      maxPages: 8,
    })
    const memory = new WebAssembly.Memory({ initial: capped.importedMemory!.minPages, maximum: capped.importedMemory!.maxPages })
    const grow = instantiate(module, { env: { memory } })
    assert.equal(grow(6), 2)
    assert.equal(grow(1), -1)
  })

  it('rejects shared and 64-bit memories and malformed binaries with clear messages', () => {
    const check = (bytes: Uint8Array, pattern: RegExp): void =>
      assert.throws(
        () => capWasmMemory(bytes, 1 << 20),
        (error) => isHearthError(error, 'HEARTH_ERR_EXEC_PACKAGE_INVALID') && pattern.test(error.message),
      )
    check(growModule({ limits: limits(0x03, 1, 2) }), /shared/)
    check(growModule({ imported: true, limits: limits(0x03, 1, 2) }), /shared/)
    check(growModule({ limits: limits(0x04, 1) }), /64-bit/)
    check(new TextEncoder().encode('#!/bin/sh\necho hi\n'), /magic/)
    check(Uint8Array.from([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]), /component/)
    check(growModule({ limits: limits(0x00, 1) }).subarray(0, 40), /end/)
  })
})
