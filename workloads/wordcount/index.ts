// wordcount: counts the words of text files.
//   wordcount --out /out/counts.tsv FILE...
// A word is a maximal run of ASCII letters and digits, lowercased. Writes "word<TAB>count" lines sorted by word (byte
// order) to the output, and a one-line summary to stdout. Exit 2 on bad arguments, 1 when a file cannot be read.

import { exit, lastErrno, printLine, readArgs, readFile, writeFile } from "./wasi"

const USAGE = "usage: wordcount --out PATH FILE..."

function fail(code: u32, message: string): void {
  printLine(2, "wordcount: " + message)
  if (code == 2) printLine(2, USAGE)
  exit(code)
}

@inline function isWordByte(c: u8): bool {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
}

export function _start(): void {
  const args = readArgs()
  let out = ""
  const files = new Array<string>()
  for (let i = 1; i < args.length; i++) {
    if (args[i] == "--out") {
      if (i + 1 >= args.length) return fail(2, "missing a value for --out")
      out = args[++i]
    } else {
      files.push(args[i])
    }
  }
  if (out.length == 0) return fail(2, "--out is required")
  if (files.length == 0) return fail(2, "name at least one input file")

  const counts = new Map<string, i32>()
  let words: i64 = 0
  let bytes: i64 = 0
  const word = new Uint8Array(4096)
  for (let f = 0; f < files.length; f++) {
    const data = readFile(files[f])
    if (data == null) return fail(1, "cannot read " + files[f] + " (WASI errno " + lastErrno.toString() + ")")
    bytes += data.length
    let length = 0
    // One pass over the bytes plus a sentinel, so a word that ends the file is counted too.
    for (let i = 0; i <= data.length; i++) {
      const c: u8 = i < data.length ? data[i] : 32
      if (isWordByte(c)) {
        // Words longer than the buffer are cut, never overflow it.
        if (length < word.length) word[length++] = c >= 65 && c <= 90 ? c + 32 : c
        continue
      }
      if (length == 0) continue
      const key = String.UTF8.decodeUnsafe(word.dataStart, length)
      counts.set(key, counts.has(key) ? counts.get(key) + 1 : 1)
      words++
      length = 0
    }
  }

  const keys = counts.keys()
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
  const errno = writeFile(out, buffer.dataStart, buffer.length)
  if (errno != 0) return fail(1, "cannot write " + out + " (WASI errno " + errno.toString() + ")")
  printLine(1, "wordcount: " + files.length.toString() + " files, " + bytes.toString() + " bytes, " + words.toString() + " words, " + keys.length.toString() + " distinct")
}
