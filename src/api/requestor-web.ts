/**
 * The requestor node's local API as `hearth requestor start` serves it: the node's own commands (requestor-api.ts)
 * and, from the layers above, jobs submitted to it (node-jobs.ts), the market and money views, metrics, the event
 * feed (jobs, services, storage) and the dashboard's files.
 */
import { createEventHub } from '../net/local-api-web.ts'
import type { LocalApiServer } from '../net/local-api-server.ts'
import { formatPrometheus, weiToHtt } from '../net/prometheus.ts'
import { paymentsOf } from '../payment/payments-view.ts'
import { createReputationBook } from '../requestor/reputation.ts'
import { serveRequestorApi, type ServeRequestorApiInit } from '../requestor/requestor-api.ts'
import type { RequestorNode } from '../requestor/requestor-node.ts'
import { createNodeJobs } from './node-jobs.ts'
import { dashboardDir } from './web-assets.ts'

export function createRequestorWeb(node: RequestorNode, dataDir: string) {
  const events = createEventHub()
  const { requestor, store, host, identity, payment } = node
  const jobs = createNodeJobs({
    dataDir,
    requestor,
    source: { requestor: { identity, payment }, providers: [], transactions: () => payment.client.ledger, connections: () => host.connections() },
    publish: (event) => events.publish(event),
  })
  const views = { host, store, payment, address: identity.address, offers: () => requestor.offerBook.list(), latencies: requestor.latencies, reputation: createReputationBook(store) }

  function metrics(services: ServeRequestorApiInit['services']): string {
    const mine = paymentsOf(store).filter((a) => a.role === 'requestor')
    const deposited = mine.reduce((sum, a) => sum + BigInt(a.escrow?.depositedWei ?? '0'), 0n)
    const signed = mine.reduce((sum, a) => sum + a.vouchers.reduce((max, v) => (BigInt(v.cumulativeWei) > max ? BigInt(v.cumulativeWei) : max), 0n), 0n)
    const replicas = services.list().flatMap((s) => s.replicas)
    return formatPrometheus([
      { name: 'hearth_requestor_offers', help: 'live offers in the node\'s book', type: 'gauge', value: requestor.offerBook.size() },
      { name: 'hearth_requestor_connections', help: 'open connections to peers', type: 'gauge', value: host.connections().length },
      { name: 'hearth_requestor_agreements', help: 'agreements this node signed as requestor', type: 'gauge', value: mine.length },
      { name: 'hearth_requestor_deposited_htt', help: 'deposited into escrows, in HTT (this node\'s records)', type: 'gauge', value: weiToHtt(deposited) },
      { name: 'hearth_requestor_vouched_htt', help: 'signed over to providers by vouchers, in HTT', type: 'gauge', value: weiToHtt(signed) },
      { name: 'hearth_requestor_service_replicas', help: 'service replicas by state', type: 'gauge', value: replicas.filter((r) => r.state === 'serving').length, labels: { state: 'serving' } },
      { name: 'hearth_requestor_service_replicas', help: 'service replicas by state', type: 'gauge', value: replicas.filter((r) => r.state !== 'serving').length, labels: { state: 'other' } },
    ])
  }

  return {
    events,
    serve(init: Omit<ServeRequestorApiInit, 'views' | 'more' | 'web'>): Promise<LocalApiServer> {
      const assetsDir = dashboardDir()
      return serveRequestorApi({
        ...init,
        views,
        more: jobs.commands,
        web: { ...(assetsDir === undefined ? {} : { assetsDir }), metrics: () => metrics(init.services), events },
      })
    },
    close: () => jobs.close(),
  }
}
