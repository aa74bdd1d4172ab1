/**
 * The market on a local network: how long a requestor that joins through one peer takes to see every offer, and how
 * long from its demand to signed agreements, for 10 and 50 providers and for 12 of which 2 never answer (medians of several runs).
 * Baseline: one libp2p request/response round trip on the same machine, so the figures read as "N round trips".
 *
 *   node --import tsx bench/market.ts [--runs 3] [--json]
 */
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { startDevnet } from '../src/devnet/devnet.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { createMarketNode } from '../src/market/market-node.ts'
import type { Offer } from '../src/market/offer.ts'
import { createHost } from '../src/net/host.ts'
import { defineProtocol } from '../src/net/protocol.ts'
import { negotiateMany } from '../src/requestor/negotiator.ts'
import { proposeTerms } from '../src/market/agreement.ts'
import { openStore } from '../src/store/store.ts'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } } })
const runs = Number(values.runs)

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** One requestor joins a running network of `providers`, syncs offers, and signs with all of them. */
async function once(providers: number, silent = 0): Promise<{ offersMs: number; agreementsMs: number }> {
  const devnet = await startDevnet({ providers, silentProviders: silent })
  const identity = generateIdentity()
  const host = await createHost({ identity })
  const store = openStore({ path: ':memory:' })
  const market = createMarketNode({ host })
  try {
    await host.start()
    await market.start()
    const joined = performance.now()
    await host.dial(devnet.providers[0]!.host.multiaddrs()[0]!)
    const offers = await market.offerBook.waitFor(providers, undefined, { signal: AbortSignal.timeout(30_000) })
    const offersMs = performance.now() - joined
    const demanded = performance.now()
    // The silent providers first: the worst case for a requestor that would wait on them in turn.
    const silentSet = new Set<string>(devnet.providers.slice(providers - silent).map((p) => p.identity.address))
    const ordered = [...offers].sort((a, b) => Number(silentSet.has(b.payload.provider)) - Number(silentSet.has(a.payload.provider)))
    const need = providers - silent
    const result = await negotiateMany({ host, identity, store }, ordered, {
      need,
      termsFor: (offer: Offer) => proposeTerms({ offer, requestor: identity.address, runtime: 'wasi', maxTasks: 10, taskTimeoutMs: 60_000, jobName: 'bench' }),
      limits: { maxPerTaskWei: 10n ** 18n, minDurationSec: 600, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 },
      stepTimeoutMs: 10_000,
    })
    const agreementsMs = performance.now() - demanded
    if (result.agreements.length !== need) throw new Error(`only ${result.agreements.length}/${need} agreements`)
    return { offersMs, agreementsMs }
  } finally {
    await market.stop()
    await host.stop()
    store.close()
    await devnet.stop()
  }
}

/** Baseline: a plain unsigned request/response round trip between two local nodes. */
async function roundTripMs(): Promise<number> {
  const echo = defineProtocol({ id: '/hearth/bench/echo/1', request: z.object({ n: z.number() }), response: z.object({ n: z.number() }), maxRequestBytes: 1024, maxResponseBytes: 1024, timeoutMs: 5000 })
  const a = await createHost({ identity: generateIdentity() })
  const b = await createHost({ identity: generateIdentity() })
  await a.start()
  await b.start()
  await b.handle(echo, ({ n }) => ({ n }))
  const target = b.multiaddrs()[0]!
  await a.request(target, echo, { n: 0 })
  const times: number[] = []
  for (let i = 0; i < 50; i++) {
    const started = performance.now()
    await a.request(target, echo, { n: i })
    times.push(performance.now() - started)
  }
  await a.stop()
  await b.stop()
  return median(times)
}

const rtt = await roundTripMs()
const rows: { providers: number; silent: number; offersMs: number; agreementsMs: number }[] = []
for (const [providers, silent] of [[10, 0], [12, 2], [50, 0]] as const) {
  const offers: number[] = []
  const agreements: number[] = []
  for (let i = 0; i < runs; i++) {
    const r = await once(providers, silent)
    offers.push(r.offersMs)
    agreements.push(r.agreementsMs)
  }
  rows.push({ providers, silent, offersMs: Math.round(median(offers)), agreementsMs: Math.round(median(agreements)) })
}

if (values.json) {
  console.log(JSON.stringify({ runs, requestRoundTripMs: Number(rtt.toFixed(2)), rows }))
} else {
  console.log(`market: a requestor joins through one peer, syncs offers, signs with every provider (${runs} runs, medians)`)
  console.log(`  baseline: one request/response round trip ${rtt.toFixed(2)} ms`)
  for (const row of rows) {
    console.log(
      `  ${String(row.providers).padStart(2)} providers${row.silent > 0 ? ` (${row.silent} never answer)` : ''}: all offers seen in ${row.offersMs} ms ` +
        `(${(row.offersMs / rtt).toFixed(0)} round trips), ${row.providers - row.silent} agreements signed in ${row.agreementsMs} ms (${(row.agreementsMs / rtt).toFixed(0)} round trips)`,
    )
  }
}
