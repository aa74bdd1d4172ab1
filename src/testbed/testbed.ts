/**
 * The testbed: an internet on one Linux machine, built from network namespaces, with real latency between regions.
 *
 * Every host is a network namespace. A public host's only interface is `wan0`, a TUN device whose other side is
 * linkd (linkd.c), a userspace router that delays each packet by the one-way latency between the regions of its
 * source and destination (this kernel has no netem, so latency cannot come from tc). A host behind NAT sits in its
 * own namespace on a veth LAN behind a router namespace that has the `wan0` and masquerades:
 *
 *   [host ns] eth0 192.168.k.2 ── veth ── lan0 192.168.k.1 [router ns, MASQUERADE] wan0 ═╗
 *   [host ns] wan0 (public address) ═══════════════════════════════════════════════════╬═ linkd (delays by region)
 *
 * Nothing links the testbed to the root namespace or to a real network: TUNs lead only to linkd, and veths only join
 * the testbed's own namespaces. Everything a testbed makes is named by its prefix and recorded under
 * /run/hearth-testbed/<prefix>/, so `down(prefix)` removes it all, also after the builder crashed.
 *
 * Needs root, iproute2, iptables and a C compiler (linkd is compiled on first use).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { accessSync, closeSync, constants, existsSync, openSync } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { basename, delimiter, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

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

export interface RunResult {
  stdout: string
  stderr: string
  /** Exit status, or null when the process was ended by a signal (a timeout included). */
  code: number | null
}

export interface RunOptions {
  /** Written to the process's stdin, which is then closed. */
  input?: string | Buffer
  /** Kills the process (SIGKILL) after this long; the result then has `code: null`. */
  timeoutMs?: number
}

export interface Testbed {
  prefix: string
  hosts: Record<string, TestbedHost>
  /** Starts `command` inside the host's namespace (`ip netns exec`). */
  exec(host: string, command: string, args?: readonly string[], options?: SpawnOptions): ChildProcess
  /** Runs `command` inside the host's namespace to completion; a non-zero exit is a result, not an error. */
  run(host: string, command: string, args?: readonly string[], options?: RunOptions): Promise<RunResult>
  down(): Promise<void>
}

export const DEFAULT_PUBLIC_CIDR = '11.0.0.0/8'
export const DEFAULT_INTRA_RTT_MS = 5
/** State of each testbed: which namespaces it made, linkd's pid and log, the host table. */
export const STATE_ROOT = '/run/hearth-testbed'
/** Set as the alias of every testbed namespace's loopback, and passed to linkd, so leftovers can be found. */
const TAG = 'hearth-testbed:'
const INSTALL_HINT = 'apt-get install -y --no-install-recommends iproute2 iptables gcc'
/** The TUN queue is where a burst waits for linkd; the default 500 packets drops TCP bursts on a busy machine. */
const WAN_QUEUE_PACKETS = 4096
const LINKD_READY_TIMEOUT_MS = 15_000

// ---- planning: a pure function of the spec, so a bad spec fails before anything is created ------------------------

interface NatPlan {
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
const prefixPattern = /^[A-Za-z0-9_]+$/

function checkPrefix(prefix: string): void {
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

// ---- processes ---------------------------------------------------------------------------------------------------

function runProcess(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs)
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolvePromise({ stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString(), code })
    })
    // A process that exits without reading its stdin makes the write fail with EPIPE; its exit status says more.
    child.stdin.on('error', () => {})
    child.stdin.end(options.input ?? '')
  })
}

