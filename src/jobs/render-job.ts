/**
 * The `render` job kind: an image split into tiles, one task per tile, run by the built-in WASI ray tracer
 * (workloads/render), and stitched back into one picture.
 */
import { HearthError } from '../errors.ts'
import type { JobOutcome, JobSpec } from '../requestor/requestor.ts'
import { mergeTiles, renderTileArgs, renderTileMemoryBytes, splitIntoTiles, type Tile } from './render-tiles.ts'

export const tileOutputPath = '/out/tile.rgb'

export interface RenderJobInit {
  width: number
  height: number
  tiles: number
  wasm: Uint8Array
  providers: number
  maxPricePerTaskWei: bigint
}

export function renderJob(init: RenderJobInit): { spec: JobSpec; tiles: Tile[] } {
  const tiles = splitIntoTiles(init.width, init.height, init.tiles)
  const spec: JobSpec = {
    name: `render ${init.width}x${init.height}`,
    runtime: 'wasi',
    package: init.wasm,
    tasks: tiles.map((tile) => ({
      // The request carries argv after the program's name.
      args: renderTileArgs(init.width, init.height, tile, tileOutputPath).slice(1),
      env: {},
      inputs: [],
      outputs: [tileOutputPath],
    })),
    providers: init.providers,
    maxPricePerTaskWei: init.maxPricePerTaskWei,
    timeoutMs: 60_000,
    maxMemoryBytes: Math.max(...tiles.map(renderTileMemoryBytes)),
    maxOutputBytes: 64 * 1024 * 1024,
  }
  return { spec, tiles }
}

/** Stitches the tiles of a finished job; every tile must be there. */
export function assembleRender(width: number, height: number, tiles: Tile[], outcome: JobOutcome): Uint8Array {
  return mergeTiles(
    width,
    height,
    tiles.map((tile) => {
      const result = outcome.results[tile.index]
      const rgb = result?.outputs.find((o) => o.path === tileOutputPath)?.data
      if (result === undefined || rgb === undefined || result.exitCode !== 0) {
        throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `tile ${tile.index} has no image`, {
          details: { exitCode: result?.exitCode, stderr: result === undefined ? undefined : Buffer.from(result.stderr).toString('utf8') },
        })
      }
      return { ...tile, rgb }
    }),
  )
}
