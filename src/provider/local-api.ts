/**
 * The running provider's local API: its commands (status, stop, pause, resume) on the local API server of
 * net/local-api-server.ts (HTTP on 127.0.0.1, the key in `<data dir>/api.key`, Host and Origin checks, limits), for
 * `hearth provider status/stop/pause/resume` now and a dashboard later. `provider.json` in the data directory says
 * where it listens and which process serves it.
 */
import {
  callApi,
  readApiRecord,
  serveApi,
  type LocalApiKind,
  type LocalApiLimits,
  type LocalApiRecord,
  type LocalApiServer,
} from '../net/local-api-server.ts'

export { apiKeyFile, defaultLocalApiLimits, loadOrCreateApiKey, processAlive } from '../net/local-api-server.ts'
export type { LocalApiLimits, LocalApiServer } from '../net/local-api-server.ts'

export const statusFile = 'provider.json'

export const apiCommands = ['status', 'stop', 'pause', 'resume'] as const
export type ApiCommand = (typeof apiCommands)[number]

export const providerApi: LocalApiKind & { commands: readonly ApiCommand[] } = {
  who: 'provider',
  statusFile,
  commands: apiCommands,
  startCommand: 'hearth provider start',
  codes: { notRunning: 'HEARTH_ERR_PROVIDER_NOT_RUNNING', localApi: 'HEARTH_ERR_PROVIDER_LOCAL_API' },
  realm: 'hearth-provider',
}

export interface LocalApiInfo extends LocalApiRecord {
  peerId: string
  address: string
  multiaddrs: string[]
  startedAtMs: number
}

export interface ServeLocalApiInit {
  dataDir: string
  info: Omit<LocalApiInfo, 'url' | 'pid'>
  /** Answers each authenticated command; what it returns is the `result`. */
  handle: (command: ApiCommand) => Promise<unknown>
  limits?: Partial<LocalApiLimits>
}

/** Serves the API on 127.0.0.1 and records where in `provider.json`. */
export function serveLocalApi(init: ServeLocalApiInit): Promise<LocalApiServer> {
  return serveApi({ dataDir: init.dataDir, kind: providerApi, info: { ...init.info }, handle: (command) => init.handle(command), ...(init.limits === undefined ? {} : { limits: init.limits }) })
}

/** The record of the provider last started from `dataDir`, or undefined when none is (see readApiRecord). */
export function readApiInfo(dataDir: string): Promise<LocalApiInfo | undefined> {
  return readApiRecord<LocalApiInfo>(dataDir, providerApi)
}

/** Sends one command to the provider running from `dataDir`; throws HEARTH_ERR_PROVIDER_NOT_RUNNING when none answers. */
export function callLocalApi(dataDir: string, command: ApiCommand, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<unknown> {
  return callApi(dataDir, providerApi, command, undefined, options)
}
