import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { createWrongResults } from './wrong-results.ts'

test('in text, exactly one whole number changes and the rest stays as it was', () => {
  const wrong = createWrongResults({ rate: 1, seed: 3 })
  const honest = 'apple\t12\nbanana\t7\ncherry\t130\n'
  for (let i = 0; i < 50; i++) {
    const changed = wrong.corrupt(Buffer.from(honest)).toString()
    assert.notEqual(changed, honest)
    const before = honest.trim().split('\n').map((line) => line.split('\t'))
    const after = changed.trim().split('\n').map((line) => line.split('\t'))
    assert.deepEqual(after.map(([word]) => word), before.map(([word]) => word))
    const diffs = after.map(([, count], j) => Number(count) - Number(before[j]![1]))
    assert.equal(diffs.filter((d) => d !== 0).length, 1)
    assert.ok(diffs.every((d) => d >= 0 && d <= 9))
  }
  // Integer parts before decimals: a tolerance comparison would miss a change in the last decimal.
  const score = wrong.corrupt(Buffer.from('0.8734\n')).toString()
  assert.match(score, /^[1-9]\.8734\n$/)
})

test('binary outputs lose a sixteenth of their bytes in one run; empty ones gain a line', () => {
  const wrong = createWrongResults({ rate: 1, seed: 5 })
  const pixels = Buffer.alloc(4800, 0x80)
  pixels[0] = 0 // a NUL: not text
  const changed = wrong.corrupt(pixels)
  assert.equal(changed.length, pixels.length)
  const differing = [...changed].map((b, i) => b !== pixels[i]).filter(Boolean).length
  assert.equal(differing, 300)
  assert.equal(pixels[1], 0x80, 'the input is left alone')
  assert.deepEqual(wrong.corrupt(new Uint8Array(0)), Buffer.from('1\n'))
  assert.notDeepEqual(wrong.corrupt(Uint8Array.of(7)), Buffer.of(7))
})

test('the rate decides how many tasks are struck, and a seed makes the choice repeatable', () => {
  const draws = (seed: number, rate: number) => {
    const wrong = createWrongResults({ rate, seed })
    return Array.from({ length: 1000 }, () => wrong.strikes())
  }
  assert.deepEqual(draws(11, 0.5), draws(11, 0.5))
  const struck = draws(11, 0.5).filter(Boolean).length
  assert.ok(struck > 430 && struck < 570, `${struck} of 1000`)
  assert.equal(draws(1, 1).every(Boolean), true)
  assert.equal(draws(1, 0).some(Boolean), false)
  assert.throws(() => createWrongResults({ rate: 2 }), (e) => isHearthError(e, 'HEARTH_ERR_CONFIG_INVALID'))
})
