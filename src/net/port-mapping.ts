/**
 * Port mapping: a home router that offers it forwards a public TCP port to this machine on request, so a node behind
 * it becomes dialable without a relay. NAT-PMP (RFC 6886) is asked first: two requests over UDP to the default
 * gateway's port 5351, the router's public address (opcode 0) and a TCP mapping (opcode 2) that lasts a lifetime and
 * is renewed. Where the router offers none, UPnP IGD (upnp-igd.ts), which most home routers offer instead.
 *
 * The gateway is read from the routing table (/proc/net/route) on Linux; elsewhere none is known and nothing is asked.
 * Nothing here trusts the answer: reachability.ts announces a mapped address only after a peer dialled it back.
 */
import { createSocket } from 'node:dgram'
import { readFile } from 'node:fs/promises'
import { findIgd, upnpMapTcp, upnpUnmapTcp, type IgdControl } from './upnp-igd.ts'

export const natPmpPort = 5351

export type PortMappingProtocol = 'nat-pmp' | 'upnp'

export interface PortMapping {
  /** Which protocol the router mapped the port by; the mapping is renewed and removed by the same. */
  protocol: PortMappingProtocol
  /** The router's public address. */
  externalIp: string
  externalPort: number
  /** This machine's address on the router's side, the one the mapping forwards to. */
  internalIp: string
  internalPort: number
  /** Seconds the router keeps the mapping; renew it before half of that has passed. */
  lifetimeSec: number
}

/** The IPv4 default gateway from a Linux routing table (/proc/net/route's text), or undefined. */
export function defaultGatewayFromRouteTable(table: string): string | undefined {
  for (const line of table.split('\n').slice(1)) {
    const [, destination, gateway, flags] = line.trim().split(/\s+/)
    // Destination 0.0.0.0 with the gateway flag (0x2): the default route. Fields are little-endian hex.
    if (destination !== '00000000' || gateway === undefined || flags === undefined || (Number.parseInt(flags, 16) & 0x2) === 0) continue
    const value = Number.parseInt(gateway, 16)
    if (!Number.isFinite(value) || value === 0) continue
    return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff].join('.')
  }
  return undefined
}

/** This machine's default gateway, where the platform tells (Linux); undefined elsewhere or when there is none. */
export async function defaultGateway(): Promise<string | undefined> {
  if (process.platform !== 'linux') return undefined
  const table = await readFile('/proc/net/route', 'utf8').catch(() => undefined)
  return table === undefined ? undefined : defaultGatewayFromRouteTable(table)
}

const resultMessages: Record<number, string> = {
  1: 'unsupported NAT-PMP version',
  2: 'not authorised: port mapping is switched off on the router',
  3: 'network failure on the router',
  4: 'out of resources on the router',
  5: 'unsupported opcode',
}

/**
 * One NAT-PMP request, sent again after 250 ms, 500 ms, 1 s (RFC 6886 asks for up to nine tries; a router that has
 * not answered in two seconds is taken to offer none). Resolves to the answer whose opcode matches.
 */
async function ask(gateway: string, request: Buffer, signal: AbortSignal): Promise<{ answer: Buffer; localIp: string }> {
  const socket = createSocket('udp4')
  try {
    return await new Promise<{ answer: Buffer; localIp: string }>((resolve, reject) => {
      let wait = 250
      let timer: NodeJS.Timeout | undefined
      const fail = (error: Error): void => {
        clearTimeout(timer)
        reject(error)
      }
      const send = (): void => {
        socket.send(request, (error) => error && fail(error))
        if (wait > 1_000) {
          timer = setTimeout(() => fail(new Error(`the gateway ${gateway} does not answer NAT-PMP`)), wait)
          return
        }
        timer = setTimeout(send, wait)
        wait *= 2
      }
      // A connected socket hears of an ICMP "port unreachable" (a router without NAT-PMP) at once, as an error.
      socket.on('error', (error: NodeJS.ErrnoException) => fail(error.code === 'ECONNREFUSED' ? new Error(`the gateway ${gateway} does not offer NAT-PMP (UDP port ${natPmpPort} is closed)`) : error))
      socket.on('message', (message, from) => {
        if (from.address !== gateway || message.length < 8 || message[0] !== 0 || message[1] !== request[1]! + 128) return
        clearTimeout(timer)
        const result = message.readUInt16BE(2)
        if (result !== 0) reject(new Error(`the router refused: ${resultMessages[result] ?? `result code ${result}`}`))
        else resolve({ answer: message, localIp: socket.address().address })
      })
      signal.addEventListener('abort', () => fail(signal.reason as Error), { once: true })
      socket.connect(natPmpPort, gateway, send)
    })
  } finally {
    socket.close()
  }
}

