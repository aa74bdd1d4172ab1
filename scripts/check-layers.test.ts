import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import { findProblems } from './check-layers.ts'

const roots: string[] = []
after(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })))

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'hearth-layers-'))
  roots.push(root)
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true })
    writeFileSync(join(root, path), text)
  }
  return root
}

test('this repository has no upward imports and no cycles', () => {
  assert.deepEqual(findProblems(), [])
})

test('an import from a lower layer into a higher one is reported', () => {
  const root = tree({
    'src/net/host.ts': "import { x } from '../payment/escrow.ts'\n",
    'src/payment/escrow.ts': "import { y } from '../net/host.ts'\nexport const x = 1\n",
  })
  const problems = findProblems(root)
  assert.ok(problems.some((p) => /src\/net\/host\.ts imports src\/payment\/escrow\.ts: a lower layer may not import a higher one/.test(p)), problems.join('\n'))
})

test('an import cycle inside one layer is reported, type-only imports included', () => {
  const root = tree({
    'src/market/a.ts': "import type { B } from './b.ts'\nexport type A = B\n",
    'src/market/b.ts': "import { a } from './a.ts'\nexport type B = number\n",
    'src/errors.ts': '',
  })
  assert.ok(findProblems(root).some((p) => p.startsWith('import cycle: src/market/')))
})

test('a folder that is not a layer is refused', () => {
  const root = tree({ 'src/misc/x.ts': "import { e } from '../errors.ts'\n", 'src/errors.ts': '' })
  assert.throws(() => findProblems(root), /src\/misc is not a layer/)
})
