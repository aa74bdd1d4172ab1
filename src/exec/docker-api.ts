/**
 * A small client for the Docker Engine API over a unix socket, with node:http only (no dockerode: one dependency less,
 * and the few calls the docker runtime makes are plain HTTP). It speaks to Docker and to podman's compatible service
 * (`podman system service`) alike. Every call is bounded in time and in the size of the answer it buffers.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { request } from 'node:http'
import type { IncomingMessage } from 'node:http'
import { pipeline as pipe } from 'node:stream'
import type { Duplex, Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { HearthError } from '../errors.ts'

/** The API version every request names: Docker 20.10+ and podman 4 serve it. */
export const dockerApiVersion = '1.41'
const maxAnswerBytes = 16 << 20
const defaultCallTimeoutMs = 30_000

export interface DockerAnswer {
  status: number
  body: Buffer
}

export interface DockerCall {
  method: string
  /** Without the version prefix, e.g. `/containers/create`. */
  path: string
  query?: Record<string, string | number | boolean | undefined>
  json?: unknown
  /** A host file sent as the body (an image archive). */
  file?: string
  /** A stream sent as the body (an image archive rewritten on the way, see docker-images.ts). */
  body?: Readable
  contentType?: string
  timeoutMs?: number
  /** false: `path` is used as is, without `/v1.41` (for `/_ping` and `/version`). */
  versioned?: boolean
}

export class DockerApi {
  constructor(readonly socketPath: string) {}

  private url(call: DockerCall): string {
    const query = new URLSearchParams()
    for (const [key, value] of Object.entries(call.query ?? {})) if (value !== undefined) query.set(key, String(value))
    const text = query.toString()
    return `${call.versioned === false ? '' : `/v${dockerApiVersion}`}${call.path}${text === '' ? '' : `?${text}`}`
  }

  /** One call, its answer buffered (up to 16 MiB). Throws only when the socket cannot be reached or the call times out. */
  call(call: DockerCall): Promise<DockerAnswer> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {}
      let body: Buffer | undefined
      if (call.json !== undefined) {
        body = Buffer.from(JSON.stringify(call.json))
        headers['content-type'] = 'application/json'
      } else if (call.file !== undefined || call.body !== undefined) {
        headers['content-type'] = call.contentType ?? 'application/x-tar'
      }
      const req = request({ socketPath: this.socketPath, method: call.method, path: this.url(call), headers, timeout: call.timeoutMs ?? defaultCallTimeoutMs })
      req.on('timeout', () => req.destroy(new Error(`the Docker API did not answer ${call.method} ${call.path} within ${call.timeoutMs ?? defaultCallTimeoutMs} ms`)))
      req.on('error', reject)
      req.on('response', (res) => {
        readAll(res).then((data) => resolve({ status: res.statusCode ?? 0, body: data }), reject)
      })
      const source = call.body ?? (call.file === undefined ? undefined : createReadStream(call.file))
      if (source !== undefined) {
        // pipeline, not pipe: an engine that hangs up mid-body also closes the source (and its file handles).
        pipe(source, req, (error) => {
          if (error) req.destroy(error)
        })
      } else {
        req.end(body)
      }
    })
  }

  /** A GET whose 200 answer is streamed into a host file (an image archive may be far larger than 16 MiB). */
  download(call: DockerCall, path: string, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socketPath, method: call.method, path: this.url(call), timeout: call.timeoutMs ?? defaultCallTimeoutMs })
      req.on('timeout', () => req.destroy(new Error(`the Docker API did not answer ${call.method} ${call.path} within ${call.timeoutMs ?? defaultCallTimeoutMs} ms`)))
      req.on('error', reject)
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          readAll(res).then((body) => reject(apiError(what, { status: res.statusCode ?? 0, body })), reject)
          return
        }
        pipeline(res, createWriteStream(path)).then(resolve, reject)
      })
      req.end()
    })
  }

  /** A call whose answer must be 2xx; its JSON body (or undefined when empty). */
  async json<T>(call: DockerCall, what: string): Promise<T> {
    const answer = await this.call(call)
    if (answer.status < 200 || answer.status >= 300) throw apiError(what, answer)
    const text = answer.body.toString('utf8').trim()
    return (text === '' ? undefined : JSON.parse(text)) as T
  }

  /**
   * Attaches to a created container's stdout and stderr before it starts (as `docker run` does), so nothing it writes
   * is missed. The Docker API hijacks the connection (HTTP 101); some servers answer 200 and stream the body instead.
   */
  attach(id: string, timeoutMs: number): Promise<Readable | Duplex> {
    return new Promise((resolve, reject) => {
      const req = request({
        socketPath: this.socketPath,
        method: 'POST',
        path: this.url({ method: 'POST', path: `/containers/${id}/attach`, query: { stream: 1, stdout: 1, stderr: 1, logs: 0 } }),
        headers: { connection: 'Upgrade', upgrade: 'tcp' },
        timeout: timeoutMs,
      })
      req.on('timeout', () => req.destroy(new Error(`the Docker API did not attach to container ${id} within ${timeoutMs} ms`)))
      req.on('error', reject)
      req.on('upgrade', (_res, socket, head) => {
        socket.setTimeout(0)
        if (head.length > 0) socket.unshift(head)
        resolve(socket)
      })
      req.on('response', (res) => {
        if (res.statusCode === 200) {
          res.socket.setTimeout(0)
          resolve(res)
          return
        }
        readAll(res).then((body) => reject(apiError(`attach to container ${id}`, { status: res.statusCode ?? 0, body })), reject)
      })
      req.end()
    })
  }
}

function readAll(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    res.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > maxAnswerBytes) res.destroy(new Error(`the Docker API answered more than ${maxAnswerBytes} bytes`))
      else chunks.push(chunk)
    })
    res.on('end', () => resolve(Buffer.concat(chunks)))
    res.on('error', reject)
  })
}

/** The API's own message (`{"message": …}`) when there is one. */
export function apiMessage(answer: DockerAnswer): string {
  const text = answer.body.toString('utf8').trim()
  try {
    const parsed = JSON.parse(text) as { message?: unknown; cause?: unknown }
    if (typeof parsed.message === 'string') return parsed.message
  } catch {
    // not JSON: the text itself is the message
  }
  return text.slice(0, 500) || `HTTP ${answer.status}`
}

export function apiError(what: string, answer: DockerAnswer): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_FAILED', `the Docker API refused to ${what}: ${apiMessage(answer)} (HTTP ${answer.status})`, {
    details: { status: answer.status },
  })
}

/**
 * Splits Docker's multiplexed stream (a container without a TTY): frames of an 8-byte header — stream (1 stdout,
 * 2 stderr), three zero bytes, big-endian length — then the payload. Frames may span chunks.
 */
export class StreamDemuxer {
  private pending: Buffer = Buffer.alloc(0)

  constructor(private readonly onFrame: (stream: 'stdout' | 'stderr', payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    while (this.pending.length >= 8) {
      const size = this.pending.readUInt32BE(4)
      if (this.pending.length < 8 + size) break
      const kind = this.pending[0]
      const payload = this.pending.subarray(8, 8 + size)
      this.pending = this.pending.subarray(8 + size)
      // 0 is stdin echoed back (never attached here); anything else than 2 is treated as stdout, as the docker CLI does.
      if (kind !== 0) this.onFrame(kind === 2 ? 'stderr' : 'stdout', payload)
    }
  }

  /** Bytes of an incomplete frame left at the end. */
  get leftover(): number {
    return this.pending.length
  }
}
