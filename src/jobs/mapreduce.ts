/**
 * The `mapreduce` job kind. The requestor splits the input files into chunks (cut at whitespace, so no word or line is
 * split), runs the mapper once per chunk, shuffles (partition r of every mapper goes to reducer r), runs R reducers,
 * and merges their outputs into one file sorted by key (the text before the first tab) in byte order.
 *
 * The contract a mapper and reducer follow (the built-in wordcount does):
 * - mapper: reads its chunk at `{input}` and writes `{partitions}` files `{out}0` … `{out}<R-1>`, putting each key in
 *   the same partition whatever chunk it came from (a stable hash of the key mod R);
 * - reducer: reads the files `{inputs}` (one per mapper that had anything for it) and writes `{out}`: lines
 *   `key<TAB>value` sorted by key.
 */
import { readFile } from 'node:fs/promises'
import type { TaskSpec } from '../requestor/task-runner.ts'
import type { MapReduceJob } from './job-file.ts'
import { checkPlaceholders, fillArgs, outputOf, programPath, requireSuccess, runPhase, type JobPlan } from './plan-support.ts'

/** The built-in wordcount's arguments, the default when the job file gives none. */
export const defaultMapArgs = ['--partitions', '{partitions}', '--out-prefix', '{out}', '{input}']
export const defaultReduceArgs = ['--reduce', '--out', '{out}', '{inputs}']

const chunkPath = '/in/chunk.txt'
const partPrefix = '/out/part-'
const reduceOutput = '/out/result.tsv'

function isSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d)
}

/**
 * Where to end a chunk that starts at `start` and may hold `room` bytes: after the last newline in its second half,
 * else after the last whitespace there; -1 when neither is there.
 */
function cutBefore(data: Uint8Array, start: number, room: number): number {
  const end = start + room
  const floor = start + Math.floor(room / 2)
  for (let i = end - 1; i >= floor; i--) if (data[i] === 0x0a) return i + 1
  for (let i = end - 1; i >= floor; i--) if (isSpace(data[i]!)) return i + 1
  return -1
}

/** After the first whitespace at or after `from`, or the end of the data: for a line or word longer than a chunk. */
function cutAfter(data: Uint8Array, from: number): number {
  for (let i = from; i < data.length; i++) if (isSpace(data[i]!)) return i + 1
  return data.length
}

/**
 * Splits files into chunks of about `chunkBytes`. A chunk ends at whitespace (a newline where there is one), so every
 * word and, where lines are shorter than half a chunk, every line is whole in one chunk; a chunk may hold the ends and
 * starts of several files, joined by a newline where a file does not end with whitespace. A chunk exceeds
 * `chunkBytes` only to keep an over-long word whole.
 */
export function splitIntoChunks(files: readonly Uint8Array[], chunkBytes: number): Uint8Array[] {
  const chunks: Uint8Array[] = []
  let pieces: Uint8Array[] = []
  let size = 0
  const flush = (): void => {
    if (size === 0) return
    chunks.push(Buffer.concat(pieces, size))
    pieces = []
    size = 0
  }
  const add = (piece: Uint8Array): void => {
    pieces.push(piece)
    size += piece.length
  }
  for (const data of files) {
    if (data.length === 0) continue
    // Words of two files must not run together in one chunk.
    if (size > 0 && !isSpace(pieces.at(-1)!.at(-1)!)) add(new Uint8Array([0x0a]))
    let start = 0
    while (start < data.length) {
      const room = chunkBytes - size
      if (data.length - start <= room) {
        add(data.subarray(start))
        break
      }
      let cut = room > 0 ? cutBefore(data, start, room) : -1
      if (cut < 0 && size > 0) {
        // No good place in what is left of this chunk: start a fresh one.
        flush()
        continue
      }
      if (cut < 0) cut = cutAfter(data, start + room)
      add(data.subarray(start, cut))
      flush()
      start = cut
    }
  }
  flush()
  return chunks
}

/** The text before the first tab of a line (the whole line when it has none), as a byte-order comparable string. */
function keyOf(line: string): string {
  const tab = line.indexOf('\t')
  return tab < 0 ? line : line.slice(0, tab)
}

/**
 * Concatenates the reducers' outputs and sorts the lines by key in byte order (then by the whole line, so that the
 * result does not depend on which reducer held what). Lines are handled as latin1 strings, one char per byte, so that
 * string order is byte order.
 */
