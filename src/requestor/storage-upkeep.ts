/**
 * What the owner's node does for its stored files while it runs: audits, repair and the holdings' upkeep.
 *
 * - Audits: every `auditEveryMs`, each placed piece is challenged at random stripes (storage/audit.ts) through the
 *   same read any reader uses. A wrong answer (a shard that fails its proof) loses the provider at once; a missed one
 *   (no answer in time, unreachable) after `missesBeforeLost` in a row. A lost provider's holdings are paid only up to
 *   the last audit it passed and ended, its pieces dropped from the manifest, and its reputation marked down.
 * - Repair: a file whose placed pieces fall to `repairAt` or fewer (default n - 1: any loss) gets the missing ones
 *   rebuilt from any k others on new providers (dispersed-store.ts repairEntry).
 * - Holdings: the provider says what this node's live holdings reserve there; where that is less than the pieces
 *   take (the provider restarted, or ended the holding), the holding is made live again under its agreement, or a new
 *   one. Agreements near their end are renewed with the same provider (pieces stay where they are).
 */
import { toHearthError } from '../errors.ts'
import { auditPiece, chooseStripes } from '../storage/audit.ts'
import { withEntry } from '../storage/manifest.ts'
import { offerTarget } from './negotiator.ts'
import { pieceIdOf, repairEntry, type StorageContext } from './dispersed-store.ts'
import { endHolding, rentHolding, startHolding, type Holding } from './storage-holdings.ts'
import { statPieces } from './storage-pieces.ts'

export interface UpkeepOptions {
  /** How often every piece is audited (default 10 minutes). */
  auditEveryMs: number
  /** Stripes challenged per piece per audit (default 2). */
  stripesPerAudit: number
  /** How long an answer may take (default 30 s). */
  auditTimeoutMs: number
  /** Missed audits in a row that lose a provider (default 2). */
  missesBeforeLost: number
  /** Repair once a file has this many placed pieces or fewer (default n - 1: at the first loss). */
  repairAt?: number
}

export const defaultUpkeep: UpkeepOptions = { auditEveryMs: 600_000, stripesPerAudit: 2, auditTimeoutMs: 30_000, missesBeforeLost: 2 }

export interface AuditRecord {
  provider: string
  passed: number
  failed: number
  /** Missed in a row. */
  misses: number
  lastMs: number
  /** When it last passed (0: never). */
  lastPassedMs: number
  lastError: string | undefined
}

export interface StorageUpkeep {
  /** One audit of every placed piece; resolves with the counts and the providers lost. */
  audit(): Promise<{ audited: number; failed: number; lost: string[] }>
  /** Repairs every file at or below the threshold; resolves with the pieces rebuilt. */
  repair(): Promise<number>
  /** Makes holdings live again where the provider lost them, and renews those near their end. */
  keepHoldings(): Promise<void>
  /** Audit records by piece id. */
  records(): ReadonlyMap<string, AuditRecord>
  start(): void
  stop(): void
}

/** A shard that fails its proof, or is the wrong size, is a wrong answer; anything else is a missed one. */
const isWrong = (reason: string | undefined): boolean => reason !== undefined && (/fails its proof/.test(reason) || /a shard of \d+ bytes/.test(reason))

/** Drops a provider: its holdings paid up to the last audit it passed and ended, its pieces off the manifest. */
async function lose(context: StorageContext, provider: string, why: string): Promise<void> {
  const { init } = context
  const p = provider.toLowerCase()
  context.lost.add(p)
  init.log?.(`storage: provider ${provider} is lost (${why}); its pieces are rebuilt elsewhere`)
  const nowMs = Date.now()
  const lost = context.holdings.filter((h) => h.offer.provider.toLowerCase() === p)
  for (const holding of lost) holding.failedAtMs ??= nowMs
  const manifest = context.manifest()
  let next = manifest
  for (const entry of manifest.entries) {
    if (!entry.placements.some((place) => place.provider.toLowerCase() === p)) continue
    next = withEntry(next, { ...entry, placements: entry.placements.filter((place) => place.provider.toLowerCase() !== p) })
  }
  if (next !== manifest) await context.commit(next)
  await Promise.all(lost.map((holding) => endHolding(init, holding)))
  context.holdings.splice(0, context.holdings.length, ...context.holdings.filter((h) => !lost.includes(h)))
  await context.saveHoldings()
}


