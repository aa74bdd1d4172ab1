/**
 * cli/ owns the `hearth` command: argument parsing, progress on stderr, human summaries or one JSON object on stdout.
 * Commands return an exit code instead of calling process.exit, so tests can run them in process.
 */
import { readFileSync } from 'node:fs'
import { Command, CommanderError, Help, InvalidArgumentError, Option } from 'commander'
import { HearthError, toHearthError, type ErrorCode } from '../errors.ts'
import type { DemoReport } from '../devnet/demo.ts'
import type { RunReport } from '../devnet/run-job.ts'
import type { RequestorNodeInit } from '../requestor/requestor-node.ts'
import type { CommandIo } from './chain-command.ts'
import { createProgressPrinter } from './progress.ts'

/** Errors that mean the input was wrong: exit code 2. A key file others can read, or that holds no key, is one. */
const badInputCodes = new Set<ErrorCode>([
  'HEARTH_ERR_JOB_INVALID',
  'HEARTH_ERR_JOB_INPUT_MISSING',
  'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID',
  'HEARTH_ERR_MARKET_PROPERTIES_INVALID',
  'HEARTH_ERR_CONFIG_INVALID',
  'HEARTH_ERR_IDENTITY_KEY',
])

/** Exit codes: 0 done, 1 failed while running, 2 bad input (nothing was started or paid). */
export const exitCodes = { ok: 0, failed: 1, badInput: 2 } as const

function positiveInt(name: string, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`${name} must be a whole number from 1 to ${max}`)
    return n
  }
}

