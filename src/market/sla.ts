/**
 * Service-level requirements a requestor states once. What an offer states about itself (memory, disk, CPU score,
 * GPUs, country) becomes constraints, checked against every offer; what an offer cannot truthfully state about
 * itself (the round trip from here) is measured before agreeing, and is returned for the requestor to check.
 */
import type { ConstraintAst } from './constraints/ast.ts'
import { c } from './constraints/builder.ts'

export interface Sla {
  minMemGib?: number
  minStorageGib?: number
  minThreads?: number
  minCpuScore?: number
  /** Providers must state at least this many GPUs. */
  minGpus?: number
  /** ISO 3166-1 alpha-2 codes; providers must state one of them. */
  countries?: string[]
  /** Measured with libp2p ping before agreeing; not a constraint. */
  maxLatencyMs?: number
}

/** The constraint part of an SLA; `(&)` (always true) when it states none. */
export function slaConstraints(sla: Sla): ConstraintAst {
  const parts: ConstraintAst[] = []
  if (sla.minMemGib !== undefined) parts.push(c.gte('golem.inf.mem.gib', sla.minMemGib))
  if (sla.minStorageGib !== undefined) parts.push(c.gte('golem.inf.storage.gib', sla.minStorageGib))
  if (sla.minThreads !== undefined) parts.push(c.gte('golem.inf.cpu.threads', sla.minThreads))
  if (sla.minCpuScore !== undefined) parts.push(c.gte('hearth.inf.cpu.score', sla.minCpuScore))
  if (sla.minGpus !== undefined) parts.push(c.gte('hearth.inf.gpu.count', sla.minGpus))
  if (sla.countries !== undefined && sla.countries.length > 0) {
    parts.push(c.or(...sla.countries.map((code) => c.eq('golem.node.geo.country_code', code.toUpperCase()))))
  }
  return parts.length === 1 ? parts[0]! : c.and(...parts)
}
