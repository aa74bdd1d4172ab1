/**
 * The running provider's local API: its commands (status, earnings and their history, config, pause, resume, stop) on
 * the local API server of net/local-api-server.ts (HTTP on 127.0.0.1, the key in `<data dir>/api.key`, Host and Origin
 * checks, limits), for `hearth provider status|earnings|stop|pause|resume` and the dashboard. `provider.json` in the
 * data directory says where it listens and which process serves it.
 */
import { z } from 'zod'
import {
  callApi,
  command,
  readApiRecord,
  serveApi,
  type CommandTable,
  type LocalApiKind,
  type LocalApiLimits,
  type LocalApiRecord,
  type LocalApiServer,
  type LocalApiWeb,
} from '../net/local-api-server.ts'
import { paymentsReportSchema, type PaymentsReport } from '../payment/payments-view.ts'
import { earningsHistorySchema, earningsSchema, providerConfigResultSchema, providerStatusSchema } from './api-schemas.ts'
import type { ProviderConfig } from './config.ts'
import type { EarningsHistory, EarningsReport } from './earnings.ts'
import type { ProviderStatus } from './node-status.ts'

export { apiKeyFile, defaultLocalApiLimits, loadOrCreateApiKey, processAlive } from '../net/local-api-server.ts'
export type { LocalApiLimits, LocalApiServer } from '../net/local-api-server.ts'

export const statusFile = 'provider.json'

export const providerApi: LocalApiKind = {
  who: 'provider',
  statusFile,
  startCommand: 'hearth provider start',
  codes: { notRunning: 'HEARTH_ERR_PROVIDER_NOT_RUNNING', localApi: 'HEARTH_ERR_PROVIDER_LOCAL_API' },
  realm: 'hearth-provider',
}

export type ApiCommand = 'status' | 'stop' | 'pause' | 'resume' | 'earnings' | 'earnings-history' | 'config' | 'payments'

export interface LocalApiInfo extends LocalApiRecord {
  peerId: string
  address: string
  multiaddrs: string[]
  startedAtMs: number
}

/** What the provider's commands read and do. */
export interface ProviderApiSources {
  status(): ProviderStatus
  earnings(): EarningsReport
  earningsHistory(): EarningsHistory
  config(): ProviderConfig
  payments(): PaymentsReport
  /** Stops lending; running tasks are handed back. */
  pause(): Promise<void>
  resume(): Promise<void>
  /** Stops the node; the API answers before it goes. */
  stop(): void
}

/** The provider's command table, with the schemas of what each answers. */
export function providerCommands(sources: ProviderApiSources): CommandTable {
  return {
    status: command({ summary: 'the provider\'s offer, lending state, network, running tasks, profitability and earnings', result: providerStatusSchema, handle: async () => sources.status() }),
    earnings: command({ summary: 'every agreement\'s money (billed, vouched, claimed, exposure) and the totals, with estimated cost and net', result: earningsSchema, handle: async () => sources.earnings() }),
    'earnings-history': command({ summary: 'cumulative revenue and confirmed claims over time', result: earningsHistorySchema, handle: async () => sources.earningsHistory() }),
    payments: command({ summary: 'every agreement\'s escrow, debit notes, vouchers, invoice and claims, from the provider\'s records', result: paymentsReportSchema, handle: async () => sources.payments() }),
    config: command({ summary: 'the configuration the provider runs with (defaults filled in)', result: providerConfigResultSchema, handle: async () => sources.config() }),
    pause: command({
      summary: 'stop lending now: no new work, running tasks handed back',
      result: providerStatusSchema,
      handle: async () => {
        await sources.pause()
        return sources.status()
      },
    }),
    resume: command({
      summary: 'lend again (the idle policy still applies)',
      result: providerStatusSchema,
      handle: async () => {
        await sources.resume()
        return sources.status()
      },
    }),
    stop: command({
      summary: 'stop gracefully: no new work, running tasks finish, payments claimed; answered before the node goes',
      result: z.object({ stopping: z.literal(true), pid: z.number().int() }),
      handle: async () => {
        setImmediate(() => sources.stop())
        return { stopping: true, pid: process.pid }
      },
    }),
  }
}

export interface ServeLocalApiInit {
  dataDir: string
  info: Omit<LocalApiInfo, 'url' | 'pid'>
  commands: CommandTable
  web?: LocalApiWeb
  limits?: Partial<LocalApiLimits>
}

/** Serves the API on 127.0.0.1 and records where in `provider.json`. */
export function serveLocalApi(init: ServeLocalApiInit): Promise<LocalApiServer> {
  return serveApi({
    dataDir: init.dataDir,
    kind: providerApi,
    info: { ...init.info },
    commands: init.commands,
    ...(init.web === undefined ? {} : { web: init.web }),
    ...(init.limits === undefined ? {} : { limits: init.limits }),
  })
}

/** The record of the provider last started from `dataDir`, or undefined when none is (see readApiRecord). */
export function readApiInfo(dataDir: string): Promise<LocalApiInfo | undefined> {
  return readApiRecord<LocalApiInfo>(dataDir, providerApi)
}

/** Sends one command to the provider running from `dataDir`; throws HEARTH_ERR_PROVIDER_NOT_RUNNING when none answers. */
export function callLocalApi(dataDir: string, command: ApiCommand, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<unknown> {
  return callApi(dataDir, providerApi, command, undefined, options)
}
