/**
 * The provider's configuration: one schema, read from a commented config file (JSON with // and /* *\/ comments),
 * then HEARTH_PROVIDER_* environment variables, then command-line flags, each later source overriding the earlier.
 * Every value is checked; an error names the field, where the value came from, and what was expected.
 *
 * Also here: what share of this machine may be lent (never all of it), price presets per runtime, and the commented
 * file `hearth provider init` writes.
 */
import { statfsSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { parseEther, formatEther } from 'viem'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { addressSchema } from '../identity/wire-schemas.ts'
import type { Pricing } from '../market/pricing.ts'
import { parseWindow } from './idle-policy.ts'

const htt = z
  .union([z.string(), z.number()])
  .transform((v) => String(v))
  .refine((v) => /^\d+(\.\d{1,18})?$/.test(v), 'expected a token amount like "0.001" (HTT, up to 18 decimals)')

const windowSchema = z.string().refine((w) => {
  try {
    parseWindow(w)
    return true
  } catch {
    return false
  }
}, 'expected a local-time window like "22:00-07:00"')

export const providerConfigSchema = z.strictObject({
  /** libp2p listen addresses. */
  listen: z.array(z.string().startsWith('/', 'expected a multiaddr like /ip4/0.0.0.0/tcp/7690')).min(1).default(['/ip4/0.0.0.0/tcp/0']),
  /** Addresses others should dial (a public IP and port, a forwarded port), announced besides what is found out. */
  announce: z.array(z.string().startsWith('/', 'expected a multiaddr like /ip4/203.0.113.7/tcp/7690')).default([]),
  /**
   * How others reach this node: auto (ask relays to dial back; reserve relay slots when they cannot), public (the
   * listen and announce addresses are dialable as they are), private (always through relays).
   */
  reachability: z.enum(['auto', 'public', 'private']).default('auto'),
  /** Relays to reserve slots on when nobody can dial this node (default: the bootstrap peers). */
  relays: z.array(z.string().includes('/p2p/', { message: 'expected a multiaddr ending in /p2p/<peer id>' })).optional(),
  /** Serve as a relay for other nodes (a public machine only): their connections pass through it, within limits. */
  relay: z.boolean().default(false),
  /** Peers to join the network through (multiaddrs ending in /p2p/<peer id>). */
  bootstrap: z.array(z.string().includes('/p2p/', { message: 'expected a multiaddr ending in /p2p/<peer id>' })).default([]),
  /** Find peers on the local network by multicast DNS. */
  mdns: z.boolean().default(false),
  chain: z
    .strictObject({
      /** The deployment file (hearth chain --deployment-out, hearth deploy --out). */
      deployment: z.string().min(1, 'expected the path of a deployment file'),
      /** JSON-RPC URL; default: the one in the deployment file. */
      rpcUrl: z.url({ message: 'expected an http(s) URL' }).optional(),
    })
    .optional(),
  resources: z
    .strictObject({
      threads: z.number().int('expected a whole number of threads').min(1, 'expected at least 1 thread'),
      memoryGib: z.number().positive('expected more than 0 GiB'),
      diskGib: z.number().positive('expected more than 0 GiB'),
    }),
  runtimes: z
    .strictObject({
      /** Native programs the owner allows: name → absolute path. */
      native: z.record(z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'expected a program name'), z.string().startsWith('/', 'expected an absolute path')).default({}),
      /** A Docker Engine API socket, or false to offer no containers. */
      docker: z.union([z.string().startsWith('/', 'expected an absolute socket path'), z.literal(false)]).default(false),
      /** Environment variables native tasks may set beyond the harmless defaults (names, or PREFIX_* patterns). */
      nativeEnv: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$/, 'expected a variable name or a PREFIX_* pattern')).default([]),
    })
    .default({ native: {}, docker: false, nativeEnv: [] }),
  location: z
    .strictObject({
      countryCode: z.string().regex(/^[A-Z]{2}$/, 'expected a two-letter country code like "DE"').optional(),
      lat: z.number().min(-90).max(90).optional(),
      lon: z.number().min(-180).max(180).optional(),
      /** The region services place replicas by (`hearth.geo.region`), as service files name regions. */
      region: z.string().regex(/^[a-z0-9-]{1,32}$/, 'expected a region name like "eu" (lower-case letters, digits, dashes)').optional(),
    })
    .default({}),
  pricing: z.discriminatedUnion('model', [
    z.strictObject({ model: z.literal('per-task'), perTaskHtt: htt }),
    z.strictObject({ model: z.literal('linear'), startHtt: htt, perCpuHourHtt: htt, perHourHtt: htt }),
  ]),
  idle: z
    .strictObject({
      /** Lend only while the owner is away; false lends whatever the owner does. */
      enabled: z.boolean().default(true),
      maxOwnerLoad: z.number().min(0, 'expected a share of the machine from 0 to 1').max(1, 'expected a share of the machine from 0 to 1').default(0.25),
      requireMains: z.boolean().default(true),
      hours: z.array(windowSchema).default([]),
      checkEverySec: z.number().positive().max(5, 'expected at most 5 s: the owner gets the machine back within 5 s').default(1),
      resumeAfterSec: z.number().min(0).default(60),
    })
    .default({ enabled: true, maxOwnerLoad: 0.25, requireMains: true, hours: [], checkEverySec: 1, resumeAfterSec: 60 }),
  admission: z
    .strictObject({
      allowedRequestors: z.array(addressSchema).default([]),
      deniedRequestors: z.array(addressSchema).default([]),
      maxConcurrentAgreements: z.number().int().min(1).default(16),
      maxJobDurationSec: z.number().int().min(1).default(24 * 3600),
      /** Memory and disk all running tasks together may ask for (default: the lent share). */
      maxTotalMemoryGib: z.number().positive().optional(),
      maxTotalDiskGib: z.number().positive().optional(),
    })
    .default({ allowedRequestors: [], deniedRequestors: [], maxConcurrentAgreements: 16, maxJobDurationSec: 24 * 3600 }),
  costs: z
    .strictObject({
      currency: z.string().default('EUR'),
      idleWatts: z.number().min(0).default(40),
      busyWatts: z.number().min(0).default(120),
      electricityPerKwh: z.number().min(0).default(0.3),
      hardwareCost: z.number().min(0).default(800),
      hardwareLifetimeYears: z.number().positive().default(4),
      tokenFiatRate: z.number().positive('expected the price of one HTT in your currency, above 0').default(1),
      expectedTaskCpuSec: z.number().positive().default(60),
    })
    .default({ currency: 'EUR', idleWatts: 40, busyWatts: 120, electricityPerKwh: 0.3, hardwareCost: 800, hardwareLifetimeYears: 4, tokenFiatRate: 1, expectedTaskCpuSec: 60 }),
  /**
   * Hosting long-running services (replicas of servers, reached through this provider): off unless the owner turns
   * it on; each replica's limits, default those of the agent (512 MiB, 1 core, 1 GiB disk, 8 MiB of log).
   */
  services: z
    .strictObject({
      enabled: z.boolean().default(false),
      maxMemoryGib: z.number().positive().optional(),
      maxCpuCores: z.number().positive().optional(),
      maxDiskGib: z.number().positive().optional(),
      maxLogMib: z.number().positive().optional(),
      /**
       * How long a replica keeps serving after its requestor is told that the owner took the machine back: time for
       * a replacement elsewhere to start, so its users see no gap (0: it ends at once).
       */
      noticeSec: z.number().int().min(0).max(600).default(20),
      /**
       * Offer gateways TCP connections of their own to replicas (TLS with a key granted over libp2p; gateways that
       * reach this machine directly use them when told to); off: libp2p tunnels only. `directPort` 0 takes any free
       * port: set one to open it in a firewall.
       */
      direct: z.boolean().default(true),
      directPort: z.number().int().min(0).max(65_535).default(0),
    })
    .default({ enabled: false, noticeSec: 20, direct: true, directPort: 0 }),
  /**
   * Lending disk for storage: ciphertext pieces of owners' files (runtime `storage`), `offeredGib` of it at
   * `perGibHourHtt` per GiB-hour reserved, kept in `<data dir>/storage`; an owner's pieces stay `graceSec` after its
   * last storage agreement ended, so an owner's node that was away finds them again.
   */
  storage: z
    .strictObject({
      enabled: z.boolean().default(false),
      offeredGib: z.number().positive().default(10),
      perGibHourHtt: htt.default('0.00001'),
      graceSec: z.number().int().min(0).default(86_400),
    })
    .default({ enabled: false, offeredGib: 10, perGibHourHtt: '0.00001', graceSec: 86_400 }),
  /** How often unclaimed vouchers are checked against agreement expiry, and the amount that triggers a claim. */
  claim: z.strictObject({ thresholdHtt: htt.optional() }).default({}),
  /** How much unpaid work this provider risks, and how it is paid. */
  payments: z
    .strictObject({
      /** Tasks delivered or running under one agreement that no voucher covers; at the cap no new work starts. */
      maxUnpaidTasks: z.number().int().min(1, 'expected at least 1 task').default(32),
      /** The same in HTT of delivered work (none: only the tasks bound). */
      maxUnpaidHtt: htt.optional(),
      /** Longest interval between debit notes this provider agrees to. */
      maxDebitNoteIntervalSec: z.number().int().min(1).max(86_400).default(300),
      /** The escrow contract must leave providers at least this long after expiry to claim. */
      minClaimGraceSec: z.number().int().min(0).default(3600),
      /** Blocks a claim needs before it counts as paid; more on chains that reorganise. */
      confirmations: z.number().int().min(1).max(1000).default(1),
      /** Where claimed earnings go; default: they stay with the node's own key. */
      payoutAddress: addressSchema.optional(),
    })
    .default({ maxUnpaidTasks: 32, maxDebitNoteIntervalSec: 300, minClaimGraceSec: 3600, confirmations: 1 }),
})

