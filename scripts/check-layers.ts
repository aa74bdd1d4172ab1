/**
 * Fails when a source file imports from a higher layer (see DESIGN.md's layer table) or when imports form a cycle.
 * Type-only imports count too: a cycle of types is still a knot a reader must untangle.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'

/** Lowest first. `errors.ts` at the root of src/ sits below every layer; `index.ts` above all of them. */
export const layers = [
  'testbed', 'identity', 'store', 'net', 'market', 'exec', 'payment',
  'provider', 'requestor', 'jobs', 'devnet', 'api', 'cli',
] as const

const repoRoot = resolve(import.meta.dirname, '..')

function listSources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return listSources(path)
    return /\.(ts|mts|js|mjs)$/.test(name) ? [path] : []
  })
}

function layerRank(srcDir: string, root: string, file: string): number {
  const parts = relative(srcDir, file).split(sep)
  if (parts.length === 1) return parts[0] === 'index.ts' ? layers.length : -1
  const rank = layers.indexOf(parts[0] as (typeof layers)[number])
  if (rank < 0) throw new Error(`${relative(root, file)}: folder src/${parts[0]} is not a layer in scripts/check-layers.ts`)
  return rank
}

const importPattern = /(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|new URL\(\s*['"](\.[^'"]+)['"]/g

/** Problems in the tree under `root` (default: this repository), one line each; empty when all is well. */
export function findProblems(root: string = repoRoot): string[] {
  const srcDir = join(root, 'src')
  const files = listSources(srcDir)
  const graph = new Map<string, string[]>()
  const problems: string[] = []
  for (const file of files) {
    const text = readFileSync(file, 'utf8')
    const targets: string[] = []
    for (const match of text.matchAll(importPattern)) {
      const spec = match[1] ?? match[2] ?? match[3]
      if (spec === undefined || !spec.startsWith('.')) continue
      const target = resolve(dirname(file), spec)
      targets.push(target)
      if (!target.startsWith(srcDir + sep)) continue
      const from = layerRank(srcDir, root, file)
      const to = layerRank(srcDir, root, target)
      if (to > from) {
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
  console.log('layers: no upward imports, no cycles')
}
