/**
 * What of an output file must agree between providers. Renderers stamp their images with the time and the machine
 * (POV-Ray writes "# Render Date: …" into a PPM header, PNG encoders add tIME and tEXt chunks), so two honest renders
 * of the same frame are rarely byte-equal although every pixel is. Images are therefore compared by their pixels:
 *
 * - a PNG is decoded by pngjs (every bit depth and colour type, palettes, tRNS, Adam7 interlacing, CRCs checked) and
 *   compared as width, height and every pixel's RGBA. Samples keep their full precision: 16-bit samples compare at 16
 *   bits, so two images that differ only in a low byte differ; an image whose 16-bit samples 8 bits hold exactly
 *   (v * 257) compares equal to the same image written with 8 bits. Ancillary chunks (tIME, tEXt, gAMA, …) are not
 *   pixels and do not count.
 * - a binary PPM (P6) or PGM (P5) is compared by its type, width, height, maxval and raster; its comments do not count.
 *
 * Anything else, and any image that does not decode or is too large to decode, is compared byte for byte, which is
 * never looser than comparing pixels.
 */
import { createHash } from 'node:crypto'
import { inflateSync } from 'node:zlib'
import { PNG } from 'pngjs'
import { HearthError } from '../errors.ts'
import { contentIdPrefix, sha256Hex } from '../exec/content-hash.ts'

/** A content id for comparing results: the pixels' hash for PPM/PGM/PNG images, the bytes' hash otherwise. */
export function comparableContentId(data: Uint8Array): string {
  return netpbmKey(data) ?? pngKey(data) ?? sha256Hex(data)
}

/** A decoded PNG: width * height pixels of RGBA, rows top to bottom, at 8 bits a sample when 8 bits hold it exactly. */
export type PngPixels = { width: number; height: number } & ({ bitsPerSample: 8; rgba: Uint8Array } | { bitsPerSample: 16; rgba: Uint16Array })

/**
 * The most pixels a PNG may have to be decoded (8K UHD, 7680x4320, fits): a provider's image must not make the requestor
 * allocate without limit. At 16 bits a sample that is 256 MiB of RGBA.
 */
export const maxPngPixels = 1 << 25

/** Channels per pixel and the bit depths PNG allows, by colour type: grey, RGB, palette index, grey+alpha, RGBA. */
const colourTypes: Record<number, { channels: number; bitDepths: readonly number[] }> = {
  0: { channels: 1, bitDepths: [1, 2, 4, 8, 16] },
  2: { channels: 3, bitDepths: [8, 16] },
  3: { channels: 1, bitDepths: [1, 2, 4, 8] },
  4: { channels: 2, bitDepths: [8, 16] },
  6: { channels: 4, bitDepths: [8, 16] },
}

const pngSignature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

/**
 * Decodes any PNG to RGBA without losing precision (see PngPixels). Throws HEARTH_ERR_JOB_INVALID for data that is not
 * a PNG, does not decode, or has more than maxPngPixels pixels.
 */
export function decodePngPixels(data: Uint8Array): PngPixels {
  const png = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const invalid = (message: string, cause?: unknown): HearthError =>
    new HearthError('HEARTH_ERR_JOB_INVALID', `not a PNG that can be decoded: ${message}`, cause === undefined ? {} : { cause })
  // PNG requires IHDR first; its numbers are read here only to bound what decoding may allocate.
  if (png.length < 33 || !png.subarray(0, 8).equals(pngSignature) || png.readUInt32BE(8) !== 13 || png.toString('latin1', 12, 16) !== 'IHDR') {
    throw invalid('missing the PNG signature or the IHDR chunk')
  }
  const width = png.readUInt32BE(16)
  const height = png.readUInt32BE(20)
  const bitDepth = png[24]!
  const colourType = colourTypes[png[25]!]
  if (width === 0 || height === 0) throw invalid(`an image of ${width}x${height} pixels`)
  if (width * height > maxPngPixels) throw invalid(`${width}x${height} pixels is more than the ${maxPngPixels} that are decoded`)
  if (colourType === undefined || !colourType.bitDepths.includes(bitDepth)) throw invalid(`colour type ${png[25]} with ${bitDepth}-bit samples`)
  checkImageDataSize(png, width, height, colourType.channels * bitDepth, png[28] === 1, invalid)

  let decoded: ReturnType<typeof PNG.sync.read>
  try {
    // 16-bit samples stay 16-bit; 1, 2 and 4-bit ones are scaled to 8 bits, which is exact (x 255, 85, 17).
    decoded = PNG.sync.read(png, { checkCRC: true, skipRescale: bitDepth === 16 })
  } catch (error) {
    throw invalid(error instanceof Error ? error.message : String(error), error)
  }
  const samples = decoded.data as Buffer | Uint16Array
  if (decoded.width !== width || decoded.height !== height || samples.length !== width * height * 4) throw invalid('the decoded pixels do not fill the image')
  restoreKeyedColour(decoded, samples, bitDepth)
  if (samples instanceof Uint16Array) {
    // A 16-bit sample v * 257 is the 8-bit sample v: keep the smaller form when every sample has it.
    if (samples.every((v) => v >> 8 === (v & 0xff))) return { width, height, bitsPerSample: 8, rgba: Uint8Array.from(samples, (v) => v & 0xff) }
    return { width, height, bitsPerSample: 16, rgba: samples }
  }
  return { width, height, bitsPerSample: 8, rgba: new Uint8Array(samples.buffer, samples.byteOffset, samples.length) }
}

