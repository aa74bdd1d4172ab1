/**
 * Services from the command line, each node its own process: two `hearth provider start --services` on a shared
 * development chain, `hearth requestor start` joining through them (with a gateway of its own), and `hearth gateway`
 * apart from it. `hearth service deploy` puts a static site (busybox httpd in a container image, given as a `docker
 * save` archive next to the service file) on the providers; both gateways serve its page byte for byte; `service
 * ls/status/logs/scale/rm --json` answer what the node runs, and `rm` settles every agreement, as the chain records.
 */
import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Hex } from 'viem'
import { buildContracts } from '../scripts/build-contracts.ts'
import { devAccountKey, startChain, type RunningChain } from '../src/cli/chain-command.ts'
import { capture, hearth } from '../src/cli/testdata/run-cli.ts'
import { hearthProcesses } from './support/hearth-process.ts'
import { saveImageArchive } from '../src/exec/docker-images.ts'
import { createDockerRuntime, type DockerRuntime } from '../src/exec/docker-runtime.ts'
import { importBusyboxImage, startTestEngine, type TestEngine } from '../src/exec/docker-test-image.ts'
import { createChainClient } from '../src/payment/chain-client.ts'
import { getEscrow } from '../src/payment/escrow.ts'
import type { RequestorNodeStatus } from '../src/requestor/requestor-api.ts'
import type { ServiceStatus } from '../src/requestor/services.ts'

const page = 'site-v1\n'


/** `hearth ARGS` as its own process; resolves with its first JSON line whose event is "ready". */
const processes = hearthProcesses()
const startProcess = processes.start

async function getPage(url: string, path: string): Promise<{ status: number; body: string; replica: string | null }> {
  const response = await fetch(`${url}${path}`)
  return { status: response.status, body: await response.text(), replica: response.headers.get('x-hearth-replica') }
}

