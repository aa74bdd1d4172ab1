/**
 * Routes for gateways that run apart from the owner's node (`hearth gateway`, maybe one per region, maybe on another
 * machine): the gateway asks the owner which replicas of a service are in rotation (`/hearth/service/routes/1`,
 * signed both ways) and reaches each straight at its provider, over a direct link or a tunnel (replica-link.ts); the
 * provider lets it in because the owner's serve command named the gateway's address. The owner answers only gateways
 * its spec lists.
 */
import type { Duplex } from 'node:stream'
import { z } from 'zod'
import { HearthError, toHearthError } from '../errors.ts'
import { serviceNoticeProtocol } from '../exec/exescript-protocols.ts'
import { peerOfTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import { defineProtocol } from '../net/protocol.ts'
import type { GatewayReplica, GatewayRoutes } from './gateway.ts'
import { createReplicaLinks } from './replica-link.ts'
import type { Services } from './services.ts'

const replicaSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9-]{1,100}$/),
  region: z.string().max(64),
  version: z.string().max(100),
  /** The provider: its peer id and the addresses from its offer. */
  peerId: z.string().max(200),
  multiaddrs: z.array(z.string().max(1000)).max(32),
  activityId: z.string().regex(/^[A-Za-z0-9-]{1,100}$/),
})

export const serviceRoutesProtocol = defineProtocol({
  id: '/hearth/service/routes/1',
  request: z.strictObject({ service: z.string().max(63) }),
  response: z.strictObject({
    service: z.string().max(63),
    /** Where the service answers its health checks (the spec's health.path), for the gateway's own checks. */
    healthPath: z.string().max(2000),
    replicas: z.array(replicaSchema).max(256),
  }),
  maxRequestBytes: 1024,
  maxResponseBytes: 512 * 1024,
  timeoutMs: 10_000,
  signed: true,
})

type RouteReplica = z.output<typeof replicaSchema>

/** Answers the gateways each service lists with its replicas in rotation, and the providers' notices. */
export async function serveServiceRoutes(host: Host, services: Services): Promise<void> {
  await host.handle(serviceRoutesProtocol, ({ service: name }, ctx) => {
    const service = services.get(name)
    const allowed = service?.spec().gateways.some((gateway) => gateway.toLowerCase() === ctx.remoteAddress.toLowerCase()) ?? false
    if (service === undefined || !allowed) {
      // The same answer for a service that does not exist and one the peer may not see: names are not disclosed.
      throw new HearthError('HEARTH_ERR_SERVICE_NOT_ALLOWED', `this node serves no service ${name} to ${ctx.remoteAddress}`, { hint: 'the owner lists a gateway by its address in the service\'s gateways' })
    }
    const replicas = service.status().replicas.flatMap((replica): RouteReplica[] => {
      const route = service.route(replica.id)
      return replica.inRotation && route !== undefined ? [{ id: replica.id, region: replica.region ?? 'any', version: replica.version, ...route }] : []
    })
    return { service: name, healthPath: service.spec().health.path, replicas }
  })
  // A provider's notice that it ends a replica soon: the owner moves it now (only the provider that runs it can).
  await host.handle(serviceNoticeProtocol, (notice, ctx) => ({ moving: services.notice(ctx.remoteAddress, notice) }))
}

export interface RemoteRoutesOptions {
  /** How often the owner is asked again (default 2 s). */
  refreshMs?: number
  /** Told when asking the owner fails (the last routes stay in use). */
  onError?(error: HearthError): void
  /** Reach replicas over direct links where the providers are reached directly (default true; see replica-link.ts). */
  directLinks?: boolean
  /** Told when a replica is reached through its tunnel for want of a direct link. */
  log?(line: string): void
}

/**
 * A gateway's routes from the owner's node at `owner`: asked at once (rejects when the owner refuses or cannot be
 * reached) and every `refreshMs`.
 */
export async function remoteRoutes(host: Host, owner: string, service: string, options: RemoteRoutesOptions = {}): Promise<GatewayRoutes & { healthPath(): string; close(): void }> {
  let current: RouteReplica[] = []
  let healthPath = '/'
  const refresh = async (): Promise<void> => {
    const answer = await host.request(owner, serviceRoutesProtocol, { service })
    current = answer.replicas
    healthPath = answer.healthPath
  }
  await refresh()
  const timer = setInterval(() => {
    refresh().catch((error: unknown) => options.onError?.(toHearthError(error)))
  }, options.refreshMs ?? 2_000)
  timer.unref()
  const links = createReplicaLinks(host, { direct: options.directLinks ?? true, ...(options.log === undefined ? {} : { log: options.log }) })
  const asGateway = (replica: RouteReplica): GatewayReplica => ({
    id: replica.id,
    region: replica.region,
    version: replica.version,
    async connect(signal): Promise<Duplex> {
      const peer = peerOfTarget(replica.multiaddrs[0] ?? replica.peerId)
      // Several addresses (LAN and public): libp2p tries each from the peer store.
      if (replica.multiaddrs.length > 1 && peer !== undefined) await host.addPeerAddresses(peer, replica.multiaddrs)
      const target = replica.multiaddrs.length === 1 ? replica.multiaddrs[0]! : replica.peerId
      return links.connect({ target, activityId: replica.activityId }, signal)
    },
    path: () => links.pathOf(replica.activityId),
  })
  return {
    // The gateway keeps its own view of which replicas are down (its checks bring them back); the owner's list is
    // what exists, and the owner's own checks decide when one is replaced.
    replicas: () => current.map(asGateway),
    healthPath: () => healthPath,
    close: () => {
      clearInterval(timer)
      links.close()
    },
  }
}
