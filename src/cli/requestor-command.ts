/**
 * `hearth requestor start|status|stop`: a requestor node that keeps running, joined to a network as `hearth run
 * --bootstrap` joins it, owning services (`hearth service …` reach it through its local API), answering the gateways
 * its services list, and optionally running a gateway for one service itself (`--gateway HOST:PORT
 * --gateway-service NAME`), which serves once that service exists.
 *
 * `start` prints one JSON line on stdout once the node is up, for scripts:
 *   {"event":"ready","peerId":"…","address":"0x…","multiaddrs":["/ip4/…/p2p/…"],"pid":123,"dataDir":"…","api":"http://127.0.0.1:…","gateways":[…]}
 * and one more when it has stopped: {"event":"stopped"}. Everything else goes to stderr.
 */
import { join, resolve } from 'node:path'
import { InvalidArgumentError, type Command } from 'commander'
import { parseEther } from 'viem'
import { HearthError } from '../errors.ts'
import type { Gateway, GatewayRoutes } from '../requestor/gateway.ts'
import type { Services } from '../requestor/services.ts'
import type { CommandIo } from './chain-command.ts'
import { gatewaySettings, listenAddress, type GatewayFlags } from './gateway-command.ts'
import { positiveInt, untilSignal } from './options.ts'

const defaultDataDir = '.hearth/requestor'

interface StartFlags extends GatewayFlags {
  dataDir: string
  bootstrap?: string[]
  rpc?: string
  deployment?: string
  funderKeyFile?: string
  listen?: string[]
  announce?: string[]
  gateway?: { host: string; port: number }
  gatewayService?: string
  gatewayRegion: string
  storageCode: { k: number; m: number }
  auditEvery: number
  repairAt?: number
  storageRegions?: string[]
  storageMaxPrice?: string
  storageConstraints?: string
}

/** `--storage-max-price`: HTT per GiB-hour, in wei. */
function storagePrice(value: string): bigint {
  if (!/^\d+(\.\d{1,18})?$/.test(value)) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `--storage-max-price ${value} is not an amount of HTT like 0.0001`)
  return parseEther(value)
}

/** `4+2`: k data pieces and m parity pieces, within what the erasure code supports. */
function storageCode(value: string): { k: number; m: number } {
  const match = /^(\d{1,2})\+(\d)$/.exec(value)
  const k = Number(match?.[1])
  const m = Number(match?.[2])
  if (match === null || k < 1 || k > 24 || m < 1 || m > 6) throw new InvalidArgumentError('expected K+M: 1 to 24 data pieces and 1 to 6 parity pieces, e.g. 4+2')
  return { k, m }
}

/** The routes of service `name` as this node runs it now: none until it exists, the current replicas after. */
function routesOf(services: Services, name: string): GatewayRoutes {
  return {
    replicas: () => services.get(name)?.routes().replicas() ?? [],
    reportDown: (replicaId, reason) => services.get(name)?.routes().reportDown?.(replicaId, reason),
    healthPath: () => services.get(name)?.spec().health.path,
  }
}

/** The node's own gateway: listening at once, answering 503 until the service has replicas in rotation. */
async function startGateway(flags: StartFlags, services: Services, log: (line: string) => void): Promise<{ gateway: Gateway; url: string; service: string } | undefined> {
  if (flags.gateway === undefined) return undefined
  const name = flags.gatewayService
  if (name === undefined) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', '--gateway needs --gateway-service: the service it serves')
  const settings = await gatewaySettings({ ...flags, region: flags.gatewayRegion })
  const { createGateway } = await import('../requestor/gateway.ts')
  const gateway = await createGateway({
    listen: flags.gateway,
    routes: routesOf(services, name),
    region: flags.gatewayRegion,
    regions: settings.regions,
    ...(flags.healthPath === undefined ? {} : { health: { path: flags.healthPath } }),
    ...(settings.tls === undefined ? {} : { tls: settings.tls }),
  })
  const bound = gateway.address()
  const url = `${settings.tls === undefined ? 'http' : 'https'}://${bound.host.includes(':') ? `[${bound.host}]` : bound.host}:${bound.port}`
  log(`gateway for ${name} at ${url} (region ${flags.gatewayRegion})${services.get(name) === undefined ? '; it serves once the service is deployed' : ''}`)
  return { gateway, url, service: name }
}

