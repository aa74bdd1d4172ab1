// wordcount: counts the words of text files, whole or as the map and reduce steps of a map-reduce job.
//   wordcount --out PATH FILE...                              count FILE... into one table
//   wordcount --partitions R --out-prefix PREFIX FILE...     map: count, then split the table into PREFIX0..PREFIX<R-1>
//   wordcount --reduce --out PATH TABLE...                    reduce: sum the counts of several tables into one
// A word is a maximal run of ASCII letters and digits, lowercased. A table is "word<TAB>count" lines sorted by word
// (byte order). The map step puts a word in partition FNV-1a-32(word bytes) mod R, so that every mapper sends a word to
// the same reducer. Writes a one-line summary to stdout. Exit 2 on bad arguments, 1 when a file cannot be read/written.

import { exit, lastErrno, printLine, readArgs, readFile, writeFile } from "./wasi"

const USAGE = "usage: wordcount [--partitions R --out-prefix PREFIX | --reduce --out PATH | --out PATH] FILE..."

function fail(code: u32, message: string): void {
  printLine(2, "wordcount: " + message)
  if (code == 2) printLine(2, USAGE)
  exit(code)
}

@inline function isWordByte(c: u8): bool {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
}

/** FNV-1a, 32 bits, over the word's bytes (words are ASCII, so one byte per char). */
function fnv1a(word: string): u32 {
  let hash: u32 = 2166136261
  for (let i = 0; i < word.length; i++) {
    hash ^= <u32>(word.charCodeAt(i) & 0xff)
    hash *= 16777619
  }
  return hash
}

/** Adds the words of `data` to `counts`; returns how many words it saw. Lowercases `data` in place. */
function countWords(data: Uint8Array, counts: Map<string, i64>): i64 {
  // Lowercasing the ASCII letters up front lets a word be decoded straight from the buffer, whatever its length.
  for (let i = 0; i < data.length; i++) {
    const c = data[i]
    if (c >= 65 && c <= 90) data[i] = c + 32
  }
  let words: i64 = 0
  let start = -1
  // One pass over the bytes plus a sentinel, so a word that ends the file is counted too.
  for (let i = 0; i <= data.length; i++) {
    const word = i < data.length && isWordByte(data[i])
    if (word) {
      if (start < 0) start = i
      continue
    }
    if (start < 0) continue
    const key = String.UTF8.decodeUnsafe(data.dataStart + <usize>start, <usize>(i - start))
    counts.set(key, counts.has(key) ? counts.get(key) + 1 : 1)
    words++
    start = -1
  }
  return words
}

/** Adds the counts of a table ("word<TAB>count" lines) to `counts`; returns false when a line is malformed. */
function addTable(data: Uint8Array, counts: Map<string, i64>): bool {
  let lineStart = 0
  while (lineStart < data.length) {
    let tab = -1
    let end = lineStart
    while (end < data.length && data[end] != 10) {
      if (tab < 0 && data[end] == 9) tab = end
      end++
    }
    if (end > lineStart) {
      if (tab < 0 || tab == lineStart || tab + 1 == end) return false
      let value: i64 = 0
      for (let i = tab + 1; i < end; i++) {
        const c = data[i]
        if (c < 48 || c > 57) return false
        value = value * 10 + <i64>(c - 48)
      }
      const key = String.UTF8.decodeUnsafe(data.dataStart + <usize>lineStart, <usize>(tab - lineStart))
      counts.set(key, counts.has(key) ? counts.get(key) + value : value)
    }
    lineStart = end + 1
  }
  return true
}

/** The table of `keys` (sorted here) as bytes. */
function table(keys: string[], counts: Map<string, i64>): Uint8Array {
  keys.sort()
  let size = 0
  const lines = new Array<string>(keys.length)
  for (let i = 0; i < keys.length; i++) {
    lines[i] = keys[i] + "\t" + counts.get(keys[i]).toString() + "\n"
    size += lines[i].length
  }
  const buffer = new Uint8Array(size)
  let at = 0
  for (let i = 0; i < lines.length; i++) {
    // Words and digits are ASCII, so each char is one byte.
    const line = lines[i]
    for (let j = 0; j < line.length; j++) buffer[at++] = <u8>line.charCodeAt(j)
  }
  return buffer
}

function write(path: string, data: Uint8Array): bool {
  const errno = writeFile(path, data.dataStart, data.length)
  if (errno != 0) {
    fail(1, "cannot write " + path + " (WASI errno " + errno.toString() + ")")
    return false
  }
  return true
}

export function _start(): void {
  const args = readArgs()
  let out = ""
  let outPrefix = ""
  let partitions: i32 = 0
  let reduce = false
  const files = new Array<string>()
  for (let i = 1; i < args.length; i++) {
    const arg = args[i]
    if (arg == "--out" || arg == "--out-prefix" || arg == "--partitions") {
      if (i + 1 >= args.length) return fail(2, "missing a value for " + arg)
      const value = args[++i]
      if (arg == "--out") out = value
      else if (arg == "--out-prefix") outPrefix = value
      else {
        partitions = I32.parseInt(value, 10)
        if (partitions < 1 || partitions > 4096 || partitions.toString() != value) return fail(2, "--partitions must be a number from 1 to 4096")
      }
    } else if (arg == "--reduce") {
      reduce = true
    } else {
      files.push(arg)
    }
  }
  const map = partitions > 0 || outPrefix.length > 0
  if (map && (partitions == 0 || outPrefix.length == 0)) return fail(2, "--partitions and --out-prefix go together")
  if (map && (reduce || out.length > 0)) return fail(2, "--partitions takes --out-prefix, not --out or --reduce")
  if (!map && out.length == 0) return fail(2, "--out is required")
  if (files.length == 0) return fail(2, "name at least one input file")

  const counts = new Map<string, i64>()
  let words: i64 = 0
  let bytes: i64 = 0
  for (let f = 0; f < files.length; f++) {
    const data = readFile(files[f])
    if (data == null) return fail(1, "cannot read " + files[f] + " (WASI errno " + lastErrno.toString() + ")")
    bytes += data.length
    if (reduce) {
      if (!addTable(data, counts)) return fail(1, files[f] + " is not a table of word<TAB>count lines")
    } else {
      words += countWords(data, counts)
    }
  }

  const keys = counts.keys()
  const summary = files.length.toString() + " files, " + bytes.toString() + " bytes, "
  if (!map) {
    if (!write(out, table(keys, counts))) return
    if (reduce) printLine(1, "wordcount: reduced " + summary + keys.length.toString() + " distinct")
    else printLine(1, "wordcount: " + summary + words.toString() + " words, " + keys.length.toString() + " distinct")
    return
  }
  const parts = new Array<string[]>(partitions)
  for (let r = 0; r < partitions; r++) parts[r] = new Array<string>()
  for (let i = 0; i < keys.length; i++) parts[<i32>(fnv1a(keys[i]) % <u32>partitions)].push(keys[i])
  for (let r = 0; r < partitions; r++) {
    if (!write(outPrefix + r.toString(), table(parts[r], counts))) return
  }
  printLine(1, "wordcount: mapped " + summary + words.toString() + " words, " + keys.length.toString() + " distinct, " + partitions.toString() + " partitions")
}
