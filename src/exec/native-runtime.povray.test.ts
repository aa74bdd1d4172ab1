// A real program nobody on the team wrote, through the native runtime: POV-Ray renders a scene whole, then in row
// ranges (+SR/+ER) in separate sandboxed runs, and the rows stitched together must equal the whole render byte for byte.
// Without anti-aliasing only: POV-Ray's adaptive anti-aliasing depends on where a render starts, so with +A the rows
// at a seam (and a few others) differ by up to ~33/255 (measured with POV-Ray 3.7.0.10): compare those with a tolerance.
import assert from 'node:assert/strict'
import { constants } from 'node:fs'
import { access, copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createNativeRuntime } from './native-runtime.ts'
import type { NativeRuntime } from './native-runtime.ts'
import type { RunResult } from './runtime.ts'

const povray = '/usr/bin/povray'
const scene = new URL('./testdata/stitch-scene.pov', import.meta.url)
const widthPx = 192
const heightPx = 144

let base: string
let runtime: NativeRuntime
let renderCount = 0

interface Ppm {
  widthPx: number
  heightPx: number
  maxValue: number
  /** The raster only: headers hold a render date, so whole files never match. */
  pixels: Buffer
}

/** Parses a binary PPM (P6): magic, width, height, max value, separated by whitespace and `#` comments, then the raster. */
function parsePpm(bytes: Buffer): Ppm {
  const tokens: string[] = []
  let at = 0
  while (tokens.length < 4) {
    while (/\s/.test(String.fromCharCode(bytes[at]!))) at++
    if (bytes[at] === 0x23) {
      while (bytes[at] !== 0x0a) at++
      continue
    }
    const start = at
    while (!/\s/.test(String.fromCharCode(bytes[at]!))) at++
    tokens.push(bytes.subarray(start, at).toString('latin1'))
  }
  assert.equal(tokens[0], 'P6', 'a binary PPM')
  const ppm = { widthPx: Number(tokens[1]), heightPx: Number(tokens[2]), maxValue: Number(tokens[3]), pixels: bytes.subarray(at + 1) }
  assert.equal(ppm.pixels.length, ppm.widthPx * ppm.heightPx * 3 * (ppm.maxValue > 255 ? 2 : 1))
  return ppm
}

/** Renders rows firstRow..lastRow (1-based, inclusive) in a task directory of its own; returns the image and the run. */
async function render(firstRow: number, lastRow: number): Promise<{ image: Ppm; result: RunResult }> {
  const dir = join(base, `render-${renderCount++}`)
  await mkdir(join(dir, 'task'), { recursive: true })
  await copyFile(scene, join(dir, 'task', 'scene.pov'))
  const result = await runtime.run({
    program: povray,
    args: ['povray', '+Iscene.pov', '+Oimage.ppm', '+FP', `+W${widthPx}`, `+H${heightPx}`, `+SR${firstRow}`, `+ER${lastRow}`, '-D', '-P'],
    env: {},
    rootDir: join(dir, 'task'),
    stdoutPath: join(dir, 'stdout'),
    stderrPath: join(dir, 'stderr'),
    maxMemoryBytes: 256 << 20,
    timeoutMs: 30_000,
    maxOutputBytes: 4 << 20,
  })
  assert.equal(result.exitCode, 0, `povray failed: ${(await readFile(join(dir, 'stderr'), 'utf8')).slice(-2000)}`)
  return { image: parsePpm(await readFile(join(dir, 'task', 'image.ppm'))), result }
}

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-povray-'))
  // Fail, not skip, where POV-Ray or bubblewrap is missing: CI must install them (Debian packages `povray`, `bubblewrap`).
  await access(povray, constants.X_OK).catch(() => assert.fail(`${povray} is missing: install the Debian package \`povray\``))
  // povray reads its I/O restrictions from /etc/povray; everything else it needs (includes, fonts) is under /usr.
  runtime = createNativeRuntime({ programs: [povray], readOnlyPaths: ['/etc/povray'] })
  const availability = await runtime.available()
  assert.deepEqual(availability, { ok: true }, `the native runtime cannot run here: ${availability.ok ? '' : availability.reason}`)
})

after(async () => {
  await runtime?.close()
  await rm(base, { recursive: true, force: true })
})

describe('native-runtime with POV-Ray', () => {
  it('renders a scene in row ranges in separate runs; the stitched rows equal one full render', async () => {
    const bands = [
      [1, 48],
      [49, 96],
      [97, 144],
    ] as const
    const [full, ...parts] = await Promise.all([render(1, heightPx), ...bands.map(([first, last]) => render(first, last))])
    const rowBytes = widthPx * 3
    assert.equal(full!.image.widthPx, widthPx)
    assert.equal(full!.image.heightPx, heightPx)
    assert.ok(full!.result.cpuMs > 0, 'CPU time is metered')

    const stitched = Buffer.concat(parts.map((part, i) => part.image.pixels.subarray((bands[i]![0] - 1) * rowBytes, bands[i]![1] * rowBytes)))
    assert.equal(stitched.length, full!.image.pixels.length)
    assert.ok(stitched.equals(full!.image.pixels), 'the stitched rows differ from the full render')
    // each part really rendered only its own rows (POV-Ray writes the whole frame, the rest black)
    for (const [i, part] of parts.entries()) {
      assert.ok(!part.image.pixels.equals(full!.image.pixels), `part ${i} is the whole image`)
      const outside = Buffer.concat([part.image.pixels.subarray(0, (bands[i]![0] - 1) * rowBytes), part.image.pixels.subarray(bands[i]![1] * rowBytes)])
      assert.ok(outside.every((byte) => byte === 0), `part ${i} has pixels outside its rows`)
    }
    assert.deepEqual(await runtime.leftovers(), [])
  })
})
