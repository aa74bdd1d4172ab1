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

// The counts live in one open-addressing hash table (linear probing) over raw memory, keyed by the word's bytes,
// which are copied once into an arena; strings are never made, so counting costs a hash and a compare per word.
// A slot is 24 bytes: FNV-1a hash (u32), key length (u32, 0 = empty), key offset in the arena (u32), unused, count (i64).
const SLOT: usize = 24
let slots: usize = 0
let capacity: u32 = 0
let used: u32 = 0
let arena: usize = 0
let arenaSize: usize = 0
let arenaCapacity: usize = 0

/** For each byte: its lowercase form when it is a word byte (ASCII letter or digit), else 0. */
let wordBytes: usize = 0

function setUp(): void {
  wordBytes = heap.alloc(256)
  for (let c: u32 = 0; c < 256; c++) {
    const word = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
    store<u8>(wordBytes + c, word ? <u8>(c >= 65 && c <= 90 ? c + 32 : c) : 0)
  }
  capacity = 1 << 14
  slots = heap.alloc(<usize>capacity * SLOT)
  memory.fill(slots, 0, <usize>capacity * SLOT)
  arenaCapacity = 1 << 16
  arena = heap.alloc(arenaCapacity)
}

/** Spreads FNV-1a's bits (murmur3's finaliser) so that the low bits that pick a slot depend on every byte. */
@inline function slotOf(hash: u32): u32 {
  let h = hash
  h ^= h >> 16
  h *= 0x85ebca6b
  h ^= h >> 13
  h *= 0xc2b2ae35
  h ^= h >> 16
  return h & (capacity - 1)
}

function grow(): void {
  const oldSlots = slots
  const oldCapacity = capacity
  capacity <<= 1
  slots = heap.alloc(<usize>capacity * SLOT)
  memory.fill(slots, 0, <usize>capacity * SLOT)
  for (let i: u32 = 0; i < oldCapacity; i++) {
    const from = oldSlots + <usize>i * SLOT
    if (load<u32>(from, 4) == 0) continue
    let j = slotOf(load<u32>(from))
    while (load<u32>(slots + <usize>j * SLOT, 4) != 0) j = (j + 1) & (capacity - 1)
    memory.copy(slots + <usize>j * SLOT, from, SLOT)
  }
}

/** Adds `value` to the count of the key of `length` bytes at `key`, whose FNV-1a hash is `hash`. */
function add(key: usize, length: u32, hash: u32, value: i64): void {
  let i = slotOf(hash)
  while (true) {
    const slot = slots + <usize>i * SLOT
    const size = load<u32>(slot, 4)
    if (size == 0) break
    if (size == length && load<u32>(slot) == hash && memory.compare(arena + <usize>load<u32>(slot, 8), key, length) == 0) {
      store<i64>(slot, load<i64>(slot, 16) + value, 16)
      return
    }
    i = (i + 1) & (capacity - 1)
  }
  if (arenaSize + length > arenaCapacity) {
    while (arenaSize + length > arenaCapacity) arenaCapacity <<= 1
    const bigger = heap.alloc(arenaCapacity)
    memory.copy(bigger, arena, arenaSize)
    arena = bigger
  }
  memory.copy(arena + arenaSize, key, length)
  const slot = slots + <usize>i * SLOT
  store<u32>(slot, hash)
  store<u32>(slot, length, 4)
  store<u32>(slot, <u32>arenaSize, 8)
  store<i64>(slot, value, 16)
  arenaSize += length
  used++
  // At most half full, so that probes stay short.
  if (used * 2 > capacity) grow()
}

/** Adds the words of `data` to the counts; returns how many words it saw. Lowercases `data` in place. */
function countWords(data: Uint8Array): i64 {
  const start = data.dataStart
  const end = start + <usize>data.length
  let words: i64 = 0
  let at = start
  while (at < end) {
    let c = load<u8>(wordBytes + <usize>load<u8>(at))
    if (c == 0) {
      at++
      continue
    }
    const first = at
    let hash: u32 = 2166136261
    do {
      store<u8>(at, c)
      hash = (hash ^ <u32>c) * 16777619
      at++
      if (at == end) break
      c = load<u8>(wordBytes + <usize>load<u8>(at))
    } while (c != 0)
    add(first, <u32>(at - first), hash, 1)
    words++
  }
  return words
}

