/**
 * `npm run bench`: every capability's benchmark, one after another, each in its own process so that none inherits
 * another's warm caches or leftover load. `npm run bench -- market` runs only the benchmarks whose name contains
 * "market"; `--json` is passed on to each.
 */
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('.', import.meta.url))
const args = process.argv.slice(2)
const filters = args.filter((a) => !a.startsWith('--'))
const passOn = args.filter((a) => a.startsWith('--'))
const benches = readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && f !== 'index.ts')
  .filter((f) => filters.length === 0 || filters.some((name) => f.includes(name)))
  .sort()

let failed = 0
for (const file of benches) {
  if (!passOn.includes('--json')) console.log(`\n== ${file.replace(/\.ts$/, '')}`)
  const run = spawnSync(process.execPath, ['--import', 'tsx', `${dir}${file}`, ...passOn], { stdio: 'inherit' })
  if (run.status !== 0) failed++
}
process.exitCode = failed === 0 ? 0 : 1
