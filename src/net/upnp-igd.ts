/**
 * Port mapping by UPnP IGD (Internet Gateway Device v1/v2), for home routers that offer it instead of NAT-PMP. An SSDP
 * search (UDP multicast to 239.255.255.250:1900) finds the router's device description; its WANIPConnection (v2 or v1)
 * or WANPPPConnection:1 service takes SOAP requests over HTTP: GetExternalIPAddress, AddPortMapping, DeletePortMapping.
 *
 * The router is an untrusted peer on the LAN: only the default gateway's answer counts (a mapping on another device
 * would forward nothing to this machine), its LOCATION and control URL must be plain http:// on that same address,
 * every answer is bounded in size and time, and the XML is read with linear scans, never evaluated. As with NAT-PMP,
 * reachability.ts announces a mapped address only after a peer dialled it back.
 */
import { createSocket } from 'node:dgram'
import { request } from 'node:http'
import { isIPv4 } from 'node:net'

export const ssdpAddress = '239.255.255.250'
export const ssdpPort = 1900
/** The search targets asked: the gateway device, and the services that map ports (a router answers those it has). */
export const searchTargets = [
  'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1',
]
/** The services that map ports, in order of preference. */
const serviceTypes = searchTargets.slice(1)
/** The most a device description or a SOAP answer may weigh (miniupnpd's description is about 3 KiB). */
export const maxAnswerBytes = 64 * 1024
const maxSsdpBytes = 8 * 1024
const requestTimeoutMs = 5_000
/** UPnP's own error codes (WANIPConnection v1/v2), and what they mean to the owner. */
const upnpErrors: Record<number, string> = {
  401: 'the router does not offer this action',
  402: 'the router rejected the arguments',
  501: 'the action failed on the router',
  606: 'not authorised: the router lets only some machines map ports, or has UPnP port mapping switched off',
  714: 'no such mapping on the router',
  718: 'another machine on the network holds this external port',
  724: 'the router maps only to the same port number inside and out',
  725: 'the router accepts only permanent mappings',
  728: 'the router has no room for more mappings',
  729: 'the port is taken by another mechanism on the router',
}
const ownerHint = 'switch UPnP port forwarding on in the router\'s settings, or forward the port by hand and start the node with --announce'

/** A forward the router made (port-mapping.ts's PortMapping, less the protocol). */
export interface UpnpMapping { externalIp: string; externalPort: number; internalIp: string; internalPort: number; lifetimeSec: number }

/** The service that maps ports on one router, and this machine's address as the router sees it. */
export interface IgdControl {
  controlUrl: URL
  serviceType: string
  /** This machine's address on the router's side (the source address of the connection to it). */
  localIp: string
}

// ---- parsing: pure functions of what the router sent ------------------------------------------------------------

const decode = (text: string): string => text.replace(/&(amp|lt|gt|quot|apos|#\d{1,7}|#x[0-9a-fA-F]{1,6});/g, (_, entity: string) => {
  const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: '\'' }
  if (named[entity] !== undefined) return named[entity]
  const code = entity.startsWith('#x') ? Number.parseInt(entity.slice(2), 16) : Number(entity.slice(1))
  return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : ''
})
const escape = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/**
 * The content of each `<name>` element (any namespace prefix), in order, not overlapping; '' for an empty one
 * (`<name/>`). Each scan resumes after the element it found and stops at the first without an end, so a hostile
 * document costs time linear in its length.
 */
