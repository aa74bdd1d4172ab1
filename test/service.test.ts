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
import { createGateway, type Gateway } from '../src/requestor/gateway.ts'
import { createServices, type Service, type Services } from '../src/requestor/services.ts'

const regions = ['eu', 'us', 'asia', 'us'] as const
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
    await requestor.agent.offerBook.waitFor(regions.length, () => true, { signal: AbortSignal.timeout(60_000) })
    site = await services.deploy(siteSpec('v1'), images.v1!.archive)
    for (const region of Object.keys(clientAddress)) {
      gateways.set(region, await createGateway({ listen: { host: '127.0.0.1', port: 0 }, routes: site.routes(), region, regions: { table }, health: { path: '/hearth-variant', intervalMs: 500, timeoutMs: 3000, failuresBeforeDown: 2 } }))
    }
  })

  after(async () => {
    services?.close()
    for (const gateway of gateways.values()) await gateway.close()
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
      // busybox httpd in the foreground, serving the image's /etc (where the variant file is the page).
      args: ['httpd', '-f', '-p', '${PORT}', '-h', '/etc'],
      replicas: { perRegion: { eu: 1, us: 1, asia: 1 } },
      health: { path: '/hearth-variant', intervalMs: 500, timeoutMs: 3000, failuresBeforeDown: 2 },
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

  it('shows a replica\'s server log', async () => {
    const replica = site.status().replicas[0]!
    const log = await site.logs(replica.id)
    assert.equal(typeof log, 'string')
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