/** Runs a command that must succeed; its stderr becomes the error message. */
async function must(command: string, args: readonly string[], input?: string | Buffer): Promise<string> {
  const result = await runProcess(command, args, input === undefined ? {} : { input })
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.code ?? 'killed'}): ${result.stderr.trim() || result.stdout.trim()}`)
  }
  return result.stdout
}

/** `ip -n NETNS -batch -`: one process for many commands in one namespace. */
function ipBatch(netns: string, lines: string[]): Promise<string> {
  return must('ip', ['-n', netns, '-batch', '-'], lines.join('\n') + '\n')
}

function onPath(program: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, program), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

/** What this machine lacks to run a testbed, one phrase each; empty when it can. */
export function missingPrerequisites(): string[] {
  const missing: string[] = []
  if (process.getuid?.() !== 0) missing.push('root (namespaces and TUN devices need it)')
  const packages: Record<string, string> = { ip: 'iproute2', iptables: 'iptables', 'iptables-restore': 'iptables', cc: 'gcc' }
  for (const [program, pkg] of Object.entries(packages)) if (!onPath(program)) missing.push(`${program} (package ${pkg})`)
  if (!existsSync('/dev/net/tun')) missing.push('/dev/net/tun (the tun kernel module)')
  return missing
}

function requirePrerequisites(): void {
  const missing = missingPrerequisites()
  if (missing.length > 0) {
    throw new Error(`the testbed cannot run here; missing: ${missing.join(', ')}. As root: ${INSTALL_HINT}`)
  }
}

// ---- linkd -------------------------------------------------------------------------------------------------------

const linkdSource = join(import.meta.dirname, 'linkd.c')
const cacheRoot = resolve(import.meta.dirname, '..', '..', 'node_modules', '.cache', 'hearth-testbed')
let linkdBinary: Promise<string> | undefined

/**
 * The compiled linkd, built once per source version into node_modules/.cache. The compiler reads the very bytes that
 * were hashed (from stdin) and writes a temporary file that is renamed into place, so builds running at the same time
 * never see a half-written binary.
 */
export function compileLinkd(): Promise<string> {
  linkdBinary ??= (async () => {
    const source = await readFile(linkdSource)
    const dir = join(cacheRoot, createHash('sha256').update(source).digest('hex'))
    const binary = join(dir, 'linkd')
    if (existsSync(binary)) return binary
    await mkdir(dir, { recursive: true })
    const temporary = join(dir, `linkd.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
    try {
      await must('cc', ['-O2', '-Wall', '-x', 'c', '-o', temporary, '-'], source)
      await rename(temporary, binary)
    } finally {
      await rm(temporary, { force: true })
    }
    return binary
  })()
  linkdBinary.catch(() => {
    linkdBinary = undefined
  })
  return linkdBinary
}

interface TaggedProcess {
  pid: number
  prefix: string
}

/** Every running linkd of any testbed, found by its `--tag` argument. */
async function findLinkds(): Promise<TaggedProcess[]> {
  const found: TaggedProcess[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const argv = await readFile(`/proc/${entry}/cmdline`, 'utf8').then((text) => text.split('\0'), (): string[] => [])
    const tag = argv[argv.indexOf('--tag') + 1]
    if (basename(argv[0] ?? '') === 'linkd' && argv.includes('--tag') && tag?.startsWith(TAG)) {
      found.push({ pid: Number(entry), prefix: tag.slice(TAG.length) })
    }
  }
  return found
}

/** True while the process exists and is not a zombie (a dead child its parent has not reaped yet). */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}

async function waitForExit(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const alive = (await Promise.all(pids.map(async (pid) => ((await running(pid)) ? [pid] : [])))).flat()
    if (alive.length === 0 || Date.now() > deadline) return alive
    await sleep(20)
  }
}

function signal(pids: number[], name: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, name)
    } catch {
      // Already gone.
    }
  }
}

/**
 * SIGTERM (linkd exits cleanly and logs its counters), then SIGKILL for whatever is still there. linkd is found by its
 * command line rather than the pid file: that also finds one whose builder crashed before writing the file, and never
 * kills a stranger that inherited a stale pid.
 */
async function stopLinkd(prefix: string): Promise<void> {
  const pids = (await findLinkds()).filter((p) => p.prefix === prefix).map((p) => p.pid)
  signal(pids, 'SIGTERM')
  const stubborn = await waitForExit(pids, 2000)
  signal(stubborn, 'SIGKILL')
  const left = await waitForExit(stubborn, 2000)
  if (left.length > 0) throw new Error(`linkd of testbed ${prefix} (pid ${left.join(', ')}) does not exit`)
}

function stateDir(prefix: string): string {
  return join(STATE_ROOT, prefix)
}

/** Starts linkd detached from this process (a testbed may outlive its builder) and waits for its "ready". */
async function startLinkd(plan: TestbedPlan, binary: string): Promise<void> {
  const logPath = join(stateDir(plan.prefix), 'linkd.log')
  const log = openSync(logPath, 'a')
  const child = spawn(binary, plan.linkdArgs, { detached: true, stdio: ['ignore', log, log] })
  closeSync(log)
  let exited = false
  child.on('exit', () => {
    exited = true
  })
  child.on('error', () => {
    exited = true
  })
  child.unref()
  if (child.pid !== undefined) await writeFile(join(stateDir(plan.prefix), 'linkd.pid'), `${child.pid}\n`)
  const deadline = Date.now() + LINKD_READY_TIMEOUT_MS
  for (;;) {
    const text = await readFile(logPath, 'utf8')
    if (/^ready$/m.test(text)) return
    if (exited || Date.now() > deadline) {
      throw new Error(`linkd did not start (${exited ? 'it exited' : 'no "ready" in time'}): ${text.trim()}`)
    }
    await sleep(10)
  }
}