/**
 * pngjs turns a pixel that matches a grey or RGB image's tRNS colour into (0, 0, 0, 0). Give it back its colour, so
 * that it compares like the same pixel written with an alpha channel: every pixel's RGBA must agree.
 */
function restoreKeyedColour(decoded: ReturnType<typeof PNG.sync.read>, samples: Buffer | Uint16Array, bitDepth: number): void {
  const key = (decoded as unknown as { transColor?: number[] }).transColor
  if (key === undefined || (decoded.colorType !== 0 && decoded.colorType !== 2)) return
  const scale = bitDepth < 8 ? 255 / ((1 << bitDepth) - 1) : 1
  const [r, g, b] = key.length === 1 ? [key[0]!, key[0]!, key[0]!] : key
  for (let at = 0; at < samples.length; at += 4) {
    if (samples[at + 3] !== 0) continue
    samples[at] = r! * scale
    samples[at + 1] = g! * scale
    samples[at + 2] = b! * scale
  }
}

/** Adam7 passes: first column, first row, column step, row step. */
const adam7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const

/**
 * Throws unless the image data (the IDAT chunks) inflates to exactly the filtered scanlines the image needs. pngjs
 * 7's sync decoder does not check this itself: it inflates an interlaced image without a limit (a zip bomb), and on
 * Node 20 it hands back a whole image's worth of buffer for a plain image whose data ends early, the rest of it
 * whatever that memory held. Only the chunks' lengths and types are read here; pngjs parses and checks the rest.
 */
function checkImageDataSize(png: Buffer, width: number, height: number, bitsPerPixel: number, interlaced: boolean, invalid: (message: string, cause?: unknown) => HearthError): void {
  let needed = 0
  for (const [x0, y0, dx, dy] of interlaced ? adam7 : [[0, 0, 1, 1] as const]) {
    const passWidth = Math.ceil((width - x0) / dx)
    const passHeight = Math.ceil((height - y0) / dy)
    if (passWidth > 0 && passHeight > 0) needed += passHeight * (1 + Math.ceil((passWidth * bitsPerPixel) / 8))
  }
  const idat: Buffer[] = []
  for (let offset = 8; offset + 8 <= png.length; ) {
    const length = png.readUInt32BE(offset)
    const type = png.toString('latin1', offset + 4, offset + 8)
    if (type === 'IDAT') idat.push(png.subarray(offset + 8, offset + 8 + length))
    else if (type === 'IEND') break
    offset += 12 + length
  }
  let inflatedBytes: number
  try {
    inflatedBytes = inflateSync(Buffer.concat(idat), { maxOutputLength: needed }).length
  } catch (error) {
    throw invalid(`its image data does not inflate to the ${needed} bytes a ${width}x${height} image needs`, error)
  }
  if (inflatedBytes !== needed) throw invalid(`its image data inflates to ${inflatedBytes} bytes, not the ${needed} a ${width}x${height} image needs`)
}

/** The key of a PNG's pixels, or undefined when it is not a PNG that decodes. */
function pngKey(data: Uint8Array): string | undefined {
  let image: PngPixels
  try {
    image = decodePngPixels(data)
  } catch {
    return undefined
  }
  const hash = createHash('sha256').update(`PNG RGBA${image.bitsPerSample} ${image.width} ${image.height}\n`)
  if (image.bitsPerSample === 8) {
    hash.update(image.rgba)
  } else {
    const bigEndian = Buffer.alloc(image.rgba.length * 2)
    for (let i = 0; i < image.rgba.length; i++) bigEndian.writeUInt16BE(image.rgba[i]!, i * 2)
    hash.update(bigEndian)
  }
  return `pixels:${contentIdPrefix}${hash.digest('hex')}`
}

/**
 * The key of a binary PPM (P6) or PGM (P5): its type, width, height and maxval (comments dropped) and the raster, which
 * must be exactly as long as they say. Comments end at CR or LF, as netpbm reads them: a parser that ran a comment on
 * past a CR would take header numbers for comment and pixels for header, and so let a different picture share a key.
 */
function netpbmKey(data: Uint8Array): string | undefined {
  if (data.length < 3 || data[0] !== 0x50 || (data[1] !== 0x35 && data[1] !== 0x36)) return undefined
  const numbers: number[] = []
  let i = 2
  while (numbers.length < 3) {
    // whitespace and comments ("# …" to the end of the line) separate the header fields
    while (i < data.length && (isSpace(data[i]!) || data[i] === 0x23)) {
      if (data[i] === 0x23) while (i < data.length && data[i] !== 0x0a && data[i] !== 0x0d) i++
      else i++
    }
    const start = i
    let value = 0
    while (i < data.length && data[i]! >= 0x30 && data[i]! <= 0x39) value = value * 10 + (data[i++]! - 0x30)
    if (i === start || i - start > 9) return undefined
    numbers.push(value)
  }
  const [width, height, maxval] = numbers as [number, number, number]
  // exactly one whitespace byte ends the header
  if (i >= data.length || !isSpace(data[i]!)) return undefined
  if (width < 1 || height < 1 || maxval < 1 || maxval > 65535) return undefined
  const raster = data.subarray(i + 1)
  if (raster.length !== width * height * (data[1] === 0x36 ? 3 : 1) * (maxval > 255 ? 2 : 1)) return undefined
  const hash = createHash('sha256').update(`P${data[1] === 0x36 ? 6 : 5} ${width} ${height} ${maxval}\n`).update(raster)
  return `pixels:${contentIdPrefix}${hash.digest('hex')}`
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d
}
