/**
 * A node's local API: HTTP on 127.0.0.1 (a random free port), the same on every platform, through which its owner's
 * commands reach a running node (`hearth provider status/stop`, `hearth service …` through `hearth requestor start`)
 * and its dashboard shows it. What the record and refusals are called is each node's own (`LocalApiKind`); its
 * commands come as a table (`CommandTable`), each with the schemas of its body and result, from which the OpenAPI
 * document (`GET /openapi.json`) is made and by which every body is checked before its handler sees it.
 *
 * Who may call: whoever can read `<data dir>/api.key` (0600 in the 0700 data directory). Any local process can reach
 * the port, so the key is the guard: every request carries it as `Authorization: Bearer <key>`, compared in constant
 * time. A web page in the owner's browser can reach the port too, so a request whose Host is not this API's own
 * address (DNS rebinding) or that carries a foreign Origin is refused before its key is looked at. Only 127.0.0.1 is
 * listened on; connections, header size, body size and the time to send a request are bounded (slowloris).
 *
 * Protocol: `POST /v1/<command>` with an empty body or a JSON object of at most 64 KiB (by default; a command may
 * allow more). The answer is JSON, `{ ok: true, result }` or `{ ok: false, error: { code, message, hint } }`, its HTTP
 * status saying which refusal it is (see `refusals`). Big integers in a result are sent as decimal strings. Besides:
 * `GET /metrics` (Prometheus text, with the key), the node's event feed as a WebSocket at `/v1/events` (the key in its
 * first message, since a browser cannot set headers on one), and the dashboard's static files and `GET /openapi.json`
 * without a key: they hold no data (local-api-web.ts).
 *
 * The node's status file in the data directory (0600, e.g. `provider.json`) says where the API listens and which
 * process serves it, so callers find it; it is removed when the node stops, and one left by a killed node is
 * recognised by its dead pid.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { join } from 'node:path'
import { errorInfo, HearthError, isErrorCode, toHearthError, type ErrorCode } from '../errors.ts'
import { readSecretFile } from '../identity/node-identity.ts'
import { describeIssues } from './describe-issues.ts'
import { openApiDocument } from './local-api-doc.ts'
import type { ApiCommandSpec, CommandTable, LocalApiKind, LocalApiWeb } from './local-api-types.ts'
import { createEventSockets, serveAsset } from './local-api-web.ts'

export { command } from './local-api-types.ts'
export type { ApiCommandSpec, CommandTable, LocalApiKind, LocalApiWeb } from './local-api-types.ts'

export const apiKeyFile = 'api.key'

/** What every record says: the serving process and the API's base URL, `http://127.0.0.1:<port>`. */
export interface LocalApiRecord {
  pid: number
  url: string
}

/** Bounds on what one client may hold of the server (slowloris, floods of connections, huge requests). */
export interface LocalApiLimits {
  /** Time to send all headers; default 5 s. */
  headersTimeoutMs: number
  /** Time to send the whole request, body included; default 10 s. */
  requestTimeoutMs: number
  /** Open connections at once; those beyond are closed at once. Default 32. */
  maxConnections: number
  /** Largest request body; default 64 KiB. */
  maxBodyBytes: number
}

export const defaultLocalApiLimits: LocalApiLimits = { headersTimeoutMs: 5_000, requestTimeoutMs: 10_000, maxConnections: 32, maxBodyBytes: 64 * 1024 }

