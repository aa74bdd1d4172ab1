/**
 * `hearth market offers` and `hearth market match`: what the market holds now, and whether a demand and an offer
 * match, both ways, in the constraint language.
 */
import { readFile } from 'node:fs/promises'
import { HearthError } from '../errors.ts'
import { startDevnet } from '../devnet/devnet.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { compileConstraints, evaluateConstraints } from '../market/constraints/evaluate.ts'
import { matchDemandOffer, type MatchResult } from '../market/constraints/match.ts'
import { flattenProperties, type NestedProperties } from '../market/constraints/properties.ts'
import { createMarketNode } from '../market/market-node.ts'
import type { SignedOffer } from '../market/offer.ts'
import { maxTaskCostWei, type Pricing } from '../market/pricing.ts'
import { createHost } from '../net/host.ts'

export interface OffersOptions {
  bootstrap: string[]
  constraints?: string
  /** Local providers to start when no bootstrap peer is named. */
  providers: number
}

export interface OfferRow {
  provider: string
  peerId: string
  /** The most one task (of up to 60 s) costs: the price itself under per-task pricing. */
  perTaskWei: string
  pricing: Pricing
  runtime: string
  threads: number | undefined
  memGib: number | undefined
  cpuScore: number | undefined
  country: string | undefined
  expiresInSec: number
  properties: Record<string, unknown>
}

function toRow(signed: SignedOffer, nowMs: number): OfferRow {
  const p = signed.payload.properties
  const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined)
  return {
    provider: signed.payload.provider,
    peerId: signed.payload.peerId,
    perTaskWei: maxTaskCostWei(signed.payload.pricing, 60_000).toString(),
    pricing: signed.payload.pricing,
    runtime: String(p['golem.runtime.name'] ?? ''),
    threads: num(p['golem.inf.cpu.threads']),
    memGib: num(p['golem.inf.mem.gib']),
    cpuScore: num(p['hearth.inf.cpu.score']),
    country: typeof p['golem.node.geo.country_code'] === 'string' ? p['golem.node.geo.country_code'] : undefined,
    expiresInSec: Math.round((signed.payload.expiresAtMs - nowMs) / 1000),
    properties: p,
  }
}

/** Joins the network through the bootstrap peers (or starts a local one), syncs offers, keeps those that match. */
export async function listOffers(options: OffersOptions): Promise<{ source: string; total: number; offers: OfferRow[] }> {
  // A malformed filter is the caller's error: say so before joining anything.
  const filter = options.constraints === undefined || options.constraints.trim() === '' ? undefined : compileConstraints(options.constraints)
  const keep = (signed: SignedOffer): boolean => filter === undefined || evaluateConstraints(filter, signed.payload.properties) === true
  let offers: SignedOffer[]
  let source: string
  if (options.bootstrap.length === 0) {
    const devnet = await startDevnet({ providers: options.providers })
    try {
      offers = devnet.requestor.agent.offerBook.list()
      source = `a local network of ${options.providers} providers (no --bootstrap given)`
    } finally {
      await devnet.stop()
    }
  } else {
    const host = await createHost({ identity: generateIdentity() })
    const market = createMarketNode({ host, resyncIntervalMs: 0 })
    await host.start()
    await market.start()
    try {
      const joined = await Promise.allSettled(options.bootstrap.map((address) => host.dial(address)))
      if (joined.every((j) => j.status === 'rejected')) {
        throw new HearthError('HEARTH_ERR_NET_DIAL', 'none of the bootstrap peers could be reached', {
          hint: 'check the --bootstrap addresses (hearth devnet prints some)',
        })
      }
      await market.syncAll()
      offers = market.offerBook.list()
      source = `${host.peers().length} bootstrap peer(s)`
    } finally {
      await market.stop()
      await host.stop()
    }
  }
  const nowMs = Date.now()
  return { source, total: offers.length, offers: offers.filter(keep).map((signed) => toRow(signed, nowMs)) }
}

export function formatOffers(result: Awaited<ReturnType<typeof listOffers>>): string {
  const lines = [`${result.offers.length} of ${result.total} offers match, from ${result.source}:`]
  for (const row of result.offers) {
    lines.push(
      `  ${row.provider}  ${row.runtime.padEnd(6)} ${String(row.threads ?? '-').padStart(3)} threads ${String(row.memGib ?? '-').padStart(4)} GiB` +
        `  cpu ${String(row.cpuScore ?? '-').padStart(5)}  ${row.country ?? '--'}  ${row.pricing.model === 'per-task' ? `${row.perTaskWei} wei/task` : `linear, up to ${row.perTaskWei} wei per 60 s task`}  expires in ${row.expiresInSec} s`,
    )
  }
  return `${lines.join('\n')}\n`
}

interface SideFile {
  properties: NestedProperties
  constraints: string
}

async function readSide(path: string, which: string): Promise<SideFile> {
  let value: unknown
  try {
    value = JSON.parse(await readFile(path, 'utf8'))
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_MARKET_PROPERTIES_INVALID', `cannot read the ${which} file ${path} as JSON`, {
      hint: `a ${which} file is { "properties": { ... }, "constraints": "(...)" }`,
      cause,
    })
  }
  const record = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>
  const properties = record.properties ?? {}
  const constraints = record.constraints ?? ''
  if (typeof properties !== 'object' || properties === null || Array.isArray(properties) || typeof constraints !== 'string') {
    throw new HearthError('HEARTH_ERR_MARKET_PROPERTIES_INVALID', `the ${which} file ${path} needs "properties" (an object) and "constraints" (a string)`)
  }
  return { properties: properties as NestedProperties, constraints }
}

export async function matchFiles(demandPath: string, offerPath: string): Promise<MatchResult> {
  const demand = await readSide(demandPath, 'demand')
  const offer = await readSide(offerPath, 'offer')
  return matchDemandOffer(
    { properties: flattenProperties(demand.properties), constraints: demand.constraints },
    { properties: flattenProperties(offer.properties), constraints: offer.constraints },
  )
}
