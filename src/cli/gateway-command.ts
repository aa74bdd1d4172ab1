/**
 * `hearth gateway`: a service's public HTTP(S) endpoint as a process of its own, apart from the owner's node (one per
 * region, on another machine if need be). It asks the owner's node (`--owner`) which replicas of the service are in
 * rotation and reaches each straight at its provider; the owner answers, and providers let it in, only when the
 * service's spec lists this gateway's address in `gateways` (`hearth gateway --print-address` prints it).
 *
 * Prints one JSON line once it serves, for scripts:
 *   {"event":"ready","address":"0x…","peerId":"…","url":"http://127.0.0.1:8080","service":"site","region":"eu","pid":123}
 * and serves until SIGINT or SIGTERM. Also here: what `hearth requestor start --gateway` shares with it.
 */
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { InvalidArgumentError, type Command } from 'commander'
import { HearthError, toHearthError } from '../errors.ts'
import type { GatewayRegionsInit } from '../requestor/gateway.ts'
import type { CommandIo } from './chain-command.ts'
import { untilSignal } from './options.ts'

/** `HOST:PORT` (an IPv6 host in brackets) as the gateway listens on it. */
export function listenAddress(value: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value)
  const port = Number(match?.[3])
  if (match === null || port > 65_535) throw new InvalidArgumentError('expected HOST:PORT, e.g. 0.0.0.0:8080 or [::]:8443')
  return { host: match[1] ?? match[2]!, port }
}

export interface GatewayFlags {
  region: string
  regions?: string
  regionHeader?: string
  tlsCert?: string
  tlsKey?: string
  healthPath?: string
  /** Reach replicas over direct links where the providers are reached directly (replica-link.ts); false: tunnels only. */
  directLinks: boolean
}

/** The region table (JSON: CIDR → region) and header, and TLS, as createGateway takes them. */
export async function gatewaySettings(flags: GatewayFlags): Promise<{ regions: GatewayRegionsInit; tls?: { cert: Buffer; key: Buffer } }> {
  let table: Record<string, string> | undefined
  if (flags.regions !== undefined) {
    const text = await readFile(flags.regions, 'utf8').catch((cause: unknown) => {
      throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `cannot read the regions file ${flags.regions}`, { cause })
    })
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = undefined
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string')) {
      throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `${flags.regions} is not a regions file: expected a JSON object of CIDR prefix → region, e.g. {"10.0.0.0/8": "eu"}`)
    }
    table = parsed as Record<string, string>
  }
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', '--tls-cert and --tls-key go together', { hint: 'give both PEM files, or neither for plain HTTP' })
  }
  const tls = flags.tlsCert === undefined ? undefined : { cert: await readFile(flags.tlsCert), key: await readFile(flags.tlsKey!) }
  return {
    regions: { ...(table === undefined ? {} : { table }), ...(flags.regionHeader === undefined ? {} : { regionHeader: flags.regionHeader.toLowerCase() }) },
    ...(tls === undefined ? {} : { tls }),
  }
}


interface Flags extends GatewayFlags {
  owner?: string
  service?: string
  listen: { host: string; port: number }
  p2pListen?: string[]
  dataDir: string
  printAddress?: boolean
}

