/** Requestor `#/storage`: the erasure code, what each provider holds, and every object's pieces and audits. */
import { h } from './dom.ts'
import { formatBytes, formatTime } from './format.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import type { StoreStatus } from './types.ts'
import { badge, card, cell, emptyState, facts, hashText, pageTitle, table } from './ui.ts'

type StoredObject = StoreStatus['objects'][number]
type Holding = StoreStatus['holdings'][number]

function holdingsTable(holdings: readonly Holding[]): HTMLElement {
  if (holdings.length === 0) return emptyState('No provider holds pieces yet.')
  const rows = holdings.map((holding) =>
    h(
      'tr',
      { 'data-testid': 'holding-row' },
      cell(hashText(holding.provider)),
      cell(holding.region ?? '—'),
      cell(hashText(holding.agreementId, 8, 6)),
      cell(formatBytes(holding.bytes), true),
      cell(holding.live ? badge('live', 'good') : badge('ended', 'warn')),
      cell(formatTime(holding.expiresAtSec * 1000)),
    ),
  )
  return table('Holdings', ['Provider', 'Region', 'Agreement', 'Reserved', 'State', 'Expires'], rows, [3])
}

function auditText(audits: StoredObject['pieces'][number]['audits']): HTMLElement {
  if (audits === null) return h('span', { class: 'muted' }, 'not audited')
  return h(
    'span',
    { title: audits.lastError ?? `last audited ${formatTime(audits.lastMs)}` },
    badge(`${audits.passed} passed`, 'good'),
    ' ',
    audits.failed > 0 ? badge(`${audits.failed} failed`, 'bad') : null,
  )
}

function objectCard(object: StoredObject): HTMLElement {
  const rows = object.pieces.map((piece) =>
    h('tr', { 'data-piece': piece.piece }, cell(piece.piece, true), cell(hashText(piece.provider)), cell(piece.region ?? '—'), cell(auditText(piece.audits)), cell(piece.audits?.lastError ?? '')),
  )
  return h(
    'article',
    { class: 'card', 'data-testid': 'storage-object' },
    h('h3', null, h('code', { class: 'object-key' }, `${object.bucket}/${object.key}`)),
    facts([['Size', formatBytes(object.bytes)], ['Pieces', `${object.pieces.length} of ${object.n} (any ${object.k} rebuild it)`]]),
    table(`Pieces of ${object.key}`, ['Piece', 'Provider', 'Region', 'Audits', 'Last error'], rows, [0]),
  )
}

function render(status: StoreStatus): HTMLElement {
  return h(
    'div',
    { class: 'stack' },
    card('Erasure code', facts([['Code', `${status.code.k}+${status.code.m}`], ['Meaning', `${status.code.k} data pieces and ${status.code.m} parity pieces per object`]])),
    card('Holdings', holdingsTable(status.holdings)),
    h('h2', { class: 'section-title' }, 'Objects'),
    status.objects.length === 0 ? card(null, emptyState('No objects stored yet.')) : status.objects.map(objectCard),
  )
}

export const mountStorage: PageMount = (root, ctx) => {
  const section = liveSection<StoreStatus>({ load: () => ctx.api.call<StoreStatus>('store-status', {}), render })
  return simplePage(root, ctx, { head: pageTitle('Storage'), sections: [section], topics: ['storage'] })
}
