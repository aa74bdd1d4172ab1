/**
 * The word count benches' text, built the same way on every machine: the Markdown files under node_modules (real
 * English, about 2.7 MB), in byte order of their paths, concatenated and repeated until the target size, then cut at
 * newlines into files of about `fileBytes`. The whole text ends at the last newline before `targetBytes`.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface Corpus {
  files: string[]
  bytes: number
  /** Markdown files the text was made of (before repeating). */
  sources: number
}

function markdownFiles(root: string): string[] {
  const found: string[] = []
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.isFile() && entry.name.endsWith('.md')) found.push(path)
    }
  }
  walk(root)
  return found.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
}

/** Writes the text into `dir` as `text-000.txt`…; `repoRoot` is where node_modules is. */
export async function buildWordcountCorpus(repoRoot: string, dir: string, targetBytes = 25_600_000, fileBytes = 1_024_000): Promise<Corpus> {
  const sources = markdownFiles(join(repoRoot, 'node_modules'))
  const pieces = sources.map((path) => {
    const data = readFileSync(path)
    // A file that does not end with a newline would run its last word into the next file's first.
    return data.length > 0 && data[data.length - 1] !== 0x0a ? Buffer.concat([data, Buffer.from('\n')]) : data
  })
  const once = Buffer.concat(pieces)
  if (once.length === 0) throw new Error('no Markdown files under node_modules: run npm ci first')
  const whole = Buffer.alloc(targetBytes)
  for (let at = 0; at < targetBytes; at += once.length) once.copy(whole, at, 0, Math.min(once.length, targetBytes - at))
  const end = whole.lastIndexOf(0x0a) + 1
  await mkdir(dir, { recursive: true })
  const files: string[] = []
  for (let start = 0; start < end;) {
    let cut = Math.min(end, start + fileBytes)
    if (cut < end) cut = whole.lastIndexOf(0x0a, cut - 1) + 1
    if (cut <= start) cut = Math.min(end, start + fileBytes)
    const path = join(dir, `text-${String(files.length).padStart(3, '0')}.txt`)
    await writeFile(path, whole.subarray(start, cut))
    files.push(path)
    start = cut
  }
  return { files, bytes: end, sources: sources.length }
}
