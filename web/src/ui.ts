/** Small building blocks shared by the pages: cards, tables, alerts, amounts, hashes, badges. */
import type { ApiError } from './api.ts'
import { h, type Child } from './dom.ts'
import { formatHtt, shorten } from './format.ts'

/** The page's title, focusable so that navigation can move focus to it. */
export function pageTitle(text: string, ...more: Child[]): HTMLElement {
  return h('div', { class: 'page-head' }, h('h1', { tabindex: -1, class: 'page-title' }, text), ...more)
}

/** A card with a heading. */
export function card(title: string | null, ...children: Child[]): HTMLElement {
  return h('section', { class: 'card' }, title === null ? null : h('h2', null, title), ...children)
}

/** An error as the API gave it: its message, its hint, and its code. */
export function alertBox(error: ApiError): HTMLElement {
  return h(
    'div',
    { class: 'alert', role: 'alert' },
    h('p', { class: 'alert-message' }, error.message),
    error.hint === undefined ? null : h('p', { class: 'alert-hint' }, error.hint),
    h('p', { class: 'alert-code' }, h('code', null, error.code)),
  )
}

export function loading(text = 'Loading…'): HTMLElement {
  return h('p', { class: 'loading', role: 'status' }, text)
}

export function emptyState(...children: Child[]): HTMLElement {
  return h('p', { class: 'empty' }, ...children)
}

/** A hash or address, shortened, the full value in its title. */
export function hashText(value: string | null | undefined, head = 6, tail = 4): HTMLElement {
  if (value === null || value === undefined || value === '') return h('span', { class: 'muted' }, '—')
  return h('code', { class: 'hash', title: value }, shorten(value, head, tail))
}

/** An amount in HTT, the exact wei in its title. */
export function amount(wei: string | null | undefined, attrs: Record<string, string> = {}): HTMLElement {
  return h('span', { class: 'amount', ...(wei === null || wei === undefined ? {} : { title: `${wei} wei` }), ...attrs }, formatHtt(wei))
}

export type Tone = 'good' | 'warn' | 'bad' | 'info' | 'neutral'

export function badge(text: string, tone: Tone = 'neutral', attrs: Record<string, string> = {}): HTMLElement {
  return h('span', { class: `badge badge-${tone}`, ...attrs }, text)
}

/** The tone of a job or task state. */
export function stateTone(state: string): Tone {
  if (state === 'finished' || state === 'done' || state === 'serving' || state === 'confirmed') return 'good'
  if (state === 'failed' || state === 'down') return 'bad'
  if (state === 'running' || state === 'starting' || state === 'sent' || state === 'pending') return 'info'
  if (state === 'cancelled' || state === 'stopped') return 'warn'
  return 'neutral'
}

/** A table in a container that scrolls sideways on narrow screens; `rows` are <tr> elements. */
export function table(label: string, headers: readonly string[], rows: readonly HTMLTableRowElement[], numeric: readonly number[] = []): HTMLElement {
  const head = h('thead', null, h('tr', null, headers.map((text, i) => h('th', { scope: 'col', class: numeric.includes(i) ? 'num' : null }, text))))
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: 0 }, h('table', null, head, h('tbody', null, rows)))
}

/** A table cell; `num` right-aligns it with tabular figures. */
export function cell(content: Child, num = false): HTMLTableCellElement {
  return h('td', { class: num ? 'num' : null }, content)
}

/** A definition list of label → value. */
export function facts(pairs: ReadonlyArray<readonly [string, Child]>): HTMLElement {
  return h('dl', { class: 'facts' }, pairs.map(([label, value]) => h('div', { class: 'fact' }, h('dt', null, label), h('dd', null, value))))
}

/** A short list of strings (warnings, problems). */
export function list(items: readonly string[], className = 'plain-list'): HTMLElement {
  return h('ul', { class: className }, items.map((item) => h('li', null, item)))
}

/** The price of an offer: per task, or per CPU second (and a start price) under the linear model. */
export function priceText(pricing: { model: string; [field: string]: unknown }): Child {
  const wei = (field: string): string | undefined => (typeof pricing[field] === 'string' ? (pricing[field] as string) : undefined)
  if (pricing.model === 'per-task') return [h('span', { class: 'muted' }, 'per task '), amount(wei('perTaskWei'))]
  if (pricing.model === 'linear') {
    const start = wei('startWei')
    return [h('span', { class: 'muted' }, 'linear '), amount(wei('perCpuSecWei')), h('span', { class: 'muted' }, ' / CPU s'), start !== undefined && start !== '0' ? [h('span', { class: 'muted' }, ' + start '), amount(start)] : null]
  }
  return pricing.model
}