/**
 * The API key of the data directory, created (0600) on first use. One that group or others could read is replaced
 * by a fresh one rather than trusted: whoever read it could stop the node.
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

/** Every way the API refuses a request, once: the HTTP status, and the Hearth code a client acts on. */
const refusals = {
  malformed: { status: 400, code: 'HEARTH_ERR_NET_MESSAGE_INVALID' },
  unauthorized: { status: 401, code: undefined },
  forbidden: { status: 403, code: 'HEARTH_ERR_NET_MESSAGE_INVALID' },
  notFound: { status: 404, code: 'HEARTH_ERR_NET_MESSAGE_INVALID' },
  methodNotAllowed: { status: 405, code: 'HEARTH_ERR_NET_MESSAGE_INVALID' },
  tooLarge: { status: 413, code: 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE' },
  unsupportedMediaType: { status: 415, code: 'HEARTH_ERR_NET_MESSAGE_INVALID' },
} as const satisfies Record<string, { status: number; code: ErrorCode | undefined }>

type RefusalKind = keyof typeof refusals

/** A request the API will not answer; its kind gives the HTTP status. Never leaves this module. */
class Refusal extends HearthError {
  readonly status: number
  constructor(
    kind: RefusalKind,
    message: string,
    options: { hint?: string; code?: ErrorCode; headers?: Record<string, string> } = {},
  ) {
    super(options.code ?? refusals[kind].code ?? 'HEARTH_ERR_NET_MESSAGE_INVALID', message, options.hint === undefined ? {} : { hint: options.hint })
    this.status = refusals[kind].status
    this.headers = options.headers ?? {}
  }
  readonly headers: Record<string, string>
}

export interface LocalApiServer {
  /** The base URL, `http://127.0.0.1:<port>`. */
  readonly url: string
  close(): Promise<void>
}

export interface ServeApiInit {
  dataDir: string
  kind: LocalApiKind
  /** Recorded in the status file beside the pid and URL. */
  info: Record<string, unknown>
  commands: CommandTable
  web?: LocalApiWeb
  limits?: Partial<LocalApiLimits>
}

/** Serves the API on 127.0.0.1 and records where in the kind's status file. */
export async function serveApi(init: ServeApiInit): Promise<LocalApiServer> {
  const { kind, commands } = init
  const limits = { ...defaultLocalApiLimits, ...init.limits }
  const names = Object.keys(commands)
  const keyDigest = sha256(await loadOrCreateApiKey(init.dataDir))
  const keyPath = join(init.dataDir, apiKeyFile)
  let port = 0

  const server: Server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // How often the two timeouts above are enforced (Node's default, 30 s, would let a slow client stay that long).
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, limits.headersTimeoutMs / 2)),
      maxHeaderSize: 8 * 1024,
      keepAliveTimeout: 5_000,
    },
    (req, res) => {
      void answer(req, res).catch(() => res.destroy())
    },
  )
  server.maxConnections = limits.maxConnections
  // headersTimeout counts from a request's first byte: a client that connects and says nothing would hold its slot
  // forever. One that has started a request is left to the timeouts above, which answer it 408.
  // (A timer of its own: Node's http server destroys any socket whose socket.setTimeout fires.)
  server.on('connection', (socket: Socket) => {
    const silence = setTimeout(() => socket.bytesRead === 0 && socket.destroy(), limits.headersTimeoutMs).unref()
    socket.once('close', () => clearTimeout(silence))
  })

  const keyMatches = (key: string): boolean => timingSafeEqual(sha256(key), keyDigest)
  const events = init.web?.events === undefined ? undefined : createEventSockets(init.web.events, keyMatches, limits.maxConnections)

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let spec: ApiCommandSpec<never>
    let body: Record<string, unknown>
    try {
      checkHost(req, port)
      checkOrigin(req, port)
      if (req.method === 'GET' || req.method === 'HEAD') return await answerGet(req, res)
      checkKey(req, keyMatches, keyPath, kind)
      spec = commands[route(req, names)]!
      body = checkBody(spec, await readJsonBody(req, spec.maxBodyBytes ?? limits.maxBodyBytes))
    } catch (error) {
      if (!(error instanceof Refusal)) throw error
      // The body may be unread (refused before it was looked at): close rather than read on for the next request.
      return reply(res, error.status, failure(error), { ...error.headers, connection: 'close' })
    }
    try {
      reply(res, 200, { ok: true, result: await spec.handle(body as never) })
    } catch (error) {
      // The caller's mistake (a bad filter, a job file that does not check) is a 400; anything else, a 500.
      const failed = toHearthError(error)
      reply(res, errorInfo(failed.code).fault === 'caller' ? 400 : 500, failure(failed))
    }
  }

  /** What is read with GET: the OpenAPI document and the dashboard (no key: they hold no data), metrics (key). */
  async function answerGet(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname
    if (path === '/openapi.json') return reply(res, 200, openApiDocument({ kind, commands, url: `http://127.0.0.1:${port}`, web: init.web }))
    if (path === '/metrics' && init.web?.metrics !== undefined) {
      checkKey(req, keyMatches, keyPath, kind)
      const text = await init.web.metrics()
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)) })
      res.end(req.method === 'HEAD' ? undefined : text)
      return
    }
    if (path.startsWith('/v1/')) route(req, names)
    if (init.web?.assetsDir !== undefined && (await serveAsset(init.web.assetsDir, path, port, req, res))) return
    throw new Refusal('notFound', `nothing to GET at ${path}`, { hint: `commands are sent with POST /v1/<command>; the API is described at GET /openapi.json` })
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      checkHost(req, port)
      checkOrigin(req, port)
      const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname
      if (events === undefined || path !== '/v1/events') throw new Refusal('notFound', `no WebSocket at ${path}`)
      events.upgrade(req, socket, head)
    } catch (error) {
      const status = error instanceof Refusal ? error.status : 500
      socket.end(`HTTP/1.1 ${status} Refused\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
    }
  })

  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject)
    // 127.0.0.1 only, never every interface: the API is for this machine.
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject)
      resolveListen()
    })
  }).catch((cause: unknown) => {
    throw new HearthError(kind.codes.localApi, 'cannot serve the local API on 127.0.0.1', { cause, hint: 'check that the loopback interface is up' })
  })
  port = (server.address() as AddressInfo).port
  const url = `http://127.0.0.1:${port}`
  const statusPath = join(init.dataDir, kind.statusFile)
  try {
    await writePrivateFile(statusPath, `${JSON.stringify({ ...init.info, url, pid: process.pid }, null, 2)}\n`)
  } catch (cause) {
    server.close()
    throw new HearthError(kind.codes.localApi, `cannot write ${statusPath}`, { cause, hint: `the data directory must be writable by the ${kind.who}` })
  }
  return {
    url,
    async close() {
      events?.close()
      const closed = new Promise<void>((done) => server.close(() => done()))
      // A slow or idle client must not hold the node's exit up.
      server.closeAllConnections()
      await closed
      await rm(statusPath, { force: true })
    },
  }
}

function failure(error: HearthError): { ok: false; error: { code: ErrorCode; message: string; hint?: string } } {
  return { ok: false, error: { code: error.code, message: error.shortMessage, ...(error.hint === undefined ? {} : { hint: error.hint }) } }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/** The Host header must name this API itself: a DNS name rebound to 127.0.0.1 by a web page names something else. */
function checkHost(req: IncomingMessage, port: number): void {
  const host = (req.headers.host ?? '').toLowerCase()
  if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`) {
    throw new Refusal('forbidden', `the local API answers only requests addressed to 127.0.0.1:${port}, not ${JSON.stringify(req.headers.host ?? '')}`)
  }
}

/** Browsers send Origin on cross-site requests: only the API's own origin (a future dashboard it serves) may call. */
function checkOrigin(req: IncomingMessage, port: number): void {
  const origin = req.headers.origin
  if (origin === undefined) return
  if (origin !== `http://127.0.0.1:${port}` && origin !== `http://localhost:${port}`) {
    throw new Refusal('forbidden', `the local API does not answer requests from the web page ${JSON.stringify(origin)}`)
  }
}

/** `Authorization: Bearer <key>`; digests are compared, so neither the key's content nor its length leaks by timing. */
function checkKey(req: IncomingMessage, keyMatches: (key: string) => boolean, keyPath: string, kind: LocalApiKind): void {
  const match = /^Bearer ([^\s]+)$/i.exec(req.headers.authorization ?? '')
  const options = { hint: `send the key in ${keyPath} as "Authorization: Bearer <key>"`, code: kind.codes.notRunning, headers: { 'www-authenticate': `Bearer realm="${kind.realm}"` } }
  if (match === null) throw new Refusal('unauthorized', `the local API needs the key of the ${kind.who}'s data directory`, options)
  if (!keyMatches(match[1]!)) throw new Refusal('unauthorized', 'the local API refused the key', options)
}

function route(req: IncomingMessage, commands: readonly string[]): string {
  const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname
  const command = /^\/v1\/([a-z][a-z0-9-]*)$/.exec(path)?.[1]
  if (command === undefined || !commands.includes(command)) {
    throw new Refusal('notFound', `no such command: ${path}`, { hint: `the commands are ${commands.map((c) => `POST /v1/${c}`).join(', ')}` })
  }
  if (req.method !== 'POST') throw new Refusal('methodNotAllowed', `${req.method ?? '?'} ${path}: commands are sent with POST`, { headers: { allow: 'POST' } })
  return command
}

/** The body as the command's schema reads it; a command without one takes only an empty body or `{}`. */
function checkBody(spec: ApiCommandSpec<never>, body: Record<string, unknown>): Record<string, unknown> {
  if (spec.body === undefined) {
    if (Object.keys(body).length > 0) throw new Refusal('malformed', `this command takes no body, but got ${Object.keys(body).slice(0, 5).join(', ')}`, spec.invalidCode === undefined ? {} : { code: spec.invalidCode })
    return body
  }
  const parsed = spec.body.safeParse(body)
  if (!parsed.success) throw new Refusal('malformed', describeIssues(parsed.error).text, { code: spec.invalidCode ?? 'HEARTH_ERR_NET_MESSAGE_INVALID', hint: 'see the command\'s request body in GET /openapi.json' })
  return parsed.data as Record<string, unknown>
}

/** An empty body or a JSON object, read only up to `maxBytes` (the declared length is checked before reading). */
async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const tooLarge = (): Refusal => new Refusal('tooLarge', `the request body is larger than ${maxBytes} bytes`)
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) throw tooLarge()
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > maxBytes) throw tooLarge()
    chunks.push(chunk)
  }
  if (size === 0) return {}
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new Refusal('unsupportedMediaType', 'a request body must be JSON (Content-Type: application/json)')
  let body: unknown
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new Refusal('malformed', 'the request body is not valid JSON')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Refusal('malformed', 'the request body must be a JSON object')
  return body as Record<string, unknown>
}

