/** Requestor `#/services`: the services this node runs, each with its replicas. */
import { h } from './dom.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import type { ReplicaStatus, ServiceStatus } from './types.ts'
import { badge, card, cell, emptyState, facts, hashText, pageTitle, stateTone, table } from './ui.ts'

function replicaRow(replica: ReplicaStatus): HTMLTableRowElement {
  return h(
    'tr',
    { 'data-testid': 'replica-row', 'data-replica': replica.id },
    cell(hashText(replica.id, 8, 4)),
    cell(replica.region ?? '—'),
    cell(badge(replica.state, stateTone(replica.state))),
    cell(hashText(replica.provider)),
    cell(replica.inRotation ? badge('in rotation', 'good') : h('span', { class: 'muted' }, 'no')),
    cell(replica.version),
    cell(replica.restarts, true),
    cell(replica.lastError === undefined ? '' : h('span', { class: 'error-text' }, replica.lastError)),
  )
}

function serviceCard(service: ServiceStatus): HTMLElement {
  const serving = service.replicas.filter((replica) => replica.state === 'serving').length
  return h(
    'article',
    { class: 'card', 'data-testid': 'service', 'data-service': service.name },
    h('h2', null, service.name),
    facts([['Version', service.version], ['Wanted', String(service.wanted)], ['Serving', `${serving} of ${service.replicas.length}`]]),
    service.replicas.length === 0
      ? emptyState('No replicas yet.')
      : table(`Replicas of ${service.name}`, ['Replica', 'Region', 'State', 'Provider', 'In rotation', 'Version', 'Restarts', 'Last error'], service.replicas.map(replicaRow), [6]),
  )
}

export const mountServices: PageMount = (root, ctx) => {
  const section = liveSection<ServiceStatus[]>({
    load: () => ctx.api.call<ServiceStatus[]>('service-ls'),
    render: (services) => h('div', { class: 'stack' }, services.map(serviceCard)),
    isEmpty: (services) => services.length === 0,
    empty: () => card(null, emptyState('No services yet. Deploy one with hearth service deploy.')),
  })
  return simplePage(root, ctx, { head: pageTitle('Services'), sections: [section], topics: ['service'] })
}