export function elements(xml: string, name: string): string[] {
  const open = new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${name}(?:\\s[^<>]*)?/?>`, 'g')
  const close = new RegExp(`</(?:[A-Za-z_][\\w.-]*:)?${name}\\s*>`, 'g')
  const found: string[] = []
  for (let tag = open.exec(xml); tag !== null; tag = open.exec(xml)) {
    if (tag[0].endsWith('/>')) {
      found.push('')
      continue
    }
    close.lastIndex = open.lastIndex
    const end = close.exec(xml)
    if (end === null) break
    found.push(xml.slice(open.lastIndex, end.index))
    open.lastIndex = close.lastIndex
  }
  return found
}

/** The text of the first `<name>` element, decoded and trimmed; undefined when absent or when it holds markup. */
export function textOf(xml: string, name: string): string | undefined {
  const content = elements(xml, name)[0]
  return content === undefined || content.includes('<') ? undefined : decode(content).trim()
}

/**
 * The device description's URL from an SSDP answer that came from `from`. Throws, saying why, for an answer that is no
 * search answer, searches for something else, or names a LOCATION that is not plain http:// on the answering address.
 */
export function ssdpLocation(message: string, from: string): URL {
  if (message.length > maxSsdpBytes) throw new Error(`an SSDP answer of ${message.length} bytes (at most ${maxSsdpBytes})`)
  const [status, ...lines] = message.split(/\r?\n/)
  if (!/^HTTP\/1\.[01] 200(\s|$)/.test(status ?? '')) throw new Error(`not an SSDP search answer: '${(status ?? '').slice(0, 80)}'`)
  const header = (name: string): string | undefined => {
    const line = lines.find((l) => l.slice(0, name.length + 1).toLowerCase() === `${name}:`)
    return line?.slice(name.length + 1).trim()
  }
  const target = header('st')
  if (target === undefined || !searchTargets.some((t) => t.toLowerCase() === target.toLowerCase())) throw new Error(`an SSDP answer for '${(target ?? '').slice(0, 80)}', not an Internet gateway`)
  const location = header('location')
  if (location === undefined || location === '') throw new Error('an SSDP answer without a LOCATION')
  const url = URL.parse(location)
  if (url === null) throw new Error(`an SSDP answer whose LOCATION '${location.slice(0, 200)}' is not a URL`)
  if (url.protocol !== 'http:') throw new Error(`the LOCATION ${url.href.slice(0, 200)} is not http://`)
  if (url.hostname !== from) throw new Error(`the LOCATION ${url.href.slice(0, 200)} points at ${url.hostname}, not at the device that answered (${from})`)
  return url
}

/**
 * The services of a device description that map ports, best first, each with its control URL resolved against the
 * description's URLBase or location. A control URL must stay plain http:// on the description's own host.
 */
export function igdServices(xml: string, location: URL): Array<{ controlUrl: URL; serviceType: string }> {
  const urlBase = textOf(xml, 'URLBase')
  const base = urlBase === undefined || urlBase === '' ? location : URL.parse(urlBase, location)
  if (base === null) throw new Error(`the router's device description (${location.href}) has a URLBase that is not a URL: '${urlBase?.slice(0, 200)}'`)
  const found: Array<{ controlUrl: URL; serviceType: string }> = []
  const problems: string[] = []
  for (const service of elements(xml, 'service')) {
    const serviceType = textOf(service, 'serviceType')
    const control = textOf(service, 'controlURL')
    if (serviceType === undefined || !serviceTypes.includes(serviceType) || control === undefined || control === '') continue
    const controlUrl = URL.parse(control, base)
    if (controlUrl === null) problems.push(`its controlURL '${control.slice(0, 200)}' is not a URL`)
    else if (controlUrl.protocol !== 'http:' || controlUrl.hostname !== location.hostname) problems.push(`its controlURL ${controlUrl.href.slice(0, 200)} is not http:// on ${location.hostname}`)
    else found.push({ controlUrl, serviceType })
  }
  if (found.length === 0) throw new Error(`the router's device description (${location.href}) offers no WANIPConnection or WANPPPConnection service${problems.length > 0 ? `: ${problems.join('; ')}` : ''}`)
  return found.sort((a, b) => serviceTypes.indexOf(a.serviceType) - serviceTypes.indexOf(b.serviceType))
}

/** A SOAP request for one action of a service, its arguments in the order the service defines. */
export function soapEnvelope(serviceType: string, action: string, args: Array<[string, string | number]>): string {
  const body = args.map(([name, value]) => `<${name}>${escape(String(value))}</${name}>`).join('')
  return `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} xmlns:u="${serviceType}">${body}</u:${action}></s:Body></s:Envelope>\r\n`
}

/** An error a router answered, with its UPnP code (when it gave one) for callers that retry on some. */
export class UpnpError extends Error {
  constructor(message: string, readonly code?: number) {
    super(message)
  }
}

