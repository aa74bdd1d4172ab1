/**
 * The requestor's record of each provider: how its results fared when checked, how often its next result should be
 * checked, whether it is excluded, and a score for ranking its offers. Kept in the node's store, so it outlives jobs
 * and restarts.
 *
 * How often to check — BOINC's adaptive replication. BOINC keeps, per host (and app version), the number CV of
 * consecutive results that were checked and found valid; an invalid result zeroes it. While CV < 10 every job sent to
 * the host is replicated; after that the host is trusted with probability 1 - 1/CV, i.e. checked with probability
 * 1/CV. Only checked results count, so CV grows by about one per 1/p results and p falls like 1/sqrt(2n) over n
 * results: ten fully checked results, then p = 0.1, reaching 0.05 after about 160 results. BOINC reports 5-10% of
 * CPU time spent on checks this way, against at least 50% with fixed replication. Here:
 *
 *   checkProbability = 1                          while consecutiveValid < trustAfter (10)
 *                    = max(floor, 1 / consecutiveValid)   after that, with floor = 0.05
 *
 * BOINC's 1/CV tends to 0: a host patient enough to build a long record could then cheat almost unchecked. Here money
 * changes hands, so the probability never drops below a floor: each wrong result is caught with at least 5% chance
 * (one in about 20 is caught even at the floor), after which the provider is checked fully again and a second wrong
 * result within its next 20 checked ones excludes it. 5% is also the overhead BOINC aims for: with two replicas per check, honest
 * long-standing providers cost about 5% extra compute.
 *
 * Exclusion — a ban list, kept until lifted (or for `exclusion.forMs` when set). A provider is excluded when its last
 * `window` (20) checked results hold `maxInvalid` (2) invalid ones, or when more than `maxInvalidRate` (5%) of all its
 * checked results were invalid once `minChecked` (20) were checked. Deterministic tasks compared byte for byte give an
 * honest provider no invalid results at all, so one can be a fluke (a bad disk, a cosmic ray) but two close together
 * are a pattern; the rate rule catches a provider that spaces its wrong results out beyond the window. Only checked
 * outcomes count towards exclusion: a failure or timeout loses a provider its fee and some score, not its standing.
 *
 * Score — Laplace's rule of succession over the provider's record, so an unknown provider scores 0.5 (as the offer
 * strategy assumes) and evidence moves the score in proportion to how much there is:
 *
 *   score = (good + 1) / (good + bad + 2)
 *   good  = valid + unchecked          (results delivered and accepted)
 *   bad   = 20·invalid + failed + 2·timeouts
 *
 * A wrong result weighs 20 failures: it costs a recomputation and, had it gone unchecked, a wrong output; a timeout
 * weighs 2 because it holds the task for the whole timeout before a retry starts, where a failure answers at once.
 * With these weights one invalid result among ten valid ones ranks a provider below an unknown one (11/32 ≈ 0.34),
 * and it needs more than 20 valid results in all to outrank an unknown provider again. Excluded providers score 0.
 *
 * Outcomes are recorded once per result: 'valid' and 'invalid' for results that were checked (by a quorum or by
 * recomputing them), 'unchecked' for results accepted without a check, 'failed' and 'timeout' for tasks that brought
 * back nothing usable. Addresses are compared in lower case. One book per store: it caches what it reads.
 */
import { HearthError } from '../errors.ts'
import type { ProviderReputationRecord } from '../store/repositories.ts'
import type { Store } from '../store/store.ts'

export type ResultOutcome = 'valid' | 'invalid' | 'failed' | 'timeout' | 'unchecked'

export interface ProviderReputation {
  provider: string
  valid: number
  invalid: number
  failed: number
  timeouts: number
  unchecked: number
  consecutiveValid: number
  excluded: boolean
  /** Why it was excluded (null when it is not). */
  excludedReason: string | null
  lastSeenMs: number
  checkProbability: number
  score: number
}

export interface ReputationOptions {
  /** Consecutive valid results before any result goes unchecked (BOINC: 10). */
  trustAfter?: number
  /** The check probability never falls below this (default 0.05). */
  minCheckProbability?: number
  exclusion?: {
    /** Invalid results within the last `window` checked ones that exclude a provider (default 2 of 20). */
    maxInvalid?: number
    window?: number
    /** An invalid share above this, once `minChecked` results were checked, excludes a provider (default 0.05 of 20). */
    maxInvalidRate?: number
    minChecked?: number
    /** How long an exclusion lasts; permanent (until `pardon`) when absent. */
    forMs?: number
  }
  /** Random source for `shouldCheck`, in [0, 1); inject a seeded one for reproducible runs. */
  random?: () => number
  now?: () => number
}

