/**
 * The running provider's local API: a unix socket (mode 0600 from the moment it exists) in the data directory, one
 * JSON request per connection, each carrying the API key from `<data dir>/api.key` (mode 0600). Only someone who can
 * read the data directory can ask for the status or stop the provider. `provider.json` in the data directory says
 * where the socket is and which process serves it, so `hearth provider status` and `stop` find it.
 *
 * When the data directory's path is too long for a unix socket, the socket goes in a fresh private directory (0700,
 * an unpredictable name from mkdtemp) under the runtime directory, never at a predictable path in a shared /tmp that
 * another user could take first. A path that is there already is used only when it is a dead socket this user left
 * (a provider that was killed); a live one, a file, a link or another user's socket is refused.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, lstat, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises'
import { createConnection, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { HearthError, toHearthError } from '../errors.ts'
import { readSecretFile } from '../identity/node-identity.ts'

export const apiKeyFile = 'api.key'
export const statusFile = 'provider.json'

export type ApiCommand = 'status' | 'stop' | 'pause' | 'resume'

export interface LocalApiInfo {
  pid: number
  socket: string
  peerId: string
  address: string
  multiaddrs: string[]
  startedAtMs: number
}

/**
 * The API key of the data directory, created (0600) on first use. One that group or others could read is replaced
 * by a fresh one rather than trusted: whoever read it could stop the provider.
 */
export async function loadOrCreateApiKey(dataDir: string): Promise<string> {
  const path = join(dataDir, apiKeyFile)
  const existing = await readSecretFile(path, { what: 'local API key file', missing: 'undefined' }).catch(() => undefined)
  if (existing !== undefined && /^[0-9a-f]{64}$/.test(existing.trim())) return existing.trim()
  const key = randomBytes(32).toString('hex')
  await rm(path, { force: true })
  // 'wx': a file put there meanwhile (or a link) is not written through.
  await writeFile(path, `${key}\n`, { mode: 0o600, flag: 'wx' })
  await chmod(path, 0o600)
  return key
}

/** Longest unix socket path that fits everywhere (sun_path is 104 bytes on macOS, 108 on Linux, with its NUL). */
const maxSocketPathBytes = 100
export const socketFileName = 'provider.sock'

/** Where private socket directories go: $XDG_RUNTIME_DIR (the user's own, 0700) when short enough, else the temp dir. */
function runtimeDir(): string {
  const runtime = process.env['XDG_RUNTIME_DIR']
  if (runtime !== undefined && runtime !== '' && existsSync(runtime) && Buffer.byteLength(join(runtime, 'hearth-provider-XXXXXX', socketFileName)) <= maxSocketPathBytes) return runtime
  return tmpdir()
}

/**
 * The socket path: `provider.sock` in the data directory, or, when that is too long for a unix socket, in a fresh
 * private directory made here (mkdtemp: 0700, a name nobody can guess). `privateDir` is that directory, for removal.
 */
export async function socketLocation(dataDir: string, options: { runtimeDir?: string } = {}): Promise<{ socket: string; privateDir: string | undefined }> {
  const inDir = join(resolve(dataDir), socketFileName)
  if (Buffer.byteLength(inDir) <= maxSocketPathBytes) return { socket: inDir, privateDir: undefined }
  const base = options.runtimeDir ?? runtimeDir()
  let privateDir: string
  try {
    privateDir = await mkdtemp(join(base, 'hearth-provider-'))
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `cannot make a private directory for the provider's socket under ${base}`, {
      cause,
      hint: 'set XDG_RUNTIME_DIR or TMPDIR to a writable directory, or use a data directory with a shorter path',
    })
  }
  // mkdtemp makes it 0700 whatever the umask; make sure of it anyway, it is what keeps other users out.
  await chmod(privateDir, 0o700)
  const socket = join(privateDir, socketFileName)
  if (Buffer.byteLength(socket) > maxSocketPathBytes) {
    await rm(privateDir, { recursive: true, force: true })
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the provider's socket path ${socket} is too long for a unix socket`, {
      hint: 'set XDG_RUNTIME_DIR or TMPDIR to a directory with a shorter path',
    })
  }
  return { socket, privateDir }
}

/**
 * Clears the way for the socket: nothing there, or a dead socket of this user's (a killed provider's) which is
 * removed. Anything else is refused: a live socket (a provider still serving), a file, a link, another user's socket.
 */
async function claimSocketPath(socket: string): Promise<void> {
  let stats
  try {
    stats = await lstat(socket)
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `cannot inspect ${socket}`, { cause })
  }
  const ours = typeof process.getuid !== 'function' || stats.uid === process.getuid()
  if (!stats.isSocket() || !ours) {
    const what = stats.isSymbolicLink() ? 'a symbolic link' : stats.isSocket() ? "another user's socket" : stats.isDirectory() ? 'a directory' : 'a file'
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `${socket} is already there as ${what}, not a socket this user's provider left behind; refusing to use it`, {
      hint: `if it is yours and no provider runs from this data directory, remove it: rm ${socket}`,
    })
  }
  const live = await new Promise<boolean>((done) => {
    const probe = createConnection(socket)
    probe.once('connect', () => {
      probe.destroy()
      done(true)
    })
    probe.once('error', () => done(false))
  })
  if (live) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `a provider is already serving its local API at ${socket}`, { hint: 'stop it first: hearth provider stop --data-dir DIR' })
  }
  await unlink(socket)
}

/**
 * Listens on `socket` with the umask at 0177, so the socket is 0600 from the instant it exists: bind() creates it,
 * and a chmod after listen() would leave a window in which anyone may connect. Node binds synchronously inside
 * listen(), so the umask is back to what it was before any other code runs.
 */