/** Adds the counts of a table ("word<TAB>count" lines) to the counts; returns false when a line is malformed. */
function addTable(data: Uint8Array): bool {
  const start = data.dataStart
  const end = start + <usize>data.length
  let line = start
  while (line < end) {
    let hash: u32 = 2166136261
    let at = line
    let c: u8 = 0
    while (at < end) {
      c = load<u8>(at)
      if (c == 9 || c == 10) break
      hash = (hash ^ <u32>c) * 16777619
      at++
    }
    if (at == end || c == 10) {
      // A line without a tab: only an empty one is allowed.
      if (at > line) return false
      line = at + 1
      continue
    }
    const tab = at
    let value: i64 = 0
    at++
    while (at < end && load<u8>(at) != 10) {
      const digit = <u32>load<u8>(at) - 48
      if (digit > 9) return false
      value = value * 10 + <i64>digit
      at++
    }
    if (tab == line || at == tab + 1) return false
    add(line, <u32>(tab - line), hash, value)
    line = at + 1
  }
  return true
}

/** Byte order of the keys of two slots (indices), shorter first on a common prefix. */
function compareKeys(a: u32, b: u32): i32 {
  const slotA = slots + <usize>a * SLOT
  const slotB = slots + <usize>b * SLOT
  const lengthA = load<u32>(slotA, 4)
  const lengthB = load<u32>(slotB, 4)
  const order = memory.compare(arena + <usize>load<u32>(slotA, 8), arena + <usize>load<u32>(slotB, 8), <usize>min(lengthA, lengthB))
  return order != 0 ? order : <i32>lengthA - <i32>lengthB
}

function digitsOf(value: i64): u32 {
  let digits: u32 = 1
  while (value >= 10) {
    value /= 10
    digits++
  }
  return digits
}

/** The table of the keys in `picked` (slot indices, sorted here) as bytes: "word<TAB>count" lines. */
function table(picked: u32[]): Uint8Array {
  picked.sort(compareKeys)
  let size: usize = 0
  for (let i = 0; i < picked.length; i++) {
    const slot = slots + <usize>unchecked(picked[i]) * SLOT
    size += <usize>load<u32>(slot, 4) + 2 + <usize>digitsOf(load<i64>(slot, 16))
  }
  const buffer = new Uint8Array(<i32>size)
  let at = buffer.dataStart
  for (let i = 0; i < picked.length; i++) {
    const slot = slots + <usize>unchecked(picked[i]) * SLOT
    const length = <usize>load<u32>(slot, 4)
    memory.copy(at, arena + <usize>load<u32>(slot, 8), length)
    at += length
    store<u8>(at++, 9)
    let value = load<i64>(slot, 16)
    const digits = <usize>digitsOf(value)
    for (let d = digits; d > 0; d--) {
      store<u8>(at + d - 1, <u8>(48 + value % 10))
      value /= 10
    }
    at += digits
    store<u8>(at++, 10)
  }
  return buffer
}

/** Slot indices of every key, or of the keys whose hash falls in `partition` of `partitions`. */
function keysIn(partition: u32, partitions: u32): u32[] {
  const picked = new Array<u32>()
  for (let i: u32 = 0; i < capacity; i++) {
    const slot = slots + <usize>i * SLOT
    if (load<u32>(slot, 4) != 0 && load<u32>(slot) % partitions == partition) picked.push(i)
  }
  return picked
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

  setUp()
  let words: i64 = 0
  let bytes: i64 = 0
  for (let f = 0; f < files.length; f++) {
    const data = readFile(files[f])
    if (data == null) return fail(1, "cannot read " + files[f] + " (WASI errno " + lastErrno.toString() + ")")
    bytes += data.length
    if (reduce) {
      if (!addTable(data)) return fail(1, files[f] + " is not a table of word<TAB>count lines")
    } else {
      words += countWords(data)
    }
  }

  const summary = files.length.toString() + " files, " + bytes.toString() + " bytes, "
  if (!map) {
    if (!write(out, table(keysIn(0, 1)))) return
    if (reduce) printLine(1, "wordcount: reduced " + summary + used.toString() + " distinct")
    else printLine(1, "wordcount: " + summary + words.toString() + " words, " + used.toString() + " distinct")
    return
  }
  for (let r = 0; r < partitions; r++) {
    if (!write(outPrefix + r.toString(), table(keysIn(<u32>r, <u32>partitions)))) return
  }
  printLine(1, "wordcount: mapped " + summary + words.toString() + " words, " + used.toString() + " distinct, " + partitions.toString() + " partitions")
}
