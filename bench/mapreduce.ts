/**
 * `node --import tsx bench/mapreduce.ts [--json] [--runs 5] [--workers 2]`: what the map-reduce plan costs against
 * counting the same words in one task.
 *
 * The text is the Markdown under node_modules (real English, about 2.6 MB). The baseline is the built-in wordcount
 * run once over all of it in the wasi runtime; the map-reduce is the `mapreduce` plan (256 KiB chunks, 3 reducers) on
 * the local runner with the same runtime: chunking, the mappers, the shuffle, the reducers and the final merge.
 * Medians of several runs, and their ratio (below 1 where the mappers' parallelism wins over the extra work).
 */
import { readdirSync, statSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { loadJobDefinition, type MapReduceJob } from '../src/jobs/job-file.ts'
import { planJob } from '../src/jobs/kinds.ts'
import { createLocalRunner } from '../src/requestor/local-runner.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '5' },
    workers: { type: 'string', default: '2' },
  },
})
const runs = Number(values.runs)
const workers = Number(values.workers)
const repoRoot = fileURLToPath(new URL('../', import.meta.url))

const median = (list: number[]): number => {
  const sorted = [...list].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function markdownFiles(): string[] {
  const found: string[] = []
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.isFile() && entry.name.endsWith('.md')) found.push(path)
    }
  }
  walk(join(repoRoot, 'node_modules'))
  return found.sort()
}

const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-mapreduce-'))
const runtime = createWasiRuntime({ maxWorkers: workers })
try {
  const sources = markdownFiles()
  await mkdir(join(dir, 'texts'))
  for (const [index, path] of sources.entries()) await copyFile(path, join(dir, 'texts', `${index}.md`))
  const bytes = sources.reduce((sum, path) => sum + statSync(path).size, 0)
  await writeFile(join(dir, 'job.json'), JSON.stringify({
    kind: 'mapreduce', name: 'bench', runtime: 'wasi', package: join(repoRoot, 'build', 'workloads', 'wordcount.wasm'),
    inputs: ['./texts/*.md'], chunkBytes: 256 * 1024, reducers: 3, output: 'counts.tsv',
  }))
  const job = loadJobDefinition(join(dir, 'job.json')) as MapReduceJob
  const runner = createLocalRunner({ runtime, package: await loadBuiltinWorkload('wordcount'), concurrency: workers, workDir: dir })
  // The baseline: one task over every file, through the same runner (so task directories cost alike).
  const inputs = await Promise.all(job.inputFiles.map(async (path, index) => ({ path: `/in/${index}.md`, data: new Uint8Array(await readFile(path)) })))
  const oneTask = { args: ['--out', '/out/counts.tsv', ...inputs.map((input) => input.path)], env: {}, inputs, outputs: ['/out/counts.tsv'] }

  const baselineMs: number[] = []
  const mapReduceMs: number[] = []
  let same = true
  for (let i = 0; i <= runs; i++) {
    let started = performance.now()
    const [single] = await runner.run([oneTask], { phase: 'count' })
    const singleMs = performance.now() - started
    started = performance.now()
    const product = await planJob(job).execute(runner)
    const planMs = performance.now() - started
    same &&= Buffer.from(product.outputs[0]!.data).equals(Buffer.from(single!.outputs[0]!.data))
    // The first round warms the module caches and is not counted.
    if (i === 0) continue
    baselineMs.push(singleMs)
    mapReduceMs.push(planMs)
  }
  const report = {
    runs,
    workers,
    inputFiles: job.inputFiles.length,
    inputBytes: bytes,
    oneTaskMs: Math.round(median(baselineMs)),
    mapReduceMs: Math.round(median(mapReduceMs)),
    ratio: Number((median(mapReduceMs) / median(baselineMs)).toFixed(2)),
    mapReduceMBps: Number((bytes / 1e6 / (median(mapReduceMs) / 1000)).toFixed(1)),
    identicalCounts: same,
  }
  if (values.json) {
    console.log(JSON.stringify(report))
  } else {
    console.log(`word count over ${report.inputFiles} Markdown files, ${(bytes / 1e6).toFixed(1)} MB (${runs} runs, medians, ${workers} wasi workers):`)
    console.log(`  one wordcount task (baseline):        ${report.oneTaskMs} ms`)
    console.log(`  mapreduce plan, 256 KiB chunks, R=3:  ${report.mapReduceMs} ms (${report.ratio}x the baseline, ${report.mapReduceMBps} MB/s)`)
    console.log(`  same counts: ${same}`)
  }
} finally {
  await runtime.close()
  await rm(dir, { recursive: true, force: true })
}