function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  })
  res.end(text)
}

/** Written beside, then renamed over: a reader never sees half a file, and the file is 0600 even if one was there. */
async function writePrivateFile(path: string, text: string): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`
  await rm(temporary, { force: true })
  await writeFile(temporary, text, { mode: 0o600, flag: 'wx' })
  await chmod(temporary, 0o600)
  await rename(temporary, path)
}

/** True while a process with this pid exists (EPERM: it does, but is another user's). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * The record of the node of this kind last started from `dataDir`, or undefined when none is; it may be a dead
 * process's (see processAlive). A record that is not one (damaged, or from a Hearth that served a unix socket) is refused.
 */
export async function readApiRecord<T extends LocalApiRecord>(dataDir: string, kind: LocalApiKind): Promise<T | undefined> {
  const path = join(dataDir, kind.statusFile)
  const text = await readFile(path, 'utf8').catch((cause: NodeJS.ErrnoException) => {
    if (cause.code === 'ENOENT') return undefined
    throw new HearthError(kind.codes.localApi, `cannot read ${path}`, { cause })
  })
  if (text === undefined) return undefined
  let record: Partial<LocalApiRecord> | undefined
  try {
    record = JSON.parse(text) as Partial<LocalApiRecord>
  } catch {
    record = undefined
  }
  // Only a loopback URL: the key is sent there.
  if (typeof record?.pid !== 'number' || typeof record.url !== 'string' || !/^http:\/\/127\.0\.0\.1:\d{1,5}$/.test(record.url)) {
    throw new HearthError(kind.codes.localApi, `${path} does not record a ${kind.who}'s local API (a pid and an http://127.0.0.1 URL)`, {
      hint: `if no ${kind.who} runs from ${dataDir}, remove the file; one from an older Hearth (local API on a unix socket) must be stopped by that version`,
    })
  }
  return record as T
}

