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
import { describeIssues } from '../net/describe-issues.ts'
import {
  callApi,
  processAlive,
  readApiRecord,
  serveApi,
  type LocalApiKind,
  type LocalApiRecord,
  type LocalApiServer,
} from '../net/local-api-server.ts'
import { serviceSpecSchema, type ServiceSpecInput } from './service-spec.ts'
import type { ServiceStatus, Services } from './services.ts'
import { storageCommands, type StorageApi, type StorageCommand } from './storage-api.ts'

export const requestorStatusFile = 'requestor.json'

export const requestorCommands = ['status', 'stop', 'service-deploy', 'service-ls', 'service-status', 'service-logs', 'service-scale', 'service-update', 'service-rm', ...storageCommands] as const
export type RequestorCommand = (typeof requestorCommands)[number]

export const requestorApi: LocalApiKind & { commands: readonly RequestorCommand[] } = {
  who: 'requestor node',
  statusFile: requestorStatusFile,
  commands: requestorCommands,
  startCommand: 'hearth requestor start',
  codes: { notRunning: 'HEARTH_ERR_REQUESTOR_NOT_RUNNING', localApi: 'HEARTH_ERR_REQUESTOR_LOCAL_API' },
  realm: 'hearth-requestor',
}

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

function parseBody<K extends keyof typeof bodies>(command: K, body: unknown): z.output<(typeof bodies)[K]> {
  const parsed = bodies[command].safeParse(body)
  if (!parsed.success) throw new HearthError('HEARTH_ERR_SERVICE_INVALID', `${command}: ${describeIssues(parsed.error).text}`)
  return parsed.data as z.output<(typeof bodies)[K]>
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
  /** Live offers in the node's book now. */
  offers(): number
  /** Stops the node; the API answers before it goes. */
  stop(): void
}

function serviceOf(services: Services, serviceName: string) {
  const service = services.get(serviceName)
  if (service === undefined) throw new HearthError('HEARTH_ERR_SERVICE_STATE', `this node runs no service ${serviceName}`, { hint: 'see hearth service ls' })
  return service
}

/** Answers one command of the owner. */
async function answer(init: ServeRequestorApiInit, command: RequestorCommand, body: Record<string, unknown>): Promise<unknown> {
  const { services } = init
  if ((storageCommands as readonly string[]).includes(command)) return init.storage.answer(command as StorageCommand, body)
  switch (command) {
    case 'status':
      return { ...init.info, pid: process.pid, offers: init.offers(), services: services.list() } satisfies RequestorNodeStatus
    case 'stop':
      // Answered first; the node stops once this reply is on its way.
      setImmediate(() => init.stop())
      return { stopping: true }
    case 'service-ls':
      return services.list()
    case 'service-status':
      return serviceOf(services, parseBody(command, body).name).status()
    case 'service-deploy': {
      const request = parseBody(command, body)
      const service = await services.deploy(request.spec as ServiceSpecInput, await packageBytes(request))
      return service.status()
    }
    case 'service-update': {
      const request = parseBody(command, body)
      const service = serviceOf(services, request.name)
      await service.update(request.spec as ServiceSpecInput, await packageBytes(request))
      return service.status()
    }
    case 'service-scale': {
      const request = parseBody(command, body)
      const service = serviceOf(services, request.name)
      await service.scale(request.replicas)
      return service.status()
    }
    case 'service-logs': {
      const request = parseBody(command, body)
      const service = serviceOf(services, request.name)
      const ids = request.replica === undefined ? service.status().replicas.map((replica) => replica.id) : [request.replica]
      return Promise.all(ids.map(async (replica) => ({ replica, log: await service.logs(replica, request.tailBytes) })))
    }
    case 'service-rm': {
      const paid = await serviceOf(services, parseBody(command, body).name).remove()
      return paid.map((entry) => ({ agreementId: entry.agreementId, paidWei: entry.paidWei.toString() }))
    }
  }
}

/** Serves the node's API on 127.0.0.1 and records where in `requestor.json`. */
export function serveRequestorApi(init: ServeRequestorApiInit): Promise<LocalApiServer> {
  return serveApi({ dataDir: init.dataDir, kind: requestorApi, info: { ...init.info }, handle: (command, body) => answer(init, command, body) })
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
