/**
 * The `render` job's geometry: split an image into tiles, merge rendered tiles back, and render locally through the
 * built-in `render` WASI workload (the reference image for pixel-identical checks and the benchmark baseline).
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HearthError } from '../errors.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'

export interface Tile {
  index: number
  x: number
  y: number
  w: number
  h: number
}

export interface RenderedTile {
  x: number
  y: number
  w: number
  h: number
  /** w * h * 3 bytes of RGB8 rows. */
  rgb: Uint8Array
}

/** Where the render workload writes its tile, as the guest sees it. */
export const renderTileGuestPath = '/out/tile.rgb'

/**
 * Splits width x height into exactly `count` tiles that cover it without overlap, as near to square as the count
 * allows: rows of tiles, the row count chosen for square tiles, the count spread over the rows (16 on a square
 * image is 4x4; 7 is rows of 3, 2 and 2). Tiles are numbered row by row.
 */
export function splitIntoTiles(width: number, height: number, count: number): Tile[] {
  for (const [name, value] of [['width', width], ['height', height], ['count', count]] as const) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new HearthError('HEARTH_ERR_JOB_INVALID', `${name} must be a positive integer, got ${value}`)
    }
  }
  if (count > width * height) {
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `cannot split a ${width}x${height} image into ${count} tiles of at least one pixel`)
  }
  // Square tiles of area A: rows = height / sqrt(A) with A = width * height / count.
  let rows = Math.min(count, height, Math.max(1, Math.round(Math.sqrt((count * height) / width))))
  while (Math.ceil(count / rows) > width) rows++
  const tiles: Tile[] = []
  for (let row = 0; row < rows; row++) {
    const y = cut(height, rows, row)
    const h = cut(height, rows, row + 1) - y
    const columns = Math.floor(count / rows) + (row < count % rows ? 1 : 0)
    for (let column = 0; column < columns; column++) {
      const x = cut(width, columns, column)
      tiles.push({ index: tiles.length, x, y, w: cut(width, columns, column + 1) - x, h })
    }
  }
  return tiles
}

/** Start of part `i` of `parts` near-equal parts of `length`. */
function cut(length: number, parts: number, i: number): number {
  return Math.floor((i * length) / parts)
}

/** Assembles tiles into one width x height RGB8 image; they must cover it exactly once. */
export function mergeTiles(width: number, height: number, tiles: readonly RenderedTile[]): Uint8Array {
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1) {
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `an image must be at least 1x1 pixels, got ${width}x${height}`)
  }
  const image = new Uint8Array(width * height * 3)
  const covered = new Uint8Array(width * height)
  for (const tile of tiles) {
    const { x, y, w, h, rgb } = tile
    const where = `tile ${w}x${h} at ${x},${y}`
    if (![x, y, w, h].every(Number.isSafeInteger) || x < 0 || y < 0 || w < 1 || h < 1 || x + w > width || y + h > height) {
      throw new HearthError('HEARTH_ERR_JOB_INVALID', `${where} does not lie inside the ${width}x${height} image`)
    }
    if (rgb.length !== w * h * 3) {
      throw new HearthError('HEARTH_ERR_JOB_INVALID', `${where} holds ${rgb.length} bytes, not ${w * h * 3}`)
    }
    for (let row = 0; row < h; row++) {
      const start = (y + row) * width + x
      if (covered.subarray(start, start + w).some((seen) => seen !== 0)) {
        throw new HearthError('HEARTH_ERR_JOB_INVALID', `${where} overlaps another tile`)
      }
      covered.fill(1, start, start + w)
      image.set(rgb.subarray(row * w * 3, (row + 1) * w * 3), start * 3)
    }
  }
  const gap = covered.indexOf(0)
  if (gap >= 0) {
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `the tiles leave pixel ${gap % width},${Math.floor(gap / width)} uncovered`)
  }
  return image
}

/** argv for the render workload to render `tile` of a width x height image. */
export function renderTileArgs(width: number, height: number, tile: Omit<Tile, 'index'>, outPath = renderTileGuestPath): string[] {
  return ['render', '--width', `${width}`, '--height', `${height}`, '--x', `${tile.x}`, '--y', `${tile.y}`, '--w', `${tile.w}`, '--h', `${tile.h}`, '--out', outPath]
}

/** Memory a render run needs: its output buffer plus headroom for the program itself. */
export function renderTileMemoryBytes(tile: Pick<Tile, 'w' | 'h'>): number {
  return tile.w * tile.h * 3 + (16 << 20)
}

export interface RenderLocallyOptions {
  runtime: WasiRuntime
  width: number
  height: number
  /** Render as this many tiles (concurrently, as many at once as the runtime's workers) and merge; default 1. */
  tiles?: number
  /** The render module; default: the built workload. */
  module?: Uint8Array
  timeoutMs?: number
  signal?: AbortSignal
}

/** Renders the whole image in this process through the render workload and returns its RGB8 bytes. */
export async function renderLocally(options: RenderLocallyOptions): Promise<Uint8Array> {
  const { runtime, width, height, signal } = options
  const module = options.module ?? (await loadBuiltinWorkload('render'))
  const tiles = splitIntoTiles(width, height, options.tiles ?? 1)
  const workDir = await mkdtemp(join(tmpdir(), 'hearth-render-'))
  try {
    const rendered = await Promise.all(
      tiles.map(async (tile): Promise<RenderedTile> => {
        const taskDir = join(workDir, `tile-${tile.index}`)
        const rootDir = join(taskDir, 'root')
        await mkdir(join(rootDir, 'out'), { recursive: true })
        const stderrPath = join(taskDir, 'stderr')
        const result = await runtime.run(
          {
            module,
            args: renderTileArgs(width, height, tile),
            env: {},
            rootDir,
            stdoutPath: join(taskDir, 'stdout'),
            stderrPath,
            maxMemoryBytes: renderTileMemoryBytes(tile),
            timeoutMs: options.timeoutMs ?? 120_000,
            maxOutputBytes: tile.w * tile.h * 3 + 4096,
          },
          signal === undefined ? {} : { signal },
        )
        if (result.exitCode !== 0) {
          const stderr = (await readFile(stderrPath, 'utf8')).trim()
          throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `render tile ${tile.index} exited with code ${result.exitCode}: ${stderr}`, {
            details: { tile, exitCode: result.exitCode },
          })
        }
        const rgb = new Uint8Array(await readFile(join(rootDir, renderTileGuestPath)))
        return { x: tile.x, y: tile.y, w: tile.w, h: tile.h, rgb }
      }),
    )
    return mergeTiles(width, height, rendered)
  } finally {
    await rm(workDir, { recursive: true, force: true })
  }
}
