/**
 * Provider `#/profitability`: whether lending pays (revenue per CPU hour over cost per CPU hour), the prices at
 * which it breaks even, and whether the machine is idle-lent now and why not.
 */
import { h } from './dom.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import type { ProviderStatus } from './types.ts'
import { amount, card, facts, pageTitle } from './ui.ts'

/** The coverage bar's full width stands for this coverage (twice the cost). */
const barFullAt = 2

function coverageCard(profitability: ProviderStatus['profitability']): HTMLElement {
  const { coverage } = profitability
  const known = Number.isFinite(coverage)
  const pays = known && coverage >= 1
  const fill = h('span', { class: pays ? 'bar-fill bar-good' : 'bar-fill bar-bad' })
  fill.style.width = `${known ? Math.min(100, Math.max(0, (coverage / barFullAt) * 100)) : 0}%`
  const percent = known ? `${Math.round(coverage * 100)}%` : 'unknown'
  return card(
    'Coverage',
    h('p', { class: pays ? 'verdict verdict-good' : 'verdict verdict-bad', 'data-testid': 'profitability-verdict', 'data-coverage': String(coverage) }, pays ? 'This machine earns more than it costs.' : 'This machine lends at a loss.'),
    h(
      'div',
      { class: 'bar', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': barFullAt, 'aria-valuenow': known ? coverage : 0, 'aria-label': `Revenue covers ${percent} of the cost` },
      fill,
      h('span', { class: 'bar-mark', 'aria-hidden': 'true' }),
    ),
    h('p', { class: 'bar-caption' }, `Revenue is ${percent} of the cost per CPU hour; the mark is break-even.`),
    facts([
      ['Revenue per CPU hour', amount(profitability.revenuePerCpuHourWei)],
      ['Cost per CPU hour', amount(profitability.costPerCpuHourWei)],
      ['Cost currency', profitability.currency],
    ]),
  )
}

function breakEvenCard(profitability: ProviderStatus['profitability']): HTMLElement {
  return card(
    'Break-even prices',
    h('p', { class: 'muted' }, 'Below these prices lending costs more than it brings in.'),
    facts([
      ['Per task', amount(profitability.breakEven.perTaskWei)],
      ['Per CPU second', amount(profitability.breakEven.perCpuSecWei)],
    ]),
  )
}

function idleCard(status: ProviderStatus): HTMLElement {
  const { active, reason } = status.lending
  return card(
    'Lending now',
    h('p', { class: active ? 'verdict verdict-good' : 'verdict verdict-warn', 'data-testid': 'idle-state' }, active ? 'Lending: the machine is idle and lent.' : 'Not lending now.'),
    facts([['Why', reason ?? (active ? 'the idle policy allows it' : 'no reason given')]]),
  )
}

export const mountProfitability: PageMount = (root, ctx) => {
  const section = liveSection<ProviderStatus>({
    load: () => ctx.api.call<ProviderStatus>('status'),
    render: (status) => h('div', { class: 'grid' }, coverageCard(status.profitability), breakEvenCard(status.profitability), idleCard(status)),
  })
  return simplePage(root, ctx, { head: pageTitle('Profitability'), sections: [section], topics: ['provider'] })
}
