/**
 * Constraint evaluation speed: a 10-clause demand against 100k offers with realistic properties (deterministic
 * pseudo-random), compiled closures against the tree-walking interpreter, plus full two-sided matching, and the same
 * on offers that satisfy the demand (so no clause is skipped). Medians of several runs, timed in CPU time of one
 * core (the loop is synchronous).
 *
 *   node --import tsx bench/market-constraints.ts [--offers 100000] [--runs 5] [--json]
 */
import { parseArgs } from 'node:util'
import { compileConstraints } from '../src/market/constraints/evaluate.ts'
import { interpretConstraints } from '../src/market/constraints/interpret.ts'
import { matchDemandOffer } from '../src/market/constraints/match.ts'
import { parseConstraints } from '../src/market/constraints/parser.ts'
import type { Properties } from '../src/market/constraints/properties.ts'
import { seededRandom } from '../src/seeded-random.ts'

const { values } = parseArgs({
  options: {
    offers: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
})
const offerCount = Number(values.offers)
const runs = Number(values.runs)
const log = (line: string): void => {
  if (!values.json) console.log(line)
}


const rand = seededRandom(42)
const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!
const countries = ['DE', 'PL', 'US', 'FR', 'GB', 'NL', 'CZ', 'JP', 'BR', 'IN']
const runtimes = ['wasi', 'wasi', 'wasi', 'vm', 'docker']
const versions = ['0.1.0', '0.2.3', '0.3.0', '0.3.1', '1.0.0-rc.1', '1.0.0', '1.2.4']
const capabilities = ['vpn', 'inet', 'manifest-support', 'start-entrypoint', 'gpu']

function makeOffer(i: number): Properties {
  const threads = pick([2, 4, 4, 8, 8, 16, 32, 64])
  return {
    'golem.inf.cpu.architecture': pick(['x86_64', 'x86_64', 'aarch64']),
    'golem.inf.cpu.vendor': pick(['GenuineIntel', 'AuthenticAMD', 'Apple']),
    'golem.inf.cpu.cores': threads / 2,
    'golem.inf.cpu.threads': threads,
    'golem.inf.mem.gib': pick([1, 2, 4, 8, 16, 32, 64, 128]),
    'golem.inf.storage.gib': Math.round(rand() * 2000) / 4,
    'golem.runtime.name': pick(runtimes),
    'golem.runtime.version': pick(versions),
    'golem.runtime.capabilities': capabilities.filter(() => rand() < 0.6),
    'golem.node.id.name': `${pick(['home', 'lab', 'rig', 'bad'])}-${i}`,
    'golem.node.geo.country_code': pick(countries),
    'golem.com.pricing.model': 'linear',
    'golem.com.pricing.model.linear.coeffs': [rand() / 1000, rand() / 10000, 0],
    'golem.com.usage.vector': ['golem.usage.duration_sec', 'golem.usage.cpu_sec'],
    'golem.srv.comp.expiration': 1_750_000_000_000 + Math.floor(rand() * 3_600_000),
    'hearth.inf.cpu.score': Math.round(rand() * 4000),
    'hearth.geo.lat': rand() * 180 - 90,
    'hearth.geo.lon': rand() * 360 - 180,
  }
}

const demand = `(&
  (golem.runtime.name=wasi)
  (golem.inf.mem.gib>=4)
  (golem.inf.cpu.threads>=4)
  (golem.inf.storage.gib>=10)
  (golem.runtime.capabilities=vpn)
  (golem.runtime.version$v>=0.2.0)
  (|(golem.node.geo.country_code=DE)(golem.node.geo.country_code=PL)(golem.node.geo.country_code=US)(golem.node.geo.country_code=FR))
  (!(golem.node.id.name=bad-*))
  (hearth.inf.cpu.score>=1000)
  (golem.com.pricing.model=linear))`
const offerConstraints = '(&(golem.srv.comp.expiration>0)(golem.node.debug.subnet=public))'
const demandProperties: Properties = { 'golem.srv.comp.expiration': 1_750_000_000_000, 'golem.node.debug.subnet': 'public' }

const offers = Array.from({ length: offerCount }, (_, i) => makeOffer(i))
const ast = parseConstraints(demand)
const compiled = compileConstraints(ast)
const offerSide = compileConstraints(offerConstraints)

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Offers per second, median of `runs` passes over all offers (after one warm-up pass). */
function measure(label: string, evaluate: (offer: Properties) => unknown, pool = offers): { perSecond: number; matched: number } {
  let matched = 0
  for (const offer of pool) if (evaluate(offer) === true) matched++
  const rates: number[] = []
  for (let r = 0; r < runs; r++) {
    // CPU time rather than wall time: other processes on a shared machine then cost us little, and "per core" is
    // what is claimed. It counts this process's GC threads too, so it errs on the slow side.
    const started = process.cpuUsage()
    let yes = 0
    for (let i = 0; i < pool.length; i++) if (evaluate(pool[i]!) === true) yes++
    const used = process.cpuUsage(started)
    const ms = (used.user + used.system) / 1000
    if (yes !== matched) throw new Error(`${label}: ${yes} matched, expected ${matched}`)
    rates.push(pool.length / (ms / 1000))
  }
  const perSecond = median(rates)
  log(`  ${label.padEnd(34)} ${Math.round(perSecond).toLocaleString('en-US').padStart(12)} offers/s   (${matched} true)`)
  return { perSecond, matched }
}

log(`bench: a 10-clause demand against ${offerCount} offers, ${runs} runs (medians), node ${process.version}`)
const fast = measure('compiled closures', (offer) => compiled.evaluate(offer))
const naive = measure('tree-walking interpreter', (offer) => interpretConstraints(ast, offer))
const twoSided = measure('matchDemandOffer (both ways)', (offer) =>
  matchDemandOffer({ properties: demandProperties, constraints: compiled }, { properties: offer, constraints: offerSide }) === 'yes')
// The worst case for the evaluator: offers that satisfy the demand, so no clause is skipped by short-circuit.
const matching = offers.filter((offer) => compiled.evaluate(offer) === true)
const everyClause = Array.from({ length: offerCount }, (_, i) => matching[i % matching.length]!)
const fastAll = measure('compiled, every clause evaluated', (offer) => compiled.evaluate(offer), everyClause)
const naiveAll = measure('interpreter, every clause evaluated', (offer) => interpretConstraints(ast, offer), everyClause)
if (fast.matched !== naive.matched) throw new Error('the compiled evaluator and the interpreter disagree')
const ratio = fast.perSecond / naive.perSecond
const ratioAll = fastAll.perSecond / naiveAll.perSecond
log(`  speed-up of compiling: ${ratio.toFixed(2)}x on all offers, ${ratioAll.toFixed(2)}x when every clause is evaluated`)

if (values.json) {
  console.log(JSON.stringify({
    bench: 'market-constraints',
    offers: offerCount,
    runs,
    clauses: 10,
    node: process.version,
    compiledPerSecond: Math.round(fast.perSecond),
    interpretedPerSecond: Math.round(naive.perSecond),
    matchPerSecond: Math.round(twoSided.perSecond),
    compiledOverInterpreted: Number(ratio.toFixed(2)),
    everyClauseCompiledPerSecond: Math.round(fastAll.perSecond),
    everyClauseInterpretedPerSecond: Math.round(naiveAll.perSecond),
    everyClauseCompiledOverInterpreted: Number(ratioAll.toFixed(2)),
    matched: fast.matched,
  }))
}
