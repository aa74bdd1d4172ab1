/**
 * PNG for rendered images: encodePng writes 8-bit RGB, non-interlaced, with a per-row adaptive filter (the usual
 * minimum-sum-of-absolute-differences heuristic) and zlib from node:zlib. decodePng reads back what encodePng writes
 * (any of the five filters, CRCs checked); it is not a general PNG reader.
 */
import { deflateSync, inflateSync } from 'node:zlib'
import { HearthError } from '../errors.ts'

export interface RgbImage {
  width: number
  height: number
  /** width * height * 3 bytes, rows top to bottom. */
  rgb: Uint8Array
}

const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
const bytesPerPixel = 3

let crcTable: Uint32Array | undefined

function crc32(bytes: Uint8Array, crc = 0xffffffff): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      crcTable[n] = c >>> 0
    }
  }
  for (const byte of bytes) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8)
  return crc
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length)
  out.writeUInt32BE(data.length, 0)
  out.write(type, 4, 'latin1')
  out.set(data, 8)
  out.writeUInt32BE((crc32(out.subarray(4, 8 + data.length)) ^ 0xffffffff) >>> 0, 8 + data.length)
  return out
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c
  const pa = Math.abs(p - a)
  const pb = Math.abs(p - b)
  const pc = Math.abs(p - c)
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c
}

function predictor(filter: number, left: number, up: number, upLeft: number): number {
  switch (filter) {
    case 1:
      return left
    case 2:
      return up
    case 3:
      return (left + up) >>> 1
    case 4:
      return paeth(left, up, upLeft)
    default:
      return 0
  }
}

function checkImage(image: RgbImage): void {
  const { width, height, rgb } = image
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || width > 0x7fffffff || height > 0x7fffffff) {
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `an image must be at least 1x1 pixels, got ${width}x${height}`)
  }
  if (rgb.length !== width * height * bytesPerPixel) {
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `a ${width}x${height} RGB image needs ${width * height * 3} bytes, got ${rgb.length}`)
  }
}

export function encodePng(image: RgbImage): Buffer {
  checkImage(image)
  const { width, height, rgb } = image
  const stride = width * bytesPerPixel
  const filtered = Buffer.alloc((stride + 1) * height)
  const candidate = new Uint8Array(stride)
  for (let y = 0; y < height; y++) {
    const row = rgb.subarray(y * stride, (y + 1) * stride)
    const above = y > 0 ? rgb.subarray((y - 1) * stride, y * stride) : undefined
    let bestCost = Infinity
    for (let filter = 0; filter <= 4; filter++) {
      let cost = 0
      for (let i = 0; i < stride; i++) {
        const left = i >= bytesPerPixel ? row[i - bytesPerPixel]! : 0
        const up = above?.[i] ?? 0
        const upLeft = i >= bytesPerPixel ? (above?.[i - bytesPerPixel] ?? 0) : 0
        const value = (row[i]! - predictor(filter, left, up, upLeft)) & 0xff
        candidate[i] = value
        cost += value < 128 ? value : 256 - value
      }
      if (cost < bestCost) {
        bestCost = cost
        filtered[y * (stride + 1)] = filter
        filtered.set(candidate, y * (stride + 1) + 1)
      }
    }
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(height, 4)
  header[8] = 8 // bit depth
  header[9] = 2 // colour type: RGB
  return Buffer.concat([
    signature,
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(filtered, { level: 9 })),
    chunk('IEND', new Uint8Array(0)),
  ])
}

export function decodePng(png: Uint8Array): RgbImage {
  const buffer = Buffer.from(png.buffer, png.byteOffset, png.byteLength)
  const invalid = (message: string): HearthError => new HearthError('HEARTH_ERR_JOB_INVALID', `not a PNG that encodePng writes: ${message}`)
  if (buffer.length < 8 || !buffer.subarray(0, 8).equals(signature)) throw invalid('missing the PNG signature')
  let width = 0
  let height = 0
  const data: Buffer[] = []
  let offset = 8
  for (;;) {
    if (offset + 12 > buffer.length) throw invalid('truncated chunk')
    const length = buffer.readUInt32BE(offset)
    const type = buffer.toString('latin1', offset + 4, offset + 8)
    const end = offset + 8 + length
    if (end + 4 > buffer.length) throw invalid(`truncated ${type} chunk`)
    if ((crc32(buffer.subarray(offset + 4, end)) ^ 0xffffffff) >>> 0 !== buffer.readUInt32BE(end)) throw invalid(`bad CRC in ${type}`)
    const body = buffer.subarray(offset + 8, end)
    if (type === 'IHDR') {
      width = body.readUInt32BE(0)
      height = body.readUInt32BE(4)
      if (body[8] !== 8 || body[9] !== 2 || body[12] !== 0) throw invalid('only 8-bit RGB, non-interlaced is supported')
    } else if (type === 'IDAT') {
      data.push(body)
    } else if (type === 'IEND') {
      break
    }
    offset = end + 4
  }
  if (width === 0 || height === 0) throw invalid('no IHDR chunk')
  const stride = width * bytesPerPixel
  const filtered = inflateSync(Buffer.concat(data))
  if (filtered.length !== (stride + 1) * height) throw invalid('image data has the wrong size')
  const rgb = new Uint8Array(stride * height)
  for (let y = 0; y < height; y++) {
    const filter = filtered[y * (stride + 1)]!
    if (filter > 4) throw invalid(`unknown filter ${filter}`)
    for (let i = 0; i < stride; i++) {
      const at = y * stride + i
      const left = i >= bytesPerPixel ? rgb[at - bytesPerPixel]! : 0
      const up = y > 0 ? rgb[at - stride]! : 0
      const upLeft = y > 0 && i >= bytesPerPixel ? rgb[at - stride - bytesPerPixel]! : 0
      rgb[at] = (filtered[y * (stride + 1) + 1 + i]! + predictor(filter, left, up, upLeft)) & 0xff
    }
  }
  return { width, height, rgb }
}
