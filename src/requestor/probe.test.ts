import assert from 'node:assert/strict'
import { test } from 'node:test'
import { judgeProbe } from './probe.ts'

const quiet = { emptyWallMs: 5, localWorkMs: 100, localScore: 500 }

test('a provider with the threads and speed it offers passes, with room for a busier machine than this one', () => {
  // Eight threads: eight runs at once take about as long as one. Speed as claimed, or up to three times slower.
  const honest = judgeProbe({ threads: 8, cpuScore: 500 }, { ...quiet, soloWallMs: 105, parallelWallMs: 125 })
  assert.equal(honest.overClaimed, undefined)
  assert.ok(honest.measuredThreads > 6, String(honest.measuredThreads))
  assert.equal(judgeProbe({ threads: 1, cpuScore: 500 }, { ...quiet, soloWallMs: 280, parallelWallMs: 280 }).overClaimed, undefined)
})

test('fewer threads than offered, or a slower machine, is over-claiming', () => {
  // Eight offered, one real: eight runs take eight times one.
  const oneThread = judgeProbe({ threads: 8, cpuScore: 500 }, { ...quiet, soloWallMs: 105, parallelWallMs: 805 })
  assert.match(oneThread.overClaimed ?? '', /offers 8 threads and ran 8 probes at once as if it had 1\.0/)
  // A score ten times the machine's.
  const slow = judgeProbe({ threads: 1, cpuScore: 5000 }, { ...quiet, soloWallMs: 105, parallelWallMs: 105 })
  assert.match(slow.overClaimed ?? '', /offers a CPU score of 5000 and worked as a machine of score 500 would/)
  // Both, reported together.
  assert.equal(judgeProbe({ threads: 4, cpuScore: 5000 }, { ...quiet, soloWallMs: 105, parallelWallMs: 405 }).overClaimed?.split('; ').length, 2)
})

test('the round trip\'s own cost is taken out, so a fast network does not pass for a fast machine', () => {
  // 95 ms of the 100 ms round trip is the trip: the work took 5 ms, as a machine of score 10,000 would.
  const verdict = judgeProbe({ threads: 1, cpuScore: 500 }, { emptyWallMs: 95, soloWallMs: 100, parallelWallMs: 100, localWorkMs: 100, localScore: 500 })
  assert.equal(verdict.measuredScore, 10_000)
})