export type ProviderConfig = z.output<typeof providerConfigSchema>
export type ProviderConfigInput = z.input<typeof providerConfigSchema>

type Kind = 'int' | 'number' | 'string' | 'list' | 'bool'

/** Settings that environment variables and flags may set: the field path, the variable, the flag, the value kind. */
export const settings: readonly { path: string; env: string; flag: string; kind: Kind; description: string }[] = [
  { path: 'listen', env: 'HEARTH_PROVIDER_LISTEN', flag: 'listen', kind: 'list', description: 'libp2p listen multiaddrs (comma-separated in the environment)' },
  { path: 'announce', env: 'HEARTH_PROVIDER_ANNOUNCE', flag: 'announce', kind: 'list', description: 'addresses others should dial (a public IP and port)' },
  { path: 'reachability', env: 'HEARTH_PROVIDER_REACHABILITY', flag: 'reachability', kind: 'string', description: 'auto, public or private' },
  { path: 'relays', env: 'HEARTH_PROVIDER_RELAYS', flag: 'relays', kind: 'list', description: 'relays to reserve on when not dialable (default: the bootstrap peers)' },
  { path: 'relay', env: 'HEARTH_PROVIDER_RELAY', flag: 'relay', kind: 'bool', description: 'relay other nodes\' connections (public machines only)' },
  { path: 'bootstrap', env: 'HEARTH_PROVIDER_BOOTSTRAP', flag: 'bootstrap', kind: 'list', description: 'peers to join through' },
  { path: 'mdns', env: 'HEARTH_PROVIDER_MDNS', flag: 'mdns', kind: 'bool', description: 'find peers on the local network by mDNS' },
  { path: 'chain.deployment', env: 'HEARTH_PROVIDER_DEPLOYMENT', flag: 'deployment', kind: 'string', description: 'deployment file of the token and escrow' },
  { path: 'chain.rpcUrl', env: 'HEARTH_PROVIDER_RPC', flag: 'rpc', kind: 'string', description: 'chain JSON-RPC URL (default: from the deployment file)' },
  { path: 'resources.threads', env: 'HEARTH_PROVIDER_THREADS', flag: 'threads', kind: 'int', description: 'CPU threads to lend' },
  { path: 'resources.memoryGib', env: 'HEARTH_PROVIDER_MEMORY_GIB', flag: 'memoryGib', kind: 'number', description: 'memory to lend, GiB' },
  { path: 'resources.diskGib', env: 'HEARTH_PROVIDER_DISK_GIB', flag: 'diskGib', kind: 'number', description: 'disk to lend, GiB' },
  { path: 'runtimes.docker', env: 'HEARTH_PROVIDER_DOCKER_SOCKET', flag: 'dockerSocket', kind: 'string', description: 'Docker Engine API socket to run containers through' },
  { path: 'location.countryCode', env: 'HEARTH_PROVIDER_COUNTRY', flag: 'country', kind: 'string', description: 'two-letter country code to advertise' },
  { path: 'location.lat', env: 'HEARTH_PROVIDER_LAT', flag: 'lat', kind: 'number', description: 'latitude to advertise' },
  { path: 'location.lon', env: 'HEARTH_PROVIDER_LON', flag: 'lon', kind: 'number', description: 'longitude to advertise' },
  { path: 'location.region', env: 'HEARTH_PROVIDER_REGION', flag: 'region', kind: 'string', description: 'region to advertise, where services place replicas (e.g. eu)' },
  { path: 'pricing.model', env: 'HEARTH_PROVIDER_PRICING_MODEL', flag: 'pricingModel', kind: 'string', description: 'per-task or linear' },
  { path: 'pricing.perTaskHtt', env: 'HEARTH_PROVIDER_PER_TASK_HTT', flag: 'perTaskHtt', kind: 'string', description: 'per-task price, HTT' },
  { path: 'pricing.startHtt', env: 'HEARTH_PROVIDER_START_HTT', flag: 'startHtt', kind: 'string', description: 'linear: start price per agreement, HTT' },
  { path: 'pricing.perCpuHourHtt', env: 'HEARTH_PROVIDER_PER_CPU_HOUR_HTT', flag: 'perCpuHourHtt', kind: 'string', description: 'linear: price per CPU-hour, HTT' },
  { path: 'pricing.perHourHtt', env: 'HEARTH_PROVIDER_PER_HOUR_HTT', flag: 'perHourHtt', kind: 'string', description: 'linear: price per hour of run time, HTT' },
  { path: 'idle.enabled', env: 'HEARTH_PROVIDER_IDLE', flag: 'idle', kind: 'bool', description: 'lend only while the owner is away' },
  { path: 'idle.maxOwnerLoad', env: 'HEARTH_PROVIDER_MAX_OWNER_LOAD', flag: 'maxOwnerLoad', kind: 'number', description: 'owner CPU load (0..1) above which lending pauses' },
  { path: 'idle.requireMains', env: 'HEARTH_PROVIDER_REQUIRE_MAINS', flag: 'requireMains', kind: 'bool', description: 'lend only on mains power' },
  { path: 'idle.hours', env: 'HEARTH_PROVIDER_HOURS', flag: 'hours', kind: 'list', description: 'lending hours, e.g. 22:00-07:00' },
  { path: 'idle.resumeAfterSec', env: 'HEARTH_PROVIDER_RESUME_AFTER_SEC', flag: 'resumeAfterSec', kind: 'number', description: 'seconds of idleness before lending resumes' },
  { path: 'admission.allowedRequestors', env: 'HEARTH_PROVIDER_ALLOW', flag: 'allow', kind: 'list', description: 'the only requestor addresses to work for' },
  { path: 'admission.deniedRequestors', env: 'HEARTH_PROVIDER_DENY', flag: 'deny', kind: 'list', description: 'requestor addresses to refuse' },
  { path: 'admission.maxConcurrentAgreements', env: 'HEARTH_PROVIDER_MAX_AGREEMENTS', flag: 'maxAgreements', kind: 'int', description: 'agreements held at once' },
  { path: 'admission.maxJobDurationSec', env: 'HEARTH_PROVIDER_MAX_JOB_SEC', flag: 'maxJobSec', kind: 'int', description: 'longest agreement accepted, seconds' },
  { path: 'admission.maxTotalMemoryGib', env: 'HEARTH_PROVIDER_MAX_TOTAL_MEMORY_GIB', flag: 'maxTotalMemoryGib', kind: 'number', description: 'memory all running tasks may ask for together, GiB' },
  { path: 'admission.maxTotalDiskGib', env: 'HEARTH_PROVIDER_MAX_TOTAL_DISK_GIB', flag: 'maxTotalDiskGib', kind: 'number', description: 'disk all running tasks may take together, GiB' },
  { path: 'services.enabled', env: 'HEARTH_PROVIDER_SERVICES', flag: 'services', kind: 'bool', description: 'host long-running services (replicas of requestors\' servers)' },
  { path: 'services.direct', env: 'HEARTH_PROVIDER_SERVICES_DIRECT', flag: 'services-direct', kind: 'bool', description: 'let gateways reach replicas over TCP connections of their own (TLS), not only libp2p tunnels' },
  { path: 'services.directPort', env: 'HEARTH_PROVIDER_SERVICES_DIRECT_PORT', flag: 'services-direct-port', kind: 'int', description: 'TCP port of those connections (0: any free port)' },
  { path: 'storage.enabled', env: 'HEARTH_PROVIDER_STORAGE', flag: 'storage', kind: 'bool', description: 'lend disk for storage (encrypted pieces of owners\' files)' },
  { path: 'storage.offeredGib', env: 'HEARTH_PROVIDER_STORAGE_GIB', flag: 'storageGib', kind: 'number', description: 'disk to lend for storage, GiB' },
  { path: 'storage.perGibHourHtt', env: 'HEARTH_PROVIDER_STORAGE_PRICE', flag: 'storagePrice', kind: 'string', description: 'price of storage, HTT per GiB-hour' },
  { path: 'costs.idleWatts', env: 'HEARTH_PROVIDER_IDLE_WATTS', flag: 'idleWatts', kind: 'number', description: 'machine power draw at rest, W' },
  { path: 'costs.busyWatts', env: 'HEARTH_PROVIDER_BUSY_WATTS', flag: 'busyWatts', kind: 'number', description: 'machine power draw with the lent threads busy, W' },
  { path: 'costs.electricityPerKwh', env: 'HEARTH_PROVIDER_ELECTRICITY_PER_KWH', flag: 'electricityPerKwh', kind: 'number', description: 'electricity price per kWh' },
  { path: 'costs.hardwareCost', env: 'HEARTH_PROVIDER_HARDWARE_COST', flag: 'hardwareCost', kind: 'number', description: 'what the machine cost' },
  { path: 'costs.hardwareLifetimeYears', env: 'HEARTH_PROVIDER_HARDWARE_YEARS', flag: 'hardwareYears', kind: 'number', description: 'years the machine lasts' },
  { path: 'costs.tokenFiatRate', env: 'HEARTH_PROVIDER_TOKEN_RATE', flag: 'tokenRate', kind: 'number', description: 'price of one HTT in your currency' },
]

