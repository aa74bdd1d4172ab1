/**
 * The running requestor node's local API (`hearth requestor start`): its owner's service commands (`hearth service
 * deploy|ls|status|logs|scale|update|rm`) and status and stop, on the local API server of net/local-api-server.ts
 * (HTTP on 127.0.0.1, the key in `<data dir>/api.key`). `requestor.json` in the data directory says where it listens.
 *
 * The caller and the node are on one machine and the caller holds the data directory's key: a service's package (a
 * `docker save` archive, a wasi module) is named by its absolute path and read by the node.
 */
import { readFile } from 'node:fs/promises'
import { isAbsolute } from 'node:path'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import {
  callApi,
  command,
  processAlive,
  readApiRecord,
  serveApi,
  type CommandTable,
  type LocalApiKind,
  type LocalApiRecord,
  type LocalApiServer,
  type LocalApiWeb,
} from '../net/local-api-server.ts'
import { paymentsOf, paymentsReportSchema } from '../payment/payments-view.ts'
import { moneySchema, nodeStatusSchema, offersSchema, providersSchema, serviceStatusSchema, wei } from './api-schemas.ts'
import { moneyView, offersView, providersView, type NodeViewSources } from './node-views.ts'
import { serviceSpecSchema, type ServiceSpecInput } from './service-spec.ts'
import type { ServiceStatus, Services } from './services.ts'
import { storageCommandTable, type StorageApi, type StorageCommand } from './storage-api.ts'

export const requestorStatusFile = 'requestor.json'

export const requestorApi: LocalApiKind = {
  who: 'requestor node',
  statusFile: requestorStatusFile,
  startCommand: 'hearth requestor start',
  codes: { notRunning: 'HEARTH_ERR_REQUESTOR_NOT_RUNNING', localApi: 'HEARTH_ERR_REQUESTOR_LOCAL_API' },
  realm: 'hearth-requestor',
}

/** The node's commands the CLI sends by name. */
export type RequestorCommand = 'status' | 'stop' | 'payments' | 'offers' | 'providers' | 'money' | `service-${'deploy' | 'ls' | 'status' | 'logs' | 'scale' | 'update' | 'rm'}` | StorageCommand | `job-${string}` | 'jobs'

export interface RequestorApiInfo extends LocalApiRecord {
  peerId: string
  address: string
  multiaddrs: string[]
  startedAtMs: number
  /** Gateways this node runs, by service. */
  gateways: { service: string; url: string }[]
}

export interface RequestorNodeStatus extends Omit<RequestorApiInfo, 'url'> {
  /** Live offers in this node's book. */
  offers: number
  services: ServiceStatus[]
}

const name = serviceSpecSchema.shape.name
const absolutePath = z.string().refine((path) => isAbsolute(path), 'expected an absolute path')
// The spec is checked whole by deploy and update (parseServiceSpec), each problem named by its field.
const packageFields = { spec: z.record(z.string(), z.unknown()), archivePath: absolutePath.optional(), packagePath: absolutePath.optional() }
const bodies = {
  'service-deploy': z.strictObject(packageFields),
  'service-update': z.strictObject({ name, ...packageFields }),
  'service-status': z.strictObject({ name }),
  'service-rm': z.strictObject({ name }),
  'service-logs': z.strictObject({ name, replica: z.string().max(100).optional(), tailBytes: z.number().int().min(1).max(16 * 1024 * 1024).optional() }),
  'service-scale': z.strictObject({ name, replicas: serviceSpecSchema.shape.replicas.unwrap() }),
}

/** The package a deploy or update names by path, read whole. */
async function packageBytes(body: { archivePath?: string | undefined; packagePath?: string | undefined }): Promise<Uint8Array | undefined> {
  const path = body.archivePath ?? body.packagePath
  if (path === undefined) return undefined
  return new Uint8Array(await readFile(path).catch((cause: unknown) => {
    throw new HearthError('HEARTH_ERR_SERVICE_INVALID', `cannot read the service's package ${path}`, { cause, hint: 'the path is read by the requestor node: it must exist on its machine' })
  }))
}

export interface ServeRequestorApiInit {
  dataDir: string
  info: Omit<RequestorApiInfo, 'url' | 'pid'>
  services: Services
  /** The node's storage (`hearth store …`). */
  storage: StorageApi
  /** The market and money views (offers, providers, money). */
  views: NodeViewSources
  /** Live offers in the node's book now. */
  offers(): number
  /** Stops the node; the API answers before it goes. */
  stop(): void
  /** Commands of the layers above (jobs), the dashboard's files, metrics and events. */
  more?: CommandTable
  web?: LocalApiWeb
}

function serviceOf(services: Services, serviceName: string) {
  const service = services.get(serviceName)
  if (service === undefined) throw new HearthError('HEARTH_ERR_SERVICE_STATE', `this node runs no service ${serviceName}`, { hint: 'see hearth service ls' })
  return service
}

const invalidCode = 'HEARTH_ERR_SERVICE_INVALID'