export interface ReputationBook {
  /** Records the outcome of one result from `provider`. */
  record(provider: string, outcome: ResultOutcome): void
  /** The probability in [0, 1] that the provider's next result should be checked (1 for unknown providers). */
  checkProbability(provider: string): number
  /** Draws once from the random source: true when the provider's next result should be checked. */
  shouldCheck(provider: string): boolean
  excluded(provider: string): boolean
  /** A score in [0, 1] for ranking offers (0.5 for unknown providers, 0 for excluded ones). */
  score(provider: string): number
  get(provider: string): ProviderReputation | undefined
  /** Every provider on record, by address. */
  list(): ProviderReputation[]
  /** Excludes a provider by hand (e.g. an operator's ban). */
  exclude(provider: string, reason: string): void
  /** Lifts an exclusion; the provider starts again fully checked, its counts kept. */
  pardon(provider: string): void
}

const outcomes: readonly ResultOutcome[] = ['valid', 'invalid', 'failed', 'timeout', 'unchecked']
const invalidWeight = 20
const timeoutWeight = 2

function checkOption(name: string, value: number, valid: boolean, expected: string): number {
  if (!valid) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `reputation option ${name} is ${value}; it must be ${expected}`, {
      hint: `pass ${name} as ${expected}, or leave it out for the default`,
    })
  }
  return value
}

/** A book's rules: its options, checked, with their defaults. */
interface Rules {
  trustAfter: number
  /** The check probability's floor. */
  floor: number
  maxInvalid: number
  window: number
  maxInvalidRate: number
  minChecked: number
  forMs: number | undefined
  random: () => number
  now: () => number
}

function rulesOf(options: ReputationOptions): Rules {
  const isCount = (n: number, min: number): boolean => Number.isInteger(n) && n >= min
  const isShare = (n: number): boolean => Number.isFinite(n) && n >= 0 && n <= 1
  const trustAfter = checkOption('trustAfter', options.trustAfter ?? 10, isCount(options.trustAfter ?? 10, 0), 'a whole number ≥ 0')
  const floor = checkOption('minCheckProbability', options.minCheckProbability ?? 0.05, isShare(options.minCheckProbability ?? 0.05), 'a number from 0 to 1')
  const ex = options.exclusion ?? {}
  const maxInvalid = checkOption('exclusion.maxInvalid', ex.maxInvalid ?? 2, isCount(ex.maxInvalid ?? 2, 1), 'a whole number ≥ 1')
  const window = checkOption('exclusion.window', ex.window ?? 20, isCount(ex.window ?? 20, 1), 'a whole number ≥ 1')
  const maxInvalidRate = checkOption('exclusion.maxInvalidRate', ex.maxInvalidRate ?? 0.05, isShare(ex.maxInvalidRate ?? 0.05), 'a number from 0 to 1')
  const minChecked = checkOption('exclusion.minChecked', ex.minChecked ?? 20, isCount(ex.minChecked ?? 20, 1), 'a whole number ≥ 1')
  const forMs = ex.forMs === undefined ? undefined : checkOption('exclusion.forMs', ex.forMs, ex.forMs > 0, 'a positive number of milliseconds')
  return { trustAfter, floor, maxInvalid, window, maxInvalidRate, minChecked, forMs, random: options.random ?? Math.random, now: options.now ?? Date.now }
}

function isExcluded(rules: Rules, record: ProviderReputationRecord | undefined): boolean {
  return record !== undefined && record.excludedAtMs !== null && (rules.forMs === undefined || rules.now() - record.excludedAtMs < rules.forMs)
}

function probability(rules: Rules, record: ProviderReputation | ProviderReputationRecord | undefined, excluded: boolean): number {
  if (record === undefined || excluded || record.consecutiveValid < rules.trustAfter) return 1
  return Math.max(rules.floor, Math.min(1, 1 / record.consecutiveValid))
}

function scoreOf(record: ProviderReputationRecord | undefined, excluded: boolean): number {
  if (record === undefined) return 0.5
  if (excluded) return 0
  const good = record.valid + record.unchecked
  const bad = invalidWeight * record.invalid + record.failed + timeoutWeight * record.timeouts
  return (good + 1) / (good + bad + 2)
}

/** Why the record now calls for exclusion, or undefined when it does not. */
function exclusionReason(rules: Rules, record: ProviderReputationRecord): string | undefined {
  const recentInvalid = [...record.recent].filter((c) => c === 'i').length
  if (recentInvalid >= rules.maxInvalid) return `${recentInvalid} invalid results among its last ${record.recent.length} checked`
  const checked = record.valid + record.invalid
  if (checked >= rules.minChecked && record.invalid / checked > rules.maxInvalidRate) {
    return `${record.invalid} of its ${checked} checked results were invalid (more than ${rules.maxInvalidRate * 100}%)`
  }
  return undefined
}

