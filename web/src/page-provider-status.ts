/** Provider `#/`: whether the machine is lent now and why not, the offer, the network, running tasks and warnings. */
import { toApiError, type Api } from './api.ts'
import { h, replaceChildren } from './dom.ts'
import { formatBytes, formatDuration, plural } from './format.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import type { ProviderStatus } from './types.ts'
import { alertBox, badge, card, facts, list, pageTitle, priceText } from './ui.ts'

function lendingCard(status: ProviderStatus, onPause: () => void, onResume: () => void): HTMLElement {
  const { active, reason } = status.lending
  return card(
    'Lending',
    h(
      'p',
      { 'data-testid': 'lending-state', 'data-active': String(active), class: active ? 'verdict verdict-good' : 'verdict verdict-warn' },
      active ? 'Lending: active' : `Lending: paused${reason === undefined ? '' : ` (${reason})`}`,
    ),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', id: 'pause', class: 'button', onclick: onPause, 'aria-pressed': String(!active) }, 'Pause'),
      h('button', { type: 'button', id: 'resume', class: 'button button-primary', onclick: onResume, 'aria-pressed': String(active) }, 'Resume'),
    ),
  )
}

function offerCard(status: ProviderStatus): HTMLElement {
  const { offer } = status
  const location = [offer.location.region, offer.location.countryCode, offer.location.lat === undefined || offer.location.lon === undefined ? undefined : `${offer.location.lat}, ${offer.location.lon}`]
    .filter((part) => part !== undefined)
    .join(' · ')
  return card(
    'Offer',
    facts([
      ['Runtimes', offer.runtimes.length === 0 ? 'none' : offer.runtimes.join(', ')],
      ['Not offered', offer.unavailable.length === 0 ? 'none' : offer.unavailable.join('; ')],
      ['Threads', String(offer.threads)],
      ['Memory', `${offer.memoryGib} GiB`],
      ['Disk', `${offer.diskGib} GiB`],
      ['Location', location === '' ? 'not advertised' : location],
      ['Price', h('span', null, priceText(offer.pricingWei))],
    ]),
  )
}

function networkCard(status: ProviderStatus): HTMLElement {
  const { reachability, connections } = status.network
  return card(
    'Network',
    facts([
      ['Reachability', h('span', null, badge(reachability.kind, reachability.kind === 'public' ? 'good' : 'info', { 'data-testid': 'reachability' }))],
      ['Why', reachability.reason],
      ['Connections', h('span', { 'data-testid': 'connections' }, String(connections.length))],
      ['Uptime', formatDuration(status.uptimeSec)],
    ]),
  )
}

function workCard(status: ProviderStatus): HTMLElement {
  const { tasks, stats } = status
  return card(
    'Work',
    facts([
      ['Running tasks', h('span', { 'data-testid': 'running-tasks' }, String(tasks.tasks ?? 0))],
      ['Memory in use', formatBytes(tasks.memoryBytes)],
      ['Disk in use', formatBytes(tasks.diskBytes)],
      ['Active agreements', String(status.activeAgreements)],
      ['Tasks run', String(stats.tasksRun)],
      ['Tasks failed', String(stats.tasksFailed)],
      ['Agreements', String(stats.agreements)],
      ['Wrong results', String(stats.wrongResults)],
    ]),
  )
}

function warningsCard(status: ProviderStatus): HTMLElement | null {
  if (status.warnings.length === 0) return null
  return h('section', { class: 'card card-warn', 'data-testid': 'warnings' }, h('h2', null, plural(status.warnings.length, 'warning')), list(status.warnings))
}

async function setLending(api: Api, command: 'pause' | 'resume', feedback: HTMLElement, after: () => Promise<void>): Promise<void> {
  try {
    await api.call<ProviderStatus>(command)
    replaceChildren(feedback)
  } catch (error) {
    replaceChildren(feedback, alertBox(toApiError(error)))
  }
  await after()
}

export const mountProviderStatus: PageMount = (root, ctx) => {
  const feedback = h('div', { class: 'form-feedback' })
  const act = (command: 'pause' | 'resume') => () => void setLending(ctx.api, command, feedback, () => section.refresh())
  const section = liveSection<ProviderStatus>({
    load: () => ctx.api.call<ProviderStatus>('status'),
    render: (status) => h('div', { class: 'stack' }, warningsCard(status), h('div', { class: 'grid' }, lendingCard(status, act('pause'), act('resume')), networkCard(status), offerCard(status), workCard(status))),
  })
  return simplePage(root, ctx, { head: pageTitle('Status'), before: feedback, sections: [section], topics: ['provider'] })
}
