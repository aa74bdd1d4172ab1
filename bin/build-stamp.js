// @ts-check
// Whether dist/ (the JavaScript that `npm run build` emits from src/) is current, so that bin/hearth.js runs it rather
// than the TypeScript sources through tsx. Plain JavaScript: it runs before any loader is registered.
//
// The build writes dist/.build-stamp holding a fingerprint of its inputs: the path, size and modification time of
// every file under src/ except *.test.ts, and of the TypeScript configs and the build script. Any edit, new, deleted
// or renamed file, checkout or copy-over changes it, whichever way the clock moved; so a stale dist/ is never run.
// Computing it is a walk of src/ with one stat per file: a few milliseconds (bench/start.ts measures the whole start).
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

/** The stamp's path, relative to the package root. */
export const stampPath = 'dist/.build-stamp'

/** Files outside src/ whose changes make dist/ stale: they decide what the build emits. */
const otherInputs = ['tsconfig.json', 'tsconfig.build.json', 'scripts/build-js.ts']

/**
 * The fingerprint of the build's inputs under `root` (the package root), or undefined when `root` has no src/ (an
 * installed package ships dist/ only).
 * @param {string} root
 * @returns {string | undefined}
 */
export function sourceFingerprint(root) {
  const hash = createHash('sha256')
  const add = (/** @type {string} */ relative) => {
    const { size, mtimeMs } = statSync(join(root, relative))
    hash.update(`${relative}\0${size}\0${mtimeMs}\n`)
  }
  const walk = (/** @type {string} */ relative) => {
    const entries = readdirSync(join(root, relative), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const entry of entries) {
      const path = `${relative}/${entry.name}`
      if (entry.isDirectory()) walk(path)
      else if (!entry.name.endsWith('.test.ts')) add(path)
    }
  }
  try {
    walk('src')
  } catch (error) {
    if (/** @type {NodeJS.ErrnoException} */ (error).code === 'ENOENT' && !hasSources(root)) return undefined
    throw error
  }
  for (const input of otherInputs) {
    try {
      add(input)
    } catch {
      hash.update(`${input}\0missing\n`)
    }
  }
  return hash.digest('hex')
}

/** @param {string} root */
function hasSources(root) {
  try {
    return statSync(join(root, 'src')).isDirectory()
  } catch {
    return false
  }
}

/**
 * What the last build recorded, or undefined when there is no (readable) stamp.
 * @param {string} root
 * @returns {{ fingerprint: string } | undefined}
 */
export function readStamp(root) {
  try {
    const stamp = JSON.parse(readFileSync(join(root, stampPath), 'utf8'))
    return typeof stamp?.fingerprint === 'string' ? stamp : undefined
  } catch {
    return undefined
  }
}

/**
 * Which code `bin/hearth.js` should run: 'dist' when the build is current (or when there are no sources: an installed
 * package), 'src' otherwise. HEARTH_FROM_SOURCE=1 forces 'src' (bench/start.ts measures both paths).
 * @param {string} root
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {'dist' | 'src'}
 */
export function pickEntry(root, env = process.env) {
  if (env['HEARTH_FROM_SOURCE'] === '1' && hasSources(root)) return 'src'
  const stamp = readStamp(root)
  if (stamp === undefined) return hasSources(root) ? 'src' : 'dist'
  try {
    const fingerprint = sourceFingerprint(root)
    return fingerprint === undefined || fingerprint === stamp.fingerprint ? 'dist' : 'src'
  } catch {
    return 'src'
  }
}