// ---- namespaces --------------------------------------------------------------------------------------------------

async function listNamespaces(): Promise<string[]> {
  const out = await must('ip', ['netns', 'list'])
  return out.split('\n').map((line) => line.split(' ')[0] ?? '').filter((name) => name !== '')
}

/** The testbed prefix a namespace is tagged with (its loopback's alias), or undefined. */
async function namespaceTag(netns: string): Promise<string | undefined> {
  const result = await runProcess('ip', ['-n', netns, '-j', 'link', 'show', 'lo'])
  if (result.code !== 0) return undefined
  const [lo] = JSON.parse(result.stdout) as Array<{ ifalias?: string }>
  return lo?.ifalias?.startsWith(TAG) === true ? lo.ifalias.slice(TAG.length) : undefined
}

/**
 * The namespaces of a testbed that exist now: those its state dir lists (written before any was created, so a crash
 * halfway leaves none unlisted) and any tagged with its prefix (in case the state dir is gone).
 */
async function namespacesOf(prefix: string): Promise<string[]> {
  const existing = await listNamespaces()
  const listed = await readFile(join(stateDir(prefix), 'namespaces.json'), 'utf8').then(
    (text) => JSON.parse(text) as string[],
    (): string[] => [],
  )
  const candidates = existing.filter((netns) => netns.startsWith(`${prefix}-`) && !listed.includes(netns))
  const tags = await Promise.all(candidates.map(namespaceTag))
  return [...existing.filter((netns) => listed.includes(netns)), ...candidates.filter((_, i) => tags[i] === prefix)]
}

/** Kills every process inside a namespace, repeating while some are still forking. */
async function emptyNamespace(netns: string): Promise<void> {
  for (let round = 0; round < 100; round++) {
    const result = await runProcess('ip', ['netns', 'pids', netns])
    const pids = result.stdout.split('\n').filter((line) => /^\d+$/.test(line)).map(Number)
    if (result.code !== 0 || pids.length === 0) return
    signal(pids, 'SIGKILL')
    await waitForExit(pids, 500)
  }
  throw new Error(`processes in namespace ${netns} keep coming back`)
}

function lanOf(nat: NatPlan, last: 1 | 2): string {
  return `192.168.${nat.lan}.${last}`
}

/**
 * The router's rules: masquerade out of wan0, and drop whatever arrives on wan0 unasked. Dropping in INPUT matters
 * for hole punching: an unsolicited packet that reached INPUT would leave a conntrack entry that makes the NAT pick
 * another port for the host's own flow to that peer.
 */
function routerRules(symmetric: boolean): string {
  return [
    '*nat',
    `-A POSTROUTING -o wan0 -j MASQUERADE${symmetric ? ' --random-fully' : ''}`,
    'COMMIT',
    '*filter',
    '-A INPUT -i wan0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A INPUT -i wan0 -j DROP',
    '-A FORWARD -i wan0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A FORWARD -i wan0 -j DROP',
    'COMMIT',
    '',
  ].join('\n')
}

