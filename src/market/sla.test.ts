import assert from 'node:assert/strict'
import { test } from 'node:test'
import { evaluateConstraints } from './constraints/evaluate.ts'
import { slaConstraints } from './sla.ts'

test('an SLA becomes constraints that offers stating enough pass, and offers stating too little fail', () => {
  const sla = slaConstraints({ minMemGib: 4, minCpuScore: 100, countries: ['de', 'PL'] })
  assert.equal(evaluateConstraints(sla, { 'golem.inf.mem.gib': 8, 'hearth.inf.cpu.score': 150, 'golem.node.geo.country_code': 'PL' }), true)
  assert.equal(evaluateConstraints(sla, { 'golem.inf.mem.gib': 2, 'hearth.inf.cpu.score': 150, 'golem.node.geo.country_code': 'PL' }), false)
  assert.equal(evaluateConstraints(sla, { 'golem.inf.mem.gib': 8, 'hearth.inf.cpu.score': 150, 'golem.node.geo.country_code': 'US' }), false)
})

test('an offer that does not state a required property is undefined, not a match', () => {
  assert.equal(evaluateConstraints(slaConstraints({ minGpus: 1 }), { 'golem.inf.mem.gib': 8 }), undefined)
})

test('an empty SLA constrains nothing', () => {
  assert.equal(evaluateConstraints(slaConstraints({}), {}), true)
  assert.equal(slaConstraints({ minThreads: 2 }).toString(), '(golem.inf.cpu.threads>=2)')
})
