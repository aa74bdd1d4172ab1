/**
 * PNG for rendered images, through pngjs both ways so that the project has one PNG path. encodePng writes 8-bit RGB,
 * non-interlaced, with pngjs's per-row adaptive filter and zlib at level 9. decodePng reads any PNG through the same
 * decoder the requestor compares results with (requestor/image-key.ts) and returns it as 8-bit RGB when that holds it
 * exactly.
 */
import { constants as zlibConstants } from 'node:zlib'
import { PNG } from 'pngjs'
import { HearthError } from '../errors.ts'
import { decodePngPixels } from '../requestor/image-key.ts'

export interface RgbImage {
  width: number
  height: number
  /** width * height * 3 bytes, rows top to bottom. */
  rgb: Uint8Array
}

const bytesPerPixel = 3
/** pngjs's colour type for RGB without alpha, as input and as output. */
const colourTypeRgb = 2

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
  const png = new PNG()
  png.width = width
  png.height = height
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength)
  return PNG.sync.write(png, {
    colorType: colourTypeRgb,
    inputColorType: colourTypeRgb,
    inputHasAlpha: false,
    bitDepth: 8,
    filterType: -1, // per row, the filter with the least sum of absolute differences
    deflateLevel: 9,
    deflateStrategy: zlibConstants.Z_DEFAULT_STRATEGY,
  })
}

/** Any PNG as 8-bit RGB; throws HEARTH_ERR_JOB_INVALID when it does not decode or 8-bit RGB cannot hold it exactly. */
export function decodePng(png: Uint8Array): RgbImage {
  const image = decodePngPixels(png)
  if (image.bitsPerSample !== 8) throw new HearthError('HEARTH_ERR_JOB_INVALID', 'the PNG has 16-bit samples that 8 bits cannot hold')
  const { width, height, rgba } = image
  const rgb = new Uint8Array(width * height * bytesPerPixel)
  for (let pixel = 0; pixel < width * height; pixel++) {
    if (rgba[pixel * 4 + 3] !== 0xff) throw new HearthError('HEARTH_ERR_JOB_INVALID', 'the PNG has transparent pixels, which RGB cannot hold')
    rgb[pixel * 3] = rgba[pixel * 4]!
    rgb[pixel * 3 + 1] = rgba[pixel * 4 + 1]!
    rgb[pixel * 3 + 2] = rgba[pixel * 4 + 2]!
  }
  return { width, height, rgb }
}
