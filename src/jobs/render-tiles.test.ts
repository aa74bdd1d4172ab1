import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { buildWorkloads } from '../../scripts/build-workloads.ts'
import { isHearthError } from '../errors.ts'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import { decodePng, encodePng } from './png.ts'
import { mergeTiles, renderLocally, renderTileArgs, splitIntoTiles } from './render-tiles.ts'
import type { Tile } from './render-tiles.ts'

function assertCoversExactly(width: number, height: number, tiles: Tile[]): void {
  const seen = new Uint8Array(width * height)
  for (const tile of tiles) {
    assert.ok(tile.w >= 1 && tile.h >= 1 && tile.x + tile.w <= width && tile.y + tile.h <= height, JSON.stringify(tile))
    for (let y = tile.y; y < tile.y + tile.h; y++) for (let x = tile.x; x < tile.x + tile.w; x++) seen[y * width + x]! += 1
  }
  assert.ok(
    seen.every((count) => count === 1),
    `${width}x${height} in ${tiles.length} tiles`,
  )
  assert.deepEqual(
    tiles.map((tile) => tile.index),
    tiles.map((_, i) => i),
  )
}

describe('splitIntoTiles', () => {
  it('makes a 4x4 grid of 16 tiles on a square image', () => {
    const tiles = splitIntoTiles(512, 512, 16)
    assert.equal(tiles.length, 16)
    assert.ok(tiles.every((tile) => tile.w === 128 && tile.h === 128))
    assert.deepEqual(tiles[5], { index: 5, x: 128, y: 128, w: 128, h: 128 })
  })

  it('covers any image exactly with any count, in near-square tiles', () => {
    for (const [width, height] of [[101, 37], [37, 101], [1920, 1080], [5, 1], [1, 7], [3, 3]] as const) {
      for (let count = 1; count <= Math.min(40, width * height); count++) {
        const tiles = splitIntoTiles(width, height, count)
        assert.equal(tiles.length, count)
        assertCoversExactly(width, height, tiles)
      }
    }
    const rows = splitIntoTiles(300, 300, 7).map((tile) => tile.y)
    assert.deepEqual([...new Set(rows)].length, 3, '7 tiles on a square: rows of 3, 2, 2')
    const wide = splitIntoTiles(1920, 1080, 16)
    assert.ok(wide.every((tile) => tile.w / tile.h < 1.5 && tile.h / tile.w < 1.5), JSON.stringify(wide))
  })

  it('rejects impossible splits', () => {
    assert.throws(() => splitIntoTiles(2, 2, 5), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
    assert.throws(() => splitIntoTiles(2, 2, 0), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
    assert.throws(() => splitIntoTiles(2.5, 2, 1), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID'))
  })
})

describe('mergeTiles', () => {
  const solid = (tile: Tile, value: number) => ({ ...tile, rgb: new Uint8Array(tile.w * tile.h * 3).fill(value) })

  it('places every tile at its position', () => {
    const tiles = splitIntoTiles(5, 3, 4)
    const image = mergeTiles(5, 3, tiles.map((tile) => solid(tile, tile.index + 1)))
    for (const tile of tiles) {
      for (let y = tile.y; y < tile.y + tile.h; y++) {
        for (let x = tile.x; x < tile.x + tile.w; x++) assert.equal(image[(y * 5 + x) * 3 + 2], tile.index + 1)
      }
    }
  })

  it('rejects wrong sizes, overlaps, gaps and tiles outside the image', () => {
    const tiles = splitIntoTiles(4, 4, 4).map((tile) => solid(tile, 1))
    const fails = (list: Parameters<typeof mergeTiles>[2], pattern: RegExp): void =>
      assert.throws(() => mergeTiles(4, 4, list), (error) => isHearthError(error, 'HEARTH_ERR_JOB_INVALID') && pattern.test(error.message))
    fails([{ ...tiles[0]!, rgb: new Uint8Array(5) }, ...tiles.slice(1)], /holds 5 bytes/)
    fails([...tiles, tiles[0]!], /overlaps/)
    fails(tiles.slice(1), /uncovered/)
    fails([...tiles.slice(1), { ...tiles[0]!, x: 3 }], /inside/)
  })
})

describe('render workload', () => {
  let runtime: WasiRuntime
  let module: Uint8Array
  let base: string

  before(async () => {
    await buildWorkloads()
    module = await loadBuiltinWorkload('render')
    runtime = createWasiRuntime({ maxWorkers: 2 })
    base = await mkdtemp(join(tmpdir(), 'hearth-render-test-'))
  })

  after(async () => {
    await runtime.close()
    await rm(base, { recursive: true, force: true })
  })

  it('renders tiles that merge into the full image byte for byte', async () => {
    for (const [width, height, count] of [[160, 120, 16], [97, 61, 7]] as const) {
      const whole = await renderLocally({ runtime, module, width, height })
      const tiled = await renderLocally({ runtime, module, width, height, tiles: count })
      assert.equal(whole.length, width * height * 3)
      assert.ok(Buffer.from(whole).equals(Buffer.from(tiled)), `${width}x${height} in ${count} tiles`)
    }
  })

  it('draws a picture, not noise: sky at the top, ground at the bottom, and survives PNG', async () => {
    const width = 64
    const height = 48
    const rgb = await renderLocally({ runtime, module, width, height })
    const pixel = (x: number, y: number): number[] => [...rgb.subarray((y * width + x) * 3, (y * width + x) * 3 + 3)]
    const [r, g, b] = pixel(2, 1)
    assert.ok(b! > r! && b! > 150 && g! > 100, `top-left is sky blue, got ${pixel(2, 1)}`)
    assert.ok(new Set(Array.from({ length: width }, (_, x) => pixel(x, height - 1).join())).size > 4, 'checkered ground')
    assert.deepEqual(decodePng(encodePng({ width, height, rgb })).rgb, rgb)
  })

  it('exits 2 with a message on stderr for bad arguments', async () => {
    const cases = [
      renderTileArgs(64, 64, { x: 0, y: 0, w: 64, h: 64 }).slice(0, -2), // no --out
      renderTileArgs(64, 64, { x: 32, y: 0, w: 64, h: 64 }), // tile outside the image
      ['render', '--width', 'wide', '--height', '8'],
      ['render', '--color', 'red'],
      ['render'],
    ]
    for (const [i, args] of cases.entries()) {
      const taskDir = join(base, `bad-${i}`)
      await mkdir(join(taskDir, 'root'), { recursive: true })
      const result = await runtime.run({
        module,
        args,
        env: {},
        rootDir: join(taskDir, 'root'),
        stdoutPath: join(taskDir, 'stdout'),
        stderrPath: join(taskDir, 'stderr'),
        maxMemoryBytes: 16 << 20,
        timeoutMs: 60_000,
        maxOutputBytes: 1 << 20,
      })
      assert.equal(result.exitCode, 2, args.join(' '))
      assert.match(await readFile(join(taskDir, 'stderr'), 'utf8'), /^render: .+\nusage: render --width/, args.join(' '))
    }
  })

  it('exits 1 when it cannot write its output, and renderLocally reports a failing tile as a failed task', async () => {
    const taskDir = join(base, 'no-out')
    await mkdir(join(taskDir, 'root'), { recursive: true })
    const result = await runtime.run({
      module,
      args: renderTileArgs(8, 8, { x: 0, y: 0, w: 8, h: 8 }, '/missing/tile.rgb'),
      env: {},
      rootDir: join(taskDir, 'root'),
      stdoutPath: join(taskDir, 'stdout'),
      stderrPath: join(taskDir, 'stderr'),
      maxMemoryBytes: 16 << 20,
      timeoutMs: 60_000,
      maxOutputBytes: 1 << 20,
    })
    assert.equal(result.exitCode, 1)
    assert.match(await readFile(join(taskDir, 'stderr'), 'utf8'), /cannot write \/missing\/tile.rgb: WASI errno 44/)

    // the workload refuses images wider than 16384 pixels
    await assert.rejects(renderLocally({ runtime, module, width: 16_385, height: 1 }), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_JOB_TASK_FAILED'))
      assert.match(error.message, /exited with code 2: render: the image may be at most 16384 pixels a side/)
      return true
    })
  })
})