/**
 * Sends one command (with an optional JSON body) to the node of this kind running from `dataDir`; throws the kind's
 * notRunning code when none answers, and the node's own error when it refuses.
 */
export async function callApi(
  dataDir: string,
  kind: LocalApiKind,
  command: string,
  body?: Record<string, unknown>,
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<unknown> {
  const notRunning = (why: string, cause?: unknown): HearthError =>
    new HearthError(kind.codes.notRunning, `the ${kind.who} is not running (${why})`, { cause, hint: `start one with: ${kind.startCommand} --data-dir ${dataDir}` })
  const info = await readApiRecord(dataDir, kind)
  if (info === undefined) throw notRunning(`no ${kind.statusFile} in ${dataDir}`)
  // A node killed outright leaves its record behind; its dead pid says so, and nothing is sent to its old port.
  if (!processAlive(info.pid)) throw notRunning(`pid ${info.pid} is gone; ${join(dataDir, kind.statusFile)} is what it left`)
  const key = await readSecretFile(join(dataDir, apiKeyFile), { what: 'local API key file' }).catch((cause: unknown) => {
    throw notRunning(`cannot read ${apiKeyFile}: ${toHearthError(cause).shortMessage}`, cause)
  })
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 120_000)
  let response: Response
  try {
    response = await fetch(`${info.url}/v1/${command}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.trim()}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]),
    })
  } catch (cause) {
    const reason = (cause as { cause?: { code?: string } }).cause?.code ?? (cause as Error).message
    throw notRunning(`its local API at ${info.url} (pid ${info.pid}) does not answer (${reason})`, cause)
  }
  const answer = (await response.json().catch(() => undefined)) as { ok?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown; hint?: unknown } } | undefined
  if (answer?.ok === true) return answer.result
  const code: ErrorCode = isErrorCode(answer?.error?.code) ? answer.error.code : 'HEARTH_ERR_INTERNAL'
  const message = typeof answer?.error?.message === 'string' ? answer.error.message : `the local API at ${info.url} answered HTTP ${response.status} without an explanation`
  throw new HearthError(code, message, {
    ...(typeof answer?.error?.hint === 'string' ? { hint: answer.error.hint } : {}),
    details: { httpStatus: response.status },
  })
}
