/** The provider's metrics for `GET /metrics` (Prometheus text), read from its status. */
import { formatPrometheus, weiToHtt, type MetricSample } from '../net/prometheus.ts'
import type { ProviderStatus } from './node-status.ts'

export function providerMetrics(status: ProviderStatus): string {
  const e = status.earnings
  const samples: MetricSample[] = [
    { name: 'hearth_provider_lending', help: '1 while the machine is lent, 0 while paused or the owner uses it', type: 'gauge', value: status.lending.active ? 1 : 0 },
    { name: 'hearth_provider_uptime_seconds', help: 'seconds since the provider started', type: 'gauge', value: status.uptimeSec },
    { name: 'hearth_provider_tasks_run_total', help: 'tasks run to the end', type: 'counter', value: status.stats.tasksRun },
    { name: 'hearth_provider_tasks_failed_total', help: 'tasks that failed', type: 'counter', value: status.stats.tasksFailed },
    { name: 'hearth_provider_agreements_active', help: 'agreements approved and not ended', type: 'gauge', value: status.activeAgreements },
    { name: 'hearth_provider_connections', help: 'open connections to peers', type: 'gauge', value: status.network.connections.length },
    { name: 'hearth_provider_revenue_htt', help: 'what received vouchers cover, in HTT', type: 'gauge', value: weiToHtt(e.revenueWei) },
    { name: 'hearth_provider_claimed_htt', help: 'claimed on chain with the configured confirmations, in HTT', type: 'gauge', value: weiToHtt(e.claimedWei) },
    { name: 'hearth_provider_unclaimed_htt', help: 'vouched and not yet claimed, in HTT', type: 'gauge', value: weiToHtt(e.unclaimedWei) },
    { name: 'hearth_provider_exposure_htt', help: 'work delivered that no voucher covers, in HTT', type: 'gauge', value: weiToHtt(e.exposureWei) },
    { name: 'hearth_provider_failed_claims', help: 'agreements whose claim failed and waits to be tried again', type: 'gauge', value: e.failedClaims },
    { name: 'hearth_provider_price_coverage', help: 'revenue per CPU hour over the owner\'s cost per CPU hour', type: 'gauge', value: status.profitability.coverage },
  ]
  return formatPrometheus(samples)
}