async function listenPrivately(server: Server, socket: string): Promise<void> {
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject)
    const umask = process.umask(0o177)
    try {
      server.listen(socket, () => {
        server.off('error', reject)
        resolveListen()
      })
    } finally {
      process.umask(umask)
    }
  })
}

export interface LocalApiServer {
  close(): Promise<void>
}

/** Serves the API; `handle` answers each authenticated command. */
export async function serveLocalApi(init: {
  dataDir: string
  info: Omit<LocalApiInfo, 'socket' | 'pid'>
  handle: (command: ApiCommand) => Promise<unknown>
  /** Where a private socket directory is made when the data directory's path is too long; default: see runtimeDir. */
  runtimeDir?: string
}): Promise<LocalApiServer> {
  const key = Buffer.from(await loadOrCreateApiKey(init.dataDir))
  const { socket, privateDir } = await socketLocation(init.dataDir, init.runtimeDir === undefined ? {} : { runtimeDir: init.runtimeDir })
  const removePrivateDir = async (): Promise<void> => {
    if (privateDir !== undefined) await rm(privateDir, { recursive: true, force: true })
  }
  try {
    // A socket left by a killed provider would make listen fail with EADDRINUSE; anything else there is refused.
    await claimSocketPath(socket)
  } catch (error) {
    await removePrivateDir()
    throw error
  }
  const server: Server = createServer((conn) => {
    let buffered = ''
    conn.setEncoding('utf8')
    conn.on('error', () => undefined)
    conn.on('data', (chunk: string) => {
      buffered += chunk
      if (buffered.length > 64 * 1024) return conn.destroy()
      const newline = buffered.indexOf('\n')
      if (newline === -1) return
      const line = buffered.slice(0, newline)
      void answer(line).then((reply) => conn.end(`${JSON.stringify(reply)}\n`))
    })
  })
  async function answer(line: string): Promise<unknown> {
    try {
      const request = JSON.parse(line) as { key?: unknown; command?: unknown }
      const given = Buffer.from(typeof request.key === 'string' ? request.key : '')
      if (given.length !== key.length || !timingSafeEqual(given, key)) {
        throw new HearthError('HEARTH_ERR_PROVIDER_NOT_RUNNING', 'the local API refused the key', { hint: `read it from ${join(init.dataDir, apiKeyFile)}` })
      }
      if (!['status', 'stop', 'pause', 'resume'].includes(String(request.command))) {
        throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `unknown command ${JSON.stringify(request.command)}`)
      }
      return { ok: true, result: await init.handle(request.command as ApiCommand) }
    } catch (error) {
      const e = toHearthError(error)
      return { ok: false, error: { code: e.code, message: e.message, hint: e.hint } }
    }
  }
  try {
    await listenPrivately(server, socket)
  } catch (cause) {
    await removePrivateDir()
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `cannot serve the local API at ${socket}`, { cause })
  }
  const info: LocalApiInfo = { ...init.info, socket, pid: process.pid }
  await writeFile(join(init.dataDir, statusFile), `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 })
  return {
    async close() {
      await new Promise<void>((done) => server.close(() => done()))
      await rm(socket, { force: true })
      await removePrivateDir()
      await rm(join(init.dataDir, statusFile), { force: true })
    },
  }
}

/** The running provider's record, or undefined when none has started from this data directory. */
export async function readApiInfo(dataDir: string): Promise<LocalApiInfo | undefined> {
  const text = await readFile(join(dataDir, statusFile), 'utf8').catch(() => undefined)
  return text === undefined ? undefined : (JSON.parse(text) as LocalApiInfo)
}

/** Sends one command to the provider running from `dataDir`; throws HEARTH_ERR_PROVIDER_NOT_RUNNING when none answers. */
export async function callLocalApi(dataDir: string, command: ApiCommand, options: { timeoutMs?: number } = {}): Promise<unknown> {
  const info = await readApiInfo(dataDir)
  const notRunning = (why: string, cause?: unknown): HearthError =>
    new HearthError('HEARTH_ERR_PROVIDER_NOT_RUNNING', `no provider is running from ${dataDir}: ${why}`, {
      cause,
      hint: `start one with: hearth provider start --data-dir ${dataDir}`,
    })
  if (info === undefined) throw notRunning(`${statusFile} is absent`)
  const key = await readSecretFile(join(dataDir, apiKeyFile), { what: 'local API key file' }).catch((cause: unknown) => {
    throw notRunning(`cannot read ${apiKeyFile}: ${toHearthError(cause).shortMessage}`, cause)
  })
  const reply = await new Promise<string>((resolveReply, reject) => {
    const conn = createConnection(info.socket)
    let text = ''
    conn.setEncoding('utf8')
    conn.setTimeout(options.timeoutMs ?? 120_000, () => conn.destroy(new Error('timed out')))
    conn.on('connect', () => conn.write(`${JSON.stringify({ key: key.trim(), command })}\n`))
    conn.on('data', (chunk: string) => (text += chunk))
    conn.on('end', () => resolveReply(text))
    conn.on('error', (cause) => reject(notRunning(`its socket ${info.socket} does not answer (${cause.message}); it may have been killed`, cause)))
  })
  const parsed = JSON.parse(reply) as { ok: boolean; result?: unknown; error?: { code: string; message: string; hint?: string } }
  if (!parsed.ok) {
    const code = parsed.error?.code === 'HEARTH_ERR_CONFIG_INVALID' ? 'HEARTH_ERR_CONFIG_INVALID' : 'HEARTH_ERR_PROVIDER_NOT_RUNNING'
    throw new HearthError(code, parsed.error?.message ?? 'the provider refused the request', { ...(parsed.error?.hint === undefined ? {} : { hint: parsed.error.hint }) })
  }
  return parsed.result
}