/** Where a raw value came from, for error messages. */
type Source = 'config file' | 'environment' | 'flag'

/** Strips // and /* *\/ comments (outside strings) and trailing commas, so a commented file parses as JSON. */
export function stripJsonComments(text: string): string {
  let out = ''
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    if (c === '"') {
      // Copy a string whole, escapes included.
      let j = i + 1
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1
      out += text.slice(i, j + 1)
      i = j + 1
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2)
      i = end === -1 ? text.length : end + 2
    } else {
      out += c
      i++
    }
  }
  return out.replace(/,(\s*[}\]])/g, '$1')
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.')
  let node = target
  for (const key of keys.slice(0, -1)) {
    const next = node[key]
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[keys.at(-1)!] = value
}

function invalid(field: string, source: Source | undefined, message: string): HearthError {
  return new HearthError('HEARTH_ERR_CONFIG_INVALID', `provider config ${field}${source === undefined ? '' : ` (from the ${source})`}: ${message}`, {
    hint: 'fix the value in the config file, the HEARTH_PROVIDER_* variable or the flag; hearth provider init --help lists them',
    details: { field, source },
  })
}

function coerce(kind: Kind, raw: unknown, field: string, source: Source): unknown {
  if (kind === 'list') return Array.isArray(raw) ? raw.map(String) : String(raw).split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (kind === 'bool') {
    if (typeof raw === 'boolean') return raw
    if (/^(1|true|yes|on)$/i.test(String(raw))) return true
    if (/^(0|false|no|off)$/i.test(String(raw))) return false
    throw invalid(field, source, `expected true or false, got "${String(raw)}"`)
  }
  if (kind === 'int' || kind === 'number') {
    const n = typeof raw === 'number' ? raw : Number(String(raw).trim())
    if (String(raw).trim() === '' || !Number.isFinite(n)) throw invalid(field, source, `expected a number, got "${String(raw)}"`)
    return n
  }
  // A docker socket set to "false" or "" turns containers off.
  if (field === 'runtimes.docker' && /^(false|off|)$/i.test(String(raw))) return false
  return String(raw)
}