/** The router's public IPv4 address. */
export async function natPmpExternalAddress(gateway: string, signal: AbortSignal): Promise<string> {
  const { answer } = await ask(gateway, Buffer.from([0, 0]), signal)
  if (answer.length < 12) throw new Error('the router answered a short NAT-PMP message')
  return [answer[8], answer[9], answer[10], answer[11]].join('.')
}

/**
 * Asks the router to forward TCP `externalPort` (a wish: it may give another) to this machine's `internalPort` for
 * `lifetimeSec`; a lifetime of 0 removes the mapping.
 */
export async function natPmpMapTcp(gateway: string, internalPort: number, externalPort: number, lifetimeSec: number, signal: AbortSignal): Promise<PortMapping> {
  const request = Buffer.alloc(12)
  request[1] = 2 // opcode: map TCP
  request.writeUInt16BE(internalPort, 4)
  request.writeUInt16BE(externalPort, 6)
  request.writeUInt32BE(lifetimeSec, 8)
  const [{ answer, localIp }, externalIp] = await Promise.all([ask(gateway, request, signal), lifetimeSec === 0 ? Promise.resolve('') : natPmpExternalAddress(gateway, signal)])
  if (answer.length < 16) throw new Error('the router answered a short NAT-PMP message')
  return { protocol: 'nat-pmp', externalIp, internalIp: localIp, internalPort: answer.readUInt16BE(8), externalPort: answer.readUInt16BE(10), lifetimeSec: answer.readUInt32BE(12) }
}

export interface PortMapper {
  /**
   * Asks the gateway to forward TCP `externalPort` (a wish: it may give another) to this machine's `internalPort` for
   * `lifetimeSec`: by NAT-PMP, else by UPnP IGD. The protocol that mapped last is asked first the next time.
   */
  map(internalPort: number, externalPort: number, lifetimeSec: number, signal: AbortSignal): Promise<PortMapping>
  /** Removes a mapping by the protocol that made it. */
  unmap(mapping: PortMapping, signal: AbortSignal): Promise<void>
}

/** The protocols' names as the owner reads them. */
export const protocolNames: Record<PortMappingProtocol, string> = { 'nat-pmp': 'NAT-PMP', upnp: 'UPnP IGD' }

/** A port mapper for one gateway; it remembers the router's UPnP service once found, and looks again after a failure. */
export function createPortMapper(gateway: string): PortMapper {
  let igd: IgdControl | undefined
  let preferred: PortMappingProtocol = 'nat-pmp'
  const upnp = async <T>(signal: AbortSignal, use: (igd: IgdControl) => Promise<T>): Promise<T> => {
    try {
      igd ??= await findIgd(gateway, signal)
      return await use(igd)
    } catch (error) {
      igd = undefined // the router may have restarted on another HTTP port
      throw error
    }
  }
  const byProtocol: Record<PortMappingProtocol, (internalPort: number, externalPort: number, lifetimeSec: number, signal: AbortSignal) => Promise<PortMapping>> = {
    'nat-pmp': (internalPort, externalPort, lifetimeSec, signal) => natPmpMapTcp(gateway, internalPort, externalPort, lifetimeSec, signal),
    upnp: async (internalPort, externalPort, lifetimeSec, signal) => ({ protocol: 'upnp', ...(await upnp(signal, (found) => upnpMapTcp(found, internalPort, externalPort, lifetimeSec, signal))) }),
  }
  return {
    async map(internalPort, externalPort, lifetimeSec, signal) {
      const problems: string[] = []
      for (const protocol of preferred === 'nat-pmp' ? (['nat-pmp', 'upnp'] as const) : (['upnp', 'nat-pmp'] as const)) {
        try {
          const mapping = await byProtocol[protocol](internalPort, externalPort, lifetimeSec, signal)
          preferred = protocol
          return mapping
        } catch (error) {
          if (signal.aborted) throw error
          problems.push(`${protocolNames[protocol]}: ${(error as Error).message}`)
        }
      }
      throw new Error(`the router forwards no port: ${problems.join('; ')}`)
    },
    async unmap(mapping, signal) {
      if (mapping.protocol === 'nat-pmp') await natPmpMapTcp(gateway, mapping.internalPort, 0, 0, signal)
      else await upnp(signal, (found) => upnpUnmapTcp(found, mapping.externalPort, signal))
    },
  }
}