/** The LAN of one NAT: the veth is created inside the router namespace and its peer moved straight to the host's. */
async function buildLan(nat: NatPlan, tag: string): Promise<void> {
  await ipBatch(nat.router, [
    `link set lo up alias ${tag}`,
    `link add lan0 type veth peer name eth0 netns ${nat.host}`,
    `addr add ${lanOf(nat, 1)}/24 dev lan0`,
    'link set lan0 up',
  ])
  await ipBatch(nat.host, [
    `link set lo up alias ${tag}`,
    `addr add ${lanOf(nat, 2)}/24 dev eth0`,
    'link set eth0 up',
    `route add default via ${lanOf(nat, 1)}`,
  ])
  await must('ip', ['netns', 'exec', nat.router, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward && iptables-restore'], routerRules(nat.symmetric))
}

/** Where a testbed router's miniupnpd serves UPnP IGD's device description and SOAP control (on its LAN address). */
export const UPNP_HTTP_PORT = 5000

const mapsPorts = (nat: NatPlan): boolean => nat.portMapping.natPmp || nat.portMapping.upnp

/**
 * Port mapping on a router: miniupnpd (its iptables backend works on the legacy tables) offering NAT-PMP, UPnP IGD or
 * both, its chains, and a rule that lets through what a mapping forwards (the router's own filter drops everything
 * else that arrives on wan0). The daemon runs in the router's namespace, so that down() ends it with the namespace's
 * other processes. A host's SSDP search (multicast to 239.255.255.250) leaves by its default route's interface, the
 * LAN, as on a home network: no multicast route is needed.
 */
async function startPortMapper(prefix: string, nat: NatPlan): Promise<void> {
  const { natPmp, upnp } = nat.portMapping
  const legacy = 'iptables-legacy'
  await must('ip', ['netns', 'exec', nat.router, 'sh', '-c', [
    `${legacy} -t nat -N MINIUPNPD`,
    `${legacy} -t nat -I PREROUTING -i wan0 -j MINIUPNPD`,
    `${legacy} -t nat -N MINIUPNPD-POSTROUTING`,
    `${legacy} -t nat -I POSTROUTING -o wan0 -j MINIUPNPD-POSTROUTING`,
    `${legacy} -t mangle -N MINIUPNPD`,
    `${legacy} -t mangle -I PREROUTING -i wan0 -j MINIUPNPD`,
    `${legacy} -N MINIUPNPD`,
    `${legacy} -I FORWARD -i wan0 ! -o wan0 -j MINIUPNPD`,
    'iptables -I FORWARD 1 -i wan0 -m conntrack --ctstate DNAT -j ACCEPT',
  ].join(' && ')])
  const config = join(stateDir(prefix), `${nat.router}.miniupnpd.conf`)
  await writeFile(config, [
    'ext_ifname=wan0',
    'listening_ip=lan0',
    `http_port=${UPNP_HTTP_PORT}`,
    `enable_natpmp=${natPmp ? 'yes' : 'no'}`,
    `enable_upnp=${upnp ? 'yes' : 'no'}`,
    'secure_mode=yes',
    `uuid=${randomUUID()}`,
    `allow 1024-65535 ${lanOf(nat, 1).replace(/\.1$/, '.0')}/24 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    '',
  ].join('\n'))
  spawn('ip', ['netns', 'exec', nat.router, 'miniupnpd', '-d', '-f', config, '-P', join(stateDir(prefix), `${nat.router}.miniupnpd.pid`)], { detached: true, stdio: 'ignore' }).unref()
  // Ready once it listens: on UDP 5351 for NAT-PMP, on UDP 1900 (SSDP) and its HTTP port for UPnP.
  const sockets = [...(natPmp ? [['-Huln', 'sport = :5351']] : []), ...(upnp ? [['-Huln', 'sport = :1900'], ['-Htln', `sport = :${UPNP_HTTP_PORT}`]] : [])]
  const deadline = Date.now() + 10_000
  for (;;) {
    const listening = await Promise.all(sockets.map((args) => runProcess('ip', ['netns', 'exec', nat.router, 'ss', ...args], { timeoutMs: 5_000 })))
    if (listening.every((result) => result.stdout.trim() !== '')) return
    if (Date.now() > deadline) throw new Error(`miniupnpd did not start in ${nat.router}`)
    await sleep(100)
  }
}

async function createNamespaces(plan: TestbedPlan): Promise<void> {
  await mkdir(stateDir(plan.prefix), { recursive: true })
  await writeFile(join(stateDir(plan.prefix), 'namespaces.json'), JSON.stringify(plan.namespaces))
  await must('ip', ['-batch', '-'], plan.namespaces.map((netns) => `netns add ${netns}\n`).join(''))
  const tag = TAG + plan.prefix
  const publicHosts = plan.hosts.filter((host) => host.nat === 'none')
  await Promise.all([
    ...publicHosts.map((host) => ipBatch(host.netns, [`link set lo up alias ${tag}`])),
    ...plan.nats.map((nat) => buildLan(nat, tag)),
  ])
}

/** Gives each wan0 (created by linkd) its address and makes it the default route. */
async function configureWans(plan: TestbedPlan): Promise<void> {
  await Promise.all(plan.wans.map((wan) => ipBatch(wan.netns, [
    `addr add ${wan.address}/32 dev wan0`,
    `link set wan0 up txqueuelen ${WAN_QUEUE_PACKETS}`,
    'route add default dev wan0',
  ])))
}

// ---- the API -----------------------------------------------------------------------------------------------------

function handle(prefix: string, hostList: TestbedHost[]): Testbed {
  const hosts = Object.fromEntries(hostList.map((host) => [host.name, host]))
  const netnsOf = (name: string): string => {
    const host = hosts[name]
    if (host === undefined) throw new Error(`testbed ${prefix} has no host '${name}' (hosts: ${Object.keys(hosts).join(', ')})`)
    return host.netns
  }
  return {
    prefix,
    hosts,
    exec: (host, command, args = [], options = {}) => spawn('ip', ['netns', 'exec', netnsOf(host), command, ...args], options),
    run: (host, command, args = [], options = {}) => runProcess('ip', ['netns', 'exec', netnsOf(host), command, ...args], options),
    down: () => down(prefix),
  }
}

/** Builds the testbed the spec describes, replacing any earlier one with the same prefix. */
export async function build(spec: TestbedSpec): Promise<Testbed> {
  const plan = planTestbed(spec)
  requirePrerequisites()
  if (plan.nats.some(mapsPorts) && !(onPath('miniupnpd') && onPath('iptables-legacy'))) {
    throw new Error('a router with port mapping needs miniupnpd and iptables-legacy; as root: apt-get install -y --no-install-recommends miniupnpd miniupnpd-iptables')
  }
  const binary = await compileLinkd()
  await down(plan.prefix)
  try {
    await createNamespaces(plan)
    await startLinkd(plan, binary)
    await configureWans(plan)
    await Promise.all(plan.nats.filter(mapsPorts).map((nat) => startPortMapper(plan.prefix, nat)))
    await writeFile(join(stateDir(plan.prefix), 'testbed.json'), JSON.stringify({ prefix: plan.prefix, hosts: plan.hosts }, null, 2))
  } catch (error) {
    await down(plan.prefix).catch(() => {})
    throw error
  }
  return handle(plan.prefix, plan.hosts)
}

/** A handle on a testbed that is up, built by this process or another (e.g. `scripts/testbed.ts up`). */
export async function attach(prefix: string): Promise<Testbed> {
  checkPrefix(prefix)
  const path = join(stateDir(prefix), 'testbed.json')
  const text = await readFile(path, 'utf8').catch(() => {
    throw new Error(`no testbed '${prefix}' is up (${path} is missing)`)
  })
  return handle(prefix, (JSON.parse(text) as { hosts: TestbedHost[] }).hosts)
}

/**
 * Removes everything the testbed with this prefix made, whether its builder is alive or not: linkd, every process in
 * its namespaces, the namespaces (which takes their veths and TUNs with them) and its state dir. Idempotent.
 */
export async function down(prefix: string): Promise<void> {
  checkPrefix(prefix)
  if (process.getuid?.() !== 0) throw new Error('removing a testbed needs root')
  await stopLinkd(prefix)
  const namespaces = await namespacesOf(prefix)
  await Promise.all(namespaces.map(emptyNamespace))
  if (namespaces.length > 0) await must('ip', ['-force', '-batch', '-'], namespaces.map((netns) => `netns del ${netns}\n`).join(''))
  const left = await namespacesOf(prefix)
  if (left.length > 0) throw new Error(`namespaces of testbed ${prefix} could not be deleted: ${left.join(', ')}`)
  await rm(stateDir(prefix), { recursive: true, force: true })
}

/** Every testbed prefix with a trace on this machine: a state dir, a tagged namespace or a running linkd. */
export async function listTestbeds(): Promise<string[]> {
  const fromState = await readdir(STATE_ROOT).catch((): string[] => [])
  const fromTags = await Promise.all((await listNamespaces()).map(namespaceTag))
  const fromLinkd = (await findLinkds()).map((p) => p.prefix)
  const all = [...fromState, ...fromTags, ...fromLinkd].filter((prefix): prefix is string => prefix !== undefined && prefixPattern.test(prefix))
  return [...new Set(all)].sort()
}

/** Removes every testbed on this machine; returns the prefixes removed. */
export async function downAll(): Promise<string[]> {
  const prefixes = await listTestbeds()
  for (const prefix of prefixes) await down(prefix)
  return prefixes
}