export function mergeSortedOutputs(outputs: readonly Uint8Array[]): Uint8Array {
  const lines: string[] = []
  for (const output of outputs) {
    const text = Buffer.from(output.buffer, output.byteOffset, output.byteLength).toString('latin1')
    for (const line of text.split('\n')) if (line !== '') lines.push(line)
  }
  const keyed = lines.map((line) => ({ key: keyOf(line), line }))
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.line < b.line ? -1 : a.line > b.line ? 1 : 0))
  return Buffer.from(keyed.map(({ line }) => `${line}\n`).join(''), 'latin1')
}

export function planMapReduce(job: MapReduceJob): JobPlan {
  const mapArgs = job.map.args ?? defaultMapArgs
  const reduceArgs = job.reduce.args ?? defaultReduceArgs
  checkPlaceholders('map.args', mapArgs, ['input', 'partitions', 'out'])
  checkPlaceholders('reduce.args', reduceArgs, ['inputs', 'partition', 'partitions', 'out'])
  const at = (guestPath: string): string => programPath(job.runtime, guestPath)
  const partitions = job.reducers
  return {
    kind: 'mapreduce',
    name: job.name,
    estimatedTasks: Math.max(1, Math.ceil(job.inputBytes / job.chunkBytes)) + partitions,
    async execute(runner, onProgress) {
      const files = await Promise.all(job.inputFiles.map(async (path) => new Uint8Array(await readFile(path))))
      const chunks = splitIntoChunks(files, job.chunkBytes)
      const mapPackage = job.mapPackagePath === undefined ? undefined : new Uint8Array(await readFile(job.mapPackagePath))
      const reducePackage = job.reducePackagePath === undefined ? undefined : new Uint8Array(await readFile(job.reducePackagePath))
      const partPaths = Array.from({ length: partitions }, (_, r) => `${partPrefix}${r}`)

      const mapTasks: TaskSpec[] = chunks.map((chunk) => ({
        args: fillArgs(mapArgs, { input: at(chunkPath), partitions: String(partitions), out: at(partPrefix) }),
        env: job.map.env,
        inputs: [{ path: chunkPath, data: chunk }],
        outputs: partPaths,
      }))
      const mapped = mapTasks.length === 0
        ? []
        : await runPhase(runner, mapTasks, { phase: 'map', phases: 2, ...(mapPackage === undefined ? {} : { package: mapPackage }) }, onProgress)
      mapped.forEach((outcome, index) => requireSuccess(outcome, `mapper ${index}`))

      // The shuffle: reducer r gets partition r of every mapper that wrote anything there.
      const reducers: { partition: number; task: TaskSpec }[] = []
      for (let r = 0; r < partitions; r++) {
        const inputs = mapped
          .map((outcome, m) => ({ path: `/in/part-${m}`, data: outputOf(outcome, partPaths[r]!) }))
          .filter((input) => input.data.length > 0)
        if (inputs.length === 0) continue
        reducers.push({
          partition: r,
          task: {
            args: fillArgs(reduceArgs, { inputs: inputs.map((input) => at(input.path)), partition: String(r), partitions: String(partitions), out: at(reduceOutput) }),
            env: job.reduce.env,
            inputs,
            outputs: [reduceOutput],
          },
        })
      }
      const reduced = reducers.length === 0
        ? []
        : await runPhase(runner, reducers.map((reducer) => reducer.task), { phase: 'reduce', phases: 2, ...(reducePackage === undefined ? {} : { package: reducePackage }) }, onProgress)
      reduced.forEach((outcome, index) => requireSuccess(outcome, `reducer ${reducers[index]!.partition}`))

      const merged = mergeSortedOutputs(reduced.map((outcome) => outputOf(outcome, reduceOutput)))
      let lines = 0
      for (const byte of merged) if (byte === 0x0a) lines++
      return {
        outputs: [{ path: job.output, data: merged }],
        summary: {
          kind: 'mapreduce',
          inputFiles: job.inputFiles.length,
          inputBytes: files.reduce((sum, file) => sum + file.length, 0),
          mapTasks: mapTasks.length,
          reduceTasks: reducers.length,
          shuffledBytes: reducers.reduce((sum, reducer) => sum + reducer.task.inputs.reduce((n, input) => n + input.data.length, 0), 0),
          outputLines: lines,
          outputBytes: merged.length,
        },
      }
    },
  }
}
