/** Helpers for tests that assemble tiny wasm modules byte by byte (no toolchain, so each test shows all it runs). */

export function leb(value: number): number[] {
  const out: number[] = []
  do {
    let byte = value & 0x7f
    value >>>= 7
    if (value !== 0) byte |= 0x80
    out.push(byte)
  } while (value !== 0)
  return out
}

export const utf8 = (text: string): number[] => [...leb(text.length), ...new TextEncoder().encode(text)]

export const section = (id: number, content: number[]): number[] => [id, ...leb(content.length), ...content]

export const limits = (flags: number, min: number, max?: number): number[] => [
  flags,
  ...leb(min),
  ...(max === undefined ? [] : leb(max)),
]

/** A function body: no locals, then `code`, then `end`. */
export const body = (code: number[]): number[] => [...leb(code.length + 2), 0, ...code, 0x0b]

export function wasmModule(sections: number[][]): Uint8Array<ArrayBuffer> {
  return Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...sections.flat()])
}
