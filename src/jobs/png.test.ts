import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { inflateSync } from 'node:zlib'
import { PNG } from 'pngjs'
import type { PackerOptions } from 'pngjs'
import { isHearthError } from '../errors.ts'
import { decodePng, encodePng } from './png.ts'

/** A PNG written by pngjs from raw samples (16-bit ones in this machine's byte order, as pngjs wants them). */
function pngjsFile(width: number, height: number, data: Buffer, options: PackerOptions): Buffer {
  const png = new PNG()
  png.width = width
  png.height = height
  png.data = data
  return PNG.sync.write(png, options)
}

function testImage(width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3)
  let seed = 12345
  for (let i = 0; i < rgb.length; i++) {
    const x = Math.floor(i / 3) % width
    seed = (seed * 1103515245 + 12345) >>> 0
    // smooth gradients (where Sub/Up/Paeth win) plus noise (where None wins)
    rgb[i] = i % 3 === 0 ? (x * 4) & 0xff : i % 3 === 1 ? Math.floor(i / (width * 3)) & 0xff : seed >>> 24
  }
  return rgb
}

describe('png', () => {
  it('round-trips RGB images of odd sizes', () => {
    for (const [width, height] of [[1, 1], [3, 2], [67, 41], [256, 3]] as const) {
      const rgb = testImage(width, height)
      const png = encodePng({ width, height, rgb })
      assert.deepEqual(decodePng(png), { width, height, rgb })
    }
  })

  it('writes a standard PNG: signature, IHDR for 8-bit RGB, IDAT, IEND with its well-known CRC', () => {
    const png = encodePng({ width: 2, height: 1, rgb: Uint8Array.from([255, 0, 0, 0, 0, 255]) })
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
    assert.equal(png.toString('latin1', 12, 16), 'IHDR')
    assert.deepEqual([...png.subarray(16, 29)], [0, 0, 0, 2, 0, 0, 0, 1, 8, 2, 0, 0, 0])
    assert.equal(png.subarray(-12).toString('hex'), '0000000049454e44ae426082')
    const idatLength = png.readUInt32BE(33)
    assert.equal(png.toString('latin1', 37, 41), 'IDAT')
    const rows = inflateSync(png.subarray(41, 41 + idatLength))
    assert.equal(rows.length, 1 + 6)
    // Undo the first row's filter by hand (there is no row above it): the bytes mean the pixels that went in.
    const [filter, ...filtered] = rows
    assert.ok(filter! <= 4)
    const pixels: number[] = []
    filtered.forEach((byte, i) => {
      const left = i >= 3 ? pixels[i - 3]! : 0
      pixels.push((byte + (filter === 1 || filter === 4 ? left : filter === 3 ? left >> 1 : 0)) & 0xff)
    })
    assert.deepEqual(pixels, [255, 0, 0, 0, 0, 255])
  })

  it('decodes any PNG that 8-bit RGB holds exactly: grey, RGBA that is opaque, 16-bit samples of the form v * 257', () => {
    const grey = pngjsFile(3, 2, Buffer.from([0, 10, 20, 30, 40, 255]), { colorType: 0, inputColorType: 0, inputHasAlpha: false })
    assert.deepEqual(decodePng(grey), { width: 3, height: 2, rgb: Uint8Array.from([0, 10, 20, 30, 40, 255].flatMap((g) => [g, g, g])) })
    const opaque = pngjsFile(1, 2, Buffer.from([1, 2, 3, 255, 4, 5, 6, 255]), { colorType: 6 })
    assert.deepEqual(decodePng(opaque), { width: 1, height: 2, rgb: Uint8Array.from([1, 2, 3, 4, 5, 6]) })
    const deep = pngjsFile(2, 1, Buffer.from(Uint16Array.from([1, 2, 3, 4, 5, 255], (v) => v * 257).buffer), { colorType: 2, inputColorType: 2, inputHasAlpha: false, bitDepth: 16 })
    assert.deepEqual(decodePng(deep), { width: 2, height: 1, rgb: Uint8Array.from([1, 2, 3, 4, 5, 255]) })
  })

  it('refuses transparency and 16-bit samples that 8-bit RGB cannot hold', () => {
    const translucent = pngjsFile(1, 1, Buffer.from([1, 2, 3, 128]), { colorType: 6 })
    assert.throws(() => decodePng(translucent), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && /transparent/.test(error.message))
    const deep = pngjsFile(1, 1, Buffer.from(Uint16Array.from([0x0101, 0x0202, 0x0304]).buffer), { colorType: 2, inputColorType: 2, inputHasAlpha: false, bitDepth: 16 })
    assert.throws(() => decodePng(deep), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && /16-bit/.test(error.message))
  })

  it('rejects corrupt data and wrong sizes', () => {
    const png = encodePng({ width: 8, height: 8, rgb: testImage(8, 8) })
    const badCrc = Buffer.from(png)
    badCrc[30] = badCrc[30]! ^ 0xff // in IHDR's CRC
    assert.throws(() => decodePng(badCrc), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
    const badData = Buffer.from(png)
    badData[45] = badData[45]! ^ 0xff // in the image data
    assert.throws(() => decodePng(badData), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
    assert.throws(() => decodePng(new Uint8Array(20)), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
    assert.throws(() => encodePng({ width: 2, height: 2, rgb: new Uint8Array(11) }), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
    assert.throws(() => encodePng({ width: 0, height: 2, rgb: new Uint8Array(0) }), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
  })
})
