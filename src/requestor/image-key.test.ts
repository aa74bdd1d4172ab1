import assert from 'node:assert/strict'
import { deflateSync } from 'node:zlib'
import { test } from 'node:test'
import { comparableContentId } from './image-key.ts'
import { sha256Hex } from '../exec/content-hash.ts'

const raster = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])

function png(pixels: Buffer, extra: Buffer[] = []): Buffer {
  const chunk = (type: string, body: Buffer): Buffer => {
    const length = Buffer.alloc(4)
    length.writeUInt32BE(body.length)
    return Buffer.concat([length, Buffer.from(type, 'latin1'), body, Buffer.alloc(4)])
  }
  const ihdr = Buffer.from([0, 0, 0, 2, 0, 0, 0, 2, 8, 2, 0, 0, 0])
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), ...extra, chunk('IDAT', deflateSync(pixels)), chunk('IEND', Buffer.alloc(0))])
}

test('images that differ only in their metadata compare equal; different pixels do not', () => {
  // POV-Ray's PPM header carries the render date
  const a = Buffer.concat([Buffer.from('P6\n# Software: POV-Ray\n# Render Date: 2026-11-27 18:02:28Z\n2 2\n255\n'), raster])
  const b = Buffer.concat([Buffer.from('P6\n# Render Date: 2026-11-27 18:09:01Z\n2 2 255\n'), raster])
  assert.equal(comparableContentId(a), comparableContentId(b))
  const changed = Buffer.from(b)
  changed[changed.length - 1] = 8
  assert.notEqual(comparableContentId(a), comparableContentId(changed))
  // a different size with the same bytes is a different image
  const narrow = Buffer.concat([Buffer.from('P6\n4 1\n255\n'), raster])
  assert.notEqual(comparableContentId(a), comparableContentId(narrow))

  const time = (stamp: string): Buffer => Buffer.concat([Buffer.from([0, 0, 0, stamp.length]), Buffer.from('tEXt' + stamp, 'latin1'), Buffer.alloc(4)])
  const scanlines = Buffer.from([0, 1, 2, 3, 4, 5, 6, 0, 7, 8, 9, 10, 11, 12])
  assert.equal(comparableContentId(png(scanlines, [time('a')])), comparableContentId(png(scanlines, [time('bb')])))
  assert.notEqual(comparableContentId(png(scanlines)), comparableContentId(png(Buffer.from(scanlines.map((x) => x ^ 1)))))
})

test('anything else, and broken images, compare byte for byte', () => {
  const text = Buffer.from('word\t3\n')
  assert.equal(comparableContentId(text), sha256Hex(text))
  const truncated = Buffer.from('P6\n2 2\n')
  assert.equal(comparableContentId(truncated), sha256Hex(truncated))
  const badPng = png(Buffer.from([1, 2, 3])).subarray(0, 30)
  assert.equal(comparableContentId(badPng), sha256Hex(badPng))
})
