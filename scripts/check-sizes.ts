/**
 * Fails when a source file under src/ (tests aside) is over 600 lines or a function in one is over 120 lines, nested
 * functions and factories that return an object of closures included: a reader should be able to hold a file, and a
 * function, in mind. The files and functions over the limits today are listed in `allowances` with their present size,
 * which they may not outgrow; each is to be cut, and then removed from the list (the check says when).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve, sep } from 'node:path'
import ts from 'typescript'

export const maxFileLines = 600
export const maxFunctionLines = 120

/** Over the limits today, each at most its present size: `file` for a file's lines, `file:function` for a function. */
export const allowances: Readonly<Record<string, number>> = {}

const repoRoot = resolve(import.meta.dirname, '..')

function listSources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return entry.name === 'testdata' ? [] : listSources(path)
    return /\.ts$/.test(entry.name) && !/\.test\.ts$/.test(entry.name) ? [path] : []
  })
}

/** Every file and function of `text` over the limits, as [key, lines]. */
export function oversized(file: string, text: string): Array<[string, number]> {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
  const found: Array<[string, number]> = []
  const fileLines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0)
  if (fileLines > maxFileLines) found.push([file, fileLines])
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const lines = source.getLineAndCharacterOfPosition(node.getEnd()).line - source.getLineAndCharacterOfPosition(node.getStart()).line + 1
      if (lines > maxFunctionLines) found.push([`${file}:${functionName(node)}`, lines])
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

function functionName(node: ts.Node): string {
  const named = (node as { name?: ts.Node }).name
  if (named !== undefined) return named.getText()
  if (ts.isVariableDeclaration(node.parent) || ts.isPropertyAssignment(node.parent)) return node.parent.name.getText()
  return '(anonymous)'
}

/** Problems in the tree under `root` (default: this repository), one line each; empty when all is well. */
export function findSizeProblems(root: string = repoRoot, allowed: Readonly<Record<string, number>> = allowances): string[] {
  const problems: string[] = []
  const seen = new Set<string>()
  for (const path of listSources(join(root, 'src'))) {
    const file = relative(root, path).split(sep).join('/')
    for (const [key, lines] of oversized(file, readFileSync(path, 'utf8'))) {
      seen.add(key)
      const limit = key === file ? maxFileLines : maxFunctionLines
      const allowance = allowed[key]
      if (allowance === undefined) problems.push(`${key}: ${lines} lines, over the ${limit} a ${key === file ? 'file' : 'function'} may have: cut it into named pieces`)
      else if (lines > allowance) problems.push(`${key}: ${lines} lines, grown past the ${allowance} it is allowed until it is cut (scripts/check-sizes.ts): cut it, do not grow it`)
    }
  }
  for (const key of Object.keys(allowed)) {
    if (!seen.has(key)) problems.push(`${key}: within the limits now (or gone): remove it from the allowances in scripts/check-sizes.ts`)
  }
  return problems
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const problems = findSizeProblems()
  for (const problem of problems) console.error(problem)
  if (problems.length > 0) process.exitCode = 1
  else console.log(`sizes: no file over ${maxFileLines} lines, no function over ${maxFunctionLines}, beyond ${Object.keys(allowances).length} allowances that may only shrink`)
}
