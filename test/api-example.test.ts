/** The README's API example runs as it is and prints the counts of its three text files. */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

test('examples/api/wordcount.ts runs a job through the requestor API and sums its results', () => {
  const script = fileURLToPath(new URL('../examples/api/wordcount.ts', import.meta.url))
  const run = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 120_000 })
  assert.equal(run.status, 0, run.stderr)
  assert.equal((run.stdout.match(/^task \d done by /gm) ?? []).length, 3, run.stdout)
  // "the" is the most frequent word of the three example texts, counted across all three tasks' outputs
  assert.match(run.stdout, /^most frequent: the \d+, /m)
  assert.match(run.stdout, /^spent [1-9]\d* wei; checks \d+, rejected 0$/m)
})
