/**
 * The provider's offer: what the machine offers (the runtimes that run here and why the others do not, its CPU score
 * and GPUs, the owner's resources, prices and properties), published to the market, republished before it expires,
 * and again when the node's addresses change. Offers published earlier are remembered while they live: a proposal
 * may answer any of them.
 */
import type { NodeIdentity } from '../identity/node-identity.ts'
import type { MarketNode } from '../market/market-node.ts'
import { createOffer, offerId, type Offer, type SignedOffer } from '../market/offer.ts'
import { pricingProperties, type Pricing } from '../market/pricing.ts'
import { storageOfferProperties, storageRuntime } from '../market/storage-terms.ts'
import type { Host } from '../net/host.ts'
import { measureCpuScore } from '../exec/cpu-score.ts'
import { detectGpus, type GpuInfo } from '../exec/gpu.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import type { Lending } from './lending.ts'
import type { ProviderRuntimes } from './programs.ts'

export interface OfferingInit {
  identity: NodeIdentity
  host: Host
  market: MarketNode
  payment: EscrowContext
  lending: Lending
  /** Runtimes besides wasi the owner configured; each is offered only when it says it is available. */
  runtimes: ProviderRuntimes | undefined
  pricing: Pricing
  threads: number
  memGib: number
  /** Work delivered before a voucher must cover it (the account limit), announced so requestors size batches to it. */
  maxUnpaidTasks: number
  properties: Offer['properties'] | undefined
  constraints: string | undefined
  offerTtlMs: number
  /** Disk lent for storage (the runtime `storage`), when the owner lends any. */
  storage?: { offeredGib: number; perGibHourWei: string } | undefined
  /** A dishonest provider offers more than the machine has. */
  overclaim: { threads?: number; cpuScore?: number } | undefined
}

export interface Offering {
  /** Measures the CPU, asks each runtime whether it runs here, and finds the GPUs (at start). */
  detect(): Promise<void>
  /** The runtimes offered: wasi, and those that said they are available. */
  offeredRuntimes(): readonly string[]
  current(): SignedOffer | undefined
  /** The ids of this provider's offers still live. */
  offerIds(): Set<string>
  publish(options?: { ttlMs?: number }): Promise<void>
  /** Republishes the offer at half its lifetime from now on (once; again after stopRepublishing). */
  keepPublished(): void
  stopRepublishing(): void
  /** Publishes again (once things settle) when the node's addresses change. */
  watchAddresses(): void
  unwatchAddresses(): void
}

/** What an offer says about the machine's GPUs; `hearth.inf.gpu.count` is 0 where there are none. */
export function gpuOfferProperties(gpus: readonly GpuInfo[]): Offer['properties'] {
  const memoryMib = gpus.map((gpu) => gpu.memoryMib).filter((m): m is number => m !== undefined)
  return {
    'hearth.inf.gpu.count': gpus.length,
    ...(gpus.length === 0 ? {} : { 'hearth.inf.gpu.model': gpus.map((gpu) => gpu.model) }),
    // The smallest card bounds what one task can count on.
    ...(memoryMib.length === 0 ? {} : { 'hearth.inf.gpu.mem.gib': Math.floor((Math.min(...memoryMib) / 1024) * 10) / 10 }),
  }
}

