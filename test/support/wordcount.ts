/** The word count example's answer computed here, in one process: what a run on any network must bring back. */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const wordcountExample = fileURLToPath(new URL('../../examples/wordcount', import.meta.url))

/** The word count, as the job promises it: maximal runs of ASCII letters and digits, lowercased, sorted. */
export function referenceCounts(...texts: string[]): string {
  const counts = new Map<string, number>()
  for (const text of texts) for (const word of text.toLowerCase().match(/[a-z0-9]+/g) ?? []) counts.set(word, (counts.get(word) ?? 0) + 1)
  return [...counts.keys()].sort().map((word) => `${word}\t${counts.get(word)}\n`).join('')
}

/** The example's text files, in the order the job lists them. */
export async function wordcountTexts(): Promise<string[]> {
  return Promise.all(['hearth.txt', 'market.txt', 'sandbox.txt'].map((f) => readFile(join(wordcountExample, f), 'utf8')))
}
