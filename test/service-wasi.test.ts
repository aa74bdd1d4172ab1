/**
 * A service whose server is a WASI request handler (one instance per request, CGI-style) on the devnet: deployed as a
 * wasi package fetched from the owner, reached through a gateway and a tunnel, its log read back, and removed.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { parseEther } from 'viem'
import { startDevnet, type Devnet } from '../src/devnet/devnet.ts'
import { compileAssemblyScript } from '../src/exec/assemblyscript-compiler.ts'
import { createGateway, type Gateway } from '../src/requestor/gateway.ts'
import { isHearthError } from '../src/errors.ts'
import { createServices, type Service, type Services } from '../src/requestor/services.ts'

function get(gateway: Gateway, path: string, method = 'GET', body?: Buffer): Promise<{ status: number; body: Buffer; replica: string | undefined }> {
  const { host, port } = gateway.address()
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port, path, method, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), replica: res.headers['x-hearth-replica'] as string | undefined }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('a WASI request handler as a service', { timeout: 300_000 }, () => {
  let devnet: Devnet
  let services: Services
  let service: Service
  let gateway: Gateway
  let module: Uint8Array

  before(async () => {
    const source = await readFile(new URL('../src/exec/testdata/cgi-handler.asc', import.meta.url), 'utf8')
    module = await compileAssemblyScript({ files: { 'handler.ts': source }, entry: 'handler.ts', optimize: false })
    devnet = await startDevnet({
      providers: 2,
      providerServices: true,
      providerPricing: () => ({ model: 'linear', startWei: '0', perCpuSecWei: parseEther('0.001').toString(), perDurationSecWei: parseEther('0.0001').toString() }),
    })
    const { requestor } = devnet
    services = createServices({ host: requestor.host, identity: requestor.identity, store: requestor.store, accounts: requestor.agent.accounts, blobs: requestor.agent.blobs, offerBook: requestor.agent.offerBook })
    await requestor.agent.offerBook.waitFor(2, () => true, { signal: AbortSignal.timeout(60_000) })
    service = await services.deploy({ name: 'greeter', runtime: 'wasi', replicas: { total: 2 }, health: { path: '/hello?name=health', intervalMs: 500, timeoutMs: 5000, failuresBeforeDown: 3 } }, module)
    gateway = await createGateway({ listen: { host: '127.0.0.1', port: 0 }, routes: service.routes(), region: 'any', health: { path: '/hello?name=health' } })
  })

  after(async () => {
    services?.close()
    await gateway?.close()
    await devnet?.stop()
  })

  it('answers from both replicas, and through the gateway with bodies both ways', async () => {
    // Each replica, reached over its own tunnel (the gateway would send a one-at-a-time client to the faster one).
    const routes = service.routes().replicas()
    assert.equal(routes.length, 2)
    for (const route of routes) {
      const socket = await route.connect(AbortSignal.timeout(30_000))
      const answer = await new Promise<string>((resolve, reject) => {
        const req = httpRequest({ path: `/hello?name=${route.id}`, headers: { connection: 'close' }, createConnection: () => socket as never }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('end', () => resolve(Buffer.concat(chunks).toString()))
        })
        req.on('error', reject)
        req.end()
      })
      assert.equal(answer, `Hello, ${route.id}!\n`)
    }
    const ids = service.status().replicas.map((replica) => replica.id)
    for (let i = 0; i < 5; i++) {
      const hello = await get(gateway, `/hello?name=n${i}`)
      assert.equal(hello.status, 200)
      assert.equal(hello.body.toString(), `Hello, n${i}!\n`)
      assert.ok(ids.includes(hello.replica ?? ''), `answered by ${hello.replica}`)
    }
    const body = Buffer.from('a body to turn around')
    const echo = await get(gateway, '/echo', 'POST', body)
    assert.equal(echo.status, 200)
    assert.equal(echo.body.toString(), Buffer.from(body).reverse().toString())
    const missing = await get(gateway, '/nowhere')
    assert.equal(missing.status, 404)
  })

  it('deploys a name once, even when asked twice at the same time', async () => {
    const spec = { name: 'twin', runtime: 'wasi' as const, replicas: { total: 1 }, health: { path: '/hello?name=health' } }
    const [first, second] = await Promise.allSettled([services.deploy(spec, module), services.deploy(spec, module)])
    const deployed = [first, second].filter((outcome) => outcome.status === 'fulfilled')
    const refused = [first, second].filter((outcome) => outcome.status === 'rejected')
    assert.equal(deployed.length, 1)
    assert.ok(refused.length === 1 && isHearthError(refused[0]!.reason, 'HEARTH_ERR_SERVICE_STATE'))
    assert.equal(services.list().filter((status) => status.name === 'twin').length, 1)
    await deployed[0]!.value.remove()
  })

  it('keeps each instance\'s stderr in the replica\'s log, and settles at removal', async () => {
    const hello = await get(gateway, '/hello?name=logged')
    const log = await service.logs(hello.replica!)
    assert.match(log, /GET \/hello/)
    const paid = await service.remove()
    assert.equal(paid.length, 2)
    assert.ok(paid.every((agreement) => agreement.paidWei > 0n), JSON.stringify(paid, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)))
  })
})
