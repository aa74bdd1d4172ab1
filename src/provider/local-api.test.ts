import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { apiKeyFile, callLocalApi, readApiInfo, serveLocalApi, socketFileName } from './local-api.ts'

const root = await mkdtemp(join(tmpdir(), 'hearth-local-api-'))
after(() => rm(root, { recursive: true, force: true }))

const info = { peerId: 'peer', address: '0x0000000000000000000000000000000000000001', multiaddrs: [], startedAtMs: 0 }
const handle = async (command: string): Promise<unknown> => ({ answered: command })

/** A data directory whose `provider.sock` path is too long for a unix socket. */
async function longDataDir(name: string): Promise<string> {
  const dataDir = join(root, name, 'x'.repeat(60), 'y'.repeat(60))
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  return dataDir
}

/** Runs `fn` with the process umask at 0, so only the code's own care keeps the socket private. */
async function withOpenUmask<T>(fn: () => Promise<T>): Promise<T> {
  const previous = process.umask(0)
  try {
    return await fn()
  } finally {
    process.umask(previous)
  }
}

describe('the local API socket', () => {
  it('in the data directory: mode 0600 even under umask 0, answering only callers with the key', async () => {
    const dataDir = join(root, 'short')
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    const api = await withOpenUmask(() => serveLocalApi({ dataDir, info, handle }))
    try {
      const { socket } = (await readApiInfo(dataDir))!
      assert.equal(socket, join(resolve(dataDir), socketFileName))
      const mode = await stat(socket)
      assert.ok(mode.isSocket())
      // No chmod runs after listen(): the socket was created 0600.
      assert.equal(mode.mode & 0o777, 0o600)
      assert.equal((await stat(join(dataDir, apiKeyFile))).mode & 0o777, 0o600)
      assert.deepEqual(await callLocalApi(dataDir, 'status'), { answered: 'status' })
    } finally {
      await api.close()
    }
    await assert.rejects(lstat(join(dataDir, socketFileName)), /ENOENT/)
  })

  it('a long data directory path: a fresh 0700 directory of its own, never the predictable /tmp name, removed at close', async () => {
    const dataDir = await longDataDir('long')
    const runtime = join(root, 'runtime')
    await mkdir(runtime, { mode: 0o755 })
    // Another local user plants the predictable name the old code used, as a link to a file of the owner's.
    const victim = join(root, 'victim.txt')
    await writeFile(victim, 'keep me\n')
    const predictable = join(runtime, `hearth-provider-${createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 16)}.sock`)
    await symlink(victim, predictable)

    const api = await withOpenUmask(() => serveLocalApi({ dataDir, info, handle, runtimeDir: runtime }))
    let privateDir: string
    try {
      const { socket } = (await readApiInfo(dataDir))!
      privateDir = resolve(socket, '..')
      assert.equal(resolve(privateDir, '..'), runtime)
      assert.notEqual(socket, predictable)
      assert.match(privateDir, /hearth-provider-[A-Za-z0-9]{6}$/)
      assert.equal((await lstat(privateDir)).mode & 0o777, 0o700)
      assert.equal((await lstat(socket)).mode & 0o777, 0o600)
      assert.deepEqual(await callLocalApi(dataDir, 'status'), { answered: 'status' })
      // The planted link was neither followed nor replaced.
      assert.equal(await readlink(predictable), victim)
      assert.equal(await readFile(victim, 'utf8'), 'keep me\n')
    } finally {
      await api.close()
    }
    await assert.rejects(lstat(privateDir), /ENOENT/)
    // A second start gets another fresh directory, not the first one's name.
    const again = await serveLocalApi({ dataDir, info, handle, runtimeDir: runtime })
    try {
      assert.notEqual(resolve((await readApiInfo(dataDir))!.socket, '..'), privateDir)
    } finally {
      await again.close()
    }
    assert.deepEqual((await readdir(runtime)).sort(), [predictable.slice(runtime.length + 1)])
  })

  it('refuses a link or a file already at the socket path, and a socket another provider still serves; reuses a dead one', async () => {
    const dataDir = join(root, 'planted')
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    const socket = join(resolve(dataDir), socketFileName)
    const target = join(root, 'target.txt')
    await writeFile(target, 'untouched\n')

    await symlink(target, socket)
    await assert.rejects(serveLocalApi({ dataDir, info, handle }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID') && /as a symbolic link, not a socket/.test(error.message))
    assert.equal(await readlink(socket), target)
    assert.equal(await readFile(target, 'utf8'), 'untouched\n')
    await rm(socket)

    await writeFile(socket, 'a file\n')
    await assert.rejects(serveLocalApi({ dataDir, info, handle }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID') && /as a file, not a socket/.test(error.message))
    assert.equal(await readFile(socket, 'utf8'), 'a file\n')
    await rm(socket)

    // A socket something still listens on is not taken over.
    const other = createServer()
    await new Promise<void>((done) => other.listen(socket, () => done()))
    try {
      await assert.rejects(serveLocalApi({ dataDir, info, handle }), /already serving its local API/)
    } finally {
      await new Promise<void>((done) => other.close(() => done()))
    }

    // A dead socket this user left (a killed provider's) is replaced: a process listens there and is killed.
    const child = spawn(process.execPath, ['-e', "require('node:net').createServer().listen(process.argv[1], () => console.log('up'))", socket], { stdio: ['ignore', 'pipe', 'inherit'] })
    await once(child.stdout!, 'data')
    child.kill('SIGKILL')
    await once(child, 'exit')
    assert.ok((await lstat(socket)).isSocket(), 'the killed process left its socket behind')
    const api = await serveLocalApi({ dataDir, info, handle })
    try {
      assert.deepEqual(await callLocalApi(dataDir, 'status'), { answered: 'status' })
    } finally {
      await api.close()
    }
  })

  it('replaces an API key file others could read instead of trusting it, and callers refuse such a file', async () => {
    const dataDir = join(root, 'loose-key')
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    const keyPath = join(dataDir, apiKeyFile)
    const leaked = 'ab'.repeat(32)
    await writeFile(keyPath, `${leaked}\n`, { mode: 0o644 })
    const api = await serveLocalApi({ dataDir, info, handle })
    try {
      const fresh = (await readFile(keyPath, 'utf8')).trim()
      assert.notEqual(fresh, leaked)
      assert.equal((await stat(keyPath)).mode & 0o777, 0o600)
      assert.deepEqual(await callLocalApi(dataDir, 'status'), { answered: 'status' })
      // Loosened while the provider runs: a caller does not send a key others may have read.
      await chmod(keyPath, 0o640)
      await assert.rejects(callLocalApi(dataDir, 'status'), (error: unknown) => isHearthError(error, 'HEARTH_ERR_PROVIDER_NOT_RUNNING') && /accessible by group or others/.test(error.message))
    } finally {
      await api.close()
    }
  })
})