/**
 * The configuration from a parsed file, then the environment, then flags (flag names as in `settings`). Throws
 * HEARTH_ERR_CONFIG_INVALID naming the first bad field, where its value came from and what was expected.
 */
export function resolveProviderConfig(layers: { file?: unknown; env?: NodeJS.ProcessEnv; flags?: Record<string, unknown> }): ProviderConfig {
  const merged: Record<string, unknown> = structuredClone((layers.file ?? {}) as Record<string, unknown>)
  if (typeof merged !== 'object' || merged === null || Array.isArray(merged)) throw invalid('(file)', 'config file', 'expected a JSON object')
  const sources = new Map<string, Source>()
  for (const setting of settings) {
    const fromEnv = layers.env?.[setting.env]
    if (fromEnv !== undefined && fromEnv !== '') {
      setPath(merged, setting.path, coerce(setting.kind, fromEnv, setting.path, 'environment'))
      sources.set(setting.path, 'environment')
    }
    const fromFlag = layers.flags?.[setting.flag]
    if (fromFlag !== undefined) {
      setPath(merged, setting.path, coerce(setting.kind, fromFlag, setting.path, 'flag'))
      sources.set(setting.path, 'flag')
    }
  }
  // A model chosen by env or flag drops the file's prices of the other model.
  const pricing = merged['pricing'] as Record<string, unknown> | undefined
  if (sources.has('pricing.model') && pricing !== undefined) {
    const keep = pricing['model'] === 'linear' ? ['model', 'startHtt', 'perCpuHourHtt', 'perHourHtt'] : ['model', 'perTaskHtt']
    for (const key of Object.keys(pricing)) if (!keep.includes(key)) delete pricing[key]
  }
  const parsed = providerConfigSchema.safeParse(merged)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const field = issue.path.join('.') || '(root)'
    // A list item's error (idle.hours.0) comes from the source that set the list.
    const setBy = [...sources.entries()].find(([path]) => field === path || field.startsWith(`${path}.`))?.[1]
    const source = setBy ?? (field === '(root)' ? undefined : 'config file')
    const given = issue.path.reduce<unknown>((node, key) => (node as Record<PropertyKey, unknown> | undefined)?.[key as PropertyKey], merged)
    throw invalid(field, source, `${issue.message}${given === undefined ? '' : `, got ${JSON.stringify(given)}`}`)
  }
  return parsed.data
}

