/**
 * Emits src/ as JavaScript and type declarations into dist/ (tsconfig.build.json: everything but the tests and their
 * helpers), copies beside it the files that the emitted code reads relative to itself (the .mjs workers), and writes
 * the stamp that bin/hearth.js compares with src/ before it runs dist/ rather than the sources (bin/build-stamp.js).
 * Skipped when the stamp matches src/. `npm run build` calls this after the contracts and workloads.
 *
 * The new tree is built aside and swapped in whole, and its stamp is the fingerprint taken before compiling: a file
 * edited during the build leaves the new dist/ stale, and a process starting meanwhile runs the sources.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readStamp, sourceFingerprint, stampPath } from '../bin/build-stamp.js'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))
export const distDir = join(repoRoot, 'dist')

/** Builds dist/ unless it is current; returns whether it compiled. Throws when the compiler fails. */
export function buildJs(): boolean {
  const fingerprint = sourceFingerprint(repoRoot)
  if (fingerprint === undefined) throw new Error(`hearth build: no src/ under ${repoRoot}`)
  if (readStamp(repoRoot)?.fingerprint === fingerprint && existsSync(join(distDir, 'cli', 'main.js'))) {
    console.log('hearth build: dist/ is up to date')
    return false
  }
  let tsc: string
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  } catch {
    // Installed without devDependencies: no compiler, so no dist/; bin/hearth.js runs the sources through tsx.
    console.log('hearth build: typescript is not installed, so src/ is not compiled to dist/ (hearth runs it through tsx)')
    return false
  }
  const started = performance.now()
  const staging = join(repoRoot, `dist.${process.pid}.tmp`)
  rmSync(staging, { recursive: true, force: true })
  try {
    const run = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', staging], { cwd: repoRoot, stdio: 'inherit' })
    if (run.status !== 0) throw new Error(`hearth build: tsc -p tsconfig.build.json failed (${run.signal ?? `exit code ${run.status}`})`)
    const copied = copyAssets(join(repoRoot, 'src'), staging)
    writeFileSync(join(staging, relative('dist', stampPath)), `${JSON.stringify({ fingerprint, builtAt: new Date().toISOString() })}\n`)
    swapIn(staging)
    console.log(`hearth build: src/ -> dist/ (JavaScript, declarations, ${copied} assets) in ${Math.round(performance.now() - started)} ms`)
    return true
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

/**
 * Copies the files beside the sources that are not TypeScript (the .mjs workers that exec/ starts by URL) into the
 * emitted tree, for every folder that was emitted; test data stays behind. Returns how many it copied.
 */
function copyAssets(from: string, to: string): number {
  let copied = 0
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name)
    const target = join(to, entry.name)
    if (entry.isDirectory()) {
      if (entry.name !== 'testdata' && existsSync(target)) copied += copyAssets(source, target)
    } else if (!entry.name.endsWith('.ts')) {
      mkdirSync(dirname(target), { recursive: true })
      copyFileSync(source, target)
      copied++
    }
  }
  return copied
}

/** Replaces dist/ with `staging` by two renames, so that no reader finds it half written. */
function swapIn(staging: string): void {
  const old = join(repoRoot, `dist.${process.pid}.old`)
  if (existsSync(distDir)) renameSync(distDir, old)
  try {
    renameSync(staging, distDir)
  } finally {
    rmSync(old, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) buildJs()
