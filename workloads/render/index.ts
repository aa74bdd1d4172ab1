// render: renders one tile of the built-in demo scene as raw RGB8 rows.
//   render --width W --height H --x X --y Y --w TW --h TH --out /out/tile.rgb
// The tile's top-left pixel is (X, Y) of the full W x H image; the output holds TW*TH*3 bytes. Exit 2 on bad arguments.

import { exit, printLine, readArgs, writeFile } from "./wasi"
import { renderPixel, SAMPLES_PER_PIXEL } from "./tracer"

const USAGE = "usage: render --width W --height H --x X --y Y --w TW --h TH --out PATH"
const MAX_SIDE: i32 = 16384

/** Parses a non-negative decimal integer; -1 when `text` is not one (or is absurdly large). */
function parseCount(text: string): i32 {
  if (text.length == 0 || text.length > 9) return -1
  let value: i32 = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 48 || c > 57) return -1
    value = value * 10 + (c - 48)
  }
  return value
}

function fail(message: string): void {
  printLine(2, "render: " + message)
  printLine(2, USAGE)
  exit(2)
}

export function _start(): void {
  const args = readArgs()
  let width: i32 = -1, height: i32 = -1, x: i32 = -1, y: i32 = -1, w: i32 = -1, h: i32 = -1
  let out = ""
  for (let i = 1; i < args.length; i += 2) {
    const name = args[i]
    if (i + 1 >= args.length) return fail("missing a value for " + name)
    const value = args[i + 1]
    if (name == "--out") {
      out = value
      continue
    }
    const n = parseCount(value)
    if (n < 0) return fail("not a number for " + name + ": '" + value + "'")
    if (name == "--width") width = n
    else if (name == "--height") height = n
    else if (name == "--x") x = n
    else if (name == "--y") y = n
    else if (name == "--w") w = n
    else if (name == "--h") h = n
    else return fail("unknown option " + name)
  }
  if (width < 1 || height < 1 || x < 0 || y < 0 || w < 1 || h < 1 || out.length == 0) {
    return fail("all of --width --height --x --y --w --h --out are required (sizes at least 1)")
  }
  if (width > MAX_SIDE || height > MAX_SIDE) return fail("the image may be at most " + MAX_SIDE.toString() + " pixels a side")
  if (x + w > width || y + h > height) return fail("the tile does not fit inside the image")

  const length = <usize>w * <usize>h * 3
  const pixels = heap.alloc(length)
  let p = pixels
  for (let row = 0; row < h; row++) {
    for (let col = 0; col < w; col++) {
      renderPixel(width, height, x + col, y + row, p)
      p += 3
    }
  }
  const errno = writeFile(out, pixels, length)
  if (errno != 0) {
    printLine(2, "render: cannot write " + out + ": WASI errno " + errno.toString())
    exit(1)
    return
  }
  printLine(
    1,
    "render: tile " + w.toString() + "x" + h.toString() + " at " + x.toString() + "," + y.toString() +
      " of " + width.toString() + "x" + height.toString() + ", " + SAMPLES_PER_PIXEL.toString() + " spp, " +
      length.toString() + " bytes -> " + out,
  )
}