export async function runRequestorStart(flags: StartFlags, io: CommandIo, stopSignal?: AbortSignal): Promise<void> {
  const dataDir = resolve(flags.dataDir)
  const log = (line: string): void => void io.stderr.write(`[requestor] ${line}\n`)
  if (flags.bootstrap === undefined) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', 'a requestor node joins a running network: --bootstrap is needed', { hint: 'pass --bootstrap with a provider\'s multiaddr, --deployment and, on a dev chain, --funder-key-file' })
  }
  const [{ joinedNetwork }, { ensureSoleRequestor }, { createRequestorWeb }, { startRequestorNode }, { createServices }, { serveServiceRoutes }, { startNodeStorage }] = await Promise.all([
    import('./run-command.ts'),
    import('../requestor/requestor-api.ts'),
    import('../api/requestor-web.ts'),
    import('../requestor/requestor-node.ts'),
    import('../requestor/services.ts'),
    import('../requestor/service-routes.ts'),
    import('../requestor/node-storage.ts'),
  ])
  if (flags.repairAt !== undefined && (flags.repairAt < flags.storageCode.k || flags.repairAt >= flags.storageCode.k + flags.storageCode.m)) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `--repair-at ${flags.repairAt} is outside ${flags.storageCode.k} to ${flags.storageCode.k + flags.storageCode.m - 1}`, {
      hint: 'repair must start while at least k pieces are left (below k the file is lost) and before all n are',
    })
  }
  await ensureSoleRequestor(dataDir)
  const network = (await joinedNetwork({ ...flags, dataDir }))!
  const node = await startRequestorNode(network)
  const stops: (() => Promise<unknown> | unknown)[] = [() => node.stop()]
  try {
    const { host, identity, requestor } = node
    const web = createRequestorWeb(node, dataDir)
    stops.push(() => web.close())
    const services = createServices({
      host,
      identity,
      store: node.store,
      accounts: requestor.accounts,
      blobs: requestor.blobs,
      offerBook: requestor.offerBook,
      onEvent: (event) => {
        log(`service ${event.service} replica ${event.replica} ${event.type}: ${event.detail}`)
        web.events.publish({ topic: 'service', data: event })
      },
      packageDir: join(dataDir, 'services'),
      log,
      directLinks: flags.directLinks,
    })
    stops.push(() => services.close())
    // The services this node owned when it last stopped: their replicas kept running meanwhile.
    for (const status of await services.restore()) {
      log(`service ${status.name} taken up again: ${status.replicas.filter((r) => r.state === 'serving').length} of ${status.replicas.length} replicas still serving`)
    }
    await serveServiceRoutes(host, services)
    const { createReputationBook } = await import('../requestor/reputation.ts')
    // Audits count in the same record of providers as results do (the node's database).
    const storage = await startNodeStorage({ host, identity, store: node.store, accounts: requestor.accounts, blobs: requestor.blobs, offerBook: requestor.offerBook, reputation: createReputationBook(node.store) }, dataDir, log, {
      code: flags.storageCode,
      ...(flags.storageRegions === undefined ? {} : { regions: flags.storageRegions }),
      ...(flags.storageMaxPrice === undefined ? {} : { maxPerGibHourWei: storagePrice(flags.storageMaxPrice) }),
      ...(flags.storageConstraints === undefined ? {} : { constraints: flags.storageConstraints }),
      upkeep: { auditEveryMs: flags.auditEvery * 1000, ...(flags.repairAt === undefined ? {} : { repairAt: flags.repairAt }) },
    })
    stops.push(() => storage.stop())
    const gateway = await startGateway(flags, services, log)
    if (gateway !== undefined) stops.push(() => gateway.gateway.close())
    const startedAtMs = Date.now()
    let requestStop!: () => void
    const stopRequested = new Promise<void>((done) => (requestStop = done))
    stopSignal?.addEventListener('abort', () => requestStop(), { once: true })
    const gateways = gateway === undefined ? [] : [{ service: gateway.service, url: gateway.url }]
    // The addresses printed are what gateways dial: those announced once the first reachability check has ended (an
    // address outside the private ranges is announced only once a peer dialled it back).
    await host.reachabilitySettled({ signal: AbortSignal.timeout(30_000) }).catch(() => log('the reachability check has not ended within 30 s: the addresses below may grow'))
    const info = { peerId: host.peerId.toString(), address: identity.address, multiaddrs: host.multiaddrs(), startedAtMs, gateways }
    const api = await web.serve({ dataDir, info, services, storage: storage.api, offers: () => requestor.offerBook.size(), stop: () => requestStop() })
    stops.push(() => api.close())
    io.stdout.write(`${JSON.stringify({ event: 'ready', peerId: info.peerId, address: info.address, multiaddrs: info.multiaddrs, pid: process.pid, dataDir, api: api.url, gateways })}\n`)
    log(`${identity.address} joined through ${network.bootstrap.length} peers; local API ${api.url}`)
    for (const address of info.multiaddrs) log(`gateways reach this node at --owner ${address}`)
    await untilSignal(stopRequested)
    const running = services.list()
    if (running.length > 0) log(`stopping; replicas of ${running.map((s) => s.name).join(', ')} keep running until their agreements end (remove services first with hearth service rm)`)
  } finally {
    for (const step of stops.reverse()) await Promise.resolve(step()).catch(() => undefined)
  }
  io.stdout.write(`${JSON.stringify({ event: 'stopped' })}\n`)
}

