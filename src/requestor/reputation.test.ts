import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { openStore } from '../store/store.ts'
import { createReputationBook, type ResultOutcome } from './reputation.ts'
import { seededRandom } from '../seeded-random.ts'

const alice = '0xAaAa000000000000000000000000000000000001'
const bob = '0xbbbb000000000000000000000000000000000002'

function recordMany(book: ReturnType<typeof createReputationBook>, provider: string, outcome: ResultOutcome, count: number): void {
  for (let i = 0; i < count; i++) book.record(provider, outcome)
}


test('the record, the run of valid results and an exclusion survive closing and reopening the store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-reputation-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'node.db')
  let clock = 1_000
  const first = openStore({ path })
  const book = createReputationBook(first, { now: () => clock })
  recordMany(book, alice, 'valid', 12)
  book.record(alice, 'failed')
  book.record(alice, 'timeout')
  book.record(alice, 'unchecked')
  clock = 2_000
  book.record(bob, 'invalid')
  book.record(bob, 'invalid')
  const aliceBefore = book.get(alice)
  first.close()

  const second = openStore({ path })
  after(() => second.close())
  const reopened = createReputationBook(second, { now: () => clock })
  // Addresses are looked up whatever their case.
  assert.deepEqual(reopened.get(alice.toLowerCase()), aliceBefore)
  assert.deepEqual(
    { valid: aliceBefore?.valid, failed: aliceBefore?.failed, timeouts: aliceBefore?.timeouts, unchecked: aliceBefore?.unchecked, consecutiveValid: aliceBefore?.consecutiveValid, lastSeenMs: aliceBefore?.lastSeenMs },
    { valid: 12, failed: 1, timeouts: 1, unchecked: 1, consecutiveValid: 12, lastSeenMs: 1_000 },
  )
  assert.equal(reopened.checkProbability(alice), 1 / 12)
  assert.equal(reopened.excluded(bob), true)
  assert.match(reopened.get(bob)!.excludedReason!, /2 invalid results among its last 2 checked/)
  assert.deepEqual(reopened.list().map((r) => r.provider), [alice.toLowerCase(), bob])
})

test('the check probability is 1 until ten valid results, then falls as 1/n to a floor, and an invalid result resets it', () => {
  const book = createReputationBook(openStore({ path: ':memory:' }))
  assert.equal(book.checkProbability(alice), 1, 'an unknown provider is always checked')
  recordMany(book, alice, 'valid', 9)
  assert.equal(book.checkProbability(alice), 1)
  book.record(alice, 'valid')
  assert.equal(book.checkProbability(alice), 0.1)
  recordMany(book, alice, 'valid', 5)
  assert.equal(book.checkProbability(alice), 1 / 15)
  // Failures and unchecked results are no evidence about correctness: they leave the probability alone.
  book.record(alice, 'failed')
  book.record(alice, 'timeout')
  book.record(alice, 'unchecked')
  assert.equal(book.checkProbability(alice), 1 / 15)
  recordMany(book, alice, 'valid', 100)
  assert.equal(book.checkProbability(alice), 0.05, 'never below the floor')
  book.record(alice, 'invalid')
  assert.equal(book.checkProbability(alice), 1)
  assert.equal(book.get(alice)?.consecutiveValid, 0)
  assert.equal(book.excluded(alice), false, 'one wrong result among many is not yet a pattern')

  const custom = createReputationBook(openStore({ path: ':memory:' }), { trustAfter: 2, minCheckProbability: 0.25 })
  recordMany(custom, bob, 'valid', 2)
  assert.equal(custom.checkProbability(bob), 0.5)
  recordMany(custom, bob, 'valid', 10)
  assert.equal(custom.checkProbability(bob), 0.25)
})

test('shouldCheck draws from the injected random source against the check probability', () => {
  const book = createReputationBook(openStore({ path: ':memory:' }), { random: seededRandom(7) })
  // Unknown: every draw says check.
  assert.equal(Array.from({ length: 50 }, () => book.shouldCheck(alice)).every(Boolean), true)
  recordMany(book, alice, 'valid', 200)
  const draws = Array.from({ length: 2000 }, () => book.shouldCheck(alice))
  const again = createReputationBook(openStore({ path: ':memory:' }), { random: seededRandom(7) })
  recordMany(again, alice, 'valid', 200)
  Array.from({ length: 50 }, () => again.shouldCheck(bob))
  assert.deepEqual(Array.from({ length: 2000 }, () => again.shouldCheck(alice)), draws, 'the same seed gives the same decisions')
  const checked = draws.filter(Boolean).length
  // At the 5% floor, 2000 draws give about 100 checks.
  assert.ok(checked > 60 && checked < 140, `${checked} of 2000 checked`)
})