export async function runGateway(flags: Flags, io: CommandIo, stopSignal?: AbortSignal): Promise<void> {
  const dataDir = resolve(flags.dataDir)
  const [{ loadOrCreateIdentity }, { mkdir }] = await Promise.all([import('../identity/node-identity.ts'), import('node:fs/promises')])
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const identity = await loadOrCreateIdentity(dataDir)
  if (flags.printAddress === true) {
    io.stdout.write(`${JSON.stringify({ address: identity.address, dataDir })}\n`)
    return
  }
  if (flags.owner === undefined || flags.service === undefined) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', 'a gateway needs --owner (the owner node\'s multiaddr) and --service', { hint: 'hearth requestor start prints the owner\'s multiaddrs' })
  }
  const settings = await gatewaySettings(flags)
  const log = (line: string): void => void io.stderr.write(`[gateway] ${line}\n`)
  const [{ createHost }, { createGateway }, { remoteRoutes }] = await Promise.all([
    import('../net/host.ts'),
    import('../requestor/gateway.ts'),
    import('../requestor/service-routes.ts'),
  ])
  const host = await createHost({ identity, bootstrap: [flags.owner], ...(flags.p2pListen === undefined ? {} : { listen: flags.p2pListen }) })
  await host.start()
  try {
    // The owner may not run the service yet, or not list this gateway yet: asked again until it answers.
    let routes: Awaited<ReturnType<typeof remoteRoutes>> | undefined
    let lastError = ''
    while (routes === undefined) {
      try {
        routes = await remoteRoutes(host, flags.owner, flags.service, { onError: (error) => log(`asking the owner failed: ${error.shortMessage}`), directLinks: flags.directLinks, log })
      } catch (error) {
        const why = toHearthError(error).shortMessage
        if (why !== lastError) log(`waiting for the owner to serve ${flags.service} to ${identity.address}: ${why}`)
        lastError = why
        if (stopSignal?.aborted === true) return
        await new Promise((done) => setTimeout(done, 1_000))
      }
    }
    const gateway = await createGateway({
      listen: flags.listen,
      routes,
      region: flags.region,
      regions: settings.regions,
      ...(flags.healthPath === undefined ? {} : { health: { path: flags.healthPath } }), ...(settings.tls === undefined ? {} : { tls: settings.tls }) })
    const bound = gateway.address()
    const url = `${settings.tls === undefined ? 'http' : 'https'}://${bound.host.includes(':') ? `[${bound.host}]` : bound.host}:${bound.port}`
    io.stdout.write(`${JSON.stringify({ event: 'ready', address: identity.address, peerId: host.peerId.toString(), url, service: flags.service, region: flags.region, pid: process.pid })}\n`)
    log(`${flags.service} at ${url} (region ${flags.region}), routes from ${flags.owner}`)
    const stopRequested = stopSignal === undefined ? new Promise<void>(() => undefined) : new Promise<void>((done) => stopSignal.addEventListener('abort', () => done(), { once: true }))
    await untilSignal(stopRequested)
    routes.close()
    await gateway.close()
    io.stdout.write(`${JSON.stringify({ event: 'stopped' })}\n`)
  } finally {
    await host.stop()
  }
}

export function registerGatewayCommand(program: Command, io: CommandIo): void {
  program
    .command('gateway')
    .description('serve a service\'s replicas over HTTP(S) as a gateway process of its own, with routes from the owner\'s node')
    .option('--owner <multiaddr>', 'the owner\'s requestor node (hearth requestor start prints its multiaddrs)')
    .option('--service <name>', 'the service to serve')
    .option('--listen <host:port>', 'where clients connect', listenAddress, { host: '127.0.0.1', port: 8080 })
    .option('--region <region>', 'this gateway\'s region: that of clients the regions table does not place', 'any')
    .option('--regions <file>', 'JSON: CIDR prefix → region, e.g. {"10.0.0.0/8": "eu"}')
    .option('--region-header <name>', 'a request header naming the client\'s region (set by a CDN in front; trusted)')
    .option('--tls-cert <file>', 'PEM certificate: serve HTTPS')
    .option('--tls-key <file>', 'PEM private key of the certificate')
    .option('--health-path <path>', 'the path the gateway checks each replica\'s health at (default: the service\'s health.path, from its owner)')
    .option('--no-direct-links', 'reach replicas only through libp2p tunnels, never over the TCP and TLS links their providers offer')
    .option('--p2p-listen <multiaddr...>', 'libp2p addresses to listen on (default 127.0.0.1: the gateway dials out)')
    .option('--data-dir <dir>', 'the gateway\'s key: its address is what the service lists in gateways', '.hearth-gateway')
    .option('--print-address', 'print this gateway\'s address (to list in the service\'s gateways) and exit')
    .action(async (flags: Flags) => {
      await runGateway(flags, io)
    })
}
