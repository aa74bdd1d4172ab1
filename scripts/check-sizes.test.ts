import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import { findSizeProblems } from './check-sizes.ts'

const roots: string[] = []
after(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })))

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'hearth-sizes-'))
  roots.push(root)
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true })
    writeFileSync(join(root, path), text)
  }
  return root
}

/** A function of `lines` lines in all, its header and closing brace included. */
const fn = (name: string, lines: number): string => `export function ${name}(): number {\n${'  void 0\n'.repeat(lines - 3)}  return 1\n}\n`

test('this repository has no file or function over the limits beyond its allowances, and none grew', () => {
  assert.deepEqual(findSizeProblems(), [])
})

test('a long function, a nested one and a long file are reported; tests are not looked at', () => {
  const root = tree({
    'src/net/short.ts': fn('short', 120),
    'src/net/long.ts': fn('long', 121),
    'src/net/nested.ts': `export function outer(): () => number {\n  const inner = (): number => {\n${'    void 0\n'.repeat(118)}    return 1\n  }\n  return inner\n}\n`,
    'src/net/big.ts': Array.from({ length: 61 }, (_, i) => fn(`f${i}`, 10)).join(''),
    'src/net/big.test.ts': fn('longTest', 500),
  })
  const problems = findSizeProblems(root, {})
  assert.equal(problems.length, 4, problems.join('\n'))
  assert.match(problems.find((p) => p.startsWith('src/net/long.ts:long:'))!, /121 lines, over the 120 a function may have/)
  assert.ok(problems.some((p) => p.startsWith('src/net/nested.ts:outer:')))
  assert.ok(problems.some((p) => p.startsWith('src/net/nested.ts:inner: 121 lines')))
  assert.match(problems.find((p) => p.startsWith('src/net/big.ts:'))!, /610 lines, over the 600 a file may have/)
})

test('an allowance holds a function at its size: growing fails, and one cut below the limit must leave the list', () => {
  const root = tree({ 'src/net/long.ts': fn('long', 130) })
  assert.deepEqual(findSizeProblems(root, { 'src/net/long.ts:long': 130 }), [])
  assert.match(findSizeProblems(root, { 'src/net/long.ts:long': 125 })[0]!, /130 lines, grown past the 125 it is allowed/)
  const cut = tree({ 'src/net/long.ts': fn('long', 100) })
  assert.match(findSizeProblems(cut, { 'src/net/long.ts:long': 130 })[0]!, /within the limits now .*remove it/)
})
