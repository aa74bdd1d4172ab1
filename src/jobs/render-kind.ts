/**
 * The `render` job kind: an image split into pieces, one task each, merged into one PNG.
 * - wasi: the built-in ray tracer (workloads/render, the job's `package`) renders tiles (render-tiles.ts), so the merged
 *   image is pixel for pixel the image one process renders;
 * - native POV-Ray: the scene is rendered in bands of rows (`+SR`/`+ER`), each brought back as a binary PPM and its
 *   rows stitched in.
 * This is the one render pipeline: `hearth run` with a render job file, the demo and render-job.ts (the same tasks and
 * merge as one JobSpec, for callers of the engine's runJob) all plan and merge through it.
 */
import { readFile } from 'node:fs/promises'
import { HearthError } from '../errors.ts'
import type { TaskOutcome, TaskRunner, TaskSpec } from '../requestor/task-runner.ts'
import type { RenderJob } from './job-file.ts'
import { encodePng } from './png.ts'
import { mergeTiles, renderTileArgs, renderTileGuestPath, splitIntoTiles, type Tile } from './render-tiles.ts'
import { outputOf, requireSuccess, runPhase, type JobPlan, type JobProduct, type PlanProgress } from './plan-support.ts'

const scenePath = '/in/scene.pov'
const bandPath = '/out/part.ppm'

/** Splits `height` rows into `count` bands of near-equal height, 1-based and inclusive as POV-Ray counts them. */
export function splitIntoBands(height: number, count: number): { first: number; last: number }[] {
  const bands = Math.min(count, height)
  return Array.from({ length: bands }, (_, i) => ({ first: Math.floor((i * height) / bands) + 1, last: Math.floor(((i + 1) * height) / bands) }))
}

/** The raster of a binary PPM (P6, 8-bit samples). */
export function ppmRaster(bytes: Uint8Array): { width: number; height: number; rgb: Uint8Array } {
  const header = Buffer.from(bytes.subarray(0, 200)).toString('latin1')
  const match = /^P6\s+(?:#[^\n]*\n\s*)*(\d+)\s+(\d+)\s+(?:#[^\n]*\n\s*)*(\d+)\s/.exec(header)
  if (match === null || match[3] !== '255') {
    throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', 'a rendered band is not a binary PPM with 8-bit samples', { hint: 'POV-Ray writes one with +FP' })
  }
  const width = Number(match[1])
  const height = Number(match[2])
  const size = width * height * 3
  if (bytes.length < match[0].length + size) throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', 'a rendered band is cut short')
  return { width, height, rgb: bytes.subarray(match[0].length, match[0].length + size) }
}

/** The tasks of a tiled render by the built-in tracer, one per tile, in tile order. */
export function renderTileTasks(width: number, height: number, tiles: readonly Tile[]): TaskSpec[] {
  return tiles.map((tile) => ({
    // The runner puts the program's name first.
    args: renderTileArgs(width, height, tile, renderTileGuestPath).slice(1),
    env: {},
    inputs: [],
    outputs: [renderTileGuestPath],
  }))
}

/** Stitches the tiles' outcomes (by tile index) into one RGB8 image; every tile must have succeeded. */
export function mergeTileOutcomes(width: number, height: number, tiles: readonly Tile[], outcomes: readonly (TaskOutcome | undefined)[]): Uint8Array {
  return mergeTiles(width, height, tiles.map((tile) => {
    const outcome = outcomes[tile.index]
    if (outcome === undefined) throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `tile ${tile.index} has no result`)
    requireSuccess(outcome, `tile ${tile.index}`)
    return { ...tile, rgb: outputOf(outcome, renderTileGuestPath) }
  }))
}

async function renderWasi(job: RenderJob, runner: TaskRunner, onProgress?: (progress: PlanProgress) => void): Promise<Uint8Array> {
  const tiles = splitIntoTiles(job.width, job.height, job.tiles)
  const outcomes = await runPhase(runner, renderTileTasks(job.width, job.height, tiles), { phase: 'render', phases: 1 }, onProgress)
  return mergeTileOutcomes(job.width, job.height, tiles, outcomes)
}

async function renderPovray(job: RenderJob, runner: TaskRunner, onProgress?: (progress: PlanProgress) => void): Promise<Uint8Array> {
  const scene = new Uint8Array(await readFile(job.scenePath!))
  const bands = splitIntoBands(job.height, job.tiles)
  const tasks: TaskSpec[] = bands.map((band) => ({
    args: [`+I${scenePath.slice(1)}`, `+O${bandPath.slice(1)}`, '+FP', `+W${job.width}`, `+H${job.height}`, `+SR${band.first}`, `+ER${band.last}`, '-D', '-P'],
    env: {},
    inputs: [{ path: scenePath, data: scene }],
    outputs: [bandPath],
  }))
  const outcomes = await runPhase(runner, tasks, { phase: 'render', phases: 1 }, onProgress)
  const rowBytes = job.width * 3
  const rgb = new Uint8Array(rowBytes * job.height)
  bands.forEach((band, index) => {
    requireSuccess(outcomes[index]!, `band ${index} (rows ${band.first}-${band.last})`)
    const part = ppmRaster(outputOf(outcomes[index]!, bandPath))
    const rows = band.last - band.first + 1
    // A band may come back as just its rows or as the whole frame with only its rows drawn; take its rows either way.
    const offset = part.height === job.height ? (band.first - 1) * rowBytes : 0
    if (part.width !== job.width || (part.height !== job.height && part.height !== rows)) {
      throw new HearthError('HEARTH_ERR_JOB_TASK_FAILED', `band ${index} is ${part.width}x${part.height}, expected ${job.width} wide and ${rows} or ${job.height} rows`)
    }
    rgb.set(part.rgb.subarray(offset, offset + rows * rowBytes), (band.first - 1) * rowBytes)
  })
  return rgb
}

export function planRender(job: RenderJob): JobPlan {
  return {
    kind: 'render',
    name: job.name,
    estimatedTasks: job.runtime === 'native' ? Math.min(job.tiles, job.height) : job.tiles,
    async execute(runner, onProgress): Promise<JobProduct> {
      const rgb = job.runtime === 'native' ? await renderPovray(job, runner, onProgress) : await renderWasi(job, runner, onProgress)
      return {
        outputs: [{ path: job.output, data: encodePng({ width: job.width, height: job.height, rgb }) }],
        summary: { kind: 'render', width: job.width, height: job.height, pieces: job.runtime === 'native' ? Math.min(job.tiles, job.height) : job.tiles },
      }
    },
  }
}
