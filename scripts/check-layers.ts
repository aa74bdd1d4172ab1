/**
 * Fails when a source file imports from a higher layer (see docs/design.md's layer table), when it imports a layer it
 * must stay apart from (`apart` below), when imports form a cycle, or when code outside src/net/ reaches into libp2p
 * through a host's `.libp2p`. Type-only imports count too: a cycle of types is still a knot a reader must untangle.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'

/**
 * Lowest first. `errors.ts` at the root of src/ sits below every layer; `index.ts` above all of them. `api` is
 * reserved: the web API (a later change) goes there, and src/api/ does not exist yet.
 */
export const layers = [
  'testbed', 'identity', 'store', 'net', 'market', 'exec', 'payment', 'storage',
  'provider', 'requestor', 'jobs', 'devnet', 'api', 'cli',
] as const

export type Layer = (typeof layers)[number]

/**
 * Layers that never import each other, whatever their order above: what both need moves down into a lower layer.
 * Each pair comes with the reason, which the problem line repeats.
 */
export const apart: ReadonlyArray<{ layers: readonly [Layer, Layer]; why: string }> = [
  { layers: ['requestor', 'provider'], why: 'the two sides of the market meet only over the network' },
  { layers: ['exec', 'payment'], why: 'running work knows nothing of money, and money nothing of how work runs' },
  { layers: ['jobs', 'net'], why: 'job kinds plan and merge work; they reach the network only through the requestor' },
]

const repoRoot = resolve(import.meta.dirname, '..')

function listSources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return listSources(path)
    return /\.(ts|mts|js|mjs)$/.test(name) ? [path] : []
  })
}

/** The layer folder `file` lives in; undefined for a file at the root of src/ (errors.ts, index.ts). */
function layerOf(srcDir: string, root: string, file: string): Layer | undefined {
  const parts = relative(srcDir, file).split(sep)
  if (parts.length === 1) return undefined
  const layer = layers.find((name) => name === parts[0])
  if (layer === undefined) throw new Error(`${relative(root, file)}: folder src/${parts[0]} is not a layer in scripts/check-layers.ts`)
  return layer
}

function layerRank(srcDir: string, root: string, file: string): number {
  const layer = layerOf(srcDir, root, file)
  if (layer === undefined) return relative(srcDir, file) === 'index.ts' ? layers.length : -1
  return layers.indexOf(layer)
}

function apartReason(from: Layer | undefined, to: Layer | undefined): string | undefined {
  if (from === undefined || to === undefined || from === to) return undefined
  return apart.find(({ layers: [a, b] }) => (a === from && b === to) || (a === to && b === from))?.why
}

const importPattern = /(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|new URL\(\s*['"](\.[^'"]+)['"]/g

const testFilePattern = /\.test\.(ts|mts|js|mjs)$/
/** A host's libp2p node, reached as a property: `host.libp2p`, `session.host.libp2p`, `{ libp2p: x.libp2p }`. */
const libp2pAccessPattern = /\.libp2p\b/
/** A line that is all comment (a doc comment's body, a `//` line): naming `.libp2p` there reaches into nothing. */
const commentLinePattern = /^\s*(\*|\/\/|\/\*)/

/** Lines of `text` that reach into libp2p, as `file:line: problem`. */
function libp2pProblems(relativePath: string, text: string): string[] {
  return text.split('\n').flatMap((line, index) =>
    !commentLinePattern.test(line) && libp2pAccessPattern.test(line)
      ? [`${relativePath}:${index + 1}: uses .libp2p outside src/net/: net/ owns libp2p; use a Host method (src/net/host.ts), adding one there if none fits`]
      : [],
  )
}

/** Problems in the tree under `root` (default: this repository), one line each; empty when all is well. */
export function findProblems(root: string = repoRoot): string[] {
  const srcDir = join(root, 'src')
  const netDir = join(srcDir, 'net')
  const files = listSources(srcDir)
  const graph = new Map<string, string[]>()
  const problems: string[] = []
  for (const file of files) {
    const text = readFileSync(file, 'utf8')
    if (!file.startsWith(netDir + sep) && !testFilePattern.test(file)) problems.push(...libp2pProblems(relative(root, file), text))
    const targets: string[] = []
    for (const match of text.matchAll(importPattern)) {
      const spec = match[1] ?? match[2] ?? match[3]
      if (spec === undefined || !spec.startsWith('.')) continue
      const target = resolve(dirname(file), spec)
      targets.push(target)
      if (!target.startsWith(srcDir + sep)) continue
      const fromLayer = layerOf(srcDir, root, file)
      const toLayer = layerOf(srcDir, root, target)
      const why = apartReason(fromLayer, toLayer)
      if (why !== undefined) {
        problems.push(`${relative(root, file)} imports ${relative(root, target)}: ${fromLayer} and ${toLayer} stay apart and never import each other (${why}); move what both need into a lower layer`)
      } else if (layerRank(srcDir, root, target) > layerRank(srcDir, root, file)) {
        problems.push(`${relative(root, file)} imports ${relative(root, target)}: a lower layer may not import a higher one`)
      }
    }
    graph.set(file, targets)
  }
  // Depth-first search for cycles over the file graph.
  const state = new Map<string, 'visiting' | 'done'>()
  const stack: string[] = []
  const visit = (file: string): void => {
    state.set(file, 'visiting')
    stack.push(file)
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue
      const seen = state.get(next)
      if (seen === 'visiting') {
        const cycle = stack.slice(stack.indexOf(next)).concat(next).map((f) => relative(root, f))
        problems.push(`import cycle: ${cycle.join(' -> ')}`)
      } else if (seen === undefined) {
        visit(next)
      }
    }
    stack.pop()
    state.set(file, 'done')
  }
  for (const file of graph.keys()) if (!state.has(file)) visit(file)
  return problems
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const problems = findProblems()
  for (const problem of problems) console.error(problem)
  if (problems.length > 0) process.exit(1)
  console.log('layers: no upward imports, no imports between layers kept apart, no cycles, no .libp2p outside src/net/')
}
