/**
 * The testbed's plan: its spec, checked, laid out as namespaces, addresses, NAT LANs and linkd's arguments. A pure
 * function of the spec (nothing is created here), so a bad spec fails before anything is built.
 */

export type NatKind = 'none' | 'cone' | 'symmetric'

export interface TestbedHostSpec {
  /** Letters, digits and dashes; the host's namespace is `<prefix>-<name>`. */
  name: string
  region: string
  /**
   * 'none' (default): the host has a public address. 'cone': behind a port-preserving NAT that drops unsolicited
   * inbound traffic (endpoint-independent mapping, port-restricted filtering: UDP hole punching works). 'symmetric':
   * the NAT picks a random public port per connection (`--random-fully`), so mappings cannot be predicted.
   */
  nat?: NatKind
  /**
   * The host's NAT router forwards ports on request, as many home routers do (miniupnpd): 'nat-pmp' (RFC 6886),
   * 'upnp' (UPnP IGD: SSDP discovery and SOAP), or true for both.
   */
  portMapping?: PortMappingKind
}

export type PortMappingKind = boolean | 'nat-pmp' | 'upnp'

export interface TestbedSpec {
  /** Starts every namespace name; letters, digits and underscores, so that one prefix is never the start of another's names. */
  prefix: string
  /** Where public addresses come from, e.g. '11.0.0.0/8' (the default). Nothing in Hearth may depend on it. */
  publicCidr?: string
  /** Region names (letters, digits, underscores); `intraRttMs` is the round trip between two hosts of the region. */
  regions: Record<string, { intraRttMs?: number }>
  /** Round trips between regions in milliseconds, keyed 'a-b', e.g. { 'eu-us': 40 }; every pair needs one. */
  rttMs: Record<string, number>
  hosts: TestbedHostSpec[]
}

export interface TestbedHost {
  name: string
  region: string
  nat: NatKind
  netns: string
  /** The host's own address: its public address, or its LAN address behind a NAT. */
  address: string
  /** The address the internet sees: its own, or its router's. */
  publicAddress: string
  /** The router's namespace, for a host behind a NAT. */
  routerNetns?: string
}

export const DEFAULT_PUBLIC_CIDR = '11.0.0.0/8'
export const DEFAULT_INTRA_RTT_MS = 5
/** Set as the alias of every testbed namespace's loopback, and passed to linkd, so leftovers can be found. */
export const TAG = 'hearth-testbed:'

export interface NatPlan {
  router: string
  host: string
  /** Third octet of the LAN, 192.168.<lan>.0/24. */
  lan: number
  symmetric: boolean
  /** The port-mapping protocols its router offers (none: no miniupnpd). */
  portMapping: { natPmp: boolean; upnp: boolean }
}

interface WanPlan {
  netns: string
  region: string
  address: string
}

export interface TestbedPlan {
  prefix: string
  hosts: TestbedHost[]
  namespaces: string[]
  wans: WanPlan[]
  nats: NatPlan[]
  /** linkd's arguments: one-way delays per region pair, then the endpoints. */
  linkdArgs: string[]
}

const regionPattern = /^[A-Za-z0-9_]+$/
const hostPattern = /^[A-Za-z0-9][A-Za-z0-9-]*$/
export const prefixPattern = /^[A-Za-z0-9_]+$/

export function checkPrefix(prefix: string): void {
  if (!prefixPattern.test(prefix)) {
    throw new Error(`testbed prefix '${prefix}' must be letters, digits and underscores (it starts namespace names)`)
  }
}

function parseIpv4(text: string): number {
  const parts = text.split('.').map((part) => (/^\d{1,3}$/.test(part) ? Number(part) : NaN))
  if (parts.length !== 4 || parts.some((part) => !(part <= 255))) throw new Error(`'${text}' is not an IPv4 address`)
  return parts.reduce((value, part) => value * 256 + part, 0)
}

function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.')
}

/** Hands out addresses from a CIDR in order, skipping the network address. */
function addressPool(cidr: string): () => string {
  const match = /^([\d.]+)\/(\d{1,2})$/.exec(cidr)
  const length = Number(match?.[2])
  if (match === null || !(length >= 8 && length <= 30)) throw new Error(`publicCidr '${cidr}' must look like 11.0.0.0/8 (/8 to /30)`)
  const size = 2 ** (32 - length)
  const base = parseIpv4(match[1] ?? '')
  const network = base - (base % size)
  let next = 1
  return () => {
    if (next >= size - 1) throw new Error(`publicCidr '${cidr}' has too few addresses for this testbed`)
    return formatIpv4(network + next++)
  }
}

