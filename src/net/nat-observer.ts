/**
 * The TCP side of hole punching (see hole-punch.ts): a relay's NAT observer, which answers each connection with the
 * address it came from; the probe that learns this node's public mapping through the observer's two ports; and the
 * simultaneous open from the probed local port.
 */
import { connect, createServer, isIP, type Server, type Socket } from 'node:net'
import { z } from 'zod'
import { HearthError } from '../errors.ts'

/** A TCP port, as an observer or a punch names it. */
export const port = z.number().int().min(1).max(65535)
/** An IPv4 or IPv6 address, as text. */
export const ipText = z.string().max(45).refine((text) => isIP(text) !== 0, 'an IPv4 or IPv6 address')

/** What a relay's observer saw of this node: its public address for `localPort`, and whether the NAT keeps it. */
export interface Mapping {
  localPort: number
  ip: string
  port: number
  /** The same public address towards both observer ports: a cone NAT (or none), where punching works. */
  endpointIndependent: boolean
}

export interface Observer {
  ports: [number, number]
  close(): Promise<void>
}

const maxObserverConnections = 256

/**
 * A relay's observer: on `host`, two TCP ports that answer each connection with one JSON line, the address and port
 * it came from, then close (the server closes first, so the asker's local port is free again at once).
 */
export async function startObserver(host: string, ports: [number, number] = [0, 0]): Promise<Observer> {
  const servers: Server[] = []
  const bound: number[] = []
  try {
    for (const wanted of ports) {
      const server = createServer({ noDelay: true }, (socket) => {
        socket.on('error', () => {})
        socket.setTimeout(5_000, () => socket.destroy())
        const ip = (socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, '')
        socket.end(`${JSON.stringify({ ip, port: socket.remotePort })}\n`)
      })
      server.maxConnections = maxObserverConnections
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ host, port: wanted }, () => resolve())
      })
      servers.push(server)
      bound.push((server.address() as { port: number }).port)
    }
  } catch (cause) {
    for (const server of servers) server.close()
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `Cannot start the NAT observer on ${host} ports ${ports.join(', ')}: ${(cause as Error).message}`, {
      cause,
      hint: 'choose other --observe-ports, or 0 0 for any free ones',
    })
  }
  return {
    ports: [bound[0]!, bound[1]!],
    close: async () => {
      await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
    },
  }
}

const wildcard = (ip: string): string => (isIP(ip) === 6 ? '::' : '0.0.0.0')

/**
 * One connection from `localPort` (0: any) to an observer port; resolves, once the socket is closed and the port free
 * again, to the address the observer saw. Bound with SO_REUSEADDR (libuv sets it on every bind), as the punch will be.
 */
function observeOnce(localPort: number, ip: string, observerPort: number, signal: AbortSignal): Promise<{ localPort: number; ip: string; port: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: ip, port: observerPort, localAddress: wildcard(ip), localPort, signal })
    let bound = 0
    let text = ''
    socket.once('connect', () => (bound = socket.localPort ?? 0))
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8')
      if (text.length > 256) socket.destroy(new Error('the observer answered more than one short line'))
    })
    socket.once('error', reject)
    socket.once('close', () => {
      try {
        const seen = z.strictObject({ ip: ipText, port }).parse(JSON.parse(text))
        resolve({ localPort: bound, ...seen })
      } catch (cause) {
        reject(new Error(`the observer at ${ip}:${observerPort} answered ${JSON.stringify(text.slice(0, 80))}: ${(cause as Error).message}`))
      }
    })
  })
}

/** This node's public mapping for one local port, seen through the observer's two ports. */
export async function probeMapping(observerIp: string, ports: readonly [number, number], signal: AbortSignal): Promise<Mapping> {
  const first = await observeOnce(0, observerIp, ports[0], signal)
  const second = await retrying(() => observeOnce(first.localPort, observerIp, ports[1], signal), signal)
  return {
    localPort: first.localPort,
    ip: second.ip,
    port: second.port,
    endpointIndependent: first.ip === second.ip && first.port === second.port,
  }
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason as Error) }, { once: true })
  })

/** Tries again (a port a moment ago in use, a SYN answered by a reset) until it works or `signal` aborts. */
async function retrying<T>(attempt: () => Promise<T>, signal: AbortSignal): Promise<T> {
  for (;;) {
    try {
      return await attempt()
    } catch {
      if (signal.aborted) throw signal.reason
      await sleep(100, signal)
    }
  }
}

/**
 * A TCP simultaneous open: connects from `localPort` to `ip:port` while the other side does the same towards us.
 * The kernel retransmits a SYN the other NAT dropped; a reset (a NAT that answers unsolicited SYNs) is retried.
 */
export function simultaneousOpen(localPort: number, ip: string, remotePort: number, signal: AbortSignal): Promise<Socket> {
  return retrying(() => new Promise<Socket>((resolve, reject) => {
    const socket = connect({ host: ip, port: remotePort, localAddress: wildcard(ip), localPort })
    const onAbort = (): void => { socket.destroy(); reject(signal.reason as Error) }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => {
      signal.removeEventListener('abort', onAbort)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (error) => {
      signal.removeEventListener('abort', onAbort)
      reject(error)
    })
  }), signal)
}

