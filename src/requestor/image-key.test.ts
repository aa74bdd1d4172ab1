import assert from 'node:assert/strict'
import { crc32, deflateSync } from 'node:zlib'
import { describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { comparableContentId, decodePngPixels, maxPngPixels } from './image-key.ts'
import { sha256Hex } from '../exec/content-hash.ts'

// PNGs are written here by hand, chunk by chunk, so that every colour type, bit depth, palette, tRNS and Adam7 can be
// built (pngjs's encoder writes only non-interlaced grey/RGB/RGBA).

function chunk(type: string, body: Uint8Array | number[]): Buffer {
  const data = Buffer.from(body)
  const out = Buffer.alloc(12 + data.length)
  out.writeUInt32BE(data.length, 0)
  out.write(type, 4, 'latin1')
  out.set(data, 8)
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length)
  return out
}

interface PngSpec {
  width: number
  height: number
  bitDepth: 1 | 2 | 4 | 8 | 16
  /** 0 grey, 2 RGB, 3 palette index, 4 grey+alpha, 6 RGBA */
  colourType: 0 | 2 | 3 | 4 | 6
  /** The samples of the pixel at (x, y), as the colour type stores them. */
  pixel: (x: number, y: number) => number[]
  interlaced?: boolean
  /** Chunks between IHDR and IDAT (PLTE, tRNS, tIME, tEXt, gAMA). */
  before?: Buffer[]
  /** Chunks between IDAT and IEND. */
  after?: Buffer[]
}

const adam7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]]

/** The filtered (filter 0) scanlines of every pass, before deflate. */
function scanlines(spec: PngSpec): Buffer {
  const rows: Buffer[] = []
  for (const [x0, y0, dx, dy] of spec.interlaced === true ? adam7 : [[0, 0, 1, 1]]) {
    for (let y = y0!; y < spec.height; y += dy!) {
      const samples: number[] = []
      for (let x = x0!; x < spec.width; x += dx!) samples.push(...spec.pixel(x, y))
      if (samples.length === 0) continue
      const row = Buffer.alloc(1 + Math.ceil((samples.length * spec.bitDepth) / 8))
      samples.forEach((sample, i) => {
        if (spec.bitDepth === 16) row.writeUInt16BE(sample, 1 + i * 2)
        else if (spec.bitDepth === 8) row[1 + i] = sample
        else row[1 + Math.floor((i * spec.bitDepth) / 8)]! |= sample << (8 - spec.bitDepth - ((i * spec.bitDepth) % 8))
      })
      rows.push(row)
    }
  }
  return Buffer.concat(rows)
}

function pngFile(spec: PngSpec, idat = deflateSync(scanlines(spec))): Buffer {
  const header = Buffer.alloc(13)
  header.writeUInt32BE(spec.width, 0)
  header.writeUInt32BE(spec.height, 4)
  header[8] = spec.bitDepth
  header[9] = spec.colourType
  header[12] = spec.interlaced === true ? 1 : 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    ...(spec.before ?? []),
    chunk('IDAT', idat),
    ...(spec.after ?? []),
    chunk('IEND', []),
  ])
}

const text = (keyword: string, value: string): Buffer => chunk('tEXt', Buffer.from(`${keyword}\0${value}`, 'latin1'))
const time = (second: number): Buffer => chunk('tIME', [0x07, 0xea, 11, 27, 18, 2, second])

// A 9x7 picture (odd sizes, so that every Adam7 pass is partial) in four colours, one of them half transparent.
const colours = [[255, 0, 0, 255], [0, 128, 0, 255], [10, 20, 30, 255], [200, 200, 0, 128]]
const indexAt = (x: number, y: number): number => (x * 3 + y * 5 + ((x * y) >> 2)) % 4
const palette = (entries: number[][]): Buffer => chunk('PLTE', entries.flatMap((c) => c.slice(0, 3)))
const paletteAlpha = (entries: number[][]): Buffer => chunk('tRNS', entries.map((c) => c[3]!))
const picture = { width: 9, height: 7 }
const paletted = (entries = colours, more: Partial<PngSpec> = {}): Buffer =>
  pngFile({ ...picture, bitDepth: 8, colourType: 3, pixel: (x, y) => [indexAt(x, y)], before: [palette(entries), paletteAlpha(entries)], ...more })
const rgba = (more: Partial<PngSpec> = {}): Buffer => pngFile({ ...picture, bitDepth: 8, colourType: 6, pixel: (x, y) => colours[indexAt(x, y)]!, ...more })
const key = comparableContentId

