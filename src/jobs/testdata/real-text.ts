/**
 * Real English text for word-count tests (the Markdown files under node_modules, a few MB, in a fixed order) and the
 * count a word-count job promises, written plainly in TypeScript as the one-process reference.
 */
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))

/** Markdown files under node_modules, in a fixed order, until about `bytes` are gathered. */
export function markdownFiles(bytes: number): string[] {
  const found: string[] = []
  let total = 0
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (total >= bytes) return
      const path = join(folder, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.isFile() && entry.name.endsWith('.md')) {
        found.push(path)
        total += statSync(path).size
      }
    }
  }
  walk(join(repoRoot, 'node_modules'))
  return found
}

/** The count as the job promises it: runs of ASCII letters and digits, lowercased, `word<TAB>count` sorted by bytes. */
export function referenceCount(texts: readonly Buffer[]): string {
  const counts = new Map<string, number>()
  // latin1 keeps one char per byte, so a multi-byte UTF-8 character can never look like an ASCII letter.
  for (const text of texts) {
    for (const word of text.toString('latin1').match(/[A-Za-z0-9]+/g) ?? []) {
      const key = word.toLowerCase()
      counts.set(key, (counts.get(key) ?? 0) + 1)
    }
  }
  return [...counts.keys()].sort().map((word) => `${word}\t${counts.get(word)}\n`).join('')
}
