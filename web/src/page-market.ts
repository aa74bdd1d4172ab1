/** Requestor `#/market`: the offers in the node's book, filtered with the constraint language, and their prices. */
import { h } from './dom.ts'
import { formatLatency, plural } from './format.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import type { OfferView, Offers } from './types.ts'
import { badge, cell, emptyState, hashText, pageTitle, priceText, table } from './ui.ts'
import { latencyBand } from './world-map.ts'

/** The filter applied last; kept while the dashboard is open so that coming back shows the same offers. */
let appliedFilter = ''

function reputation(offer: OfferView): HTMLElement {
  const record = offer.reputation
  if (record === null) return h('span', { class: 'muted' }, 'no record')
  return h(
    'span',
    { class: 'reputation' },
    record.excluded ? badge('excluded', 'bad') : null,
    h('span', { title: 'valid results' }, `${record.valid} valid`),
    h('span', { title: 'results rejected by verification' }, ` · ${record.invalid} invalid`),
    h('span', { title: 'tasks that failed' }, ` · ${record.failed} failed`),
  )
}

function offerRow(offer: OfferView): HTMLTableRowElement {
  return h(
    'tr',
    { 'data-testid': 'offer-row', 'data-offer': offer.offerId },
    cell(hashText(offer.provider)),
    cell(offer.region ?? '—'),
    cell(offer.runtimes.length === 0 ? '—' : offer.runtimes.join(', ')),
    cell(offer.threads ?? '—', true),
    cell(offer.memoryGib === null ? '—' : `${offer.memoryGib} GiB`, true),
    cell(priceText(offer.pricing)),
    cell(h('span', { class: `latency band-text-${latencyBand(offer.latencyMs)}` }, formatLatency(offer.latencyMs)), true),
    cell(reputation(offer)),
  )
}

function render(data: Offers): HTMLElement {
  return h(
    'div',
    null,
    h('p', { class: 'muted', 'data-testid': 'offer-count' }, `${plural(data.offers.length, 'offer')} shown of ${data.total} in the book.`),
    table('Offers', ['Provider', 'Region', 'Runtimes', 'Threads', 'Memory', 'Price', 'Latency', 'Reputation'], data.offers.map(offerRow), [3, 4, 6]),
  )
}

function filterForm(onApply: (filter: string) => void): HTMLFormElement {
  const input = h('input', { id: 'offer-filter', name: 'filter', type: 'text', value: appliedFilter, placeholder: '(golem.inf.cpu.threads>=2)', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'offer-filter-help' })
  return h(
    'form',
    {
      class: 'card filter-form',
      role: 'search',
      onsubmit: (event: Event) => {
        event.preventDefault()
        onApply(input.value.trim())
      },
    },
    h('label', { for: 'offer-filter' }, 'Filter offers'),
    h('div', { class: 'input-row' }, input, h('button', { type: 'submit', id: 'apply-filter', class: 'button button-primary' }, 'Apply')),
    h('p', { id: 'offer-filter-help', class: 'help' }, 'A constraint in the market\'s language, e.g. (&(golem.inf.cpu.threads>=2)(golem.runtime.name=wasi)). Leave it empty for every offer.'),
  )
}

export const mountMarket: PageMount = (root, ctx) => {
  const section = liveSection<Offers>({
    load: () => ctx.api.call<Offers>('offers', appliedFilter === '' ? {} : { filter: appliedFilter }),
    render,
    isEmpty: (data) => data.offers.length === 0,
    empty: () => emptyState(appliedFilter === '' ? 'No offers in the book yet.' : 'No offer matches this filter.'),
  })
  const form = filterForm((filter) => {
    appliedFilter = filter
    void section.refresh()
  })
  return simplePage(root, ctx, { head: pageTitle('Offers and prices'), before: form, sections: [section] })
}