/** The service commands (`hearth service …`). */
function serviceCommands(services: Services): CommandTable {
  return {
    'service-ls': command({ summary: 'the services this node owns', result: z.array(serviceStatusSchema), handle: async () => services.list() }),
    'service-status': command({ summary: 'one service: its replicas, where they run and whether they serve', body: bodies['service-status'], invalidCode, result: serviceStatusSchema, handle: async (body) => serviceOf(services, body.name).status() }),
    'service-deploy': command({
      summary: 'deploy a service from its spec and package (read by the node from an absolute path)',
      body: bodies['service-deploy'],
      invalidCode,
      result: serviceStatusSchema,
      handle: async (body) => (await services.deploy(body.spec as ServiceSpecInput, await packageBytes(body))).status(),
    }),
    'service-update': command({
      summary: 'roll a service to a new spec or package, replica by replica',
      body: bodies['service-update'],
      invalidCode,
      result: serviceStatusSchema,
      handle: async (body) => {
        const service = serviceOf(services, body.name)
        await service.update(body.spec as ServiceSpecInput, await packageBytes(body))
        return service.status()
      },
    }),
    'service-scale': command({
      summary: 'change how many replicas a service keeps',
      body: bodies['service-scale'],
      invalidCode,
      result: serviceStatusSchema,
      handle: async (body) => {
        const service = serviceOf(services, body.name)
        await service.scale(body.replicas)
        return service.status()
      },
    }),
    'service-logs': command({
      summary: 'the tail of each replica\'s log',
      body: bodies['service-logs'],
      invalidCode,
      result: z.array(z.object({ replica: z.string(), log: z.string() })),
      handle: async (body) => {
        const service = serviceOf(services, body.name)
        const ids = body.replica === undefined ? service.status().replicas.map((replica) => replica.id) : [body.replica]
        return Promise.all(ids.map(async (replica) => ({ replica, log: await service.logs(replica, body.tailBytes) })))
      },
    }),
    'service-rm': command({
      summary: 'remove a service: its replicas stop, its agreements are settled and the rest refunded',
      body: bodies['service-rm'],
      invalidCode,
      result: z.array(z.object({ agreementId: z.string(), paidWei: wei })),
      handle: async (body) => (await serviceOf(services, body.name).remove()).map((entry) => ({ agreementId: entry.agreementId, paidWei: entry.paidWei.toString() })),
    }),
  }
}

/** Every command of the node: its own, its services', its storage's, its views', and those of the layers above. */
export function requestorCommandTable(init: ServeRequestorApiInit): CommandTable {
  return {
    status: command({
      summary: 'the node: who and where it is, its offers and services',
      result: nodeStatusSchema,
      handle: async () => ({ ...init.info, pid: process.pid, offers: init.offers(), services: init.services.list() }) satisfies RequestorNodeStatus,
    }),
    stop: command({
      summary: 'stop the node; answered before it goes',
      result: z.object({ stopping: z.literal(true) }),
      handle: async () => {
        setImmediate(() => init.stop())
        return { stopping: true }
      },
    }),
    offers: command({
      summary: 'the offers in the node\'s book, filtered with the constraint language (an empty filter is refused)',
      body: z.strictObject({ filter: z.string().max(64 * 1024).optional() }),
      invalidCode: 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID',
      result: offersSchema,
      handle: async (body) => offersView(init.views, body.filter),
    }),
    providers: command({ summary: 'providers with live offers: region, position and measured round trip', result: providersSchema, handle: () => providersView(init.views) }),
    payments: command({ summary: 'every agreement\'s escrow, debit notes, vouchers and invoice, from this node\'s records', result: paymentsReportSchema, handle: async () => ({ dataDir: init.dataDir, agreements: paymentsOf(init.views.store) }) }),
    money: command({ summary: 'every agreement\'s money from this node\'s records beside the chain\'s, and whether they balance', result: moneySchema, handle: () => moneyView(init.views) }),
    ...serviceCommands(init.services),
    ...storageCommandTable(init.storage),
    ...init.more,
  }
}

/** Serves the node's API on 127.0.0.1 and records where in `requestor.json`. */
export function serveRequestorApi(init: ServeRequestorApiInit): Promise<LocalApiServer> {
  return serveApi({ dataDir: init.dataDir, kind: requestorApi, info: { ...init.info }, commands: requestorCommandTable(init), ...(init.web === undefined ? {} : { web: init.web }) })
}

export function readRequestorApiInfo(dataDir: string): Promise<RequestorApiInfo | undefined> {
  return readApiRecord<RequestorApiInfo>(dataDir, requestorApi)
}

/** Sends one command to the requestor node running from `dataDir`. */
export function callRequestorApi(dataDir: string, command: RequestorCommand, body?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<unknown> {
  return callApi(dataDir, requestorApi, command, body, options)
}

/** Throws when a live requestor node already runs from `dataDir`: two over one key and database would pay twice. */
export async function ensureSoleRequestor(dataDir: string): Promise<void> {
  const previous = await readRequestorApiInfo(dataDir).catch(() => undefined)
  if (previous !== undefined && previous.pid !== process.pid && processAlive(previous.pid)) {
    throw new HearthError('HEARTH_ERR_REQUESTOR_ALREADY_RUNNING', `a requestor node (pid ${previous.pid}) is already running from ${dataDir}`, {
      hint: `stop it first: hearth requestor stop --data-dir ${dataDir}`,
    })
  }
}
