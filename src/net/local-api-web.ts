/**
 * What a node's local API serves besides its commands: the dashboard's static files and the event feed as a
 * WebSocket (see local-api-server.ts for the guards every request passes first: Host, Origin, limits).
 *
 * The files are the built dashboard (index.html, assets/): no data, so no key; a strict Content-Security-Policy keeps
 * the page to its own scripts and its own API. The page learns the key from its URL's fragment (`hearth ui` opens it
 * so), which browsers never send to the server nor in a Referer.
 *
 * The event feed: a browser cannot set headers on a WebSocket, so the key is the client's first message,
 * `{"type":"auth","key":"…"}`, within 5 s; until then nothing is sent, and a wrong key closes the socket (4401). Then
 * every event of the node is sent as `{"type":"event","topic":…,"atMs":…,"data":…}`. A client that does not keep up
 * (over 1 MiB unsent) is closed (1013) rather than buffered for: the dashboard reconnects and reads the state again.
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, join, normalize, sep } from 'node:path'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'

/** One thing that happened on the node, as the feed sends it. */
export interface NodeEvent {
  /** What it is about: `job`, `service`, `storage`, `provider`, `payment`. */
  topic: string
  data: unknown
}

export interface EventFeed {
  /** Calls `listener` with every event from now on; returns the function that stops it. */
  subscribe(listener: (event: NodeEvent) => void): () => void
}

/** A feed that others publish into: the node's parts publish, the API's sockets subscribe. */
export function createEventHub(): EventFeed & { publish(event: NodeEvent): void } {
  const listeners = new Set<(event: NodeEvent) => void>()
  return {
    subscribe(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    publish(event) {
      for (const listener of listeners) {
        try {
          listener(event)
        } catch {
          // A listener's failure is its own: the others still hear the event.
        }
      }
    },
  }
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
}

/**
 * Serves `path` from the built dashboard when it is there: `/` is index.html; a path outside the folder (`..`,
 * encoded or not) or a folder is not. Returns false when there is no such file.
 */
export async function serveAsset(assetsDir: string, path: string, port: number, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  let decoded: string
  try {
    decoded = decodeURIComponent(path)
  } catch {
    return false
  }
  const relative = normalize(decoded === '/' ? '/index.html' : decoded).replace(/^[/\\]+/, '')
  if (relative.startsWith('..') || relative.includes(`${sep}..`) || relative.includes('\0')) return false
  const file = join(assetsDir, relative)
  const info = await stat(file).catch(() => undefined)
  if (info === undefined || !info.isFile()) return false
  const origin = `127.0.0.1:${port}`
  res.writeHead(200, {
    'content-type': contentTypes[extname(file)] ?? 'application/octet-stream',
    'content-length': String(info.size),
    'cache-control': relative === 'index.html' ? 'no-store' : 'no-cache',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'content-security-policy': `default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws://${origin} ws://localhost:${port}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`,
  })
  if (req.method === 'HEAD') {
    res.end()
    return true
  }
  createReadStream(file).pipe(res)
  return true
}

const authTimeoutMs = 5_000
const maxUnsentBytes = 1024 * 1024

export interface EventSockets {
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  close(): void
}

/** The feed's WebSockets: at most `maxSockets` at once, each authenticated by its first message. */
export function createEventSockets(feed: EventFeed, keyMatches: (key: string) => boolean, maxSockets: number): EventSockets {
  // Small frames only from clients: the first message is the key, and nothing after it is read.
  const server = new WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false })
  const open = new Set<WebSocket>()

  function serve(socket: WebSocket): void {
    open.add(socket)
    let unsubscribe: (() => void) | undefined
    const timer = setTimeout(() => socket.close(4401, 'no key within 5 s'), authTimeoutMs)
    socket.once('close', () => {
      clearTimeout(timer)
      unsubscribe?.()
      open.delete(socket)
    })
    socket.on('error', () => socket.terminate())
    socket.on('message', (data, isBinary) => {
      if (unsubscribe !== undefined) return
      clearTimeout(timer)
      let key: unknown
      try {
        key = isBinary ? undefined : (JSON.parse(data.toString()) as { type?: unknown; key?: unknown }).key
      } catch {
        key = undefined
      }
      if (typeof key !== 'string' || key.length > 256 || !keyMatches(key)) {
        socket.close(4401, 'the key is wrong: send {"type":"auth","key":"<the key in api.key>"} first')
        return
      }
      socket.send(JSON.stringify({ type: 'ready' }))
      unsubscribe = feed.subscribe((event) => {
        if (socket.readyState !== socket.OPEN) return
        if (socket.bufferedAmount > maxUnsentBytes) {
          socket.close(1013, 'too slow to keep up: reconnect and read the state again')
          return
        }
        socket.send(JSON.stringify({ type: 'event', topic: event.topic, atMs: Date.now(), data: event.data }, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value)))
      })
    })
  }

  return {
    upgrade(req, socket, head) {
      if (open.size >= maxSockets) {
        socket.end('HTTP/1.1 503 Too Many Event Sockets\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
        return
      }
      server.handleUpgrade(req, socket, head, serve)
    },
    close() {
      for (const socket of open) socket.terminate()
      server.close()
    },
  }
}
