/**
 * What a node's configuration asks of its agent: the bounds across running tasks default to all that is lent, lists
 * of requestors become lower-case sets (and stay off when empty), token amounts become wei, and the offer carries the
 * disk lent and the location given.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { resolveProviderConfig } from './config.ts'
import { agentSettings } from './node-agent-settings.ts'

const gib = 1024 ** 3
const minimal = { resources: { threads: 2, memoryGib: 4, diskGib: 10 }, pricing: { model: 'per-task', perTaskHtt: '0.001' } }

test('defaults: bounds are what is lent, no requestor lists, no claim threshold, earnings stay', () => {
  const settings = agentSettings(resolveProviderConfig({ file: minimal }), '/data')
  assert.equal(settings.workDir, join('/data', 'work'))
  assert.deepEqual(settings.pricing, { model: 'per-task', perTaskWei: '1000000000000000' })
  assert.equal(settings.threads, 2)
  assert.equal(settings.memGib, 4)
  assert.deepEqual(settings.admission, { maxTotalMemoryBytes: 4 * gib, maxTotalDiskBytes: 10 * gib })
  assert.deepEqual(settings.properties, { 'golem.inf.storage.gib': 10 })
  assert.deepEqual(settings.policy, { maxConcurrentAgreements: 16, maxAgreementSec: 24 * 3600, maxDebitNoteIntervalSec: 300 })
  assert.deepEqual(settings.claimPolicy, { confirmations: 1 })
  assert.deepEqual(settings.accountLimits, { maxUnpaidTasks: 32, minClaimGraceSec: 3600 })
  assert.equal('payoutAddress' in settings, false)
})

test('the owner\'s choices: bounds, requestor lists in lower case, amounts in wei, location, payout address', () => {
  const allowed = '0x' + 'AB'.repeat(20)
  const denied = '0x' + 'Cd'.repeat(20)
  const payout = '0x' + '12'.repeat(20)
  const config = resolveProviderConfig({
    file: {
      ...minimal,
      location: { countryCode: 'PL', lat: 52.2, lon: 21 },
      admission: { allowedRequestors: [allowed], deniedRequestors: [denied], maxTotalMemoryGib: 1.5, maxTotalDiskGib: 2 },
      claim: { thresholdHtt: '0.5' },
      payments: { maxUnpaidTasks: 8, maxUnpaidHtt: '0.25', payoutAddress: payout },
    },
  })
  const settings = agentSettings(config, '/data')
  assert.deepEqual(settings.admission, { maxTotalMemoryBytes: Math.floor(1.5 * gib), maxTotalDiskBytes: 2 * gib })
  assert.deepEqual(settings.policy?.allowedRequestors, new Set([allowed.toLowerCase()]))
  assert.deepEqual(settings.policy?.deniedRequestors, new Set([denied.toLowerCase()]))
  assert.deepEqual(settings.properties, { 'golem.inf.storage.gib': 10, 'golem.node.geo.country_code': 'PL', 'hearth.geo.lat': 52.2, 'hearth.geo.lon': 21 })
  assert.equal(settings.claimPolicy?.thresholdWei, 500_000_000_000_000_000n)
  assert.equal(settings.accountLimits?.maxUnpaidTasks, 8)
  assert.equal(settings.accountLimits?.maxUnpaidWei, 250_000_000_000_000_000n)
  assert.equal(settings.payoutAddress, payout)
})
