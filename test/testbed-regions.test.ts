/**
 * Geography that is measured: twenty providers in three regions of the testbed (150 to 250 ms apart), each its own
 * process in its own namespace, at equal prices. A new requestor in one region sees every offer, makes its agreements
 * in its own region when latency is what it weighs (it pings every candidate: latency is a measurement, not a claim),
 * and with `sla.maxLatencyMs` below the distance to the other regions it proposes nothing to a far provider.
 *
 * The regions are far apart because every packet crosses linkd, a userspace process: on a busy machine (twenty nodes
 * on two cores, beside other tests) its scheduling adds tens of milliseconds to a round trip even within a region.
 */
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, test } from 'node:test'
import type { RunReport } from '../src/cli/run-job.ts'
import type { TestbedHostSpec } from '../src/testbed/testbed.ts'
import { fileTestbed, hearthBin } from './support/testbed-nodes.ts'
import { wordcountExample } from './support/wordcount.ts'

const perRegion = { eu: 7, us: 7, asia: 6 }
const providers: TestbedHostSpec[] = Object.entries(perRegion).flatMap(([region, count]) => Array.from({ length: count }, (_, i) => ({ name: `${region}${i}`, region })))

const { testbed, dir, nodes } = await fileTestbed('hr', 'regions', {
  regions: { eu: {}, us: {}, asia: {} },
  rttMs: { 'eu-us': 150, 'eu-asia': 250, 'us-asia': 200 },
  hosts: [{ name: 'chain', region: 'eu' }, { name: 'relay', region: 'eu' }, { name: 'req', region: 'eu' }, ...providers],
})
let deployment: string
let funderKey: string
let relayAddress: string
/** Provider addresses (lower case) by region. */
const regionOf = new Map<string, string>()

before(async () => {
  const chain = await nodes.chain('chain', providers.length)
  ;({ deployment, funderKey } = chain)
  relayAddress = (await nodes.relay('relay')).address
  const started = await Promise.all(providers.map((host, i) => nodes.provider(host.name, deployment, [relayAddress], chain.keys[i])))
  started.forEach((provider, i) => regionOf.set(provider.ready.address.toLowerCase(), providers[i]!.region))
})

/** Runs the word count from the requestor's host with `sla` in the job file; returns the report. */
async function runWordcount(name: string, fields: { sla?: Record<string, number>; weights?: Record<string, number> }): Promise<{ report: RunReport; measured: string }> {
  const job = JSON.parse(await readFile(join(wordcountExample, 'job.json'), 'utf8')) as Record<string, unknown>
  const jobFile = join(dir, `${name}.json`)
  await writeFile(jobFile, JSON.stringify({ ...job, package: join(wordcountExample, String(job['package'])), inputs: [join(wordcountExample, '*.txt')], ...fields }))
  const { report, stderr } = await nodes.wordcount('req', { name, providers: 3, bootstrap: relayAddress, deployment, funderKey, jobFile })
  // What the requestor measured, for the assertion messages.
  const measured = stderr.split('\n').filter((line) => /measured the distance|negotiating/.test(line)).join('; ')
  return { report, measured }
}

const regionsOf = (report: RunReport): string[] => report.agreements.map((a) => regionOf.get(String(a.provider).toLowerCase()) ?? `unknown ${a.provider}`)
/** Each agreement's region and measured round trip, for assertion messages. */
const describe = ({ report, measured }: { report: RunReport; measured: string }): string =>
  `${report.agreements.map((a) => `${regionOf.get(String(a.provider).toLowerCase())} ${a.latencyMs} ms`).join(', ')} (${measured})`

test('a new requestor sees the offers of all twenty providers', async () => {
  // Each time a new node (its own process) joins through the relay; offers published at start reach the relay within
  // moments, so a node joining a little later holds all twenty.
  const deadline = Date.now() + 120_000
  let seen = new Set<string>()
  while (seen.size < regionOf.size && Date.now() < deadline) {
    const listed = await testbed.run('req', process.execPath, [hearthBin, 'market', 'offers', '--bootstrap', relayAddress, '--json'], { timeoutMs: 120_000 })
    assert.equal(listed.code, 0, listed.stderr)
    seen = new Set((JSON.parse(listed.stdout) as { offers: { provider: string }[] }).offers.map((o) => o.provider.toLowerCase()))
  }
  assert.deepEqual(seen, new Set(regionOf.keys()))
})

test('at equal prices, weighing latency, the agreements are in the requestor\'s own region, measured by ping', async (t) => {
  // CPU scores measured by twenty providers on one busy machine differ widely; here only latency tells them apart.
  const run = await runWordcount('nearest', { weights: { cpuScore: 0 } })
  t.diagnostic(describe(run))
  assert.deepEqual(regionsOf(run.report), ['eu', 'eu', 'eu'], describe(run))
  for (const agreement of run.report.agreements) assert.ok(agreement.latencyMs !== null && agreement.latencyMs < 150, describe(run))
})

test('with maxLatencyMs below the distance to other regions, no far provider gets a proposal or a task', async (t) => {
  const run = await runWordcount('near-only', { sla: { maxLatencyMs: 75 } })
  const { report } = run
  t.diagnostic(describe(run))
  // Every agreement is near; how many of the seven near providers answered a ping within the limit is the machine's
  // load, not the rule under test.
  assert.ok(report.agreements.length > 0)
  for (const agreement of report.agreements) {
    assert.equal(regionOf.get(String(agreement.provider).toLowerCase()), 'eu', describe(run))
    assert.ok(agreement.latencyMs !== null && agreement.latencyMs <= 75, describe(run))
  }
  for (const result of report.results) assert.equal(regionOf.get(result.provider.toLowerCase()), 'eu', result.provider)
})