function wholeNumber(name: string, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < 0 || n > max) throw new InvalidArgumentError(`${name} must be a whole number from 0 to ${max}`)
    return n
  }
}

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
    commands: [{ name: 'payments', term: 'payments [options]', description: 'a node\'s agreements, escrows, debit notes, vouchers, invoices, claims and refunds, from its database' }],
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

  program
    .command('demo')
    .description('start a local network (embedded chain, providers, requestor) and render an image across it')
    .option('--providers <n>', 'number of providers', positiveInt('--providers', 32), 3)
    .option('--tasks <n>', 'number of tiles, one task each', positiveInt('--tasks', 4096), 16)
    .option('--width <px>', 'image width', positiveInt('--width', 8192), 512)
    .option('--height <px>', 'image height', positiveInt('--height', 8192), 384)
    .option('--out <dir>', 'output folder', 'out/demo')
    .addOption(new Option('--pricing <model>', 'how the local providers charge').choices(['per-task', 'linear']).default('per-task'))
    .option('--data-dir <dir>', 'keep the nodes\' keys and databases here (default: a temporary folder)')
    .option('--rpc <url>', 'settle on this EVM chain (JSON-RPC URL) instead of the embedded one; needs --deployment and --funder-key-file')
    .option('--deployment <file>', 'the token and escrow on that chain, as written by hearth deploy')
    .option('--funder-key-file <file>', 'a key file whose account pays the nodes\' gas (and tokens, when the token has no faucet)')
    .option('--bad-providers <k>', 'the K cheapest providers return wrong results half the time', wholeNumber('--bad-providers', 32), 0)
    .option('--json', 'print one JSON report on stdout instead of a summary')
    .action(async (options: { providers: number; tasks: number; width: number; height: number; out: string; pricing: 'per-task' | 'linear'; dataDir?: string; rpc?: string; deployment?: string; funderKeyFile?: string; badProviders: number; json?: boolean }) => {
      const chain = await externalChain(options)
      const { runDemo } = await import('../devnet/demo.ts')
      const progress = createProgressPrinter(io.stderr, { stepsOnly: options.json === true })
      const report = await runDemo({
        providers: options.providers,
        tasks: options.tasks,
        width: options.width,
        height: options.height,
        outDir: options.out,
        pricing: options.pricing,
        ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
        ...(chain === undefined ? {} : { chain }),
        badProviders: options.badProviders,
        onEvent: progress.onEvent,
      })
      progress.done()
      io.stdout.write(options.json === true ? `${JSON.stringify(report)}\n` : formatDemoReport(report))
      // On a network of its own, money that does not balance on chain is a failure like a wrong image.
      if (report.tasks.succeeded !== report.tasks.total || report.image.identicalToLocalRender === false || !report.audit.balanced) exitCode = exitCodes.failed
    })

  program
    .command('run')
    .description('run a job file: on a local network started for it, or on a running network joined with --bootstrap')
    .argument('<jobfile>', 'a JSON job file (kinds: map, mapreduce, sweep, render; see docs/job-kinds.md)')
    .option('--out <dir>', 'output folder', 'out/run')
    .option('--providers <n>', 'number of local providers (or of agreements on a joined network)', positiveInt('--providers', 32), 3)
    .option('--bootstrap <multiaddr...>', 'join a running network through these peers instead of starting a local one')
    .option('--rpc <url>', 'the chain the joined network settles on (JSON-RPC)')
    .option('--deployment <file>', 'the token and escrow deployment (hearth chain --deployment-out, hearth deploy --out)')
    .option('--funder-key-file <file>', 'development chains: a key that pays this node gas and faucet tokens')
    .option('--listen <multiaddr...>', 'joined network: addresses to listen on (default 127.0.0.1: this node dials out)')
    .option('--announce <multiaddr...>', 'joined network: addresses others should dial this node at')
    .option('--data-dir <dir>', 'where this requestor keeps its key and database (needed to --resume)', '.hearth/requestor')
    .option('--resume <job-id>', 'continue a job cut short, from the same job file and --data-dir: done tasks are neither rerun nor paid again')
    .option('--bad-providers <k>', 'local network: the first K providers return wrong results half the time', wholeNumber('--bad-providers', 64))
    .option('--json', 'print one JSON report on stdout instead of a summary')
    .action(async (jobFile: string, options: { out: string; providers: number; bootstrap?: string[]; listen?: string[]; announce?: string[]; rpc?: string; deployment?: string; funderKeyFile?: string; dataDir: string; resume?: string; badProviders?: number; json?: boolean }) => {
      const progress = createProgressPrinter(io.stderr, { stepsOnly: options.json === true })
      const network = await joinedNetwork(options)
      const { runJobFile } = await import('../devnet/run-job.ts')
      const report = await runJobFile({
        jobFile,
        outDir: options.out,
        providers: options.providers,
        onEvent: progress.onEvent,
        ...(options.resume === undefined ? {} : { resume: options.resume }),
        ...(options.badProviders === undefined ? {} : { badProviders: options.badProviders }),
        ...(network === undefined ? {} : { network }),
      })
      progress.done()
      io.stdout.write(options.json === true ? `${JSON.stringify(report)}\n` : formatRunReport(report))
      if (report.tasks.succeeded !== report.tasks.total || report.failures.length > 0) exitCode = exitCodes.failed
      // On a joined network a provider's other business moves its balance too: there the audit informs, it does not fail the run.
      if (network === undefined && !report.audit.balanced) exitCode = exitCodes.failed
    })

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

  program
    .command('devnet')
    .description('run a local network (embedded chain served by JSON-RPC, providers) until interrupted, printing and writing what a joining node needs')
    .option('--providers <n>', 'number of providers', positiveInt('--providers', 64), 3)
    .option('--bad-providers <k>', 'the K cheapest providers return wrong results half the time', wholeNumber('--bad-providers', 64), 0)
    .option('--host <address>', 'the IP address the nodes listen and the chain serves on (default 127.0.0.1: this machine only)', '127.0.0.1')
    .option('--rpc-port <port>', 'the chain\'s JSON-RPC port (0: any free port)', wholeNumber('--rpc-port', 65535), 0)
    .option('--deployment-out <file>', 'write the deployment file (contracts and JSON-RPC URL) a joining node reads', '.hearth/devnet/deployment.json')
    .option('--json', 'print the addresses as one JSON object')
    .action(async (options: { providers: number; badProviders: number; host: string; rpcPort: number; deploymentOut: string; json?: boolean }) => {
      if (options.host === '0.0.0.0' || options.host === '::') {
        throw new HearthError('HEARTH_ERR_CONFIG_INVALID', '--host must be the address other hosts reach this one by, not a wildcard', { hint: 'pass this machine\'s address, e.g. --host 192.168.1.20' })
      }
      const [{ startDevnet }, { writeDeploymentFile }] = await Promise.all([import('../devnet/devnet.ts'), import('../payment/deploy.ts')])
      const devnet = await startDevnet({ providers: options.providers, badProviders: options.badProviders, listenHost: options.host, serveChain: { host: options.host, port: options.rpcPort } })
      const bootstrap = devnet.providers.map((p) => p.host.multiaddrs()[0]!)
      await writeDeploymentFile(options.deploymentOut, devnet.deployment!)
      const rpcUrl = devnet.deployment!.rpcUrl!
      if (options.json === true) {
        io.stdout.write(`${JSON.stringify({ chainId: devnet.chainId, tokenAddress: devnet.tokenAddress, escrowAddress: devnet.escrowAddress, rpcUrl, deploymentFile: options.deploymentOut, funderKeyFile: devnet.funderKeyFile, bootstrap })}\n`)
      } else {
        io.stdout.write(`Local network running: ${options.providers} providers on chain ${devnet.chainId}, JSON-RPC ${rpcUrl}.\n`)
        io.stdout.write(`Deployment written to ${options.deploymentOut}. Join it with:\n`)
        io.stdout.write(`  hearth run JOB.json --deployment ${options.deploymentOut} --bootstrap ${bootstrap[0]} --funder-key-file ${devnet.funderKeyFile}\n`)
        io.stdout.write('Other peers:\n')
        for (const address of bootstrap.slice(1)) io.stdout.write(`  --bootstrap ${address}\n`)
        io.stdout.write('Press Ctrl-C to stop.\n')
      }
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      await devnet.stop()
    })

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
        .action(async () => {
          exitCode = await runCli(argv, io, 'all')
        })
      stubTerms.set(stub, term)
    }
  }
  // Set after the commands were added, so that only the program's own list of commands sees the stubs' terms.
  const plainHelp = new Help()
  program.configureHelp({ subcommandTerm: (command) => stubTerms.get(command) ?? plainHelp.subcommandTerm(command) })

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

