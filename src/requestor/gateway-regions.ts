/**
 * Which region a gateway's client is in: a header a CDN sets (trusted only when the operator names it), else the
 * longest matching prefix of a table of CIDR prefixes (IPv4 and IPv6), else the gateway's own region.
 */
import { isIP } from 'node:net'
import type { IncomingHttpHeaders } from 'node:http'
import { HearthError } from '../errors.ts'

export interface GatewayRegionsInit {
  /** CIDR prefix (`10.0.0.0/8`, `2001:db8::/32`, or a bare address) → region name. The longest matching prefix wins. */
  table?: Record<string, string>
  /** A request header that names the client's region (set by a CDN in front); trusted only when configured here. */
  regionHeader?: string
}

interface Prefix {
  family: 4 | 6
  bits: number
  /** The address's value with the bits past the prefix cleared. */
  network: bigint
  region: string
}

/** The largest region name taken from a header; anything longer, or with other characters, is ignored. */
const regionNamePattern = /^[a-z0-9][a-z0-9._-]{0,63}$/

/** The numeric value of an IPv4 or IPv6 address; an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) counts as IPv4. */
export function parseAddress(text: string): { family: 4 | 6; value: bigint } | undefined {
  const address = text.replace(/%.*$/, '')
  const kind = isIP(address)
  if (kind === 4) return { family: 4, value: ipv4Value(address) }
  if (kind !== 6) return undefined
  const value = ipv6Value(address)
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn }
  return { family: 6, value }
}

function ipv4Value(address: string): bigint {
  return address.split('.').reduce((value, part) => (value << 8n) | BigInt(Number(part)), 0n)
}

function ipv6Value(address: string): bigint {
  let text = address
  // A trailing dotted IPv4 part stands for the last two groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted !== null) {
    const v4 = ipv4Value(dotted[1]!)
    text = `${text.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':')
  const missing = 8 - headGroups.length - tailGroups.length
  const groups = [...headGroups, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...tailGroups]
  return groups.reduce((value, group) => (value << 16n) | BigInt(parseInt(group, 16)), 0n)
}

function parsePrefix(cidr: string, region: string): Prefix {
  const [addressText = '', bitsText] = cidr.trim().split('/')
  const address = parseAddress(addressText)
  const invalid = (why: string) =>
    new HearthError('HEARTH_ERR_CONFIG_INVALID', `gateway regions: prefix ${JSON.stringify(cidr)} ${why}`, {
      hint: 'Write each prefix as an address and a prefix length, e.g. 10.0.0.0/8 or 2001:db8::/32.',
    })
  if (address === undefined) throw invalid('is not an IPv4 or IPv6 address')
  // An IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) is the IPv4 prefix it maps.
  const mapped = address.family === 4 && isIP(addressText) === 6
  const width = address.family === 4 ? 32 : 128
  let bits = bitsText === undefined ? width : Number(bitsText)
  if (mapped && bitsText !== undefined) bits -= 96
  if (!Number.isInteger(bits) || bits < 0 || bits > width) throw invalid(`has a prefix length outside 0-${width}`)
  if (typeof region !== 'string' || region === '') throw invalid('maps to an empty region name')
  const shift = BigInt(width - bits)
  return { family: address.family, bits, network: (address.value >> shift) << shift, region }
}

/** Finds a client's region; built once from the operator's configuration. */
export class RegionMap {
  readonly #prefixes: Prefix[]
  readonly #header: string | undefined
  readonly #fallback: string

  constructor(init: GatewayRegionsInit | undefined, fallback: string) {
    // Longest prefixes first, so that the first match is the most specific.
    this.#prefixes = Object.entries(init?.table ?? {})
      .map(([cidr, region]) => parsePrefix(cidr, region))
      .sort((a, b) => b.bits - a.bits)
    this.#header = init?.regionHeader?.toLowerCase()
    this.#fallback = fallback
  }

  /** Whether a client's region depends on its request's headers, not only on its address. */
  get readsHeaders(): boolean {
    return this.#header !== undefined
  }

  /** The region of a client at `address` whose request carries `headers`. */
  regionOf(address: string | undefined, headers: IncomingHttpHeaders): string {
    if (this.#header !== undefined) {
      const named = headers[this.#header]
      const value = (Array.isArray(named) ? named[0] : named)?.trim().toLowerCase()
      if (value !== undefined && regionNamePattern.test(value)) return value
    }
    if (this.#prefixes.length === 0) return this.#fallback
    const parsed = address === undefined ? undefined : parseAddress(address)
    if (parsed !== undefined) {
      for (const prefix of this.#prefixes) {
        if (prefix.family !== parsed.family) continue
        const shift = BigInt((prefix.family === 4 ? 32 : 128) - prefix.bits)
        if ((parsed.value >> shift) << shift === prefix.network) return prefix.region
      }
    }
    return this.#fallback
  }
}