/** One-way delay in microseconds for every pair of regions, from round trips in milliseconds. */
function delayArgs(spec: TestbedSpec): string[] {
  const regions = Object.keys(spec.regions)
  for (const region of regions) if (!regionPattern.test(region)) throw new Error(`region name '${region}' must be letters, digits and underscores`)
  const rtt = new Map<string, number>()
  for (const [key, ms] of Object.entries(spec.rttMs)) {
    const pair = key.split('-')
    const [a, b] = pair
    if (pair.length !== 2 || a === undefined || b === undefined || a === b || !regions.includes(a) || !regions.includes(b)) {
      throw new Error(`rttMs key '${key}' must be 'a-b' for two different regions of ${JSON.stringify(regions)}`)
    }
    if (rtt.has(`${b}-${a}`) || rtt.has(key)) throw new Error(`rttMs gives regions ${a} and ${b} twice`)
    rtt.set(key, ms)
  }
  const oneWayUs = (ms: number, what: string): number => {
    if (!Number.isFinite(ms) || ms < 0) throw new Error(`${what} must be a number of milliseconds >= 0, not ${ms}`)
    return Math.round(ms * 500)
  }
  const args: string[] = []
  regions.forEach((a, i) => {
    const intra = spec.regions[a]?.intraRttMs ?? DEFAULT_INTRA_RTT_MS
    args.push('--delay', `${a}:${a}:${oneWayUs(intra, `regions.${a}.intraRttMs`)}`)
    for (const b of regions.slice(i + 1)) {
      const ms = rtt.get(`${a}-${b}`) ?? rtt.get(`${b}-${a}`)
      if (ms === undefined) throw new Error(`rttMs has no round trip between regions ${a} and ${b} (add '${a}-${b}')`)
      args.push('--delay', `${a}:${b}:${oneWayUs(ms, `rttMs['${a}-${b}']`)}`)
    }
  })
  return args
}

/** Checks the spec and lays out namespaces and addresses; touches nothing. */
export function planTestbed(spec: TestbedSpec): TestbedPlan {
  checkPrefix(spec.prefix)
  const delays = delayArgs(spec)
  const nextPublic = addressPool(spec.publicCidr ?? DEFAULT_PUBLIC_CIDR)
  const plan: TestbedPlan = { prefix: spec.prefix, hosts: [], namespaces: [], wans: [], nats: [], linkdArgs: [] }
  for (const { name, region, nat = 'none', portMapping = false } of spec.hosts) {
    if (!hostPattern.test(name)) throw new Error(`host name '${name}' must be letters, digits and dashes`)
    if (!Object.hasOwn(spec.regions, region)) throw new Error(`host ${name} is in region '${region}', which spec.regions does not name`)
    const netns = `${spec.prefix}-${name}`
    const publicAddress = nextPublic()
    if (portMapping !== true && portMapping !== false && portMapping !== 'nat-pmp' && portMapping !== 'upnp') {
      throw new Error(`host ${name}: portMapping must be true, false, 'nat-pmp' or 'upnp', not ${JSON.stringify(portMapping)}`)
    }
    if (nat === 'none') {
      if (portMapping !== false) throw new Error(`host ${name}: portMapping needs a NAT router (nat 'cone' or 'symmetric')`)
      plan.namespaces.push(netns)
      plan.wans.push({ netns, region, address: publicAddress })
      plan.hosts.push({ name, region, nat, netns, address: publicAddress, publicAddress })
      continue
    }
    if (nat !== 'cone' && nat !== 'symmetric') throw new Error(`host ${name}: nat must be 'none', 'cone' or 'symmetric', not '${String(nat)}'`)
    const lan = plan.nats.length + 1
    if (lan > 254) throw new Error('at most 254 hosts behind NAT')
    const router = `${netns}-gw`
    plan.namespaces.push(router, netns)
    plan.wans.push({ netns: router, region, address: publicAddress })
    const natPmp = portMapping === true || portMapping === 'nat-pmp'
    const upnp = portMapping === true || portMapping === 'upnp'
    plan.nats.push({ router, host: netns, lan, symmetric: nat === 'symmetric', portMapping: { natPmp, upnp } })
    plan.hosts.push({ name, region, nat, netns, address: `192.168.${lan}.2`, publicAddress, routerNetns: router })
  }
  const duplicate = plan.namespaces.find((netns, i) => plan.namespaces.indexOf(netns) !== i)
  if (duplicate !== undefined) throw new Error(`two hosts would share namespace ${duplicate}: host names must differ (and not end in -gw of another)`)
  plan.linkdArgs = [
    '--tag', TAG + spec.prefix,
    ...delays,
    ...plan.wans.map((wan) => `${wan.netns}:wan0:${wan.region}:${wan.address}/32`),
  ]
  return plan
}

/** An address on the LAN of a NAT: .1 is the router, .2 the host. */
export function lanOf(nat: NatPlan, last: 1 | 2): string {
  return `192.168.${nat.lan}.${last}`
}