/** Parses a config file's text (JSON with comments). */
export function parseConfigText(text: string, path: string): unknown {
  try {
    return JSON.parse(stripJsonComments(text))
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the provider config file ${path} is not valid JSON with comments: ${(cause as Error).message}`, {
      cause,
      hint: 'fix the file, or write a fresh one with hearth provider init --force',
    })
  }
}

export interface MachineFacts {
  threads: number
  memoryGib: number
  /** Free disk where the data directory is. */
  freeDiskGib: number
}

export function machineFacts(dataDir: string): MachineFacts {
  let freeDiskGib = Infinity
  try {
    const fs = statfsSync(dataDir)
    freeDiskGib = (fs.bavail * fs.bsize) / 1024 ** 3
  } catch {
    // The data directory may not exist yet; the disk check then waits for start.
  }
  return { threads: cpus().length, memoryGib: totalmem() / 1024 ** 3, freeDiskGib }
}

/** What the owner keeps: one thread, and a quarter of the memory but at least 1 GiB, and 2 GiB of free disk. */
export function maxShare(machine: MachineFacts): { threads: number; memoryGib: number; diskGib: number } {
  return {
    threads: Math.max(0, machine.threads - 1),
    memoryGib: Math.floor(Math.max(0, machine.memoryGib - Math.max(1, machine.memoryGib / 4)) * 10) / 10,
    diskGib: Math.floor(Math.max(0, machine.freeDiskGib - 2) * 10) / 10,
  }
}

/** A sensible first share: half the threads and half the memory, 10 GiB of disk, within `maxShare`. */
export function defaultShare(machine: MachineFacts): { threads: number; memoryGib: number; diskGib: number } {
  const max = maxShare(machine)
  return {
    threads: Math.max(1, Math.min(max.threads, Math.floor(machine.threads / 2))),
    memoryGib: Math.max(0.5, Math.min(max.memoryGib, Math.floor(machine.memoryGib / 2))),
    diskGib: Math.max(1, Math.min(max.diskGib, 10)),
  }
}

/** Refuses a share that leaves the owner less than `maxShare` keeps for them (exit code 2, naming the field). */
export function checkShare(resources: ProviderConfig['resources'], machine: MachineFacts): void {
  const max = maxShare(machine)
  if (resources.threads > max.threads) {
    throw invalid('resources.threads', undefined, `${resources.threads} threads would leave the owner none of this machine's ${machine.threads}; lend at most ${max.threads}${max.threads === 0 ? ' (a one-thread machine cannot be lent)' : ''}`)
  }
  if (resources.memoryGib > max.memoryGib) {
    throw invalid('resources.memoryGib', undefined, `${resources.memoryGib} GiB would leave the owner less than ${Math.max(1, machine.memoryGib / 4).toFixed(1)} GiB of this machine's ${machine.memoryGib.toFixed(1)} GiB; lend at most ${max.memoryGib}`)
  }
  if (resources.diskGib > max.diskGib) {
    throw invalid('resources.diskGib', undefined, `${resources.diskGib} GiB would leave less than 2 GiB free (${machine.freeDiskGib.toFixed(1)} GiB free now); lend at most ${max.diskGib}`)
  }
}

