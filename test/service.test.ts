/**
 * A long-running service on the devnet: a static site served by busybox httpd (a real server nobody on the team wrote)
 * in a container image, one replica in each of three regions, one gateway per region. Clients get the page from the
 * replica of their own region, byte for byte; a replica whose provider goes away is replaced while GETs keep
 * succeeding; a rolling update switches every replica to the new version without a failed GET; removing the service
 * settles its agreements, paid by time, as the chain records.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseEther, type Hex } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { saveImageArchive } from '../src/exec/docker-images.ts'
import { createDockerRuntime, type DockerRuntime } from '../src/exec/docker-runtime.ts'
import { importBusyboxImage, startTestEngine, type TestEngine } from '../src/exec/docker-test-image.ts'
import type { Pricing } from '../src/market/pricing.ts'
import { getEscrow } from '../src/payment/escrow.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { createHost, type Host } from '../src/net/host.ts'
import { isHearthError } from '../src/errors.ts'
import { serviceConnectProtocol, serviceDirectProtocol, serviceNoticeProtocol } from '../src/exec/exescript-protocols.ts'
import { createGateway, type Gateway } from '../src/requestor/gateway.ts'
import { remoteRoutes, serveServiceRoutes } from '../src/requestor/service-routes.ts'
import { createServices, type Service, type Services } from '../src/requestor/services.ts'

const regions = ['eu', 'us', 'asia', 'us', 'eu'] as const
/** Clients of each region come from their own loopback address; the gateways' table knows them. */
const clientAddress: Record<string, string> = { eu: '127.0.0.2', us: '127.0.0.3', asia: '127.0.0.4' }
const table = Object.fromEntries(Object.entries(clientAddress).map(([region, address]) => [`${address}/32`, region]))
const perSecond: Pricing = { model: 'linear', startWei: '0', perCpuSecWei: parseEther('0.001').toString(), perDurationSecWei: parseEther('0.0001').toString() }

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

