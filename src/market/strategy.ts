/**
 * Strategies: which of the matching offers a requestor should sign with first. Each offer gets a score in [0, 1] from
 * features that matter to requestors — estimated cost of the job, CPU score, measured latency, distance from a point
 * the requestor names, reputation — each scaled to [0, 1] across the candidates and weighted as the requestor says.
 */
import type { Offer } from './offer.ts'
import { maxTaskCostWei } from './pricing.ts'

export interface StrategyWeights {
  cost: number
  cpuScore: number
  latency: number
  distance: number
  reputation: number
}

export const defaultWeights: StrategyWeights = { cost: 1, cpuScore: 0.3, latency: 0.3, distance: 0, reputation: 0.5 }

export interface GeoPoint {
  lat: number
  lon: number
}

export interface ScoreContext {
  /** Tasks the job expects to run on each agreement, to turn prices into the job's cost. */
  tasks: number
  /** A task's deadline, which bounds its cost under `linear` pricing (default 60 s). */
  taskTimeoutMs?: number
  weights?: Partial<StrategyWeights>
  /** Measured round trip to each provider (by address, lower-case); unmeasured offers rank last on latency. */
  latencyMs?: ReadonlyMap<string, number>
  /** Where the requestor wants its work done; offers without coordinates rank last on distance. */
  near?: GeoPoint
  /** Reputation in [0, 1] by provider address (lower-case); unknown providers get 0.5. */
  reputation?: (provider: string) => number
}

export interface ScoredOffer<T> {
  item: T
  score: number
  /** Each feature's scaled value in [0, 1] (1 is best), for reports. */
  parts: Record<keyof StrategyWeights, number>
  estimatedCostWei: bigint
  distanceKm: number | undefined
}

const earthRadiusKm = 6371.0088

/** Great-circle distance by the haversine formula. */
export function greatCircleKm(a: GeoPoint, b: GeoPoint): number {
  const rad = Math.PI / 180
  const dLat = (b.lat - a.lat) * rad
  const dLon = (b.lon - a.lon) * rad
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2
  return 2 * earthRadiusKm * Math.asin(Math.min(1, Math.sqrt(h)))
}

export function offerLocation(offer: Offer): GeoPoint | undefined {
  const lat = offer.properties['hearth.geo.lat']
  const lon = offer.properties['hearth.geo.lon']
  if (typeof lat !== 'number' || typeof lon !== 'number' || Math.abs(lat) > 90 || Math.abs(lon) > 180) return undefined
  return { lat, lon }
}

/** 1 for the best value, 0 for the worst, linear between; a missing value scores 0; all equal scores 1. */
function scale(values: (number | undefined)[], higherIsBetter: boolean): number[] {
  const known = values.filter((v): v is number => v !== undefined && Number.isFinite(v))
  if (known.length === 0) return values.map(() => 0)
  const min = Math.min(...known)
  const max = Math.max(...known)
  return values.map((v) => {
    if (v === undefined || !Number.isFinite(v)) return 0
    if (max === min) return 1
    return higherIsBetter ? (v - min) / (max - min) : (max - v) / (max - min)
  })
}

/** Scores and sorts offers, best first; ties keep their input order. */
export function rankOffers<T>(items: readonly T[], offerOf: (item: T) => Offer, context: ScoreContext): ScoredOffer<T>[] {
  const weights = { ...defaultWeights, ...context.weights }
  const offers = items.map(offerOf)
  const costs = offers.map((o) => maxTaskCostWei(o.pricing, context.taskTimeoutMs ?? 60_000) * BigInt(Math.max(1, context.tasks)))
  // Costs are bigints; scale them as numbers relative to the cheapest so precision loss cannot reorder them.
  const cheapest = costs.reduce((a, b) => (b < a ? b : a), costs[0] ?? 0n)
  const costScale = scale(costs.map((c) => (cheapest === 0n ? Number(c) : Number((c * 1_000_000n) / cheapest) / 1_000_000)), false)
  const cpu = scale(offers.map((o) => (typeof o.properties['hearth.inf.cpu.score'] === 'number' ? (o.properties['hearth.inf.cpu.score'] as number) : undefined)), true)
  const latency = scale(offers.map((o) => context.latencyMs?.get(o.provider.toLowerCase())), false)
  const distances = offers.map((o) => {
    const where = offerLocation(o)
    return context.near === undefined || where === undefined ? undefined : greatCircleKm(context.near, where)
  })
  const distance = scale(distances, false)
  const reputation = offers.map((o) => Math.min(1, Math.max(0, context.reputation?.(o.provider.toLowerCase()) ?? 0.5)))
  const total = weights.cost + weights.cpuScore + weights.latency + weights.distance + weights.reputation || 1
  const scored = items.map((item, i): ScoredOffer<T> => {
    const parts = { cost: costScale[i]!, cpuScore: cpu[i]!, latency: latency[i]!, distance: distance[i]!, reputation: reputation[i]! }
    const score =
      (weights.cost * parts.cost + weights.cpuScore * parts.cpuScore + weights.latency * parts.latency + weights.distance * parts.distance + weights.reputation * parts.reputation) / total
    return { item, score, parts, estimatedCostWei: costs[i]!, distanceKm: distances[i] }
  })
  return scored.map((s, i) => ({ s, i })).sort((a, b) => b.s.score - a.s.score || a.i - b.i).map(({ s }) => s)
}