/** Price presets per runtime, in HTT: starting points an owner may raise (containers and native programs cost more to host). */
export const pricePresets = {
  wasi: { perTask: { model: 'per-task', perTaskHtt: '0.001' }, linear: { model: 'linear', startHtt: '0', perCpuHourHtt: '0.05', perHourHtt: '0.005' } },
  native: { perTask: { model: 'per-task', perTaskHtt: '0.002' }, linear: { model: 'linear', startHtt: '0.0001', perCpuHourHtt: '0.08', perHourHtt: '0.008' } },
  docker: { perTask: { model: 'per-task', perTaskHtt: '0.003' }, linear: { model: 'linear', startHtt: '0.0002', perCpuHourHtt: '0.1', perHourHtt: '0.01' } },
} as const satisfies Record<string, { perTask: ProviderConfig['pricing']; linear: ProviderConfig['pricing'] }>

/** What the agent is told of services: off, or on with each replica's limits in bytes (the agent's defaults for the rest). */
export function servicesFromConfig(services: ProviderConfig['services']): { enabled: boolean; noticeMs: number; directPort: number | false; limits: Partial<{ maxMemoryBytes: number; maxCpuCores: number; maxDiskBytes: number; maxLogBytes: number }> } {
  const bytes = (value: number | undefined, unit: number): number | undefined => (value === undefined ? undefined : Math.floor(value * unit))
  const limits = {
    maxMemoryBytes: bytes(services.maxMemoryGib, 1024 ** 3),
    maxCpuCores: services.maxCpuCores,
    maxDiskBytes: bytes(services.maxDiskGib, 1024 ** 3),
    maxLogBytes: bytes(services.maxLogMib, 1024 ** 2),
  }
  return { enabled: services.enabled, noticeMs: services.noticeSec * 1000, directPort: services.direct ? services.directPort : false, limits: Object.fromEntries(Object.entries(limits).filter(([, value]) => value !== undefined)) }
}