test('two invalid results within the window exclude a provider; spaced out ones are caught by the invalid rate', () => {
  let clock = 0
  const book = createReputationBook(openStore({ path: ':memory:' }), { now: () => clock })
  book.record(alice, 'invalid')
  recordMany(book, alice, 'valid', 25)
  book.record(alice, 'invalid')
  // 25 valid results in between push the first one out of the last 20; 2 of 27 is above 5%.
  assert.equal(book.excluded(alice), true)
  assert.match(book.get(alice)!.excludedReason!, /2 of its 27 checked results were invalid/)

  const lenient = createReputationBook(openStore({ path: ':memory:' }), { exclusion: { maxInvalidRate: 0.5 } })
  lenient.record(bob, 'invalid')
  recordMany(lenient, bob, 'valid', 25)
  lenient.record(bob, 'invalid')
  assert.equal(lenient.excluded(bob), false)
  lenient.record(bob, 'invalid')
  assert.equal(lenient.excluded(bob), true, 'the second wrong result within the window')

  // Failures never exclude.
  const flaky = createReputationBook(openStore({ path: ':memory:' }))
  recordMany(flaky, alice, 'failed', 30)
  recordMany(flaky, alice, 'timeout', 30)
  assert.equal(flaky.excluded(alice), false)

  // A timed exclusion lapses, and a pardon lifts one by hand.
  const timed = createReputationBook(openStore({ path: ':memory:' }), { now: () => clock, exclusion: { forMs: 60_000 } })
  recordMany(timed, alice, 'invalid', 2)
  assert.equal(timed.excluded(alice), true)
  assert.equal(timed.checkProbability(alice), 1)
  clock = 60_000
  assert.equal(timed.excluded(alice), false)
  timed.record(alice, 'invalid')
  assert.equal(timed.excluded(alice), true, 'back from a lapsed exclusion, a wrong result within the window bans it again')
  book.pardon(alice)
  assert.equal(book.excluded(alice), false)
  assert.equal(book.get(alice)?.invalid, 2, 'a pardon keeps the counts')
  book.exclude(bob, 'operator ban')
  assert.equal(book.excluded(bob), true)
  assert.equal(book.get(bob)?.excludedReason, 'operator ban')
})

test('scores rank a proven provider above an unknown one, above a flaky one, above one caught cheating, above an excluded one', () => {
  const book = createReputationBook(openStore({ path: ':memory:' }))
  const [proven, unknown, flaky, caught, excluded] = ['0x01', '0x02', '0x03', '0x04', '0x05']
  recordMany(book, proven!, 'valid', 20)
  // More tasks failed than delivered.
  recordMany(book, flaky!, 'valid', 5)
  recordMany(book, flaky!, 'failed', 8)
  recordMany(book, caught!, 'valid', 10)
  book.record(caught!, 'invalid')
  recordMany(book, excluded!, 'valid', 50)
  recordMany(book, excluded!, 'invalid', 2)
  const scores = [proven, unknown, flaky, caught, excluded].map((p) => book.score(p!))
  assert.equal(scores[1], 0.5)
  assert.equal(scores[4], 0)
  assert.deepEqual([...scores].sort((a, b) => b - a), scores)
  assert.ok(scores[0]! > 0.9 && scores[2]! < 0.5 && scores[3]! < scores[2]!, scores.join(', '))
  assert.equal(book.get(proven!)?.score, scores[0])
})

test('options out of range are refused with the option named', () => {
  const store = openStore({ path: ':memory:' })
  assert.throws(() => createReputationBook(store, { minCheckProbability: 1.5 }), (e) => isHearthError(e, 'HEARTH_ERR_CONFIG_INVALID') && /minCheckProbability/.test(e.message))
  assert.throws(() => createReputationBook(store, { exclusion: { window: 0 } }), (e) => isHearthError(e, 'HEARTH_ERR_CONFIG_INVALID') && /exclusion.window/.test(e.message))
})
