/**
 * What of an output file must agree between providers. Renderers stamp their images with the time and the machine
 * (POV-Ray writes "# Render Date: …" into a PPM header, PNG encoders add tIME and tEXt chunks), so two honest renders
 * of the same frame are rarely byte-equal although every pixel is. Images are therefore compared by their pixels:
 * a netpbm file by its dimensions, depth and raster, a PNG by its header and inflated image data. Anything else, and
 * any image that does not parse, is compared byte for byte.
 */
import { inflateSync } from 'node:zlib'
import { sha256Hex } from '../exec/content-hash.ts'

/** A content id for comparing results: the pixels' hash for PPM/PGM/PNG images, the bytes' hash otherwise. */
export function comparableContentId(data: Uint8Array): string {
  const pixels = netpbmPixels(data) ?? pngPixels(data)
  return pixels === undefined ? sha256Hex(data) : `pixels:${sha256Hex(pixels)}`
}

/** Binary PPM (P6) or PGM (P5): the header's numbers (comments dropped) followed by the raster. */
function netpbmPixels(data: Uint8Array): Uint8Array | undefined {
  if (data.length < 3 || data[0] !== 0x50 || (data[1] !== 0x35 && data[1] !== 0x36)) return undefined
  const numbers: number[] = []
  let i = 2
  while (numbers.length < 3) {
    // whitespace and comments ("# …" to the end of the line) separate the header fields
    while (i < data.length && (isSpace(data[i]!) || data[i] === 0x23)) {
      if (data[i] === 0x23) while (i < data.length && data[i] !== 0x0a) i++
      else i++
    }
    let value = 0
    let digits = 0
    while (i < data.length && data[i]! >= 0x30 && data[i]! <= 0x39 && digits < 10) {
      value = value * 10 + (data[i]! - 0x30)
      digits++
      i++
    }
    if (digits === 0) return undefined
    numbers.push(value)
  }
  // exactly one whitespace byte ends the header
  if (i >= data.length || !isSpace(data[i]!)) return undefined
  const header = new TextEncoder().encode(`P${data[1] === 0x36 ? 6 : 5} ${numbers.join(' ')}\n`)
  const raster = data.subarray(i + 1)
  const out = new Uint8Array(header.length + raster.length)
  out.set(header)
  out.set(raster, header.length)
  return out
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d
}

const pngSignature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

/** PNG: IHDR plus the inflated IDAT stream; ancillary chunks (time, text, gamma notes) are left out. */
function pngPixels(data: Uint8Array): Uint8Array | undefined {
  if (data.length < 8 || pngSignature.some((byte, index) => data[index] !== byte)) return undefined
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  let header: Uint8Array | undefined
  const idat: Uint8Array[] = []
  for (let offset = 8; offset + 12 <= data.length; ) {
    const length = view.getUint32(offset)
    const type = String.fromCharCode(...data.subarray(offset + 4, offset + 8))
    const body = data.subarray(offset + 8, offset + 8 + length)
    if (body.length !== length) return undefined
    if (type === 'IHDR') header = body
    else if (type === 'IDAT') idat.push(body)
    else if (type === 'IEND') break
    offset += 12 + length
  }
  if (header === undefined || idat.length === 0) return undefined
  try {
    // Bounded: a hostile PNG must not inflate without limit on the requestor.
    const raster = inflateSync(Buffer.concat(idat), { maxOutputLength: 1 << 30 })
    const out = new Uint8Array(header.length + raster.length)
    out.set(header)
    out.set(raster, header.length)
    return out
  } catch {
    return undefined
  }
}