/** `hearth run --bootstrap …`: the network to join and the chain it settles on; undefined for a local network. */
async function joinedNetwork(options: { bootstrap?: string[]; listen?: string[]; announce?: string[]; rpc?: string; deployment?: string; funderKeyFile?: string; dataDir: string; resume?: string }): Promise<RequestorNodeInit | undefined> {
  if (options.bootstrap === undefined) {
    if (options.rpc !== undefined || options.deployment !== undefined) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', '--rpc and --deployment are for joining a running network, which needs --bootstrap too', {
        hint: 'add --bootstrap with a provider\'s multiaddr, or leave all three out to run on a local network',
      })
    }
    if (options.resume !== undefined) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', '--resume continues a job on a running network; a local network ends with the job that started it', {
        hint: 'run the job with --bootstrap, --rpc, --deployment and --data-dir, and resume it with the same options',
      })
    }
    return undefined
  }
  if (options.deployment === undefined) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'joining a network needs --deployment: the contracts this requestor pays through', { hint: 'hearth chain --deployment-out FILE writes one' })
  }
  let fund: RequestorNodeInit['fund']
  if (options.funderKeyFile !== undefined) {
    // Read first: a key others can read is refused before anything else is looked at.
    const [{ readKeyFile }, { parseEther }] = await Promise.all([import('../identity/node-identity.ts'), import('viem')])
    const funder = await readKeyFile(options.funderKeyFile, 'funder key file')
    fund = { funderKey: funder.privateKey, gasWei: parseEther('1'), tokensWei: parseEther('100') }
  }
  const { readDeploymentFile } = await import('../payment/deploy.ts')
  const deployment = await readDeploymentFile(options.deployment)
  const rpcUrl = options.rpc ?? deployment.rpcUrl
  if (rpcUrl === undefined) throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `--rpc is needed: ${options.deployment} names no JSON-RPC URL`, { hint: 'pass --rpc URL' })
  return {
    dataDir: options.dataDir,
    bootstrap: options.bootstrap,
    rpcUrl,
    deployment,
    ...(fund === undefined ? {} : { fund }),
    ...(options.listen === undefined ? {} : { listen: options.listen }),
    ...(options.announce === undefined ? {} : { announce: options.announce }),
  }
}

/** `--rpc`, `--deployment` and `--funder-key-file` together, or none of them. */
async function externalChain(options: { rpc?: string; deployment?: string; funderKeyFile?: string }) {
  const given = [options.rpc, options.deployment, options.funderKeyFile].filter((o) => o !== undefined).length
  if (given === 0) return undefined
  if (given !== 3) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'settling on an external chain needs --rpc, --deployment and --funder-key-file together', {
      hint: 'hearth chain serves a local chain and hearth deploy writes the deployment file',
    })
  }
  // Read before the deployment: a key others can read is refused before anything else is looked at.
  const [{ readKeyFile }, { readDeploymentFile }] = await Promise.all([import('../identity/node-identity.ts'), import('../payment/deploy.ts')])
  const funder = await readKeyFile(options.funderKeyFile!, 'funder key file')
  const deployment = await readDeploymentFile(options.deployment!)
  return { rpcUrl: options.rpc!, deployment, funderKey: funder.privateKey }
}

function eth(wei: string): string {
  const value = BigInt(wei)
  const whole = value / 10n ** 18n
  const frac = (value % 10n ** 18n).toString().padStart(18, '0').slice(0, 6)
  return `${whole}.${frac} HTT`
}

