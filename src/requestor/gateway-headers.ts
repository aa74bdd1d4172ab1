/**
 * Headers across the gateway: hop-by-hop headers stay on their own hop, the forwarding headers say who the client was.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { isIP } from 'node:net'

/** Hop-by-hop headers (RFC 9110 7.6.1) and those a proxy answers or frames itself. */
const hopByHop = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection'])

/** `headers` without hop-by-hop headers, Proxy-* headers, and those the Connection header names. */
export function endToEnd(headers: IncomingHttpHeaders, alsoDrop?: string): OutgoingHttpHeaders {
  const connection = headers.connection
  // Most requests name nothing beyond keep-alive or close: no set of names to build then.
  const named = connection === undefined || connection === 'keep-alive' || connection === 'close'
    ? undefined
    : new Set(connection.split(',').map((name) => name.trim().toLowerCase()))
  const out: OutgoingHttpHeaders = {}
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || hopByHop.has(name) || name === alsoDrop || name.startsWith('proxy-') || named?.has(name) === true) continue
    out[name] = value
  }
  return out
}

/** A node of the Forwarded header (RFC 7239): an IPv6 address is bracketed and quoted. */
function forwardedNode(address: string): string {
  return isIP(address) === 6 ? `"[${address}]"` : address
}

/** `value` of a token or quoted-string in Forwarded. */
function forwardedValue(value: string): string {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`
}

/** The request headers a replica gets: end-to-end headers plus X-Forwarded-For/-Proto/-Host and Forwarded. */
export function forwardedRequestHeaders(headers: IncomingHttpHeaders, clientAddress: string, proto: 'http' | 'https'): OutgoingHttpHeaders {
  // Expect: the gateway has answered 100-continue to the client itself.
  const out = endToEnd(headers, 'expect')
  const priorFor = headers['x-forwarded-for']
  out['x-forwarded-for'] = priorFor === undefined || priorFor === '' ? clientAddress : `${priorFor}, ${clientAddress}`
  out['x-forwarded-proto'] = proto
  if (headers.host !== undefined) out['x-forwarded-host'] = headers.host
  const element = [`for=${forwardedNode(clientAddress)}`, `proto=${proto}`]
  if (headers.host !== undefined) element.push(`host=${forwardedValue(headers.host)}`)
  const priorForwarded = headers.forwarded
  out.forwarded = priorForwarded === undefined || priorForwarded === '' ? element.join(';') : `${priorForwarded}, ${element.join(';')}`
  return out
}

/**
 * The response headers a client gets, from the replica's raw headers (names as sent, repeats kept, in the flat
 * [name, value, ...] form node takes): end-to-end headers plus which replica, running which version, answered.
 */
export function clientResponseHeaders(raw: readonly string[], replicaId: string, version: string): string[] {
  let named: Set<string> | undefined
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length !== 10 || raw[i]!.toLowerCase() !== 'connection') continue
    for (const token of raw[i + 1]!.split(',')) {
      const name = token.trim().toLowerCase()
      if (name !== 'keep-alive' && name !== 'close' && name !== '') (named ??= new Set()).add(name)
    }
  }
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (hopByHop.has(name) || name.startsWith('proxy-') || named?.has(name) === true) continue
    out.push(raw[i]!, raw[i + 1]!)
  }
  out.push('x-hearth-replica', replicaId, 'x-hearth-version', version)
  return out
}

/** Methods whose repetition has the effect of one request (RFC 9110 9.2.2): safe to send to another replica. */
export const idempotentMethods: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
