/** Provider `#/config`: the configuration the provider runs with, one section per top-level key. */
import { h, type Child } from './dom.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import type { Json } from './types.ts'
import { card, emptyState, pageTitle } from './ui.ts'

function isObject(value: Json): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A value: scalars as text, short lists inline, anything deeper as pretty JSON. */
function valueOf(value: Json): Child {
  if (value === null) return h('span', { class: 'muted' }, 'none')
  if (typeof value === 'boolean') return value ? 'yes' : 'no'
  if (typeof value === 'string' || typeof value === 'number') return h('code', { class: 'config-value' }, String(value))
  if (Array.isArray(value) && value.every((item) => typeof item !== 'object' || item === null)) {
    return value.length === 0 ? h('span', { class: 'muted' }, 'none') : h('code', { class: 'config-value' }, value.map(String).join(', '))
  }
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2))
}

function definitions(value: { [key: string]: Json }): HTMLElement {
  const keys = Object.keys(value)
  if (keys.length === 0) return emptyState('Nothing set.')
  return h('dl', { class: 'facts config' }, keys.map((key) => h('div', { class: 'fact' }, h('dt', null, key), h('dd', null, valueOf(value[key] ?? null)))))
}

function render(config: Json): Child {
  if (!isObject(config)) return card(null, valueOf(config))
  const scalars = Object.fromEntries(Object.entries(config).filter(([, value]) => !isObject(value)))
  const groups = Object.entries(config).filter((entry): entry is [string, { [key: string]: Json }] => isObject(entry[1]))
  return h(
    'div',
    { class: 'grid', 'data-testid': 'config' },
    Object.keys(scalars).length === 0 ? null : card('General', definitions(scalars)),
    groups.map(([key, value]) => card(key, definitions(value))),
  )
}

export const mountConfig: PageMount = (root, ctx) => {
  const section = liveSection<Json>({
    load: () => ctx.api.call<Json>('config'),
    render: (config) => h('div', { class: 'stack' }, render(config), h('details', { class: 'card' }, h('summary', null, 'As JSON'), h('pre', { class: 'json' }, JSON.stringify(config, null, 2)))),
  })
  return simplePage(root, ctx, { head: pageTitle('Configuration'), sections: [section] })
}
