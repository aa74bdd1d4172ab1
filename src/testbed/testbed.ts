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
 *
 * The plan (spec to namespaces and addresses) is in plan.ts, the routers' port mapper (miniupnpd) in port-mapper.ts,
 * the process helpers in system.ts; this file builds, attaches to and removes testbeds.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, existsSync, openSync } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { checkPrefix, lanOf, planTestbed, prefixPattern, TAG, type NatPlan, type TestbedHost, type TestbedPlan, type TestbedSpec } from './plan.ts'
import { requirePortMapper, startPortMappers } from './port-mapper.ts'
import { ipBatch, must, onPath, runProcess, stateDir, STATE_ROOT, type RunOptions, type RunResult } from './system.ts'

export {
  DEFAULT_INTRA_RTT_MS, DEFAULT_PUBLIC_CIDR, planTestbed,
  type NatKind, type PortMappingKind, type TestbedHost, type TestbedHostSpec, type TestbedPlan, type TestbedSpec,
} from './plan.ts'
export { UPNP_HTTP_PORT } from './port-mapper.ts'
export { STATE_ROOT, type RunOptions, type RunResult } from './system.ts'

export interface Testbed {
  prefix: string
  hosts: Record<string, TestbedHost>
  /** Starts `command` inside the host's namespace (`ip netns exec`). */
  exec(host: string, command: string, args?: readonly string[], options?: SpawnOptions): ChildProcess
  /** Runs `command` inside the host's namespace to completion; a non-zero exit is a result, not an error. */
  run(host: string, command: string, args?: readonly string[], options?: RunOptions): Promise<RunResult>
  down(): Promise<void>
}

const INSTALL_HINT = 'apt-get install -y --no-install-recommends iproute2 iptables gcc'
/** The TUN queue is where a burst waits for linkd; the default 500 packets drops TCP bursts on a busy machine. */
const WAN_QUEUE_PACKETS = 4096
const LINKD_READY_TIMEOUT_MS = 15_000

// ---- prerequisites -----------------------------------------------------------------------------------------------

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
  requirePortMapper(plan.nats)
  const binary = await compileLinkd()
  await down(plan.prefix)
  try {
    await createNamespaces(plan)
    await startLinkd(plan, binary)
    await configureWans(plan)
    await startPortMappers(plan.prefix, plan.nats)
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