export function createOffering(init: OfferingInit): Offering {
  const { identity, host, market, payment, lending } = init
  const offers = new Map<string, SignedOffer>()
  let current: SignedOffer | undefined
  let offeredRuntimes: string[] = ['wasi']
  let unavailableRuntimes: string[] = []
  let cpuScore = 0
  let gpuProperties: Offer['properties'] = {}
  let republishTimer: NodeJS.Timeout | undefined
  let addressesTimer: NodeJS.Timeout | undefined
  /** Stops the watch on this node's addresses (set while watchAddresses holds one). */
  let stopWatchingAddresses: (() => void) | undefined

  async function publish(options: { ttlMs?: number } = {}): Promise<void> {
    const multiaddrs = host.multiaddrs()
    const relayed = multiaddrs.length > 0 && multiaddrs.every((address) => address.includes('/p2p-circuit'))
    // Behind a cone NAT a requestor behind its own NAT punches a direct connection; behind a symmetric one (or where
    // no relay could tell) all bulk data goes through the relay.
    const nat = relayed ? await host.natKind().catch(() => undefined) : undefined
    current = await createOffer({
      identity,
      multiaddrs,
      properties: {
        // Announced through a relay only (behind a NAT, no port forward): requestors may rank or filter on it, e.g.
        // with the constraint (hearth.net.relayOnly=false): relay only is slower for bulk data.
        'hearth.net.relayed': relayed,
        'hearth.net.relayOnly': relayed && nat !== 'cone',
        'golem.runtime.name': offeredRuntimes,
        ...(offeredRuntimes.includes('native') ? { 'hearth.runtime.native.programs': Object.keys(init.runtimes?.native?.programs ?? {}) } : {}),
        ...(unavailableRuntimes.length === 0 ? {} : { 'hearth.runtime.unavailable': unavailableRuntimes }),
        'golem.inf.cpu.threads': init.overclaim?.threads ?? init.threads,
        'golem.inf.mem.gib': init.memGib,
        ...pricingProperties(init.pricing),
        'hearth.inf.cpu.score': init.overclaim?.cpuScore ?? cpuScore,
        // Work it delivers before a voucher must cover it: a requestor sizes its batches to keep within it.
        'hearth.payment.maxUnpaidTasks': init.maxUnpaidTasks,
        ...gpuProperties,
        ...init.properties,
        // Disk lent for storage is what golem.inf.storage.gib says of a storage provider.
        ...(init.storage === undefined ? {} : storageOfferProperties(init.storage)),
      },
      constraints: init.constraints ?? '',
      pricing: init.pricing,
      payment: { chainId: payment.client.chainId, escrow: payment.escrowAddress, token: payment.tokenAddress },
      ttlMs: options.ttlMs ?? init.offerTtlMs,
    })
    const id = offerId(current.payload)
    offers.set(id, current)
    for (const [key, offer] of offers) if (offer.payload.expiresAtMs <= Date.now()) offers.delete(key)
    await market.publish(current)
  }

  function onAddressesChanged(): void {
    if (addressesTimer !== undefined) clearTimeout(addressesTimer)
    addressesTimer = setTimeout(() => {
      addressesTimer = undefined
      const published = current?.payload.multiaddrs ?? []
      const now = host.multiaddrs()
      if (lending.pausedReason() !== undefined || (published.length === now.length && published.every((a) => now.includes(a)))) return
      void publish().catch(() => undefined)
    }, 500)
    addressesTimer.unref()
  }

  return {
    async detect() {
      cpuScore = measureCpuScore()
      // Offer only what runs here; say why the rest does not, so an owner (and a requestor) can tell.
      offeredRuntimes = ['wasi']
      unavailableRuntimes = []
      for (const [name, configured] of Object.entries(init.runtimes ?? {})) {
        if (configured === undefined) continue
        const availability = await configured.runtime.available()
        if (availability.ok) offeredRuntimes.push(name)
        else unavailableRuntimes.push(`${name}: ${availability.reason}`)
      }
      if (init.storage !== undefined) offeredRuntimes.push(storageRuntime)
      gpuProperties = gpuOfferProperties(await detectGpus())
    },
    offeredRuntimes: () => offeredRuntimes,
    current: () => current,
    offerIds: () => new Set(offers.keys()),
    publish,
    keepPublished() {
      republishTimer ??= setInterval(() => void publish().catch(() => undefined), Math.max(1000, Math.floor(init.offerTtlMs / 2)))
      republishTimer.unref()
    },
    stopRepublishing() {
      if (republishTimer !== undefined) clearInterval(republishTimer)
      republishTimer = undefined
    },
    watchAddresses() {
      stopWatchingAddresses ??= host.onAddressesChanged(onAddressesChanged)
    },
    unwatchAddresses() {
      stopWatchingAddresses?.()
      stopWatchingAddresses = undefined
      if (addressesTimer !== undefined) clearTimeout(addressesTimer)
    },
  }
}
