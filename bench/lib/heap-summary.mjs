// Sums up a V8 heap snapshot (from bench/lib/memory-probe.mjs): bytes by node type, the largest constructors and
// strings by self size, and the source held per script (a module's text stays on the heap while it is loaded).
//
//   node bench/lib/heap-summary.mjs FILE.heapsnapshot [--top 25]
import { readFileSync } from 'node:fs'

const file = process.argv[2]
if (file === undefined) throw new Error('usage: node bench/lib/heap-summary.mjs FILE.heapsnapshot [--top N]')
const topIndex = process.argv.indexOf('--top')
const top = topIndex > 0 ? Number(process.argv[topIndex + 1]) : 25
const snapshot = JSON.parse(readFileSync(file, 'utf8'))
const meta = snapshot.snapshot.meta
const fields = meta.node_fields
const types = meta.node_types[0]
const stride = fields.length
const typeAt = fields.indexOf('type')
const nameAt = fields.indexOf('name')
const sizeAt = fields.indexOf('self_size')
const { nodes, strings } = snapshot

const byType = new Map()
const byName = new Map()
let total = 0
for (let i = 0; i < nodes.length; i += stride) {
  const type = types[nodes[i + typeAt]]
  const size = nodes[i + sizeAt]
  total += size
  byType.set(type, (byType.get(type) ?? 0) + size)
  let name = strings[nodes[i + nameAt]]
  if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = `(string) ${name.length > 60 ? `${name.slice(0, 60)}…` : name}`
  else if (type === 'code') name = `(code) ${name.split(' ')[0]}`
  const key = `${type}: ${name}`
  const entry = byName.get(key) ?? { count: 0, size: 0 }
  entry.count++
  entry.size += size
  byName.set(key, entry)
}
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(2)} MiB`
console.log(`${file}: ${mib(total)} in ${nodes.length / stride} objects`)
console.log('by type:')
for (const [type, size] of [...byType].sort((a, b) => b[1] - a[1])) console.log(`  ${type.padEnd(22)} ${mib(size)}`)
console.log(`largest ${top} by type and name:`)
for (const [key, { count, size }] of [...byName].sort((a, b) => b[1].size - a[1].size).slice(0, top)) {
  console.log(`  ${mib(size).padStart(10)}  ${String(count).padStart(7)}x  ${key.slice(0, 110)}`)
}
