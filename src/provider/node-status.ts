/**
 * A provider node's status, as `hearth provider status` shows it: who and where the node is, whether it lends and
 * why not, what its offer says (and which runtimes are not offered, and why), the tasks it runs, its agreements,
 * whether its prices cover the owner's costs, and its earnings and every agreement's money.
 */
import type { Address } from 'viem'
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { Pricing } from '../market/pricing.ts'
import type { Host, PeerConnection } from '../net/host.ts'
import type { ReachabilityStatus } from '../net/reachability.ts'
import type { Store } from '../store/store.ts'
import type { ProviderConfig } from './config.ts'
import { readEarnings, type EarningsReport } from './earnings.ts'
import type { BreakEven, MachineShare, OwnerCosts, PriceCheck } from './profitability.ts'
import type { ProviderAgent, ProviderStats, RunningTasks } from './provider-agent.ts'

export interface ProviderStatus {
  running: true
  pid: number
  dataDir: string
  peerId: string
  address: Address
  multiaddrs: string[]
  /** Whether others can dial this node (public, private through relays, unreachable and why), and each connection. */
  network: { reachability: ReachabilityStatus; connections: PeerConnection[] }
  startedAtMs: number
  uptimeSec: number
  lending: { active: boolean; reason: string | undefined }
  offer: {
    runtimes: string[]
    unavailable: string[]
    nativePrograms: string[]
    threads: number
    memoryGib: number
    diskGib: number
    cpuScore: number | undefined
    gpus: number
    location: ProviderConfig['location']
    pricing: ProviderConfig['pricing']
    pricingWei: Pricing
    /** Announced through a relay only (behind a NAT, no port forward). */
    relayed: boolean
    /** Reached through a relay only: relayed, and behind a symmetric NAT (no hole punch) or one no relay could classify. */
    relayOnly: boolean
  }
  tasks: RunningTasks
  stats: ProviderStats
  activeAgreements: number
  profitability: {
    currency: string
    costPerCpuHourWei: string
    revenuePerCpuHourWei: string
    coverage: number
    breakEven: { perTaskWei: string; perCpuSecWei: string }
  }
  earnings: EarningsReport['totals']
  /** Every agreement's money: exposure (running tasks included), vouchers, claims confirmed, in flight or failed. */
  agreements: EarningsReport['agreements']
  warnings: string[]
}

export interface StatusSources {
  dataDir: string
  config: ProviderConfig
  identity: NodeIdentity
  host: Host
  store: Store
  agent: ProviderAgent
  startedAtMs: number
  /** Runtimes the owner has not enabled, and why. */
  notEnabled: readonly string[]
  pricing: Pricing
  costs: OwnerCosts
  share: MachineShare
  priceCheck: PriceCheck
  breakEven: BreakEven
}

export function providerStatus(sources: StatusSources): ProviderStatus {
  const { dataDir, config, identity, host, store, agent, startedAtMs, notEnabled, pricing, costs, share, priceCheck, breakEven } = sources
  const { location, resources } = config
  const offer = agent.currentOffer()?.payload.properties ?? {}
  const lending = agent.lending()
  const earnings = readEarnings(store, { owner: costs, share }, agent.accounts.money())
  const strings = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : [])
  const warnings = [...(priceCheck.warning === undefined ? [] : [priceCheck.warning])]
  return {
    running: true,
    pid: process.pid,
    dataDir,
    peerId: host.peerId.toString(),
    address: identity.address,
    multiaddrs: host.multiaddrs(),
    network: { reachability: host.reachability(), connections: host.connections() },
    startedAtMs,
    uptimeSec: Math.round((Date.now() - startedAtMs) / 1000),
    lending: { active: !lending.paused, reason: lending.reason },
    offer: {
      runtimes: strings(offer['golem.runtime.name']),
      unavailable: [...strings(offer['hearth.runtime.unavailable']), ...notEnabled],
      nativePrograms: strings(offer['hearth.runtime.native.programs']),
      threads: resources.threads,
      memoryGib: resources.memoryGib,
      diskGib: resources.diskGib,
      cpuScore: typeof offer['hearth.inf.cpu.score'] === 'number' ? offer['hearth.inf.cpu.score'] : undefined,
      gpus: typeof offer['hearth.inf.gpu.count'] === 'number' ? offer['hearth.inf.gpu.count'] : 0,
      relayed: offer['hearth.net.relayed'] === true,
      relayOnly: offer['hearth.net.relayOnly'] === true,
      location,
      pricing: config.pricing,
      pricingWei: pricing,
    },
    tasks: agent.running(),
    stats: agent.stats(),
    activeAgreements: store.agreements.list({ state: 'approved' }).filter((a) => a.role === 'provider').length,
    profitability: {
      currency: config.costs.currency,
      costPerCpuHourWei: priceCheck.costPerCpuHourWei.toString(),
      revenuePerCpuHourWei: priceCheck.revenuePerCpuHourWei.toString(),
      coverage: priceCheck.ratio,
      breakEven: { perTaskWei: breakEven.perTask.perTaskWei, perCpuSecWei: breakEven.linear.perCpuSecWei },
    },
    earnings: earnings.totals,
    agreements: earnings.agreements,
    warnings,
  }
}
