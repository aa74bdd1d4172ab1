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

test('this repository has no upward imports, no imports between layers kept apart, no cycles and no .libp2p outside src/net/', () => {
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

test('an import between sibling layers kept apart is reported, whichever way it goes', () => {
  const root = tree({
    'src/requestor/probe.ts': "import { score } from '../provider/cpu-score.ts'\n",
    'src/provider/cpu-score.ts': 'export const score = 1\n',
    'src/provider/offering.ts': "import type { Slot } from '../requestor/slot.ts'\n",
    'src/requestor/slot.ts': 'export type Slot = number\n',
    'src/payment/escrow.ts': "import { run } from '../exec/runtime.ts'\n",
    'src/exec/runtime.ts': 'export const run = 1\n',
    'src/jobs/sweep.ts': "import type { Host } from '../net/host.ts'\n",
    'src/net/host.ts': 'export type Host = number\n',
  })
  const problems = findProblems(root)
  const expected = [
    /^src\/requestor\/probe\.ts imports src\/provider\/cpu-score\.ts: requestor and provider stay apart and never import each other \(.+\); move what both need into a lower layer$/,
    /^src\/provider\/offering\.ts imports src\/requestor\/slot\.ts: provider and requestor stay apart/,
    /^src\/payment\/escrow\.ts imports src\/exec\/runtime\.ts: payment and exec stay apart/,
    /^src\/jobs\/sweep\.ts imports src\/net\/host\.ts: jobs and net stay apart/,
  ]
  for (const pattern of expected) assert.ok(problems.some((p) => pattern.test(p)), `${String(pattern)} not in:\n${problems.join('\n')}`)
  // One line per import: the sibling rule's, not the upward-import one as well.
  assert.equal(problems.length, expected.length, problems.join('\n'))
})

test('imports between layers not kept apart are still allowed downwards', () => {
  const root = tree({
    'src/requestor/probe.ts': "import { score } from '../exec/cpu-score.ts'\n",
    'src/provider/offering.ts': "import { score } from '../exec/cpu-score.ts'\n",
    'src/exec/cpu-score.ts': 'export const score = 1\n',
    'src/jobs/sweep.ts': "import type { Slot } from '../requestor/slot.ts'\n",
    'src/requestor/slot.ts': "import type { Host } from '../net/host.ts'\nexport type Slot = Host\n",
    'src/net/host.ts': 'export type Host = number\n',
  })
  assert.deepEqual(findProblems(root), [])
})

test('.libp2p outside src/net/ is reported with its line; net/, tests and comments may name it', () => {
  const root = tree({
    'src/requestor/blob-server.ts': [
      "import type { Host } from '../net/host.ts'",
      '/** Never host.libp2p here: net/ owns libp2p. */',
      '// nor host.libp2p in a line comment',
      'export const stop = (host: Host) => host.libp2p.unhandle("/hearth/exec/fetch-blob/3")',
      '',
    ].join('\n'),
    'src/net/host.ts': 'export interface Host { libp2p: { unhandle(id: string): Promise<void> } }\nexport const own = (host: Host) => host.libp2p\n',
    'src/market/market-node.test.ts': "import type { Host } from '../net/host.ts'\nexport const peek = (host: Host) => host.libp2p\n",
    'src/identity/node-identity.ts': 'export const key = { libp2pKey: 1 }\nexport const k = key.libp2pKey\n',
  })
  assert.deepEqual(findProblems(root), [
    'src/requestor/blob-server.ts:4: uses .libp2p outside src/net/: net/ owns libp2p; use a Host method (src/net/host.ts), adding one there if none fits',
  ])
})