/** The config's prices in wei, as offers and agreements carry them. */
export function pricingFromConfig(pricing: ProviderConfig['pricing']): Pricing {
  if (pricing.model === 'per-task') return { model: 'per-task', perTaskWei: parseEther(pricing.perTaskHtt).toString() }
  return {
    model: 'linear',
    startWei: parseEther(pricing.startHtt).toString(),
    perCpuSecWei: (parseEther(pricing.perCpuHourHtt) / 3600n).toString(),
    perDurationSecWei: (parseEther(pricing.perHourHtt) / 3600n).toString(),
  }
}

/** Wei prices back to the config's HTT fields (for a suggestion from costs). */
export function pricingToConfig(pricing: Pricing): ProviderConfig['pricing'] {
  if (pricing.model === 'per-task') return { model: 'per-task', perTaskHtt: formatEther(BigInt(pricing.perTaskWei)) }
  return {
    model: 'linear',
    startHtt: formatEther(BigInt(pricing.startWei)),
    perCpuHourHtt: formatEther(BigInt(pricing.perCpuSecWei) * 3600n),
    perHourHtt: formatEther(BigInt(pricing.perDurationSecWei) * 3600n),
  }
}

/** The commented config file `hearth provider init` writes. */
export function renderConfigFile(config: ProviderConfig, notes: { machine: MachineFacts; breakEven?: string }): string {
  const j = (value: unknown): string => JSON.stringify(value)
  const max = maxShare(notes.machine)
  const p = config.pricing
  const lines = [
    '// Hearth provider configuration: JSON with comments. Environment variables (HEARTH_PROVIDER_*) and flags of',
    '// `hearth provider start` override these values; `hearth provider start --help` lists them.',
    '{',
    '  // libp2p addresses to listen on. /ip4/0.0.0.0 is reachable on the local network; pick a fixed port to forward it.',
    `  "listen": ${j(config.listen)},`,
    '  // Addresses others should dial, e.g. ["/ip4/203.0.113.7/tcp/7690"] behind a port forward. Without one the node',
    '  // asks its relays to dial it back, and behind a NAT that drops their connections it is reached through them.',
    `  "announce": ${j(config.announce)},`,
    '  // auto: find out; public: the addresses above are dialable as they are; private: always through relays.',
    `  "reachability": ${j(config.reachability)},`,
    '  // Relay other nodes\' connections too (a public machine only; limited per connection in bytes and time).',
    `  "relay": ${j(config.relay)},`,
    '  // Peers to join the network through: multiaddrs ending in /p2p/<peer id> (hearth devnet prints some).',
    `  "bootstrap": ${j(config.bootstrap)},`,
    '  // Find peers on the local network by multicast DNS.',
    `  "mdns": ${j(config.mdns)},`,
    '  // Where payments settle: the deployment file written by `hearth chain --deployment-out` or `hearth deploy`.',
    '  // The node key (data dir/node.key) is also the chain account that claims payments; it needs gas',
    '  // (`hearth wallet --faucet` on a development chain).',
    ...(config.chain === undefined
      ? ['  // "chain": { "deployment": "deployment.json", "rpcUrl": "http://127.0.0.1:8545" },']
      : [`  "chain": ${j(config.chain)},`]),
    `  // The share of this machine that is lent. It has ${notes.machine.threads} threads and ${notes.machine.memoryGib.toFixed(1)} GiB of memory; the owner`,
    `  // always keeps one thread, a quarter of the memory (at least 1 GiB) and 2 GiB of disk: at most ${max.threads} threads, ${max.memoryGib} GiB, ${max.diskGib} GiB disk.`,
    `  "resources": ${j(config.resources)},`,
    '  // WASI is always offered. Native programs the owner allows (name -> absolute path, run in a bubblewrap sandbox),',
    '  // and a Docker Engine API socket (or false). A runtime that cannot run here is left out, and the offer says why.',
    `  "runtimes": ${j(config.runtimes)},`,
    '  // Optional location to advertise: two-letter country code, latitude, longitude, and the region services name.',
    `  "location": ${j(config.location)},`,
    '  // Prices in HTT. "per-task": perTaskHtt per accepted result. "linear": startHtt once per agreement, plus',
    '  // perCpuHourHtt per CPU-hour and perHourHtt per hour of run time. Presets (wasi): per-task 0.001;',
    '  // linear 0 + 0.05/CPU-hour + 0.005/hour. `hearth provider init --suggest-price` prices from your costs below.',
    ...(notes.breakEven === undefined ? [] : [`  // Break-even at the costs below: ${notes.breakEven}.`]),
    `  "pricing": ${j(p)},`,
    '  // Lend only while the owner is away (as BOINC does): while the owner\'s CPU load is below maxOwnerLoad (0..1),',
    '  // on mains power, and within the hours given ("22:00-07:00"; none = any hour). When the owner comes back,',
    '  // new work is refused and running tasks are handed back within checkEverySec; lending resumes after',
    '  // resumeAfterSec of idleness.',
    `  "idle": ${j(config.idle)},`,
    '  // Who may rent this machine and how much at once. Addresses are 0x… requestor addresses. maxTotalMemoryGib and',
    '  // maxTotalDiskGib bound all running tasks together (default: the lent share).',
    `  "admission": ${j(config.admission)},`,
    '  // What lending costs you, for the break-even price and the warnings: power draw at rest and busy (W),',
    '  // electricity price per kWh, machine price and lifetime, and the price of one HTT, all in `currency`.',
    `  "costs": ${j(config.costs)},`,
    '  // Host long-running services too (servers that requestors keep running here, reached through this node), with',
    '  // limits per replica: maxMemoryGib, maxCpuCores, maxDiskGib, maxLogMib (defaults 0.5 GiB, 1 core, 1 GiB, 8 MiB).',
    `  "services": ${j(config.services)},`,
    '  // Lend disk for storage too: encrypted pieces of owners\' files (you can read none of them), offeredGib of it at',
    '  // perGibHourHtt per GiB-hour reserved; an owner\'s pieces stay graceSec after its last agreement ended.',
    `  "storage": ${j(config.storage)},`,
    '  // Claim payment on chain as soon as this much is unclaimed (else at the end of each agreement and before expiry).',
    `  "claim": ${j(config.claim)},`,
    '  // Money at risk: at most maxUnpaidTasks tasks (and maxUnpaidHtt, if set) of work that no voucher covers, per',
    '  // agreement; debit notes at least every maxDebitNoteIntervalSec; escrow contracts that give at least',
    '  // minClaimGraceSec after expiry to claim; claims counted after `confirmations` blocks; claimed earnings moved',
    '  // to payoutAddress (a cold wallet) when set, so they do not sit in the node\'s hot key.',
    `  "payments": ${j(config.payments)}`,
    '}',
    '',
  ]
  return lines.join('\n')
}
