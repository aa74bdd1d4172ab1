/**
 * The `render` job kind (render-kind.ts) as one JobSpec, for callers that run it on the engine directly
 * (`requestor.runJob`, tests and benchmarks): the same tile tasks and the same merge as a render job file's plan.
 */
import type { JobOutcome, JobSpec } from '../requestor/requestor.ts'
import { mergeTileOutcomes, renderTileTasks } from './render-kind.ts'
import { renderTileGuestPath, renderTileMemoryBytes, splitIntoTiles, type Tile } from './render-tiles.ts'

export const tileOutputPath = renderTileGuestPath

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
    tasks: renderTileTasks(init.width, init.height, tiles),
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
  return mergeTileOutcomes(width, height, tiles, outcome.results)
}