/** Asks the node to stop and waits until its process has gone. */
async function runRequestorStop(flags: { dataDir: string; json?: boolean }, io: CommandIo, timeoutMs = 60_000): Promise<void> {
  const { callRequestorApi, readRequestorApiInfo } = await import('../requestor/requestor-api.ts')
  const { processAlive } = await import('../net/local-api-server.ts')
  const info = await readRequestorApiInfo(flags.dataDir)
  await callRequestorApi(flags.dataDir, 'stop')
  const deadline = Date.now() + timeoutMs
  // The node removes its status file once it has closed.
  while (Date.now() < deadline && info !== undefined && processAlive(info.pid) && (await readRequestorApiInfo(flags.dataDir)) !== undefined) await new Promise((r) => setTimeout(r, 200))
  const done = (await readRequestorApiInfo(flags.dataDir)) === undefined
  io.stdout.write(flags.json === true ? `${JSON.stringify({ stopped: done, pid: info?.pid ?? null })}\n` : done ? `Requestor node ${info?.pid ?? ''} stopped.\n` : `Requestor node ${info?.pid ?? ''} is still stopping.\n`)
  if (!done) throw new HearthError('HEARTH_ERR_NET_TIMEOUT', `the requestor node did not stop within ${timeoutMs / 1000} s`)
}

export function registerRequestorCommand(program: Command, io: CommandIo, options: { stopSignal?: AbortSignal } = {}): void {
  const requestor = program.command('requestor').description('run a requestor node that keeps running: it owns services, answers their gateways, and may run a gateway')
  requestor
    .command('start')
    .description('join a network and run until Ctrl-C, SIGTERM or hearth requestor stop')
    .option('--data-dir <dir>', 'this node\'s key, database and API key', defaultDataDir)
    .option('--bootstrap <multiaddr...>', 'peers to join through')
    .option('--rpc <url>', 'the chain the network settles on (JSON-RPC; default: from the deployment file)')
    .option('--deployment <file>', 'the token and escrow deployment (hearth chain --deployment-out, hearth deploy --out)')
    .option('--funder-key-file <file>', 'development chains: a key that pays this node gas and faucet tokens')
    .option('--listen <multiaddr...>', 'libp2p addresses to listen on (default 127.0.0.1; gateways on other machines need one they reach)')
    .option('--announce <multiaddr...>', 'addresses others should dial this node at')
    .option('--gateway <host:port>', 'also run a gateway for --gateway-service here', listenAddress)
    .option('--gateway-service <name>', 'the service the gateway serves (it serves once the service is deployed)')
    .option('--gateway-region <region>', 'the gateway\'s region: that of clients the regions table does not place', 'any')
    .option('--regions <file>', 'JSON: CIDR prefix → region, for the gateway')
    .option('--region-header <name>', 'a request header naming the client\'s region (set by a CDN in front; trusted)')
    .option('--health-path <path>', 'the path the gateway checks replicas at (default: the service\'s health.path)')
    .option('--tls-cert <file>', 'PEM certificate: the gateway serves HTTPS')
    .option('--tls-key <file>', 'PEM private key of the certificate')
    .option('--no-direct-links', 'reach replicas only through libp2p tunnels, never over the TCP and TLS links their providers offer')
    .option('--storage-code <k+m>', 'stored files: k data pieces, m parity pieces (any k give a file back; a region may hold m)', storageCode, { k: 4, m: 2 })
    .option('--audit-every <sec>', 'how often each stored piece is audited, seconds', positiveInt('--audit-every', 86_400), 600)
    .option('--storage-regions <regions...>', 'regions pieces may go to (default: any; a region holds at most m pieces of a file)')
    .option('--storage-max-price <htt>', 'the most a storage provider may ask, HTT per GiB-hour')
    .option('--storage-constraints <filter>', 'a filter over storage offers, e.g. "(golem.node.geo.country_code=DE)"')
    .option('--repair-at <pieces>', 'rebuild a file\'s missing pieces once it has this many or fewer left (default: k + m - 1, at the first loss)', positiveInt('--repair-at', 30))
    .action(async (flags: StartFlags) => {
      await runRequestorStart({ ...flags, region: flags.gatewayRegion }, io, options.stopSignal)
    })
  requestor
    .command('status')
    .description('the running node: its addresses and its services')
    .option('--data-dir <dir>', 'the node\'s folder', defaultDataDir)
    .option('--json', 'print one JSON object')
    .action(async (flags: { dataDir: string; json?: boolean }) => {
      const { callRequestorApi } = await import('../requestor/requestor-api.ts')
      const { formatNodeStatus } = await import('./service-format.ts')
      const status = await callRequestorApi(flags.dataDir, 'status', undefined, { timeoutMs: 10_000 })
      io.stdout.write(flags.json === true ? `${JSON.stringify(status)}\n` : formatNodeStatus(status as never))
    })
  requestor
    .command('stop')
    .description('stop the running node (services\' replicas keep running until removed or their agreements end)')
    .option('--data-dir <dir>', 'the node\'s folder', defaultDataDir)
    .option('--json', 'print one JSON object')
    .action(async (flags: { dataDir: string; json?: boolean }) => {
      await runRequestorStop(flags, io)
    })
}