function view(rules: Rules, record: ProviderReputationRecord): ProviderReputation {
  const excluded = isExcluded(rules, record)
  return {
    provider: record.provider,
    valid: record.valid,
    invalid: record.invalid,
    failed: record.failed,
    timeouts: record.timeouts,
    unchecked: record.unchecked,
    consecutiveValid: record.consecutiveValid,
    excluded,
    excludedReason: excluded ? record.excludedReason : null,
    lastSeenMs: record.lastSeenMs,
    checkProbability: probability(rules, record, excluded),
    score: scoreOf(record, excluded),
  }
}

function fresh(rules: Rules, provider: string): ProviderReputationRecord {
  return {
    provider: provider.toLowerCase(),
    valid: 0,
    invalid: 0,
    failed: 0,
    timeouts: 0,
    unchecked: 0,
    consecutiveValid: 0,
    recent: '',
    excludedAtMs: null,
    excludedReason: null,
    lastSeenMs: rules.now(),
  }
}

/** Counts one outcome into the record (a copy of the stored one), and excludes its provider when the rules say so. */
function addOutcome(rules: Rules, record: ProviderReputationRecord, outcome: ResultOutcome): void {
  if (outcome === 'valid') {
    record.valid++
    record.consecutiveValid++
    record.recent = (record.recent + 'v').slice(-rules.window)
  } else if (outcome === 'invalid') {
    record.invalid++
    record.consecutiveValid = 0
    record.recent = (record.recent + 'i').slice(-rules.window)
    // Judged when a wrong result arrives: a provider back from a lapsed exclusion is banned again by its next
    // wrong result if the earlier ones are still within the window.
    const reason = isExcluded(rules, record) ? undefined : exclusionReason(rules, record)
    if (reason !== undefined) {
      record.excludedAtMs = rules.now()
      record.excludedReason = reason
    }
  } else if (outcome === 'failed') record.failed++
  else if (outcome === 'timeout') record.timeouts++
  else record.unchecked++
}

/** The store's records as the book reads and writes them, cached. */
interface RecordCache {
  load(provider: string): ProviderReputationRecord | undefined
  save(record: ProviderReputationRecord): void
}

function recordCache(store: Store): RecordCache {
  /** Records read so far; null marks a provider the store does not know, so unknown ones are not read again. */
  const cache = new Map<string, ProviderReputationRecord | null>()
  return {
    load(provider) {
      const key = provider.toLowerCase()
      let record = cache.get(key)
      if (record === undefined) {
        record = store.providerReputation.get(key) ?? null
        cache.set(key, record)
      }
      return record ?? undefined
    },
    save(record) {
      // A record changes with every result: written with the other writes of the turn (the cache has it meanwhile).
      store.providerReputation.saveSoon(record)
      cache.set(record.provider, record)
    },
  }
}

export function createReputationBook(store: Store, options: ReputationOptions = {}): ReputationBook {
  const rules = rulesOf(options)
  const { load, save } = recordCache(store)
  const { now } = rules
  return {
    record(provider, outcome) {
      if (!outcomes.includes(outcome)) {
        throw new HearthError('HEARTH_ERR_INTERNAL', `unknown result outcome ${String(outcome)}`, { hint: `record one of ${outcomes.join(', ')}` })
      }
      const record = { ...(load(provider) ?? fresh(rules, provider)), lastSeenMs: now() }
      addOutcome(rules, record, outcome)
      save(record)
    },

    checkProbability(provider) {
      const record = load(provider)
      return probability(rules, record, isExcluded(rules, record))
    },

    shouldCheck(provider) {
      const record = load(provider)
      return rules.random() < probability(rules, record, isExcluded(rules, record))
    },

    excluded: (provider) => isExcluded(rules, load(provider)),

    score(provider) {
      const record = load(provider)
      return scoreOf(record, isExcluded(rules, record))
    },

    get(provider) {
      const record = load(provider)
      return record === undefined ? undefined : view(rules, record)
    },

    list: () => store.providerReputation.list().map((row) => view(rules, load(row.provider) ?? row)),

    exclude(provider, reason) {
      save({ ...(load(provider) ?? fresh(rules, provider)), excludedAtMs: now(), excludedReason: reason })
    },

    pardon(provider) {
      const record = load(provider)
      if (record === undefined) return
      // Back on probation: checked fully again, and its old wrong results leave the window.
      save({ ...record, excludedAtMs: null, excludedReason: null, consecutiveValid: 0, recent: '' })
    },
  }
}
