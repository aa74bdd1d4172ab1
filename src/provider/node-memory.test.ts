import assert from 'node:assert/strict'
import { test } from 'node:test'
import { runInNewContext } from 'node:vm'
import { createMemoryTrim, fullCollection, startMemoryTrim } from './node-memory.ts'

const MiB = 1024 * 1024

test('collects once two quiet looks follow growth, and not while busy or without growth', () => {
  // What the process shows at each look, 5 s apart: [CPU ms used since the previous look, RSS in MiB].
  const looks: [number, number][] = [
    [1_000, 100], // starting up: busy
    [0, 100], // quiet once
    [0, 100], // quiet twice, never collected: collect
    [0, 101], // quiet, grown 1 MiB: no
    [4_000, 150], // a job: busy
    [5_000, 160],
    [50, 160], // quiet (1% of a core) once after growth: not yet
    [50, 160], // quiet twice: collect
    [0, 110], // V8 gave pages back: the new low
    [0, 117], // grown 7 MiB over the low: no
    [0, 119], // grown 9 MiB: collect
    [0, 119],
  ]
  let state = { cpuMicros: 0, rssBytes: 100 * MiB, atMs: 0 }
  let collected = 0
  const trim = createMemoryTrim({ collect: () => collected++, sample: () => state })
  const decisions = looks.map(([cpuMs, rssMib]) => {
    state = { cpuMicros: state.cpuMicros + cpuMs * 1000, rssBytes: rssMib * MiB, atMs: state.atMs + 5_000 }
    return trim.check()
  })
  assert.deepEqual(decisions, [false, false, true, false, false, false, false, true, false, false, true, false])
  assert.equal(collected, 3)
  assert.equal(trim.collections, 3)
})

test('startMemoryTrim looks on a timer that keeps no process alive, until stopped', async () => {
  let collected = 0
  let looks = 0
  const trim = startMemoryTrim({
    checkEveryMs: 1,
    collect: () => collected++,
    sample: () => ({ cpuMicros: 0, rssBytes: 100 * MiB, atMs: 5_000 * looks++ }),
  })
  for (let waited = 0; waited < 1_000 && collected === 0; waited++) await new Promise((resolve) => setTimeout(resolve, 10))
  trim.stop()
  assert.equal(collected, 1, 'a quiet process is collected once, not again without growth')
  const after = looks
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(looks, after, 'no looks after stop')
})

test('fullCollection runs a collection without leaving a gc global behind', () => {
  const hadGc = typeof (globalThis as { gc?: unknown }).gc === 'function'
  const collect = fullCollection()
  collect()
  assert.equal(typeof (globalThis as { gc?: unknown }).gc === 'function', hadGc)
  // New contexts do not see it either.
  assert.equal(runInNewContext('typeof gc'), hadGc ? 'function' : 'undefined')
})