/** The content of the `<action>Response` element of a SOAP answer; a fault becomes a UpnpError that says what went wrong. */
export function soapAnswer(action: string, status: number, body: string): string {
  const response = elements(body, `${action}Response`)[0]
  if (status === 200 && response !== undefined) return response
  const code = Number(textOf(body, 'errorCode'))
  const description = (textOf(body, 'errorDescription') ?? '').replace(/[^\x20-\x7e]/g, '').slice(0, 200)
  if (Number.isInteger(code) && code > 0) {
    const meaning = upnpErrors[code]
    throw new UpnpError(`the router refused ${action}: UPnP error ${code}${description === '' ? '' : ` ${description}`}${meaning === undefined ? '' : ` (${meaning})`}; ${ownerHint}`, code)
  }
  throw new UpnpError(status === 200 ? `the router's answer to ${action} is not a SOAP ${action}Response` : `the router answered ${action} with HTTP ${status} and no UPnP error`)
}

// ---- the network ------------------------------------------------------------------------------------------------

/**
 * An HTTP request to the router: at most `maxAnswerBytes` of body, `timeoutMs` in all (a router that trickles is
 * dropped), 8 KiB of headers. Resolves to the status, the body, and this machine's address on the connection.
 */
export async function httpToRouter(url: URL, what: string, signal: AbortSignal, post?: { soapAction: string; body: string }, timeoutMs = requestTimeoutMs): Promise<{ status: number; body: string; localIp: string }> {
  const timeout = AbortSignal.timeout(timeoutMs)
  return new Promise((resolve, reject) => {
    const fail = (message: string): void => {
      if (signal.aborted) reject(signal.reason as Error)
      else reject(new Error(timeout.aborted ? `the router at ${url.host} did not answer ${what} within ${timeoutMs / 1000} s` : `${what} at ${url.host}: ${message}`))
      req.destroy()
    }
    const headers = post === undefined ? {} : { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: `"${post.soapAction}"`, 'Content-Length': Buffer.byteLength(post.body) }
    const req = request({ host: url.hostname, port: url.port || 80, path: `${url.pathname}${url.search}`, method: post === undefined ? 'GET' : 'POST', headers: { ...headers, Connection: 'close' }, agent: false, maxHeaderSize: 8192, signal: AbortSignal.any([signal, timeout]) })
    req.on('error', (error) => fail(error.message))
    req.on('response', (res) => {
      const localIp = (res.socket.localAddress ?? '').replace(/^::ffff:/, '')
      if (Number(res.headers['content-length'] ?? 0) > maxAnswerBytes) return fail(`an answer of ${res.headers['content-length']} bytes (at most ${maxAnswerBytes})`)
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > maxAnswerBytes) fail(`an answer over ${maxAnswerBytes} bytes`)
        else chunks.push(chunk)
      })
      res.on('error', (error) => fail(error.message))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), localIp }))
    })
    req.end(post?.body)
  })
}

/**
 * Searches the LAN by SSDP (each target asked twice, a second apart) and resolves to the description URL the gateway
 * answers, at its first acceptable answer; other devices' answers are ignored. Waits `waitMs` at most (MX 2).
 */
export async function discoverIgd(gateway: string, signal: AbortSignal, waitMs = 2_500): Promise<URL> {
  signal.throwIfAborted()
  const socket = createSocket('udp4')
  const refused: string[] = []
  let others = 0
  try {
    return await new Promise<URL>((resolve, reject) => {
      const timers: NodeJS.Timeout[] = []
      let settled = false
      const fail = (error: Error): void => {
        settled = true
        timers.forEach(clearTimeout)
        reject(error)
      }
      const search = (): void => {
        for (const target of searchTargets) {
          const message = `M-SEARCH * HTTP/1.1\r\nHOST: ${ssdpAddress}:${ssdpPort}\r\nMAN: "ssdp:discover"\r\nMX: 2\r\nST: ${target}\r\n\r\n`
          socket.send(message, ssdpPort, ssdpAddress, (error) => error && fail(error))
        }
      }
      socket.on('error', fail)
      socket.on('message', (message, from) => {
        if (from.address !== gateway) {
          others++
          return
        }
        try {
          const location = ssdpLocation(message.toString('latin1'), from.address)
          settled = true
          timers.forEach(clearTimeout)
          resolve(location)
        } catch (error) {
          refused.push((error as Error).message)
        }
      })
      signal.addEventListener('abort', () => fail(signal.reason as Error), { once: true })
      socket.bind(0, () => {
        if (settled) return // aborted while binding: the socket is closed
        socket.setMulticastTTL(2)
        search()
        timers.push(setTimeout(search, 1_000))
        timers.push(setTimeout(() => {
          const why = refused.length > 0 ? `its answers were refused: ${[...new Set(refused)].join('; ')}` : 'UPnP is off or not offered'
          const ignored = others > 0 ? ` (${others} answers from other devices ignored: only the gateway forwards ports to this machine)` : ''
          fail(new Error(`the gateway ${gateway} does not answer UPnP discovery (SSDP) acceptably within ${waitMs / 1000} s: ${why}${ignored}`))
        }, waitMs))
      })
    })
  } finally {
    socket.close()
  }
}

