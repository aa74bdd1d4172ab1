/**
 * cli/ owns the `hearth` command: argument parsing, progress on stderr, human summaries or one JSON object on stdout.
 * Commands return an exit code instead of calling process.exit, so tests can run them in process.
 */
import { readFileSync } from 'node:fs'
import { Command, CommanderError, Help } from 'commander'
import { codesWhere, toHearthError } from '../errors.ts'
import type { CommandIo } from './chain-command.ts'
import { registerDemoCommand } from './demo-command.ts'
import { registerDevnetCommand } from './devnet-command.ts'
import { exitCodes, positiveInt, type SetExitCode } from './options.ts'
import { registerRunCommand } from './run-command.ts'

export { exitCodes } from './options.ts'
export { formatDemoReport } from './demo-command.ts'
export { formatRunReport } from './run-command.ts'

/**
 * Errors that mean the input was wrong, exit code 2: the codes the registry puts down to the caller (a command line,
 * configuration, job file or key file, such as one others can read or that holds no key).
 */
const badInputCodes = codesWhere((info) => info.fault === 'caller')

/** A command defined in a module of its own, as `hearth --help` lists it before that module is loaded. */
export interface LazyCommand {
  name: string
  /** Its term in the list of commands (commander's: the name, `[options]` when it has any, its arguments). */
  term: string
  description: string
}

/**
 * The commands defined in modules of their own, in the order `hearth --help` lists them, each module with a loader
 * that returns its register function. A module is loaded only when one of its commands runs (or its help is asked
 * for); until then its commands are stubs with the same terms and descriptions (test/cli.test.ts compares them with
 * the registered ones). `hearth --help` and `--version` so load commander and this file, not libp2p, viem or the chain.
 */
export const lazyCommands: ReadonlyArray<{ commands: readonly LazyCommand[]; load: () => Promise<(program: Command, io: CommandIo) => void> }> = [
  {
    commands: [{ name: 'payments', term: 'payments [options]', description: 'a node\'s agreements, escrows, debit notes, vouchers, invoices, claims and refunds: from the node when it runs, else from its database' }],
    load: async () => (await import('./payments-command.ts')).registerPaymentsCommand,
  },
  {
    commands: [
      { name: 'chain', term: 'chain [options]', description: 'run a development chain on 127.0.0.1 (token + escrow deployed, dev accounts funded) that several processes share' },
      { name: 'deploy', term: 'deploy [options]', description: 'deploy the token and escrow to any EVM chain by JSON-RPC URL, and write a deployment file' },
    ],
    load: async () => (await import('./chain-command.ts')).registerChainCommands,
  },
  {
    commands: [{ name: 'wallet', term: 'wallet [options]', description: "show this node's address and balances; on development chains, mint test tokens" }],
    load: async () => (await import('./wallet-command.ts')).registerWalletCommand,
  },
  {
    commands: [{ name: 'provider', term: 'provider', description: 'lend this machine: configure, start, watch and stop a provider' }],
    load: async () => (await import('./provider-command.ts')).registerProviderCommand,
  },
  {
    commands: [{ name: 'relay', term: 'relay [options]', description: 'run a public bootstrap and relay node: it holds offers, tells nodes whether they are dialable, and relays to providers behind NATs' }],
    load: async () => (await import('./relay-command.ts')).registerRelayCommand,
  },
  {
    commands: [{ name: 'requestor', term: 'requestor', description: 'run a requestor node that keeps running: it owns services, answers their gateways, and may run a gateway' }],
    load: async () => (await import('./requestor-command.ts')).registerRequestorCommand,
  },
  {
    commands: [{ name: 'service', term: 'service', description: 'deploy and run services (long-running servers on providers) through a running requestor node' }],
    load: async () => (await import('./service-command.ts')).registerServiceCommand,
  },
  {
    commands: [{ name: 'store', term: 'store', description: 'store files encrypted and dispersed over providers, through a running requestor node' }],
    load: async () => (await import('./store-command.ts')).registerStoreCommand,
  },
  {
    commands: [{ name: 'ui', term: 'ui [options]', description: 'open the dashboard of the node running from a data directory (the requestor node, or a provider with --provider)' }],
    load: async () => (await import('./ui-command.ts')).registerUiCommand,
  },
  {
    commands: [{ name: 'gateway', term: 'gateway [options]', description: 'serve a service\'s replicas over HTTP(S) as a gateway process of its own, with routes from the owner\'s node' }],
    load: async () => (await import('./gateway-command.ts')).registerGatewayCommand,
  },
]

/**
 * The names that commander may dispatch `argv` to: the program has no options of its own but --help and --version,
 * so it dispatches to its first operand (the arguments before the first one that looks like an option, or all after a
 * leading `--`), or with `help NAME` to its second.
 */
