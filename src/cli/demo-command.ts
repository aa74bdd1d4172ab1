/**
 * `hearth demo`: its options, the external chain it may settle on, and its summary. The demo itself (devnet/demo.ts)
 * loads only when the command runs.
 */
import { Option, type Command } from 'commander'
import { HearthError } from '../errors.ts'
import type { DemoReport } from '../devnet/demo.ts'
import type { CommandIo } from './chain-command.ts'
import { exitCodes, positiveInt, wholeNumber, type SetExitCode } from './options.ts'
import { createProgressPrinter } from './progress.ts'
import { formatPaymentLines } from './report-format.ts'

export function registerDemoCommand(program: Command, io: CommandIo, setExitCode: SetExitCode): void {
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
      if (report.tasks.succeeded !== report.tasks.total || report.image.identicalToLocalRender === false || !report.audit.balanced) setExitCode(exitCodes.failed)
    })
}

/** `--rpc`, `--deployment` and `--funder-key-file` together, or none of them. */
async function externalChain(options: { rpc?: string; deployment?: string; funderKeyFile?: string }) {
  const given = [options.rpc, options.deployment, options.funderKeyFile].filter((o) => o !== undefined).length
  if (given === 0) return undefined
  if (given !== 3) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', 'settling on an external chain needs --rpc, --deployment and --funder-key-file together', {
      hint: 'hearth chain serves a local chain and hearth deploy writes the deployment file',
    })
  }
  // Read before the deployment: a key others can read is refused before anything else is looked at.
  const [{ readKeyFile }, { readDeploymentFile }] = await Promise.all([import('../identity/node-identity.ts'), import('../payment/deploy.ts')])
  const funder = await readKeyFile(options.funderKeyFile!, 'funder key file')
  const deployment = await readDeploymentFile(options.deployment!)
  return { rpcUrl: options.rpc!, deployment, funderKey: funder.privateKey }
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