/** One audit of every placed piece; providers that fail are lost. */
async function auditAll(context: StorageContext, settings: UpkeepOptions, records: Map<string, AuditRecord>): Promise<{ audited: number; failed: number; lost: string[] }> {
  const { init } = context
  let audited = 0
  let failed = 0
  const lost = new Map<string, string>()
  for (const entry of context.manifest().entries) {
    for (const place of entry.placements) {
      const provider = place.provider.toLowerCase()
      if (lost.has(provider)) continue
      const pieceId = pieceIdOf(entry.layout, place.piece)
      const source = context.sourceFor(entry, place.piece)
      const stripes = chooseStripes(entry.layout.stripes, settings.stripesPerAudit)
      const outcomes = source === undefined
        ? [{ ok: false, reason: 'the provider is not in the market any more' }]
        : await auditPiece(entry.layout, place.piece, source, stripes, settings.auditTimeoutMs)
      const bad = outcomes.find((outcome) => !outcome.ok)
      const record = records.get(pieceId) ?? { provider, passed: 0, failed: 0, misses: 0, lastMs: 0, lastPassedMs: 0, lastError: undefined }
      record.lastMs = Date.now()
      audited++
      if (bad === undefined) {
        record.passed++
        record.lastPassedMs = record.lastMs
        record.misses = 0
        record.lastError = undefined
        init.reputation?.record(provider, 'valid')
        for (const holding of context.holdings) {
          if (holding.offer.provider.toLowerCase() === provider && holding.failedAtMs === undefined && !lost.has(provider)) holding.lastPassedMs = record.lastMs
        }
      } else {
        failed++
        record.failed++
        record.lastError = bad.reason
        const wrong = isWrong(bad.reason)
        record.misses = wrong ? record.misses : record.misses + 1
        init.reputation?.record(provider, wrong ? 'invalid' : 'timeout')
        if (wrong || record.misses >= settings.missesBeforeLost) {
          lost.set(provider, `${wrong ? 'a wrong answer' : `${record.misses} missed audits`} for piece ${pieceId}: ${bad.reason}`)
          // Whatever else it passed since, the failed piece was last known whole at its own last pass: no pay after.
          for (const holding of context.holdings) {
            if (holding.offer.provider.toLowerCase() === provider) holding.lastPassedMs = Math.min(holding.lastPassedMs, Math.max(record.lastPassedMs, holding.createdAtMs))
          }
        }
      }
      records.set(pieceId, record)
    }
  }
  for (const [provider, why] of lost) await lose(context, provider, why)
  return { audited, failed, lost: [...lost.keys()] }
}


export function createStorageUpkeep(context: StorageContext, options: Partial<UpkeepOptions> = {}): StorageUpkeep {
  const settings: UpkeepOptions = { ...defaultUpkeep, ...options }
  const { init } = context
  const records = new Map<string, AuditRecord>()
  let timer: NodeJS.Timeout | undefined
  let round: Promise<unknown> = Promise.resolve()

  async function repair(): Promise<number> {
    let rebuilt = 0
    for (const entry of context.manifest().entries) {
      const n = entry.layout.k + entry.layout.m
      if (entry.placements.length > (settings.repairAt ?? n - 1)) continue
      try {
        rebuilt += await repairEntry(context, entry)
      } catch (error) {
        init.log?.(`storage: ${entry.bucket}/${entry.key} could not be repaired now (${entry.placements.length} of ${n} pieces placed): ${toHearthError(error).shortMessage}`)
      }
    }
    return rebuilt
  }

  /** A holding made live again: under its agreement while that lasts, else under a new one with the same provider. */
  async function revive(holding: Holding): Promise<void> {
    await holding.activity?.terminate().catch(() => undefined)
    holding.activity = undefined
    if (holding.agreement.terms.expiresAtSec * 1000 - Date.now() > 60_000) {
      holding.activity = await startHolding(init, holding)
      await context.saveHoldings()
      return
    }
    await renew(holding)
  }

  async function renew(holding: Holding): Promise<void> {
    const offer = init.offerBook.list((o) => o.provider.toLowerCase() === holding.offer.provider.toLowerCase())[0]
    if (offer === undefined) return
    const fresh = await rentHolding(init, offer, Math.floor(holding.bytes / 1.25))
    context.holdings.push(fresh)
    context.holdings.splice(context.holdings.indexOf(holding), 1)
    await context.saveHoldings()
    await endHolding(init, holding)
  }

  async function keepHoldings(): Promise<void> {
    const providers = new Set(context.holdings.filter((h) => h.failedAtMs === undefined).map((h) => h.offer.provider.toLowerCase()))
    for (const provider of providers) {
      const mine = context.holdings.filter((h) => h.offer.provider.toLowerCase() === provider && h.failedAtMs === undefined)
      try {
        const answer = await statPieces(init.host, offerTarget(mine[0]!.offer), [])
        const reserved = mine.reduce((sum, h) => sum + h.bytes, 0)
        if (answer.reservedBytes < reserved) for (const holding of mine) await revive(holding)
        for (const holding of mine) {
          const left = holding.agreement.terms.expiresAtSec * 1000 - Date.now()
          if (left < Math.max(60_000, (holding.agreement.terms.expiresAtSec * 1000 - holding.createdAtMs) / 10)) await renew(holding)
        }
      } catch (error) {
        init.log?.(`storage: holdings with ${provider} could not be checked: ${toHearthError(error).shortMessage}`)
      }
    }
  }

  const audit = (): Promise<{ audited: number; failed: number; lost: string[] }> => auditAll(context, settings, records)

  return {
    audit,
    repair,
    keepHoldings,
    records: () => records,
    start() {
      timer ??= setInterval(() => {
        round = round.then(async () => {
          await keepHoldings()
          await audit()
          await repair()
        }).catch((error: unknown) => init.log?.(`storage: upkeep round failed: ${toHearthError(error).shortMessage}`))
      }, settings.auditEveryMs)
      timer.unref()
    },
    stop() {
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
    },
  }
}
