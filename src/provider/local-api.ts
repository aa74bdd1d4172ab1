/**
 * The running provider's local API: a unix socket (mode 0600) in the data directory, one JSON request per
 * connection, each carrying the API key from `<data dir>/api.key` (mode 0600). Only someone who can read the data
 * directory can ask for the status or stop the provider. `provider.json` in the data directory says where the socket
 * is and which process serves it, so `hearth provider status` and `stop` find it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmod, readFile, rm, writeFile } from 'node:fs/promises'
import { createConnection, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { HearthError, toHearthError } from '../errors.ts'

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

/** The API key of the data directory, created (0600) on first use. */
export async function loadOrCreateApiKey(dataDir: string): Promise<string> {
  const path = join(dataDir, apiKeyFile)
  const existing = await readFile(path, 'utf8').catch(() => undefined)
  if (existing !== undefined && /^[0-9a-f]{64}$/.test(existing.trim())) {
    await chmod(path, 0o600)
    return existing.trim()
  }
  const key = randomBytes(32).toString('hex')
  await writeFile(path, `${key}\n`, { mode: 0o600 })
  await chmod(path, 0o600)
  return key
}

/** The socket path: in the data directory, or under the temp folder when that path is too long for a unix socket. */
export function socketPathFor(dataDir: string): string {
  const inDir = join(resolve(dataDir), 'provider.sock')
  if (Buffer.byteLength(inDir) <= 100) return inDir
  return join(tmpdir(), `hearth-provider-${createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 16)}.sock`)
}

export interface LocalApiServer {
  close(): Promise<void>
}

/** Serves the API; `handle` answers each authenticated command. */
export async function serveLocalApi(init: {
  dataDir: string
  info: Omit<LocalApiInfo, 'socket' | 'pid'>
  handle: (command: ApiCommand) => Promise<unknown>
}): Promise<LocalApiServer> {
  const key = Buffer.from(await loadOrCreateApiKey(init.dataDir))
  const socket = socketPathFor(init.dataDir)
  // A socket left by a killed provider would make listen fail with EADDRINUSE.
  await rm(socket, { force: true })
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
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject)
    server.listen(socket, () => resolveListen())
  })
  await chmod(socket, 0o600)
  const info: LocalApiInfo = { ...init.info, socket, pid: process.pid }
  await writeFile(join(init.dataDir, statusFile), `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 })
  return {
    async close() {
      await new Promise<void>((done) => server.close(() => done()))
      await rm(socket, { force: true })
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
  const key = await readFile(join(dataDir, apiKeyFile), 'utf8').catch((cause: unknown) => {
    throw notRunning(`cannot read ${apiKeyFile}`, cause)
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
