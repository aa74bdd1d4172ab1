/** Provider `#/earnings`: the totals, revenue and claims over time, and every agreement's money. */
import { h } from './dom.ts'
import { formatHtt, weiToNumber } from './format.ts'
import { lineChart } from './chart.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import type { AgreementEarnings, Earnings, EarningsHistory, EarningsTotals } from './types.ts'
import { amount, badge, card, cell, emptyState, facts, hashText, pageTitle, stateTone, table } from './ui.ts'

function totalsCard(totals: EarningsTotals): HTMLElement {
  const revenue = h('span', { class: 'amount', 'data-testid': 'earnings-revenue', 'data-wei': totals.revenueWei, title: `${totals.revenueWei} wei` }, formatHtt(totals.revenueWei))
  const net = totals.netWei
  return card(
    'Totals',
    h('div', { class: 'headline' }, h('span', { class: 'headline-label' }, 'Revenue'), revenue),
    facts([
      ['Claimed', amount(totals.claimedWei, { 'data-testid': 'earnings-claimed' })],
      ['Unclaimed', amount(totals.unclaimedWei, { 'data-testid': 'earnings-unclaimed' })],
      ['Confirming', amount(totals.confirmingWei)],
      ['Exposure', amount(totals.exposureWei, { 'data-testid': 'earnings-exposure' })],
      ['Estimated cost', totals.estimatedCostWei === null ? h('span', { class: 'muted' }, 'not configured') : amount(totals.estimatedCostWei)],
      ['Net', net === null ? h('span', { class: 'muted' }, '—') : h('span', { class: net.startsWith('-') ? 'amount negative' : 'amount' }, formatHtt(net))],
      ['Agreements', String(totals.agreements)],
      ['Tasks', String(totals.tasks)],
    ]),
  )
}

function historyCard(history: EarningsHistory): HTMLElement {
  const { points } = history
  if (points.length === 0) return card('Over time', emptyState('No revenue yet: the chart starts with the first voucher.'))
  const times = points.map((point) => point.atMs)
  const chart = lineChart(`Cumulative revenue and claims over time, ${points.length} points`, times, [
    { name: 'Revenue', className: 'series-revenue', values: points.map((point) => weiToNumber(point.revenueWei)) },
    { name: 'Claimed', className: 'series-claimed', values: points.map((point) => weiToNumber(point.claimedWei)) },
  ])
  const legend = h('ul', { class: 'legend' }, h('li', null, h('span', { class: 'legend-line series-revenue', 'aria-hidden': 'true' }), 'Revenue (vouchers received)'), h('li', null, h('span', { class: 'legend-line series-claimed', 'aria-hidden': 'true' }), 'Claimed on chain'))
  return card('Over time', h('figure', { class: 'chart-figure', 'data-testid': 'earnings-chart' }, chart, h('figcaption', null, legend)))
}

function agreementRow(agreement: AgreementEarnings): HTMLTableRowElement {
  const claim = agreement.claim
  return h(
    'tr',
    { 'data-agreement': agreement.agreementId },
    cell(hashText(agreement.requestor)),
    cell(agreement.state),
    cell(agreement.usage.tasks, true),
    cell(amount(agreement.billedWei), true),
    cell(amount(agreement.vouchedWei), true),
    cell(amount(agreement.claimedWei), true),
    cell(hashText(agreement.lastClaimTx, 10, 6)),
    cell(claim === null ? h('span', { class: 'muted' }, 'none') : h('span', { title: claim.lastError ?? '' }, badge(claim.state, stateTone(claim.state)))),
  )
}

function agreementsCard(agreements: readonly AgreementEarnings[]): HTMLElement {
  if (agreements.length === 0) return card('Agreements', emptyState('No agreements yet.'))
  return card('Agreements', table('Agreements', ['Requestor', 'State', 'Tasks', 'Billed', 'Vouched', 'Claimed', 'Last claim tx', 'Claim'], agreements.map(agreementRow), [2, 3, 4, 5]))
}

export const mountEarnings: PageMount = (root, ctx) => {
  const section = liveSection<{ earnings: Earnings; history: EarningsHistory }>({
    load: async () => {
      const [earnings, history] = await Promise.all([ctx.api.call<Earnings>('earnings'), ctx.api.call<EarningsHistory>('earnings-history')])
      return { earnings, history }
    },
    render: ({ earnings, history }) => h('div', { class: 'stack' }, totalsCard(earnings.totals), historyCard(history), agreementsCard(earnings.agreements)),
  })
  return simplePage(root, ctx, { head: pageTitle('Earnings'), sections: [section], topics: ['provider'] })
}