function formatPaymentLines(report: DemoReport | RunReport): string[] {
  const lines = ['', 'providers:']
  for (const p of report.providers) {
    const rejected = p.rejected > 0 ? `  rejected ${p.rejected} (unpaid)` : ''
    const delta = p.balanceDeltaWei === null ? '' : `  balance ${BigInt(p.balanceDeltaWei) < 0n ? `-${eth((-BigInt(p.balanceDeltaWei)).toString())}` : `+${eth(p.balanceDeltaWei)}`}`
    const relayed = p.connection === 'relayed' ? '  (reached through a relay)' : p.connection === 'hole-punched' ? '  (direct, hole-punched through both NATs)' : ''
    lines.push(`  ${p.address}  tasks ${String(p.tasks).padStart(4)}  paid ${eth(p.paidWei)}${delta}${rejected}${relayed}`)
  }
  const v = report.verification
  lines.push(
    '',
    `verification: ${v.attempts} runs for the tasks: ${v.checks} checks by a second provider, ${v.retries} retries, ${v.stragglers} stragglers rerun, ` +
      `${v.rejected} results rejected${v.spotChecks > 0 ? `, ${v.spotChecks} spot checks (${v.spotRejected} failed)` : ''}${v.resumed > 0 ? `, ${v.resumed} tasks done before resuming` : ''}`,
  )
  lines.push('', 'agreements (each backed by its own escrow):')
  for (const a of report.agreements) {
    lines.push(
      `  ${a.agreementId.slice(0, 18)}…  ${a.provider.slice(0, 10)}…  deposit ${eth(a.depositWei)}  ${a.vouchers} vouchers for ${eth(a.signedWei)}` +
        `  claimed ${eth(a.paidWei)}  refunded ${eth(a.refundedWei)}`,
      `      open ${a.openTx}`,
      `      ${a.settleTx === null ? 'not settled: the provider did not answer (it may claim later; the rest is refundable after expiry)' : `claim ${a.settleTx}`}`,
    )
  }
  // The figures and the verdict are the chain audit's (events, escrow state, balances), not the requestor's records.
  const { depositedWei, paidWei, refundedWei, lockedWei } = report.payments
  const { audit } = report
  lines.push(
    '',
    `escrow:   deposited ${eth(depositedWei)} = paid ${eth(paidWei)} + refunded ${eth(refundedWei)}` +
      (BigInt(lockedWei) > 0n ? ` + still in escrow ${eth(lockedWei)}` : '') +
      (audit.balanced ? '  (balanced)' : '  (NOT BALANCED)'),
    `audit:    read from the chain at block ${audit.blockNumber}: ${audit.agreements.length} escrows ${audit.escrowsBalanced ? 'balance' : 'DO NOT balance'}, ` +
      `tokens ${audit.tokensConserved ? 'moved only between requestor, providers and escrow' : 'DID NOT stay between requestor, providers and escrow'}; ` +
      `the requestor's records ${audit.recordsMatchChain ? 'agree' : 'DISAGREE'}`,
    ...audit.problems.map((problem) => `  ${problem}`),
    `chain:    ${report.chain.txs} transactions, ${report.chain.gasUsed} gas`,
  )
  for (const tx of report.chain.transactions) lines.push(`  ${tx.label.padEnd(20)} ${tx.hash}  gas ${tx.gasUsed}`)
  return lines
}

export function formatDemoReport(report: DemoReport): string {
  const lines = [
    '',
    `Rendered ${report.image.width}x${report.image.height} in ${report.tasks.total} tiles on ${report.providers.length} providers: ` +
      `${report.tasks.succeeded}/${report.tasks.total} tasks succeeded in ${(report.wallMs / 1000).toFixed(2)} s`,
    `image:    ${report.output ?? 'not written: tiles are missing'}`,
    `check:    ${report.image.identicalToLocalRender === null ? 'not compared' : report.image.identicalToLocalRender ? 'pixel-identical to a render in one process' : 'DIFFERS from a render in one process'}`,
    ...formatPaymentLines(report),
    '',
  ]
  return lines.join('\n')
}

export function formatRunReport(report: RunReport): string {
  const lines = [
    '',
    `Job ${report.job}: ${report.tasks.succeeded}/${report.tasks.total} tasks succeeded in ${(report.wallMs / 1000).toFixed(2)} s`,
    `outputs:  ${report.output}`,
    `job id:   ${report.jobId} (kind ${report.kind})`,
  ]
  // The kind's own figures, where they are plain values (a sweep's best setting, a map-reduce's chunks and bytes).
  const figures = Object.entries(report.summary).filter(([key, value]) => key !== 'kind' && ['string', 'number', 'boolean'].includes(typeof value))
  if (figures.length > 0) lines.push(`summary:  ${figures.map(([key, value]) => `${key} ${String(value)}`).join(', ')}`)
  const best = (report.summary as { best?: unknown }).best
  if (best !== undefined) lines.push(`best:     ${JSON.stringify(best)}`)
  for (const failure of report.failures) lines.push(`  task ${failure.taskIndex} failed: ${failure.message}`)
  lines.push(...formatPaymentLines(report), '')
  return lines.join('\n')
}
