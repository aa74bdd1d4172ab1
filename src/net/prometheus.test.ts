/** Prometheus's text format: one HELP and TYPE per metric, labels escaped, wei shown in HTT. */
import assert from 'node:assert/strict'
import { it } from 'node:test'
import { formatPrometheus, weiToHtt } from './prometheus.ts'

it('writes each metric once with its samples and escaped labels, and refuses a name Prometheus would not take', () => {
  const text = formatPrometheus([
    { name: 'hearth_replicas', help: 'replicas by state', type: 'gauge', value: 2, labels: { state: 'serving' } },
    { name: 'hearth_replicas', help: 'replicas by state', type: 'gauge', value: 1, labels: { state: 'a "quoted"\nline' } },
    { name: 'hearth_tasks_total', help: 'tasks run', type: 'counter', value: 7 },
  ])
  assert.equal(
    text,
    '# HELP hearth_replicas replicas by state\n# TYPE hearth_replicas gauge\nhearth_replicas{state="serving"} 2\nhearth_replicas{state="a \\"quoted\\"\\nline"} 1\n' +
      '# HELP hearth_tasks_total tasks run\n# TYPE hearth_tasks_total counter\nhearth_tasks_total 7\n',
  )
  assert.throws(() => formatPrometheus([{ name: 'bad-name', help: '', type: 'gauge', value: 1 }]), /not a metric name/)
  assert.equal(weiToHtt('1500000000000000000'), 1.5)
  assert.equal(weiToHtt(1n), 0)
})
