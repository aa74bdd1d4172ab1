/**
 * Direct links to the replicas this provider hosts: a listener for TLS connections made with tickets
 * (net/direct-link.ts) on the address libp2p's TCP listener is bound to, and `/hearth/service/direct/2`, which grants
 * a ticket to the peers that may open the connect tunnel to the replica (its requestor and the gateways it named).
 * Each connection is checked again as it is joined to the server: a replica that ended or moved lets nobody in.
 */
import type { Duplex } from 'node:stream'
import type { Address } from 'viem'
import { serviceDirectProtocol } from '../exec/exescript-protocols.ts'
import { listenDirect, type DirectListenerStats, type DirectLimits } from '../net/direct-link.ts'
import type { Host } from '../net/host.ts'

export interface ServiceDirectInit {
  host: Host
  /** The way into replica `activityId`'s server for `peer`; throws a HearthError when it may not, or none runs. */
  reach(activityId: string, peer: Address): { connect(): Promise<Duplex> }
  /** The TCP port to listen on (default 0: any free one). */
  port?: number
  limits?: Partial<DirectLimits>
}

export interface ServiceDirect {
  readonly port: number
  stats(): DirectListenerStats
  close(): Promise<void>
}

/** Starts the listener and serves the grants; undefined when libp2p listens on no IPv4 TCP address to bind beside. */
export async function serveServiceDirect(init: ServiceDirectInit): Promise<ServiceDirect | undefined> {
  const bind = init.host.tcpListenHosts()[0]
  if (bind === undefined) return undefined
  const listener = await listenDirect({ host: bind, ...(init.port === undefined ? {} : { port: init.port }), ...(init.limits === undefined ? {} : { limits: init.limits }) })
  try {
    await init.host.handle(serviceDirectProtocol, ({ activityId }, ctx) => {
      // Refused here, before any ticket exists, for a peer that may not reach the replica.
      init.reach(activityId, ctx.remoteAddress)
      return listener.grant(`${ctx.remoteAddress.toLowerCase()}/${activityId}`, () => init.reach(activityId, ctx.remoteAddress).connect())
    })
  } catch (error) {
    await listener.close()
    throw error
  }
  return {
    port: listener.port,
    stats: () => listener.stats(),
    async close() {
      await init.host.unhandle(serviceDirectProtocol).catch(() => undefined)
      await listener.close()
    },
  }
}
