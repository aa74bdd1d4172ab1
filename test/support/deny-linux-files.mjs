/**
 * A preload (`node --import`) for tests of the generic platform: every node:fs call on a path under /proc or /sys
 * fails with ENOENT, as on a system without them (macOS, Windows), and is recorded, one JSON line per call with the
 * stack that made it, in the file named by HEARTH_TEST_DENIED_LOG. A test reads that file to show that nothing tried.
 *
 * Only JavaScript's fs calls are seen: what Node itself reads in C++ (os.cpus() reads /proc/stat on Linux) is not,
 * and is not Hearth's doing.
 */
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const logPath = process.env.HEARTH_TEST_DENIED_LOG
const appendFileSync = fs.appendFileSync
const deniedRoots = ['/proc', '/sys']

/** The path a call names, when it is under a denied root; undefined otherwise (descriptors, other paths). */
function deniedPath(target) {
  let path
  if (typeof target === 'string') path = target
  else if (target instanceof URL && target.protocol === 'file:') path = fileURLToPath(target)
  else if (Buffer.isBuffer(target)) path = target.toString('utf8')
  else return undefined
  const absolute = resolve(path)
  return deniedRoots.some((root) => absolute === root || absolute.startsWith(`${root}/`)) ? absolute : undefined
}

function record(call, path) {
  const stack = (new Error().stack ?? '').split('\n').slice(3, 12).map((line) => line.trim())
  if (logPath !== undefined) appendFileSync(logPath, `${JSON.stringify({ pid: process.pid, call, path, stack })}\n`)
}

function enoent(call, path) {
  return Object.assign(new Error(`ENOENT: no such file or directory, ${call} '${path}' (denied: generic platform test)`), { code: 'ENOENT', errno: -2, syscall: call, path })
}

/** Wraps `holder[name]`: 'sync' throws (existsSync answers false), 'promise' rejects, 'callback' calls back. */
function deny(holder, name, style) {
  const original = holder[name]
  if (typeof original !== 'function') return
  holder[name] = function denied(...args) {
    const path = deniedPath(args[0])
    if (path === undefined) return original.apply(this, args)
    record(name, path)
    if (name === 'existsSync') return false
    const error = enoent(name, path)
    if (style === 'promise') return Promise.reject(error)
    const callback = args.at(-1)
    if (style === 'callback' && typeof callback === 'function') return void process.nextTick(callback, error)
    throw error
  }
  // Properties of the original stay (realpathSync.native, promisify's custom form), each watched in the same way.
  for (const key of Reflect.ownKeys(original)) {
    if (key in holder[name]) continue
    Object.defineProperty(holder[name], key, Object.getOwnPropertyDescriptor(original, key))
  }
  if (typeof original.native === 'function') deny(holder[name], 'native', style)
}

const calls = ['readFile', 'readdir', 'readlink', 'open', 'stat', 'lstat', 'access', 'opendir', 'realpath', 'statfs', 'exists']
for (const name of calls) {
  deny(fs, name, 'callback')
  deny(fs, `${name}Sync`, 'sync')
  deny(fs.promises, name, 'promise')
}
deny(fs, 'createReadStream', 'sync')
deny(fs, 'watch', 'sync')
deny(fs, 'watchFile', 'sync')
// `import { readFileSync } from 'node:fs'` binds the ESM export: bring those up to date with the patched module.
syncBuiltinESMExports()