/** `hearth ARGS --json` in this process: its parsed output, after asserting it succeeded. */
async function json<T>(...args: string[]): Promise<T> {
  const result = await hearth([...args, '--json'])
  assert.equal(result.code, 0, `hearth ${args.join(' ')}: ${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

describe('hearth requestor, service and gateway, each node its own process', { timeout: 600_000 }, () => {
  let dir: string
  let chain: RunningChain
  let engine: TestEngine
  let docker: DockerRuntime
  let requestorDir: string
  let requestor: Awaited<ReturnType<typeof startProcess>>
  let gatewayUrl: string
  let nodeGatewayUrl: string
  let requestorArgs: string[]
  const deploymentFile = () => join(dir, 'deployment.json')

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-service-cli-'))
    await buildContracts()
    chain = await startChain({ port: 0, accounts: 3, deploymentOut: deploymentFile() }, capture().io)
    engine = await startTestEngine(join(dir, 'engine'))
    docker = createDockerRuntime({ socketPath: engine.socketPath })
    const imageId = await importBusyboxImage(docker, join(dir, 'rootfs'), 'site-v1')
    await saveImageArchive(docker, imageId, join(dir, 'site.tar'))

    // Two providers hosting services, paid by time; dev accounts 1 and 2 hold their gas.
    const providers: Record<string, unknown>[] = []
    for (const index of [1, 2]) {
      const dataDir = join(dir, `provider-${index}`)
      await mkdir(dataDir, { recursive: true, mode: 0o700 })
      await writeFile(join(dataDir, 'node.key'), `${devAccountKey(index)}\n`, { mode: 0o600 })
      await chmod(join(dataDir, 'node.key'), 0o600)
      const started = await startProcess([
        'provider', 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-idle', '--deployment', deploymentFile(),
        '--threads', '1', '--memory-gib', '1', '--disk-gib', '2', '--services', '--docker-socket', engine.socketPath,
        '--pricing-model', 'linear', '--start-htt', '0', '--per-cpu-hour-htt', '3.6', '--per-hour-htt', '0.36',
      ])
      providers.push(started.ready)
    }
    const funderKeyFile = join(dir, 'funder.key')
    await writeFile(funderKeyFile, `${devAccountKey(0)}\n`, { mode: 0o600 })
    await chmod(funderKeyFile, 0o600)
    requestorDir = join(dir, 'requestor')
    requestorArgs = [
      'requestor', 'start', '--data-dir', requestorDir, '--deployment', deploymentFile(), '--funder-key-file', funderKeyFile,
      '--bootstrap', ...providers.map((ready) => (ready['multiaddrs'] as string[])[0]!),
      '--gateway', '127.0.0.1:0', '--gateway-service', 'site', '--health-path', '/hearth-variant',
    ]
    requestor = await startProcess(requestorArgs)
    nodeGatewayUrl = (requestor.ready['gateways'] as { url: string }[])[0]!.url
    // Both offers in the node's book before anything is deployed.
    for (let i = 0; (await json<RequestorNodeStatus>('requestor', 'status', '--data-dir', requestorDir)).offers < 2; i++) {
      assert.ok(i < 300, 'the providers\' offers did not reach the requestor node')
      await new Promise((done) => setTimeout(done, 200))
    }
  })

  after(async () => {
    processes.killAll()
    await docker?.close()
    await engine?.stop()
    await chain?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('deploys the site from a service file; the node\'s gateway and a gateway process serve its page', async () => {
    const gatewayDir = join(dir, 'gateway')
    const printed = await hearth(['gateway', '--print-address', '--data-dir', gatewayDir])
    assert.equal(printed.code, 0, printed.stderr)
    const gatewayAddress = (JSON.parse(printed.stdout) as { address: string }).address
    const serviceFile = join(dir, 'site.json')
    await writeFile(serviceFile, JSON.stringify({
      name: 'site',
      version: 'v1',
      runtime: 'docker',
      image: 'site.tar',
      port: 8080,
      args: ['httpd', '-f', '-p', '${PORT}', '-h', '/etc'],
      replicas: { total: 2 },
      health: { path: '/hearth-variant', intervalMs: 1000, timeoutMs: 5000, failuresBeforeDown: 3 },
      gateways: [gatewayAddress],
    }))
    // A file with a wrong field is the caller's fault, refused before the node is asked.
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ name: 'Bad Name', runtime: 'docker', image: 'site.tar' }))
    const bad = await hearth(['service', 'deploy', join(dir, 'bad.json'), '--data-dir', requestorDir])
    assert.equal(bad.code, 2, bad.stderr)
    assert.match(bad.stderr, /name: expected lower-case letters/)

    const deployed = await json<ServiceStatus>('service', 'deploy', serviceFile, '--data-dir', requestorDir)
    assert.equal(deployed.name, 'site')
    assert.equal(deployed.wanted, 2)
    assert.equal(deployed.replicas.length, 2)
    assert.ok(deployed.replicas.every((replica) => replica.state === 'serving' && replica.version === 'v1'), JSON.stringify(deployed))
    assert.equal(new Set(deployed.replicas.map((replica) => replica.provider.toLowerCase())).size, 2, 'one replica per provider')

    const gateway = await startProcess([
      'gateway', '--owner', (requestor.ready['multiaddrs'] as string[])[0]!, '--service', 'site', '--listen', '127.0.0.1:0',
      '--region', 'eu', '--data-dir', gatewayDir, '--health-path', '/hearth-variant',
    ])
    assert.equal(gateway.ready['address'], gatewayAddress)
    gatewayUrl = gateway.ready['url'] as string
    const replicaIds = new Set(deployed.replicas.map((replica) => replica.id))
    for (const url of [gatewayUrl, nodeGatewayUrl]) {
      let answer = await getPage(url, '/hearth-variant')
      // The gateway process learns the routes from the owner: until its first answer, it has no replica.
      for (let i = 0; answer.status !== 200 && i < 100; i++) {
        await new Promise((done) => setTimeout(done, 200))
        answer = await getPage(url, '/hearth-variant')
      }
      assert.equal(answer.status, 200, `${url}: ${answer.body}`)
      assert.equal(answer.body, page)
      assert.ok(replicaIds.has(answer.replica ?? ''), `${url} answered from ${answer.replica}`)
    }
  })

  it('lists, shows, reads the logs of, and scales the service', async () => {
    const list = await json<ServiceStatus[]>('service', 'ls', '--data-dir', requestorDir)
    assert.deepEqual(list.map((service) => service.name), ['site'])
    const status = await json<ServiceStatus>('service', 'status', 'site', '--data-dir', requestorDir)
    assert.equal(status.replicas.filter((replica) => replica.inRotation).length, 2)
    const first = status.replicas[0]!
    const logs = await json<{ replica: string; log: string }[]>('service', 'logs', 'site', '--replica', first.id, '--tail', '4096', '--data-dir', requestorDir)
    assert.deepEqual(logs.map((entry) => entry.replica), [first.id])
    assert.equal(typeof logs[0]!.log, 'string')

    const unknown = await hearth(['service', 'status', 'nope', '--data-dir', requestorDir])
    assert.equal(unknown.code, 2, unknown.stderr)
    assert.match(unknown.stderr, /no service nope/)

    const scaled = await json<ServiceStatus>('service', 'scale', 'site', '--total', '1', '--data-dir', requestorDir)
    assert.equal(scaled.wanted, 1)
    assert.equal(scaled.replicas.length, 1)
    const answer = await getPage(nodeGatewayUrl, '/hearth-variant')
    assert.equal(answer.status, 200, answer.body)
    assert.equal(answer.body, page)
    assert.equal(answer.replica, scaled.replicas[0]!.id)
  })

  it('takes its services up again after a restart: the replica served on meanwhile, and serves through the new node', async () => {
    const before = await json<ServiceStatus>('service', 'status', 'site', '--data-dir', requestorDir)
    const stopped = await hearth(['requestor', 'stop', '--data-dir', requestorDir, '--json'])
    assert.equal(stopped.code, 0, stopped.stderr)
    assert.equal(await requestor.exited, 0, requestor.stderr())
    requestor = await startProcess(requestorArgs)
    // Logged before the ready line; stderr may arrive a moment after stdout.
    for (let i = 0; i < 50 && !/service site taken up again/.test(requestor.stderr()); i++) await new Promise((done) => setTimeout(done, 100))
    assert.match(requestor.stderr(), /service site taken up again: 1 of 1 replicas still serving/)
    nodeGatewayUrl = (requestor.ready['gateways'] as { url: string }[])[0]!.url
    const after = await json<ServiceStatus>('service', 'status', 'site', '--data-dir', requestorDir)
    assert.deepEqual(after.replicas.map((r) => [r.id, r.activityId, r.agreementId, r.state]), before.replicas.map((r) => [r.id, r.activityId, r.agreementId, 'serving']))
    let answer = await getPage(nodeGatewayUrl, '/hearth-variant')
    for (let i = 0; answer.status !== 200 && i < 100; i++) {
      await new Promise((done) => setTimeout(done, 200))
      answer = await getPage(nodeGatewayUrl, '/hearth-variant')
    }
    assert.equal(answer.status, 200, answer.body)
    assert.equal(answer.body, page)
    assert.equal(answer.replica, before.replicas[0]!.id)
  })

  it('removes the service, settling every agreement as the chain records, and stops the node', async () => {
    const removed = await json<{ name: string; paid: { agreementId: string; paidWei: string }[] }>('service', 'rm', 'site', '--data-dir', requestorDir)
    assert.equal(removed.name, 'site')
    assert.ok(removed.paid.length >= 2, JSON.stringify(removed))
    const status = await json<RequestorNodeStatus>('requestor', 'status', '--data-dir', requestorDir)
    assert.deepEqual(status.services, [])
    const client = createChainClient({ transport: chain.url, privateKey: devAccountKey(0), chainId: chain.chainId })
    const payment = { client, tokenAddress: chain.deployment.tokenAddress, escrowAddress: chain.deployment.escrowAddress }
    let total = 0n
    for (const { agreementId, paidWei } of removed.paid) {
      const escrow = await getEscrow(payment, { requestorAddress: status.address as Hex, agreementId: agreementId as Hex })
      assert.equal(escrow?.claimedWei.toString(), paidWei, `agreement ${agreementId}: paid as the chain records`)
      total += BigInt(paidWei)
    }
    assert.ok(total > 0n, 'uptime was paid for')

    const stopped = await hearth(['requestor', 'stop', '--data-dir', requestorDir, '--json'])
    assert.equal(stopped.code, 0, stopped.stderr)
    assert.equal(await requestor.exited, 0, requestor.stderr())
    const gone = await hearth(['service', 'ls', '--data-dir', requestorDir])
    assert.equal(gone.code, 1)
    assert.match(gone.stderr, /the requestor node is not running/)
  })
})