function get(gateway: Gateway, path: string, from: string, method = 'GET'): Promise<Answer> {
  const { host, port } = gateway.address()
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port, path, method, localAddress: from, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

describe('a static site as a service, one replica per region', { timeout: 600_000 }, () => {
  let dir: string
  let engine: TestEngine
  let docker: DockerRuntime
  let devnet: Devnet
  let services: Services
  let site: Service
  const gateways = new Map<string, Gateway>()
  const images: Record<string, { id: string; archive: Uint8Array; page: string }> = {}
  const events: string[] = []
  /** A gateway on a node of its own, trusted by the service; and a stranger the service does not list. */
  let gatewayHost: Host
  let stranger: Host
  let remoteGateway: Gateway
  let closeRemote: () => void = () => {}

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-service-'))
    engine = await startTestEngine(join(dir, 'engine'))
    docker = createDockerRuntime({ socketPath: engine.socketPath })
    for (const version of ['v1', 'v2']) {
      const id = await importBusyboxImage(docker, join(dir, `rootfs-${version}`), `site-${version}`)
      const archivePath = join(dir, `${version}.tar`)
      await saveImageArchive(docker, id, archivePath)
      images[version] = { id, archive: new Uint8Array(await readFile(archivePath)), page: `site-${version}\n` }
    }
    devnet = await startDevnet({
      providers: regions.length,
      dockerSocket: engine.socketPath,
      providerServices: true,
      providerPricing: () => perSecond,
      providerActivityMeterEveryMs: 1000,
      providerProperties: (index) => ({ 'hearth.geo.region': regions[index]! }),
    })
    const { requestor } = devnet
    services = createServices({
      host: requestor.host,
      identity: requestor.identity,
      store: requestor.store,
      accounts: requestor.agent.accounts,
      blobs: requestor.agent.blobs,
      offerBook: requestor.agent.offerBook,
      onEvent: (event) => events.push(`${event.type} ${event.replica}: ${event.detail}`),
    })
    gatewayHost = await createHost({ identity: generateIdentity() })
    stranger = await createHost({ identity: generateIdentity() })
    await Promise.all([gatewayHost.start(), stranger.start()])
    await requestor.agent.offerBook.waitFor(regions.length, () => true, { signal: AbortSignal.timeout(60_000) })
    site = await services.deploy(siteSpec('v1'), images.v1!.archive)
    await serveServiceRoutes(requestor.host, services)
    const routes = await remoteRoutes(gatewayHost, requestor.host.multiaddrs()[0]!, 'site', { refreshMs: 300 })
    closeRemote = routes.close
    remoteGateway = await createGateway({ listen: { host: '127.0.0.1', port: 0 }, routes, region: 'eu', regions: { table } })
    for (const region of Object.keys(clientAddress)) {
      gateways.set(region, await createGateway({ listen: { host: '127.0.0.1', port: 0 }, routes: site.routes(), region, regions: { table }, health: { path: '/hearth-variant', intervalMs: 500, timeoutMs: 3000, failuresBeforeDown: 2 } }))
    }
  })

  after(async () => {
    services?.close()
    for (const gateway of gateways.values()) await gateway.close()
    closeRemote()
    await remoteGateway?.close()
    await Promise.all([gatewayHost?.stop(), stranger?.stop()])
    await devnet?.stop()
    await docker?.close()
    await engine?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  function siteSpec(version: 'v1' | 'v2') {
    return {
      name: 'site',
      version,
      runtime: 'docker' as const,
      imageId: images[version]!.id,
      port: 8080,
      // busybox httpd in the foreground, serving the image's variant file as the page, and a CGI program that reads
      // the whole request body before it answers (so a POST cut short is in flight at the replica).
      args: ['sh', '-c', [
        'mkdir -p /task/www/cgi-bin && cp /etc/hearth-variant /task/www/',
        'printf \'#!/bin/sh\\ncat >/dev/null\\necho Content-Type: text/plain\\necho\\necho got\\n\' > /task/www/cgi-bin/upload',
        'chmod 755 /task/www/cgi-bin/upload',
        'exec httpd -f -vv -p ${PORT} -h /task/www',
      ].join(' && ')],
      replicas: { perRegion: { eu: 1, us: 1, asia: 1 } },
      health: { path: '/hearth-variant', intervalMs: 500, timeoutMs: 3000, failuresBeforeDown: 2 },
      gateways: [gatewayHost.address],
    }
  }

  const regionOfReplica = (id: string | string[] | undefined): string | undefined => site.status().replicas.find((replica) => replica.id === id)?.region

  it('serves each client from the replica in its own region, byte-identical to the file', async () => {
    const status = site.status()
    assert.deepEqual(status.replicas.map((replica) => replica.region).sort(), ['asia', 'eu', 'us'])
    assert.ok(status.replicas.every((replica) => replica.state === 'serving'), JSON.stringify(status))
    for (const [region, from] of Object.entries(clientAddress)) {
      for (const gateway of gateways.values()) {
        const answer = await get(gateway, '/hearth-variant', from)
        assert.equal(answer.status, 200)
        assert.equal(answer.body, images.v1!.page)
        assert.equal(regionOfReplica(answer.headers['x-hearth-replica']), region, `a client in ${region} was served by ${String(answer.headers['x-hearth-replica'])}`)
      }
    }
  })

  it('serves through a gateway on another node that the service trusts, and lets no stranger in', async () => {
    const answer = await get(remoteGateway, '/hearth-variant', clientAddress.asia!)
    assert.equal(answer.status, 200)
    assert.equal(answer.body, images.v1!.page)
    assert.equal(regionOfReplica(answer.headers['x-hearth-replica']), 'asia')
    // A node the service does not list learns nothing of its replicas, and no provider lets it reach one.
    await assert.rejects(remoteRoutes(stranger, devnet.requestor.host.multiaddrs()[0]!, 'site'), (error: unknown) => isHearthError(error) && error.details?.remoteCode === 'HEARTH_ERR_SERVICE_NOT_ALLOWED')
    const replica = site.status().replicas[0]!
    const provider = devnet.providers.find((p) => p.agent.address.toLowerCase() === replica.provider.toLowerCase())!
    await assert.rejects(stranger.openTunnel(provider.host.multiaddrs()[0]!, serviceConnectProtocol, { activityId: replica.activityId! }), (error: unknown) =>
      isHearthError(error) && error.details?.remoteCode === 'HEARTH_ERR_SERVICE_NOT_ALLOWED')
    // Nor a ticket for a direct link.
    await assert.rejects(stranger.request(provider.host.multiaddrs()[0]!, serviceDirectProtocol, { activityId: replica.activityId! }), (error: unknown) =>
      isHearthError(error) && error.details?.remoteCode === 'HEARTH_ERR_SERVICE_NOT_ALLOWED')
    // The gateway reaches the provider (on loopback here) over a direct link: TCP and TLS.
    assert.equal(remoteGateway.stats().replicas.find((r) => r.requests > 0)?.path, 'direct')
    // One told to use tunnels only serves the same page through libp2p.
    const tunnelRoutes = await remoteRoutes(gatewayHost, devnet.requestor.host.multiaddrs()[0]!, 'site', { directLinks: false })
    const tunnelGateway = await createGateway({ listen: { host: '127.0.0.1', port: 0 }, routes: tunnelRoutes, region: 'eu', regions: { table } })
    try {
      for (let i = 0; i < 3; i++) {
        const through = await get(tunnelGateway, '/hearth-variant', clientAddress.eu!)
        assert.equal(through.status, 200)
        assert.equal(through.body, images.v1!.page)
      }
      assert.equal(tunnelGateway.stats().replicas.find((r) => r.requests > 0)?.path, 'tunnel')
    } finally {
      tunnelRoutes.close()
      await tunnelGateway.close()
    }
  })

  it('moves a replica off a machine whose owner takes it back with notice: its replacement in the region serves before it ends, and no GET fails', async () => {
    const eu = site.status().replicas.find((replica) => replica.region === 'eu' && replica.inRotation)!
    const provider = devnet.providers.find((p) => p.agent.address.toLowerCase() === eu.provider.toLowerCase())!
    // A notice naming the replica moves nothing unless its own provider signed it: not a stranger's, not another provider's.
    const forged = { agreementId: eu.agreementId, activityId: eu.activityId!, endsInMs: 0, reason: 'forged' }
    const owner = devnet.requestor.host.multiaddrs()[0]!
    const otherProvider = devnet.providers.find((p) => p !== provider)!
    assert.deepEqual(await stranger.request(owner, serviceNoticeProtocol, forged), { moving: false })
    assert.deepEqual(await otherProvider.host.request(owner, serviceNoticeProtocol, forged), { moving: false })
    assert.equal(site.status().replicas.find((replica) => replica.id === eu.id)?.state, 'serving')
    let loading = true
    const answers: number[] = []
    const load = (async () => {
      while (loading) {
        answers.push(await get(gateways.get('eu')!, '/hearth-variant', clientAddress.eu!).then((answer) => answer.status, () => 0))
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })()
    const handedBack = provider.agent.pause('the owner is using the machine', { handBack: true, noticeMs: 15_000 })
    try {
      // Moved: the replica the notice named left for another provider of its region.
      const movedEvent = () => events.find((event) => event.startsWith('moved ') && event.includes(`replica ${eu.id} on`))
      for (let i = 0; i < 1500 && movedEvent() === undefined; i++) await new Promise((resolve) => setTimeout(resolve, 20))
      const why = `${JSON.stringify(site.status().replicas)}\n${events.join('\n')}`
      assert.ok(movedEvent() !== undefined, why)
      const fresh = site.status().replicas.find((replica) => replica.region === 'eu' && replica.inRotation)
      assert.ok(fresh !== undefined && fresh.provider !== eu.provider, why)
      // The owner stopped the old replica itself once the new one served: it never ran out its notice (a provider
      // ending it at the notice's end would say "handed back").
      await handedBack
      const old = provider.store.activities.get('provider', eu.activityId!)
      assert.equal(old?.state, 'Terminated')
      assert.match(old?.lastError ?? '', /the requestor destroyed it/, why)
    } finally {
      await handedBack.catch(() => undefined)
      await provider.agent.resume()
      loading = false
      await load
    }
    assert.ok(answers.length > 10)
    assert.deepEqual(answers.filter((status) => status !== 200), [])
  })

  it('answers a POST in flight when its replica dies with an error, never a silent retry', async () => {
    const eu = site.status().replicas.find((replica) => replica.region === 'eu')!
    const index = devnet.providers.findIndex((provider) => provider.agent.address.toLowerCase() === eu.provider.toLowerCase())
    const { host, port } = gateways.get('eu')!.address()
    const outcome = new Promise<string>((resolve) => {
      const req = httpRequest({ host, port, path: '/cgi-bin/upload', method: 'POST', localAddress: clientAddress.eu, agent: false, headers: { 'content-length': '100000' } }, (res) => {
        res.resume()
        res.on('end', () => resolve(`status ${res.statusCode}`))
        res.on('error', () => resolve('reset'))
      })
      req.on('error', () => resolve('reset'))
      // Half the body now; the replica's provider goes away before the rest.
      req.write(Buffer.alloc(50_000, 0x61))
    })
    // Stopped once the request is at the replica (its server logged it), not before.
    const atReplica = async (): Promise<boolean> => (await site.logs(eu.id)).includes('url:/cgi-bin/upload')
    for (let i = 0; i < 600 && !(await atReplica()); i++) await new Promise((resolve) => setTimeout(resolve, 100))
    assert.ok(await atReplica(), 'the POST reached the replica')
    await devnet.providers[index]!.agent.stop()
    const result = await outcome
    // Never the answer of another replica (a retry would have made the CGI answer 200 there).
    assert.ok(result === 'reset' || result === 'status 502', result)
    // The region's replica is replaced on its other provider.
    for (let i = 0; i < 600 && site.status().replicas.find((r) => r.region === 'eu' && r.state === 'serving' && r.id !== eu.id) === undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    assert.ok(site.status().replicas.some((r) => r.region === 'eu' && r.state === 'serving' && r.id !== eu.id), events.join('\n'))
  })

  it('keeps every GET succeeding while a replica\'s provider goes away, and replaces the replica in its region', async () => {
    const us = site.status().replicas.find((replica) => replica.region === 'us')!
    const index = devnet.providers.findIndex((provider) => provider.agent.address.toLowerCase() === us.provider.toLowerCase())
    const failures: string[] = []
    let served = 0
    let stopLoad = false
    const load = (async () => {
      while (!stopLoad) {
        const answer = await get(gateways.get('us')!, '/hearth-variant', clientAddress.us!).catch((error: Error) => ({ status: 0, body: error.message, headers: {} }))
        if (answer.status !== 200 || answer.body !== images.v1!.page) failures.push(`${answer.status} ${answer.body.slice(0, 100)}`)
        else served++
      }
    })()
    await devnet.providers[index]!.agent.stop()
    // Replaced on the other provider of the region, serving.
    for (let i = 0; i < 600; i++) {
      const replacement = site.status().replicas.find((replica) => replica.region === 'us')
      if (replacement !== undefined && replacement.id !== us.id && replacement.state === 'serving') break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    const replacement = site.status().replicas.find((replica) => replica.region === 'us')!
    assert.notEqual(replacement.id, us.id, events.join('\n'))
    assert.notEqual(replacement.provider.toLowerCase(), us.provider.toLowerCase())
    assert.equal(replacement.state, 'serving')
    const answer = await get(gateways.get('us')!, '/hearth-variant', clientAddress.us!)
    assert.equal(answer.headers['x-hearth-replica'], replacement.id)
    stopLoad = true
    await load
    assert.deepEqual(failures, [])
    assert.ok(served > 0)
  })

  it('rolls to a new version without a failed GET; answers after the switch come from the new version', async () => {
    const failures: string[] = []
    let stopLoad = false
    const load = (async () => {
      while (!stopLoad) {
        for (const [region, from] of Object.entries(clientAddress)) {
          const answer = await get(gateways.get(region)!, '/hearth-variant', from).catch((error: Error) => ({ status: 0, body: error.message, headers: {} }))
          if (answer.status !== 200 || (answer.body !== images.v1!.page && answer.body !== images.v2!.page)) failures.push(`${region}: ${answer.status} ${answer.body.slice(0, 100)}`)
        }
      }
    })()
    await site.update(siteSpec('v2'), images.v2!.archive)
    stopLoad = true
    await load
    assert.deepEqual(failures, [])
    assert.ok(site.status().replicas.every((replica) => replica.version === 'v2'))
    for (const [region, from] of Object.entries(clientAddress)) {
      const answer = await get(gateways.get(region)!, '/hearth-variant', from)
      assert.equal(answer.body, images.v2!.page)
      assert.equal(answer.headers['x-hearth-version'], 'v2')
    }
  })

  it('scales down and up again by region', async () => {
    await site.scale({ perRegion: { eu: 1, us: 1 } })
    assert.deepEqual(site.status().replicas.map((replica) => replica.region).sort(), ['eu', 'us'])
    const answer = await get(gateways.get('asia')!, '/hearth-variant', clientAddress.asia!)
    assert.equal(answer.status, 200)
    assert.notEqual(regionOfReplica(answer.headers['x-hearth-replica']), 'asia')
    await site.scale({ perRegion: { eu: 1, us: 1, asia: 1 } })
    assert.deepEqual(site.status().replicas.map((replica) => replica.region).sort(), ['asia', 'eu', 'us'])
    const back = await get(gateways.get('asia')!, '/hearth-variant', clientAddress.asia!)
    assert.equal(regionOfReplica(back.headers['x-hearth-replica']), 'asia')
    assert.equal(back.body, images.v2!.page)
  })

  it('takes a replica off a machine whose owner took it back, and brings it back when lending resumes', async () => {
    const asia = site.status().replicas.find((replica) => replica.region === 'asia')!
    const provider = devnet.providers.find((p) => p.agent.address.toLowerCase() === asia.provider.toLowerCase())!
    await provider.agent.pause('the owner is using the machine', { handBack: true })
    const serving = (): boolean => site.status().replicas.some((replica) => replica.region === 'asia' && replica.inRotation)
    for (let i = 0; i < 1200 && serving(); i++) await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(serving(), false, events.join('\n'))
    // Clients of the region are served from another one meanwhile.
    const during = await get(gateways.get('asia')!, '/hearth-variant', clientAddress.asia!)
    assert.equal(during.status, 200)
    assert.notEqual(regionOfReplica(during.headers['x-hearth-replica']), 'asia')
    await provider.agent.resume()
    for (let i = 0; i < 1200 && !serving(); i++) await new Promise((resolve) => setTimeout(resolve, 100))
    assert.ok(serving(), JSON.stringify(site.status().replicas))
    const back = await get(gateways.get('asia')!, '/hearth-variant', clientAddress.asia!)
    assert.equal(regionOfReplica(back.headers['x-hearth-replica']), 'asia')
  })

  it('shows a replica\'s server log, with the requests it served', async () => {
    const answer = await get(gateways.get('eu')!, '/hearth-variant', clientAddress.eu!)
    const replica = String(answer.headers['x-hearth-replica'])
    const log = await site.logs(replica).catch((error: Error) => assert.fail(`${error.message}\n${JSON.stringify(site.status(), null, 1)}\n${events.join('\n')}`))
    assert.match(log, /url:\/hearth-variant/)
  })

  it('renews a short agreement before it ends: a new agreement, its replica serving before the old one stops', async () => {
    const brief = await services.deploy({ ...siteSpec('v2'), name: 'brief', replicas: { total: 1 }, agreementSec: 90 }, images.v2!.archive)
    try {
      const [first] = brief.status().replicas
      // Renewed a tenth of the agreement (at least 30 s) before its end: within the minute the agreement lasts.
      for (let i = 0; i < 1200 && brief.status().replicas.every((replica) => replica.agreementId === first!.agreementId); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      const [renewed] = brief.status().replicas
      assert.notEqual(renewed!.agreementId, first!.agreementId, events.join('\n'))
      assert.equal(renewed!.state, 'serving')
      assert.equal(brief.status().replicas.length, 1)
      assert.ok(events.some((event) => event.startsWith(`renewed ${renewed!.id}`)))
    } finally {
      await brief.remove()
    }
  })

  it('is paid by time, and removing it settles every agreement as the chain records', async () => {
    const agreements = new Set(site.status().replicas.map((replica) => replica.agreementId))
    const paid = await site.remove()
    assert.ok(paid.length >= agreements.size)
    const { requestor } = devnet
    let total = 0n
    for (const { agreementId, paidWei } of paid) {
      const escrow = await getEscrow(requestor.payment, { requestorAddress: requestor.payment.client.address, agreementId: agreementId as Hex })
      assert.equal(escrow?.claimedWei, paidWei, `agreement ${agreementId}: paid as the chain records`)
      total += paidWei
    }
    assert.ok(total > 0n, 'uptime was paid for')
    assert.equal(services.get('site'), undefined)
  })
})
