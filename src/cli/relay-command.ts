/**
 * `hearth relay`: a public bootstrap and relay node. It holds the market's offers (so a node joining through it sees
 * them at once), answers dial-backs (so a node learns whether others can dial it), and relays connections to nodes
 * that nobody can dial: providers behind home routers and carrier-grade NATs.
 *
 * It relays for Hearth providers only: a reservation is granted to a peer whose signed offer it holds. Each relayed
 * connection is limited in bytes and time (see RelayLimits in net/host.ts), and reservations in number. Its NAT
 * observer tells nodes their public address, so that two nodes behind NATs punch a direct connection (hole-punch.ts)
 * and bulk traffic leaves the relay; it counts the bytes it relayed (`relayedBytes` in the stopped line).
 */
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { InvalidArgumentError } from 'commander'
import { addressFromPeerId, loadOrCreateIdentity } from '../identity/node-identity.ts'
import { createMarketNode } from '../market/market-node.ts'
import { createHost, defaultRelayLimits } from '../net/host.ts'
import { untilSignal } from './options.ts'

interface CommandIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
}

interface RelayFlags {
  dataDir: string
  listen: string[]
  announce?: string[]
  bootstrap?: string[]
  maxReservations: number
  dataLimitMib: number
  observePorts: [number, number]
  json?: boolean
}

function wholeNumber(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`)
    return n
  }
}

function observePorts(value: string, previous: number[]): [number, number] {
  const port = wholeNumber('--observe-ports', 0, 65535)(value)
  // commander calls this once per value: the default is replaced by the first, the second completes the pair.
  const ports = previous.length === 1 ? [previous[0]!, port] : [port]
  return ports as [number, number]
}

export function registerRelayCommand(program: Command, io: CommandIo, options: { stopSignal?: AbortSignal } = {}): void {
  program
    .command('relay')
    .description('run a public bootstrap and relay node: it holds offers, tells nodes whether they are dialable, and relays to providers behind NATs')
    .option('--data-dir <dir>', 'where the relay keeps its key (the same key keeps the same peer id)', '.hearth/relay')
    .option('--listen <multiaddr...>', 'addresses to listen on', ['/ip4/0.0.0.0/tcp/7691'])
    .option('--announce <multiaddr...>', 'addresses others should dial, when not the listening ones (a public IP, a port forward)')
    .option('--bootstrap <multiaddr...>', 'other relays or nodes of the network to join')
    .option('--max-reservations <n>', 'providers it relays for at once', wholeNumber('--max-reservations', 1, 100_000), defaultRelayLimits.maxReservations)
    .option('--data-limit-mib <n>', 'MiB one relayed connection may carry', wholeNumber('--data-limit-mib', 1, 1_048_576), defaultRelayLimits.dataLimitBytes / 1024 / 1024)
    .option('--observe-ports <ports...>', 'two TCP ports on which nodes behind NATs learn their public address, to punch direct connections (0 0: any free ports)', observePorts, [0, 0])
    .option('--json', 'print only JSON lines on stdout')
    .action(async (flags: RelayFlags) => {
      if (flags.observePorts.length !== 2) throw new InvalidArgumentError('--observe-ports takes two ports, e.g. --observe-ports 3478 3479 (or 0 0 for any free ones)')
      await runRelay(flags, io, options.stopSignal)
    })
}

async function runRelay(flags: RelayFlags, io: CommandIo, stopSignal?: AbortSignal): Promise<void> {
  const log = (line: string): void => void io.stderr.write(`[relay] ${line}\n`)
  const identity = await loadOrCreateIdentity(resolve(flags.dataDir))
  // The market book decides who may reserve: filled below, consulted only once the node runs.
  let holdsOffer: (peer: Parameters<typeof addressFromPeerId>[0]) => boolean = () => false
  const host = await createHost({
    identity,
    listen: flags.listen,
    ...(flags.announce === undefined ? {} : { announce: flags.announce }),
    ...(flags.bootstrap === undefined ? {} : { bootstrap: flags.bootstrap }),
    // A relay is public by its owner's word: it asks nobody to dial it back and reserves on nobody.
    reachability: { mode: 'public', relays: [] },
    relay: {
      maxReservations: flags.maxReservations,
      dataLimitBytes: flags.dataLimitMib * 1024 * 1024,
      observePorts: flags.observePorts,
      allowReservation: (peer) => holdsOffer(peer),
    },
  })
  const market = createMarketNode({ host })
  holdsOffer = (peer) => {
    const entry = market.offerBook.entry(addressFromPeerId(peer).toLowerCase())
    return entry !== undefined && entry.signed.payload.expiresAtMs > Date.now()
  }
  await host.start()
  await market.start()
  const multiaddrs = host.multiaddrs()
  io.stdout.write(`${JSON.stringify({ event: 'ready', peerId: host.peerId.toString(), multiaddrs, pid: process.pid })}\n`)
  if (flags.json !== true) for (const address of multiaddrs) log(`join with --bootstrap ${address}`)

  await untilSignal(new Promise((stopped) => stopSignal?.addEventListener('abort', stopped, { once: true })))
  const reservations = host.relayReservations()
  const offers = market.offerBook.size()
  const relayedBytes = host.metrics().relayedBytes ?? 0
  await market.stop()
  await host.stop()
  io.stdout.write(`${JSON.stringify({ event: 'stopped', reservations, offers, relayedBytes })}\n`)
}