export function invokedCommands(argv: readonly string[]): Set<string> {
  const operands: string[] = []
  for (let i = 0; i < argv.length && operands.length < 2; i++) {
    const arg = argv[i]!
    if (arg === '--') {
      operands.push(...argv.slice(i + 1, i + 1 + 2 - operands.length))
      break
    }
    if (arg.length > 1 && arg.startsWith('-')) break
    operands.push(arg)
  }
  return new Set(operands)
}

/** The package's version, for --version (package.json is two folders up from src/cli/ and from dist/cli/ alike). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
}

export async function main(argv: string[], io: CommandIo = process): Promise<number> {
  return runCli(argv, io, invokedCommands(argv))
}

/** Runs `hearth ARGV`, loading the modules of the lazy commands named in `load` (every one when 'all'). */
async function runCli(argv: string[], io: CommandIo, load: Set<string> | 'all'): Promise<number> {
  const wanted = lazyCommands.filter((entry) => load === 'all' || entry.commands.some((command) => load.has(command.name)))
  const registers = new Map(await Promise.all(wanted.map(async (entry) => [entry, await entry.load()] as const)))
  let exitCode: number = exitCodes.ok
  const program = new Command('hearth')
    .description('Hearth: a peer-to-peer compute marketplace. Lend idle machines, rent them by the task.')
    .version(packageVersion())
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })

  const setExitCode: SetExitCode = (code) => {
    exitCode = code
  }
  registerDemoCommand(program, io, setExitCode)
  registerRunCommand(program, io, setExitCode)
  registerMarketCommands(program, io)
  registerDevnetCommand(program, io)
  registerLazyCommands(program, io, registers, async () => {
    exitCode = await runCli(argv, io, 'all')
  })

  try {
    await program.parseAsync(argv, { from: 'user' })
    return exitCode
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      return error.exitCode === 0 ? exitCodes.ok : exitCodes.badInput
    }
    const hearthError = toHearthError(error)
    io.stderr.write(`\nhearth: ${hearthError.message}\n`)
    const badInput = badInputCodes.has(hearthError.code)
    return badInput ? exitCodes.badInput : exitCodes.failed
  }
}

/** `hearth market offers` and `hearth market match`; market-command.ts loads only when one runs. */
function registerMarketCommands(program: Command, io: CommandIo): void {
  const market = program.command('market').description('the market: offers on the network, and matching')
  market
    .command('offers')
    .description('list the offers on the network now that match a constraint filter')
    .option('--bootstrap <multiaddr...>', 'peers to join through (default: start a local network)', [])
    .option('--constraints <filter>', 'a constraint filter over offer properties, e.g. "(golem.inf.mem.gib>=1)"')
    .option('--providers <n>', 'local providers to start when no --bootstrap is given', positiveInt('--providers', 64), 3)
    .option('--json', 'print one JSON object')
    .action(async (options: { bootstrap: string[]; constraints?: string; providers: number; json?: boolean }) => {
      const { formatOffers, listOffers } = await import('./market-command.ts')
      const result = await listOffers({ bootstrap: options.bootstrap, providers: options.providers, ...(options.constraints === undefined ? {} : { constraints: options.constraints }) })
      io.stdout.write(options.json === true ? `${JSON.stringify(result)}\n` : formatOffers(result))
    })
  market
    .command('match')
    .description('match a demand and an offer both ways: prints yes, no or undefined')
    .requiredOption('--demand <file>', 'JSON: { "properties": {...}, "constraints": "(...)" }')
    .requiredOption('--offer <file>', 'JSON: { "properties": {...}, "constraints": "(...)" }')
    .option('--json', 'print { "result": ... }')
    .action(async (options: { demand: string; offer: string; json?: boolean }) => {
      const { matchFiles } = await import('./market-command.ts')
      const result = await matchFiles(options.demand, options.offer)
      io.stdout.write(options.json === true ? `${JSON.stringify({ result })}\n` : `${result}\n`)
    })
}

/**
 * The lazy commands: registered by their modules where loaded (`registers`), else as stubs with the same terms and
 * descriptions, which `runAll` runs with every module loaded.
 */
function registerLazyCommands(
  program: Command,
  io: CommandIo,
  registers: ReadonlyMap<(typeof lazyCommands)[number], (program: Command, io: CommandIo) => void>,
  runAll: () => Promise<void>,
): void {
  const stubTerms = new Map<Command, string>()
  for (const entry of lazyCommands) {
    const register = registers.get(entry)
    if (register !== undefined) {
      register(program, io)
      continue
    }
    for (const { name, term, description } of entry.commands) {
      // Never dispatched while invokedCommands is right (it must be for `help NAME`, which prints a stub's own help);
      // were it wrong, the command would still run, with every module loaded.
      const stub = program
        .command(name)
        .description(description)
        .helpOption(false)
        .allowUnknownOption()
        .allowExcessArguments()
        .action(runAll)
      stubTerms.set(stub, term)
    }
  }
  // Set after the commands were added, so that only the program's own list of commands sees the stubs' terms.
  const plainHelp = new Help()
  program.configureHelp({ subcommandTerm: (command) => stubTerms.get(command) ?? plainHelp.subcommandTerm(command) })
}