describe('comparing PNG results', () => {
  it('tells apart paletted PNGs with the same indices and different palettes', () => {
    const wrong = colours.map((c, i) => (i === 1 ? [0, 0, 255, 255] : c))
    assert.notEqual(key(paletted()), key(paletted(wrong)))
    // the palette's alpha (tRNS) is part of the colour too
    const opaque = colours.map((c) => [...c.slice(0, 3), 255])
    assert.notEqual(key(paletted()), key(paletted(opaque)))
  })

  it('gives the same picture one key whether it is written paletted, as RGBA, or interlaced', () => {
    assert.equal(key(paletted()), key(rgba()))
    assert.equal(key(rgba()), key(rgba({ interlaced: true })))
    assert.equal(key(paletted()), key(paletted(colours, { interlaced: true })))
    // at a lower bit depth the indices are packed, and still name the same colours
    assert.equal(key(paletted()), key(paletted(colours, { bitDepth: 2 })))
    const changed = rgba({ pixel: (x, y) => (x === 8 && y === 6 ? [255, 0, 0, 254] : colours[indexAt(x, y)]!) })
    assert.notEqual(key(rgba()), key(changed))
  })

  it('compares opaque pictures the same as RGB, grey, grey+alpha, and at 1 bit per pixel', () => {
    const opaque = colours.map((c) => [...c.slice(0, 3), 255])
    const rgb = pngFile({ ...picture, bitDepth: 8, colourType: 2, pixel: (x, y) => opaque[indexAt(x, y)]!.slice(0, 3) })
    assert.equal(key(rgb), key(paletted(opaque)))
    assert.equal(key(rgb), key(pngFile({ ...picture, bitDepth: 8, colourType: 6, pixel: (x, y) => opaque[indexAt(x, y)]! })))

    const black = (x: number, y: number): boolean => indexAt(x, y) % 2 === 0
    const grey1 = pngFile({ ...picture, bitDepth: 1, colourType: 0, pixel: (x, y) => [black(x, y) ? 0 : 1] })
    const grey8 = pngFile({ ...picture, bitDepth: 8, colourType: 0, pixel: (x, y) => [black(x, y) ? 0 : 255] })
    const greyRgb = pngFile({ ...picture, bitDepth: 8, colourType: 2, pixel: (x, y) => (black(x, y) ? [0, 0, 0] : [255, 255, 255]) })
    assert.equal(key(grey1), key(grey8))
    assert.equal(key(grey8), key(greyRgb))
    assert.equal(key(grey1), key(pngFile({ ...picture, bitDepth: 1, colourType: 0, interlaced: true, pixel: (x, y) => [black(x, y) ? 0 : 1] })))

    const greyAlpha = (alpha: number): Buffer => pngFile({ ...picture, bitDepth: 8, colourType: 4, pixel: (x, y) => [x * 20, y === 3 ? alpha : 255] })
    const sameAsRgba = pngFile({ ...picture, bitDepth: 8, colourType: 6, pixel: (x, y) => [x * 20, x * 20, x * 20, y === 3 ? 100 : 255] })
    assert.equal(key(greyAlpha(100)), key(sameAsRgba))
    assert.notEqual(key(greyAlpha(100)), key(greyAlpha(101)))
  })

  it('compares tRNS colour keys by the RGBA they make', () => {
    // grey 7 is transparent: the same as grey+alpha with alpha 0 there, whatever the chunk order around it
    const keyed = pngFile({ ...picture, bitDepth: 8, colourType: 0, pixel: (x) => [x === 2 ? 7 : 100], before: [chunk('tRNS', [0, 7])] })
    const withAlpha = pngFile({ ...picture, bitDepth: 8, colourType: 4, pixel: (x) => (x === 2 ? [7, 0] : [100, 255]) })
    assert.equal(key(keyed), key(withAlpha))
    // a transparent pixel keeps its colour: (7, 7, 7, 0) is not (0, 0, 0, 0)
    assert.notEqual(key(keyed), key(pngFile({ ...picture, bitDepth: 8, colourType: 4, pixel: (x) => (x === 2 ? [0, 0] : [100, 255]) })))
    // another key colour makes other pixels transparent
    assert.notEqual(key(keyed), key(pngFile({ ...picture, bitDepth: 8, colourType: 0, pixel: (x) => [x === 2 ? 7 : 100], before: [chunk('tRNS', [0, 100])] })))

    const rgbKeyed = pngFile({ ...picture, bitDepth: 8, colourType: 2, pixel: (x, y) => [x, y, 9], before: [chunk('tRNS', [0, 4, 0, 3, 0, 9])] })
    const rgbaSame = pngFile({ ...picture, bitDepth: 8, colourType: 6, pixel: (x, y) => [x, y, 9, x === 4 && y === 3 ? 0 : 255] })
    assert.equal(key(rgbKeyed), key(rgbaSame))
    // at 4 bits the key is a 4-bit value, scaled like the pixels (x 17)
    const grey4 = pngFile({ ...picture, bitDepth: 4, colourType: 0, pixel: (x) => [x], before: [chunk('tRNS', [0, 5])] })
    const grey4As8 = pngFile({ ...picture, bitDepth: 8, colourType: 4, pixel: (x) => [x * 17, x === 5 ? 0 : 255] })
    assert.equal(key(grey4), key(grey4As8))
  })

  it('keeps 16-bit samples whole: a difference in a low byte counts, v * 257 equals 8-bit v', () => {
    const deep = (low: number): Buffer => pngFile({ ...picture, bitDepth: 16, colourType: 2, pixel: (x, y) => [x * 257, y * 257, x === 1 && y === 1 ? 0x8000 + low : 0x4040] })
    assert.notEqual(key(deep(0)), key(deep(1)))
    assert.equal(key(deep(0)), key(deep(0)))
    assert.equal(decodePngPixels(deep(1)).bitsPerSample, 16)
    const exact = pngFile({ ...picture, bitDepth: 16, colourType: 6, pixel: (x, y) => [x * 257, y * 257, 0x4040, 0xffff] })
    const eight = pngFile({ ...picture, bitDepth: 8, colourType: 2, pixel: (x, y) => [x, y, 0x40] })
    assert.equal(key(exact), key(eight))
    // 16-bit grey with a 16-bit colour key
    const greyKeyed = (low: number): Buffer => pngFile({ ...picture, bitDepth: 16, colourType: 0, pixel: (x) => [x === 0 ? 0x1234 : 0x1200 + low], before: [chunk('tRNS', [0x12, 0x34])] })
    assert.notEqual(key(greyKeyed(0)), key(greyKeyed(1)))
    const decoded = decodePngPixels(greyKeyed(1))
    assert.deepEqual([...decoded.rgba.subarray(0, 8)], [0x1234, 0x1234, 0x1234, 0, 0x1201, 0x1201, 0x1201, 0xffff])
  })

  it('ignores tIME, tEXt, gAMA and other ancillary chunks, wherever they are', () => {
    const plain = rgba()
    const stamped = rgba({ before: [time(1), text('Software', 'POV-Ray'), chunk('gAMA', [0, 0, 0xb1, 0x8f])], after: [text('Render Date', '2026-11-27 18:02:28Z')] })
    const restamped = rgba({ before: [time(59), text('Software', 'Blender')] })
    assert.equal(key(plain), key(stamped))
    assert.equal(key(stamped), key(restamped))
    assert.notEqual(key(plain), sha256Hex(plain))
  })

  it('compares a PNG that does not decode byte for byte', () => {
    const good = rgba()
    const broken: Buffer[] = [
      good.subarray(0, 60), // truncated
      good.subarray(0, good.length - 12), // no IEND
      Buffer.concat([good.subarray(0, 8), good.subarray(33)]), // no IHDR
    ]
    const badCrc = Buffer.from(good)
    badCrc[good.length - 14]! ^= 0x01 // in the IDAT chunk's CRC
    broken.push(badCrc)
    broken.push(paletted(colours, { pixel: () => [9] })) // an index past the palette's end
    // too little image data: pngjs alone would fill the rest of the image from whatever its buffer held
    const short = pngFile({ ...picture, bitDepth: 8, colourType: 2, pixel: () => [1, 2, 3] }, deflateSync(Buffer.alloc(10)))
    assert.throws(() => decodePngPixels(short), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && /inflates to 10 bytes/.test(error.message))
    broken.push(short)
    // more image data than the image needs
    broken.push(pngFile({ ...picture, bitDepth: 8, colourType: 0, pixel: () => [1] }, deflateSync(Buffer.alloc(7 * 10 + 1))))
    broken.push(pngFile({ ...picture, bitDepth: 16, colourType: 3, pixel: () => [0], before: [palette(colours)] })) // no such depth for a palette
    broken.forEach((png, i) => assert.equal(key(png), sha256Hex(png), `broken PNG ${i}`))
    // a different byte in a PNG that does not decode is a different result
    assert.notEqual(key(broken[0]!), key(good.subarray(0, 61)))
  })

  it('compares images too large to decode byte for byte, without decoding them', () => {
    // 2^16 x 2^16 pixels claimed in IHDR, with almost no data: nothing that size is allocated
    const huge = pngFile({ width: 1 << 16, height: 1 << 16, bitDepth: 8, colourType: 6, pixel: () => [] }, deflateSync(Buffer.alloc(0)))
    assert.equal(key(huge), sha256Hex(huge))
    assert.throws(() => decodePngPixels(huge), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && error.message.includes(String(maxPngPixels)))
    // an interlaced 8x8 image whose data inflates to 4 MiB (a zip bomb, in small) is refused before pngjs inflates it
    const spec: PngSpec = { width: 8, height: 8, bitDepth: 8, colourType: 0, interlaced: true, pixel: () => [0] }
    const bomb = pngFile(spec, deflateSync(Buffer.concat([scanlines(spec), Buffer.alloc(4 << 20)])))
    assert.equal(key(bomb), sha256Hex(bomb))
    assert.throws(() => decodePngPixels(bomb), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && /does not inflate to the \d+ bytes/.test(error.message))
    assert.equal(decodePngPixels(pngFile(spec)).width, 8)
  })
})

