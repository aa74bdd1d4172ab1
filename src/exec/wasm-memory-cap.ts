/**
 * Caps the linear memory of an untrusted wasm module before it is compiled.
 *
 * Worker `resourceLimits` do not bound wasm memory, so the bound has to be in the module itself: a memory the module
 * defines gets its declared maximum rewritten in the binary; a memory the module imports is reported so the runtime can
 * supply a `WebAssembly.Memory` whose maximum is the cap. Either way `memory.grow` past the cap returns -1 in the guest.
 *
 * Only the section framing, the import section and the memory section are parsed; every other byte is copied as is.
 */
import { HearthError } from '../errors.ts'

export const wasmPageBytes = 65_536
/** wasm32 can address at most 4 GiB = 65 536 pages. */
const wasm32MaxPages = 65_536

const sectionImport = 2
const sectionMemory = 5

export interface WasmMemoryLimits {
  minPages: number
  /** undefined: the module declared no maximum. */
  maxPages: number | undefined
}

export interface ImportedWasmMemory {
  module: string
  name: string
  /** As declared by the module. */
  declared: WasmMemoryLimits
  /** What the runtime must supply: `new WebAssembly.Memory({ initial: minPages, maximum: maxPages })`. */
  minPages: number
  maxPages: number
}

export interface CappedWasmModule {
  /** The module with a defined memory's maximum rewritten (the input itself when there was nothing to rewrite). */
  bytes: Uint8Array<ArrayBuffer>
  capPages: number
  /** A memory the module defines itself, with its limits after capping. */
  definedMemory: { declared: WasmMemoryLimits; minPages: number; maxPages: number } | undefined
  importedMemory: ImportedWasmMemory | undefined
}

/** How many whole pages fit in a byte budget (wasm memories grow by 64 KiB pages). */
export function memoryCapPages(maxMemoryBytes: number): number {
  if (!Number.isFinite(maxMemoryBytes) || maxMemoryBytes < 0) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `maxMemoryBytes must be a non-negative number, got ${maxMemoryBytes}`)
  }
  return Math.min(Math.floor(maxMemoryBytes / wasmPageBytes), wasm32MaxPages)
}

export function capWasmMemory(module: Uint8Array, maxMemoryBytes: number): CappedWasmModule {
  const capPages = memoryCapPages(maxMemoryBytes)
  const reader = new Reader(module)
  reader.expectHeader()

  let definedMemory: CappedWasmModule['definedMemory']
  let importedMemory: ImportedWasmMemory | undefined
  let memorySection: { start: number; end: number; limits: WasmMemoryLimits } | undefined

  while (!reader.done()) {
    const sectionStart = reader.offset
    const id = reader.byte()
    const size = reader.u32()
    const contentStart = reader.offset
    const contentEnd = contentStart + size
    if (contentEnd > module.length) throw invalid(`section ${id} runs past the end of the module`)
    const section = reader.sub(contentStart, contentEnd)
    if (id === sectionImport) {
      const found = readImportedMemories(section)
      if (found.length > 1) throw invalid('the module imports more than one memory (multi-memory is not supported)')
      importedMemory = found[0] === undefined ? undefined : capImported(found[0], capPages)
    } else if (id === sectionMemory) {
      const count = section.u32()
      if (count > 1) throw invalid('the module defines more than one memory (multi-memory is not supported)')
      if (count === 1) memorySection = { start: sectionStart, end: contentEnd, limits: readMemoryLimits(section, 'defined') }
      if (!section.done()) throw invalid('the memory section has trailing bytes')
    }
    reader.offset = contentEnd
  }

  if (memorySection !== undefined && importedMemory !== undefined) {
    throw invalid('the module both imports and defines a memory (multi-memory is not supported)')
  }

  // WebAssembly.compile takes no views of a SharedArrayBuffer: copy in that (unlikely) case.
  let bytes = module.buffer instanceof ArrayBuffer ? (module as Uint8Array<ArrayBuffer>) : new Uint8Array(module)
  if (memorySection !== undefined) {
    const { limits } = memorySection
    if (limits.minPages > capPages) throw tooLarge(limits.minPages, capPages, 'defines')
    const maxPages = Math.min(limits.maxPages ?? wasm32MaxPages, capPages)
    definedMemory = { declared: limits, minPages: limits.minPages, maxPages }
    const content = [...encodeU32(1), 0x01, ...encodeU32(limits.minPages), ...encodeU32(maxPages)]
    const section = Uint8Array.from([sectionMemory, ...encodeU32(content.length), ...content])
    bytes = new Uint8Array(module.length - (memorySection.end - memorySection.start) + section.length)
    bytes.set(module.subarray(0, memorySection.start), 0)
    bytes.set(section, memorySection.start)
    bytes.set(module.subarray(memorySection.end), memorySection.start + section.length)
  }
  return { bytes, capPages, definedMemory, importedMemory }
}

function capImported(found: { module: string; name: string; limits: WasmMemoryLimits }, capPages: number): ImportedWasmMemory {
  if (found.limits.minPages > capPages) throw tooLarge(found.limits.minPages, capPages, 'imports')
  return {
    module: found.module,
    name: found.name,
    declared: found.limits,
    minPages: found.limits.minPages,
    maxPages: Math.min(found.limits.maxPages ?? wasm32MaxPages, capPages),
  }
}

