/**
 * A service's escrows topped up as it runs, on the devnet with real containers, chain and contracts: the owner's node
 * keeps each replica's escrow a step ahead of the work; an owner that stops topping up finds its replica ended by the
 * provider before the work outruns what is deposited. Prices are mostly per second of uptime here, so the escrow
 * drains at the same pace whatever CPU the busy test machine gives the server.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseEther, type Hex } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { createDockerRuntime, type DockerRuntime } from '../src/exec/docker-runtime.ts'
import { importBusyboxImage, startTestEngine, type TestEngine } from '../src/exec/docker-test-image.ts'
import { saveImageArchive } from '../src/exec/docker-images.ts'
import { costWei, type Pricing } from '../src/market/pricing.ts'
import { getEscrow } from '../src/payment/escrow.ts'
import { createRequestorAccounts } from '../src/requestor/requestor-account.ts'
import { createServices, type Services } from '../src/requestor/services.ts'
import type { ServiceSpecInput } from '../src/requestor/service-spec.ts'
import { openStore } from '../src/store/store.ts'

const byUptime: Pricing = { model: 'linear', startWei: '0', perCpuSecWei: parseEther('0.00001').toString(), perDurationSecWei: parseEther('0.001').toString() }

describe('a service\'s escrows, topped up as it runs', { timeout: 600_000 }, () => {
  let dir: string
  let engine: TestEngine
  let docker: DockerRuntime
  let devnet: Devnet
  let services: Services
  let imageId: string
  let archive: Uint8Array

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-service-escrow-'))
    engine = await startTestEngine(join(dir, 'engine'))
    docker = createDockerRuntime({ socketPath: engine.socketPath })
    imageId = await importBusyboxImage(docker, join(dir, 'rootfs'), 'site-v1')
    await saveImageArchive(docker, imageId, join(dir, 'site.tar'))
    archive = new Uint8Array(await readFile(join(dir, 'site.tar')))
    devnet = await startDevnet({ providers: 2, dockerSocket: engine.socketPath, providerServices: true, providerPricing: () => byUptime, providerActivityMeterEveryMs: 1000 })
    const { requestor } = devnet
    services = createServices({ host: requestor.host, identity: requestor.identity, store: requestor.store, accounts: requestor.agent.accounts, blobs: requestor.agent.blobs, offerBook: requestor.agent.offerBook })
    await requestor.agent.offerBook.waitFor(2, () => true, { signal: AbortSignal.timeout(60_000) })
  })

  after(async () => {
    services?.close()
    await devnet?.stop()
    await docker?.close()
    await engine?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const spec = (name: string): ServiceSpecInput => ({
    name,
    runtime: 'docker',
    imageId,
    port: 8080,
    args: ['httpd', '-f', '-p', '${PORT}', '-h', '/etc'],
    replicas: { total: 1 },
    health: { path: '/hearth-variant', intervalMs: 500, timeoutMs: 3000, failuresBeforeDown: 2 },
    escrowAheadSec: 30,
  })
  const escrowOf = (agreementId: string) => getEscrow(devnet.requestor.payment, { requestorAddress: devnet.requestor.payment.client.address, agreementId: agreementId as Hex })

  it('tops each replica\'s escrow up as it serves, a step at a time, instead of locking the agreement\'s whole day', async () => {
    const prepaid = await services.deploy(spec('prepaid'), archive)
    try {
      const [replica] = prepaid.status().replicas
      const agreement = devnet.requestor.store.agreements.get(replica!.agreementId)!.document as { terms: { depositWei: string; escrowAheadWei?: string } }
      const aheadWei = BigInt(agreement.terms.escrowAheadWei!)
      // Opened with two steps ahead of the work, far less than the agreed day's cap.
      assert.equal((await escrowOf(replica!.agreementId))?.depositedWei, 2n * aheadWei)
      assert.ok(BigInt(agreement.terms.depositWei) > 40n * aheadWei)
      // Topped up once the work accepted ate into it (a quarter of a minute of uptime, looked at every 5 s).
      let deposited = 2n * aheadWei
      for (let i = 0; i < 1200 && deposited === 2n * aheadWei; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        deposited = (await escrowOf(replica!.agreementId))!.depositedWei
      }
      assert.ok(deposited > 2n * aheadWei, `deposited ${deposited} of ${2n * aheadWei} opened`)
      assert.ok(deposited < 4n * aheadWei, `one step at a time: ${deposited}`)
      assert.equal(prepaid.status().replicas[0]!.state, 'serving')
    } finally {
      await prepaid.remove()
    }
  })

  it('a replica whose owner stops topping up its escrow is ended by its provider before the work outruns the deposit', async () => {
    const { requestor } = devnet
    // An owner whose accounts never run their upkeep: its escrows are never topped up (its store is its own, so the
    // devnet requestor's upkeep does not top them up either).
    const store = openStore({ path: join(dir, 'stingy.db') })
    const accounts = createRequestorAccounts({ identity: requestor.identity, host: requestor.host, store, payment: requestor.payment })
    const stingy = createServices({ host: requestor.host, identity: requestor.identity, store, accounts, blobs: requestor.agent.blobs, offerBook: requestor.agent.offerBook })
    const service = await stingy.deploy(spec('stingy'), archive)
    try {
      const [replica] = service.status().replicas
      const host = devnet.providers.find((p) => p.identity.address.toLowerCase() === replica!.provider.toLowerCase())!
      // Opened with a minute ahead; the provider stops once less than a quarter of one is left (about 45 s of uptime).
      let ended: { state: string; lastError: string | null } | undefined
      for (let i = 0; i < 1800 && ended === undefined; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        const record = host.store.activities.get('provider', replica!.activityId!)
        if (record !== undefined && ['Terminated', 'Unresponsive'].includes(record.state)) ended = record
      }
      assert.ok(ended !== undefined, 'the provider ended the replica')
      assert.match(ended.lastError ?? '', /was not topped up/)
      // It never worked beyond what was deposited: what it delivered is within the escrow, as the chain holds it.
      const escrow = await escrowOf(replica!.agreementId)
      const delivered = host.agent.accounts.account(replica!.agreementId, requestor.identity.address).delivered()
      assert.ok(costWei(byUptime, delivered) <= escrow!.depositedWei, `delivered ${costWei(byUptime, delivered)} of ${escrow!.depositedWei} deposited`)
    } finally {
      await service.remove().catch(() => undefined)
      stingy.close()
      store.close()
    }
  })
})
