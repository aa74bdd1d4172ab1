/** Requestor `#/`: the providers this node knows, on a world map by position and by measured latency. */
import { h } from './dom.ts'
import { formatLatency } from './format.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import type { ProviderLocation, Providers } from './types.ts'
import { card, cell, emptyState, hashText, pageTitle, table } from './ui.ts'
import { latencyBand, latencyBands, worldMap } from './world-map.ts'

function legend(): HTMLElement {
  return h(
    'ul',
    { class: 'legend', 'aria-label': 'Latency bands' },
    latencyBands.map(({ band, label }) => h('li', null, h('span', { class: `legend-dot band-${band}`, 'aria-hidden': 'true' }), label)),
  )
}

function byLatency(a: ProviderLocation, b: ProviderLocation): number {
  return (a.latencyMs ?? Number.POSITIVE_INFINITY) - (b.latencyMs ?? Number.POSITIVE_INFINITY)
}

function providerTable(providers: readonly ProviderLocation[]): HTMLElement {
  const rows = [...providers].sort(byLatency).map((p) =>
    h(
      'tr',
      { 'data-testid': 'provider-row' },
      cell(hashText(p.provider)),
      cell(p.region ?? '—'),
      cell(h('span', { class: `latency band-text-${latencyBand(p.latencyMs)}` }, formatLatency(p.latencyMs)), true),
      cell(p.connection ?? 'none'),
    ),
  )
  return table('Providers', ['Provider', 'Region', 'Latency', 'Connection'], rows, [2])
}

function render(data: Providers): HTMLElement {
  return h(
    'div',
    { class: 'split' },
    card('Map', h('figure', { class: 'map-figure' }, worldMap(data.providers), h('figcaption', null, legend()))),
    card('Providers', providerTable(data.providers)),
  )
}

export const mountMap: PageMount = (root, ctx) => {
  const section = liveSection<Providers>({
    load: () => ctx.api.call<Providers>('providers'),
    render,
    isEmpty: (data) => data.providers.length === 0,
    empty: () => emptyState('No providers seen yet. They appear here once their offers reach this node.'),
  })
  return simplePage(root, ctx, { head: pageTitle('Providers'), sections: [section] })
}
