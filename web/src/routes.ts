/** The pages of each kind of node: their routes, their place in the navigation, and the command each needs. */
import type { NodeKind } from './api.ts'
import type { PageMount } from './page.ts'
import { mountConfig } from './page-config.ts'
import { mountEarnings } from './page-earnings.ts'
import { mountJob } from './page-job.ts'
import { mountJobs } from './page-jobs.ts'
import { mountMap } from './page-map.ts'
import { mountMarket } from './page-market.ts'
import { mountMoney } from './page-money.ts'
import { mountProfitability } from './page-profitability.ts'
import { mountProviderStatus } from './page-provider-status.ts'
import { mountServices } from './page-services.ts'
import { mountStorage } from './page-storage.ts'

export interface Route {
  pattern: RegExp
  title: string
  /** The navigation entry this page belongs to (its own, or its parent's for a detail page). */
  nav: string
  /** Whether the page has its own entry in the navigation. */
  listed: boolean
  /** The command the page reads: its entry is left out when the node lacks it. */
  command: string
  mount: PageMount
}

const requestorRoutes: readonly Route[] = [
  { pattern: /^\/$/, title: 'Providers', nav: '#/', listed: true, command: 'providers', mount: mountMap },
  { pattern: /^\/market$/, title: 'Market', nav: '#/market', listed: true, command: 'offers', mount: mountMarket },
  { pattern: /^\/jobs$/, title: 'Jobs', nav: '#/jobs', listed: true, command: 'jobs', mount: mountJobs },
  { pattern: /^\/jobs\/([^/]+)$/, title: 'Job', nav: '#/jobs', listed: false, command: 'job', mount: mountJob },
  { pattern: /^\/money$/, title: 'Money', nav: '#/money', listed: true, command: 'money', mount: mountMoney },
  { pattern: /^\/services$/, title: 'Services', nav: '#/services', listed: true, command: 'service-ls', mount: mountServices },
  { pattern: /^\/storage$/, title: 'Storage', nav: '#/storage', listed: true, command: 'store-status', mount: mountStorage },
]

const providerRoutes: readonly Route[] = [
  { pattern: /^\/$/, title: 'Status', nav: '#/', listed: true, command: 'status', mount: mountProviderStatus },
  { pattern: /^\/earnings$/, title: 'Earnings', nav: '#/earnings', listed: true, command: 'earnings', mount: mountEarnings },
  { pattern: /^\/profitability$/, title: 'Profitability', nav: '#/profitability', listed: true, command: 'status', mount: mountProfitability },
  { pattern: /^\/config$/, title: 'Config', nav: '#/config', listed: true, command: 'config', mount: mountConfig },
]

export function routesOf(kind: NodeKind): readonly Route[] {
  return kind === 'provider' ? providerRoutes : requestorRoutes
}