function readImportedMemories(section: Reader): { module: string; name: string; limits: WasmMemoryLimits }[] {
  const memories: { module: string; name: string; limits: WasmMemoryLimits }[] = []
  const count = section.u32()
  for (let i = 0; i < count; i++) {
    const module = section.name()
    const name = section.name()
    const kind = section.byte()
    switch (kind) {
      case 0x00: // function: type index
        section.u32()
        break
      case 0x01: // table: reference type, then limits
        section.valueType()
        section.skipLimits()
        break
      case 0x02:
        memories.push({ module, name, limits: readMemoryLimits(section, `imported ${module}.${name}`) })
        break
      case 0x03: // global: value type, mutability
        section.valueType()
        section.byte()
        break
      case 0x04: // tag (exception handling): attribute, type index
        section.byte()
        section.u32()
        break
      default:
        throw invalid(`import ${module}.${name} has an unknown kind 0x${kind.toString(16)}`)
    }
  }
  if (!section.done()) throw invalid('the import section has trailing bytes')
  return memories
}

function readMemoryLimits(reader: Reader, which: string): WasmMemoryLimits {
  const flags = reader.byte()
  if ((flags & 0x02) !== 0) throw invalid(`the ${which} memory is shared (threads are not supported)`)
  if ((flags & 0x04) !== 0) throw invalid(`the ${which} memory is a 64-bit memory (memory64 is not supported)`)
  if ((flags & ~0x01) !== 0) throw invalid(`the ${which} memory has unsupported limit flags 0x${flags.toString(16)}`)
  const minPages = reader.u32()
  const maxPages = (flags & 0x01) !== 0 ? reader.u32() : undefined
  if (minPages > wasm32MaxPages || (maxPages !== undefined && (maxPages > wasm32MaxPages || maxPages < minPages))) {
    throw invalid(`the ${which} memory has invalid limits (min ${minPages}, max ${maxPages ?? 'none'} pages)`)
  }
  return { minPages, maxPages }
}

function tooLarge(minPages: number, capPages: number, how: string): HearthError {
  return new HearthError(
    'HEARTH_ERR_EXEC_MEMORY',
    `the module ${how} a memory of at least ${minPages * wasmPageBytes} bytes, more than the limit of ${capPages * wasmPageBytes} bytes`,
    { hint: 'raise maxMemoryBytes for this task or build the program with a smaller initial memory', details: { minPages, capPages } },
  )
}

function invalid(message: string): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `not a usable wasm module: ${message}`, {
    hint: 'build the program for wasm32-wasi (WASI preview1) with a single, non-shared 32-bit memory',
  })
}

function encodeU32(value: number): number[] {
  const out: number[] = []
  let rest = value >>> 0
  do {
    let byte = rest & 0x7f
    rest >>>= 7
    if (rest !== 0) byte |= 0x80
    out.push(byte)
  } while (rest !== 0)
  return out
}

class Reader {
  constructor(
    private readonly bytes: Uint8Array,
    public offset = 0,
    private readonly end = bytes.length,
  ) {}

  done(): boolean {
    return this.offset >= this.end
  }

  sub(start: number, end: number): Reader {
    return new Reader(this.bytes, start, end)
  }

  expectHeader(): void {
    const magic = [0x00, 0x61, 0x73, 0x6d]
    if (this.end < 8 || magic.some((b, i) => this.bytes[i] !== b)) throw invalid('missing the \\0asm magic number')
    const version = this.bytes[4]! | (this.bytes[5]! << 8) | (this.bytes[6]! << 16) | (this.bytes[7]! << 24)
    if (version !== 1) throw invalid(`binary version ${version} is not a core module (version 1); components are not supported`)
    this.offset = 8
  }

  byte(): number {
    if (this.offset >= this.end) throw invalid('unexpected end of section')
    return this.bytes[this.offset++]!
  }

  /** Unsigned LEB128, at most 5 bytes. */
  u32(): number {
    let result = 0
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.byte()
      result += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) {
        if (result > 0xffff_ffff) throw invalid('a LEB128 integer overflows 32 bits')
        return result
      }
    }
    throw invalid('a LEB128 integer is longer than 5 bytes')
  }

  /** Skips any LEB128 integer (signed or unsigned, any width). */
  skipLeb(): void {
    for (let i = 0; i < 10; i++) if ((this.byte() & 0x80) === 0) return
    throw invalid('a LEB128 integer is longer than 10 bytes')
  }

  name(): string {
    const length = this.u32()
    if (this.offset + length > this.end) throw invalid('a name runs past the end of its section')
    const text = new TextDecoder('utf-8', { fatal: true }).decode(this.bytes.subarray(this.offset, this.offset + length))
    this.offset += length
    return text
  }

  valueType(): void {
    const type = this.byte()
    // GC proposal: (ref null? heaptype) with a signed LEB heap type.
    if (type === 0x63 || type === 0x64) this.skipLeb()
  }

  skipLimits(): void {
    const flags = this.byte()
    this.skipLeb()
    if ((flags & 0x01) !== 0) this.skipLeb()
  }
}