/** A SOAP action on the router; resolves to the content of its response element. */
async function soap(igd: Pick<IgdControl, 'controlUrl' | 'serviceType'>, action: string, args: Array<[string, string | number]>, signal: AbortSignal): Promise<string> {
  const post = { soapAction: `${igd.serviceType}#${action}`, body: soapEnvelope(igd.serviceType, action, args) }
  const { status, body } = await httpToRouter(igd.controlUrl, action, signal, post)
  return soapAnswer(action, status, body)
}

/** The router's public IPv4 address, by GetExternalIPAddress. */
export async function upnpExternalAddress(igd: Pick<IgdControl, 'controlUrl' | 'serviceType'>, signal: AbortSignal): Promise<string> {
  const address = textOf(await soap(igd, 'GetExternalIPAddress', [], signal), 'NewExternalIPAddress') ?? ''
  if (!isIPv4(address) || address === '0.0.0.0') {
    throw new Error(`the router does not know its public address (GetExternalIPAddress answered '${address.slice(0, 60)}'): its internet connection may be down`)
  }
  return address
}

/**
 * Finds the gateway's port-mapping service: SSDP, the device description, then the first service (best first) that
 * tells its public address (a router with a PPP and an IP service may have one of them down).
 */
export async function findIgd(gateway: string, signal: AbortSignal): Promise<IgdControl> {
  const location = await discoverIgd(gateway, signal)
  const description = await httpToRouter(location, 'the device description', signal)
  if (description.status !== 200) throw new Error(`the router answered HTTP ${description.status} for its device description ${location.href}`)
  const problems: string[] = []
  for (const service of igdServices(description.body, location)) {
    try {
      await upnpExternalAddress(service, signal)
      return { ...service, localIp: description.localIp }
    } catch (error) {
      if (signal.aborted) throw error
      problems.push(`${service.serviceType}: ${(error as Error).message}`)
    }
  }
  throw new Error(`no port-mapping service of the router works: ${problems.join('; ')}`)
}

/**
 * Asks the router to forward TCP `externalPort` to this machine's `internalPort` for `lifetimeSec`. A router that
 * takes only permanent mappings (725) is asked for one (it is still renewed at the asked lifetime, and removed when
 * the node stops); where another machine holds the port (718), a random one is asked once, as NAT-PMP would pick.
 */
export async function upnpMapTcp(igd: IgdControl, internalPort: number, externalPort: number, lifetimeSec: number, signal: AbortSignal): Promise<UpnpMapping> {
  const externalIp = await upnpExternalAddress(igd, signal)
  const add = (port: number, lease: number): Promise<string> => soap(igd, 'AddPortMapping', [
    ['NewRemoteHost', ''], ['NewExternalPort', port], ['NewProtocol', 'TCP'], ['NewInternalPort', internalPort], ['NewInternalClient', igd.localIp],
    ['NewEnabled', 1], ['NewPortMappingDescription', 'hearth'], ['NewLeaseDuration', lease],
  ], signal)
  let port = externalPort
  for (let tries = 0; ; tries++) {
    try {
      await add(port, lifetimeSec).catch((error: unknown) => {
        if (error instanceof UpnpError && error.code === 725) return add(port, 0)
        throw error
      })
      return { externalIp, externalPort: port, internalIp: igd.localIp, internalPort, lifetimeSec }
    } catch (error) {
      if (!(error instanceof UpnpError && error.code === 718) || tries > 0) throw error
      port = 1024 + Math.floor(Math.random() * (65536 - 1024))
    }
  }
}

/** Removes the router's forward of TCP `externalPort`. */
export async function upnpUnmapTcp(igd: IgdControl, externalPort: number, signal: AbortSignal): Promise<void> {
  await soap(igd, 'DeletePortMapping', [['NewRemoteHost', ''], ['NewExternalPort', externalPort], ['NewProtocol', 'TCP']], signal)
}
