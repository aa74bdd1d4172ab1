/**
 * How a gateway reaches a replica's server (src/requestor/replica-link.ts) over real libp2p hosts: a direct link where
 * the provider offers one, the tunnel where it does not, and the provider's refusals passed on rather than hidden by a
 * fallback. The "server" is a TCP echo on loopback; the provider's side is the real grant handler and listener.
 */
import assert from 'node:assert/strict'
import { connect, createServer, type AddressInfo, type Server } from 'node:net'
import type { Duplex } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { HearthError, isHearthError } from '../src/errors.ts'
import { serviceConnectProtocol } from '../src/exec/exescript-protocols.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { createHost, type Host } from '../src/net/host.ts'
import { serveServiceDirect, type ServiceDirect } from '../src/provider/service-direct.ts'
import { createGateway } from '../src/requestor/gateway.ts'
import { crashingConnection, send } from '../src/requestor/gateway-testkit.ts'
import { createReplicaLinks } from '../src/requestor/replica-link.ts'

function echoBack(socket: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('end', () => resolve(Buffer.concat(chunks).toString()))
    socket.once('error', reject)
    socket.end(text)
  })
}

describe('replica links: direct where offered, the tunnel otherwise, refusals passed on', () => {
  let echo: Server
  let echoPort: number
  let gateway: Host
  let stranger: Host
  let withDirect: Host
  let tunnelOnly: Host
  let direct: ServiceDirect | undefined
  const activityId = 'replica-1'
  /** A replica whose server's connection fails after half an answer delimited by its close alone. */
  const crashingId = 'replica-crashing'

  /**
   * The provider's rule, as activity-service.ts applies it: the gateway may reach `replica-1` (the echo) and the
   * crashing replica, nobody else anything.
   */
  const reach = (id: string, peer: string): { connect(): Promise<Duplex> } => {
    if (id !== activityId && id !== crashingId) throw new HearthError('HEARTH_ERR_SERVICE_NOT_HOSTED', `no server for activity ${id}`)
    if (peer.toLowerCase() !== gateway.address.toLowerCase()) throw new HearthError('HEARTH_ERR_SERVICE_NOT_ALLOWED', `peer ${peer} may not connect`)
    if (id === crashingId) return { connect: async () => crashingConnection() }
    return {
      connect: () =>
        new Promise<Duplex>((resolve, reject) => {
          const socket = connect({ host: '127.0.0.1', port: echoPort, allowHalfOpen: true }, () => resolve(socket))
          socket.once('error', reject)
        }),
    }
  }

  before(async () => {
    echo = createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => {})
      socket.pipe(socket)
    })
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
    echoPort = (echo.address() as AddressInfo).port
    const node = () => createHost({ identity: generateIdentity() })
    ;[gateway, stranger, withDirect, tunnelOnly] = [await node(), await node(), await node(), await node()]
    await Promise.all([gateway, stranger, withDirect, tunnelOnly].map((host) => host.start()))
    for (const provider of [withDirect, tunnelOnly]) await provider.serveTunnel(serviceConnectProtocol, async (open, ctx) => reach(open.activityId, ctx.remoteAddress).connect())
    direct = await serveServiceDirect({ host: withDirect, reach })
  })

  after(async () => {
    await direct?.close()
    await Promise.all([gateway, stranger, withDirect, tunnelOnly].map((host) => host.stop()))
    echo.close()
  })

  it('uses a direct link where the provider offers one, and the same ticket for the next connection', async () => {
    assert.ok(direct !== undefined, 'the provider listens for direct links beside libp2p')
    const links = createReplicaLinks(gateway, { direct: true })
    const target = withDirect.multiaddrs()[0]!
    for (const text of ['first', 'second']) {
      const socket = await links.connect({ target, activityId }, AbortSignal.timeout(20_000))
      assert.equal(await echoBack(socket, text), text)
      assert.equal(links.pathOf(activityId), 'direct')
    }
    assert.equal(direct.stats().tickets, 1)
  })

  it('keeps a spare link ready, so that the next connection needs no new one', async () => {
    // A provider that lets this gateway hold two links: one in use and the spare. A new link for the second
    // connection would be refused as over the bound; the spare, made before, is not.
    const provider = await createHost({ identity: generateIdentity() })
    await provider.start()
    const bounded = await serveServiceDirect({ host: provider, reach, limits: { maxConnectionsPerHolder: 2 } })
    const links = createReplicaLinks(gateway, { spareLinks: 1 })
    try {
      const target = provider.multiaddrs()[0]!
      const first = await links.connect({ target, activityId }, AbortSignal.timeout(20_000))
      while (bounded!.stats().connections < 2) await new Promise((resolve) => setTimeout(resolve, 10))
      const second = await links.connect({ target, activityId }, AbortSignal.timeout(20_000))
      assert.equal(await echoBack(second, 'on the spare'), 'on the spare')
      assert.equal(await echoBack(first, 'still the first'), 'still the first')
      assert.equal(links.pathOf(activityId), 'direct')
    } finally {
      links.close()
      await bounded?.close()
      await provider.stop()
    }
  })

  it('goes through the tunnel where the provider offers no direct link, and says why', async () => {
    const lines: string[] = []
    const links = createReplicaLinks(gateway, { direct: true, log: (line) => lines.push(line) })
    const socket = await links.connect({ target: tunnelOnly.multiaddrs()[0]!, activityId }, AbortSignal.timeout(20_000))
    assert.equal(await echoBack(socket, 'through libp2p'), 'through libp2p')
    assert.equal(links.pathOf(activityId), 'tunnel')
    assert.ok(lines.some((line) => line.includes('no direct link')), lines.join('\n'))
  })

  it('uses direct links by default, and tunnels only when told', async () => {
    const target = withDirect.multiaddrs()[0]!
    const byDefault = createReplicaLinks(gateway)
    assert.equal(await echoBack(await byDefault.connect({ target, activityId }, AbortSignal.timeout(20_000)), 'default'), 'default')
    assert.equal(byDefault.pathOf(activityId), 'direct')
    const tunnelsOnly = createReplicaLinks(gateway, { direct: false })
    assert.equal(await echoBack(await tunnelsOnly.connect({ target, activityId }, AbortSignal.timeout(20_000)), 'tunnel'), 'tunnel')
    assert.equal(tunnelsOnly.pathOf(activityId), 'tunnel')
  })

  it('gets a gateway to reset its client, never to send a short 200, when a replica over a direct link fails mid-answer', async () => {
    // The answer has neither a length nor chunks: only the link can tell its cut from its end.
    const links = createReplicaLinks(gateway)
    const target = withDirect.multiaddrs()[0]!
    const down: string[] = []
    const served = await createGateway({
      listen: { host: '127.0.0.1', port: 0 },
      region: 'eu',
      routes: {
        replicas: () => [{ id: 'crashing', region: 'eu', version: 'v1', connect: (signal) => links.connect({ target, activityId: crashingId }, signal) }],
        reportDown: (_id, reason) => down.push(reason),
      },
      health: { path: '/health', intervalMs: 60_000, timeoutMs: 5_000, failuresBeforeDown: 1 },
    })
    try {
      await assert.rejects(send(served.address().port, { path: '/page' }), /cut short|ECONNRESET|aborted|socket hang up/)
      assert.equal(links.pathOf(crashingId), 'direct')
      assert.equal(served.stats().cutResponses, 1)
    } finally {
      await served.close()
    }
  })

  it('passes on the provider\'s refusal instead of trying the tunnel: a stranger, a replica that is gone', async () => {
    const strangerLinks = createReplicaLinks(stranger, { direct: true })
    await assert.rejects(strangerLinks.connect({ target: withDirect.multiaddrs()[0]!, activityId }, AbortSignal.timeout(20_000)), (error: unknown) =>
      isHearthError(error) && error.details?.remoteCode === 'HEARTH_ERR_SERVICE_NOT_ALLOWED')
    const links = createReplicaLinks(gateway, { direct: true })
    await assert.rejects(links.connect({ target: withDirect.multiaddrs()[0]!, activityId: 'gone' }, AbortSignal.timeout(20_000)), (error: unknown) =>
      isHearthError(error) && error.details?.remoteCode === 'HEARTH_ERR_SERVICE_NOT_HOSTED')
    assert.equal(links.pathOf('gone'), undefined)
  })
})