describe('comparing PPM and PGM results', () => {
  const raster = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])

  it('ignores the header comments and layout; different pixels, sizes or types differ', () => {
    // POV-Ray's PPM header carries the render date
    const a = Buffer.concat([Buffer.from('P6\n# Software: POV-Ray\n# Render Date: 2026-11-27 18:02:28Z\n2 2\n255\n'), raster])
    const b = Buffer.concat([Buffer.from('P6\n# Render Date: 2026-11-27 18:09:01Z\r\n2 2 255\n'), raster])
    assert.equal(key(a), key(b))
    const changed = Buffer.from(b)
    changed[changed.length - 1] = 8
    assert.notEqual(key(a), key(changed))
    // a different size with the same bytes is a different image
    assert.notEqual(key(a), key(Buffer.concat([Buffer.from('P6\n4 1\n255\n'), raster])))
    // the same bytes as grey (P5) and as colour (P6)
    assert.notEqual(key(Buffer.from('P6 2 2 255\n' + 'x'.repeat(12))), key(Buffer.from('P5 6 2 255\n' + 'x'.repeat(12))))
    // another maxval scales the same samples differently
    assert.notEqual(key(a), key(Buffer.concat([Buffer.from('P6 2 2 254\n'), raster])))
    // 16-bit samples: two bytes each
    const deep = Buffer.concat([Buffer.from('P6 2 1 65535\n'), raster])
    assert.notEqual(key(deep), sha256Hex(deep))
  })

  it('ends a comment at CR as netpbm does, so a different picture cannot hide behind one', () => {
    const honest = Buffer.concat([Buffer.from('P6\n2 2\n255\n'), raster])
    // netpbm reads 2x2 from the first line and the second "2 2 255\n" as pixels; a comment that ran on to LF would
    // instead read the header from the second line and the honest raster after it
    const forged = Buffer.concat([Buffer.from('P6\n#\r2 2 255\n2 2 255\n'), raster])
    assert.notEqual(key(forged), key(honest))
  })

  it('compares a netpbm file whose raster is not the size its header says byte for byte', () => {
    for (const ppm of [
      Buffer.concat([Buffer.from('P6\n2 2\n255\n'), raster.subarray(1)]),
      Buffer.concat([Buffer.from('P6\n2 2\n255\n'), raster, Buffer.from('\n')]),
      Buffer.concat([Buffer.from('P6\n2 2\n0\n'), raster]),
      Buffer.concat([Buffer.from('P6\n2 2\n65536\n'), raster]),
      Buffer.concat([Buffer.from('P6\n0 2\n255\n')]),
      Buffer.concat([Buffer.from('P6\n0000000002 2\n255\n'), raster]),
      Buffer.from('P6\n2 2\n'),
    ]) {
      assert.equal(key(ppm), sha256Hex(ppm), JSON.stringify(ppm.subarray(0, 16).toString('latin1')))
    }
  })

  it('compares anything else byte for byte', () => {
    const text = Buffer.from('word\t3\n')
    assert.equal(key(text), sha256Hex(text))
  })
})
