import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { inflateSync } from 'node:zlib'
import { isHearthError } from '../errors.ts'
import { decodePng, encodePng } from './png.ts'

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
  })

  it('rejects corrupt data and wrong sizes', () => {
    const png = encodePng({ width: 8, height: 8, rgb: testImage(8, 8) })
    const corrupt = Buffer.from(png)
    corrupt[45] = corrupt[45]! ^ 0xff
    assert.throws(() => decodePng(corrupt), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && /CRC/.test(error.message))
    assert.throws(() => decodePng(new Uint8Array(20)), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
    assert.throws(() => encodePng({ width: 2, height: 2, rgb: new Uint8Array(11) }), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
    assert.throws(() => encodePng({ width: 0, height: 2, rgb: new Uint8Array(0) }), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
  })
})
