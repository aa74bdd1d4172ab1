/**
 * `hearth run`: its options, the network it joins (or none: a local one), and its summary. The run itself
 * (run-job.ts) loads only when the command runs.
 */
import type { Command } from 'commander'
import { HearthError } from '../errors.ts'
import type { RequestorNodeInit } from '../requestor/requestor-node.ts'
import type { CommandIo } from './chain-command.ts'
import { exitCodes, positiveInt, wholeNumber, type SetExitCode } from './options.ts'
import { createProgressPrinter } from './progress.ts'
import { formatPaymentLines } from './report-format.ts'
import type { RunReport } from './run-job.ts'

export function registerRunCommand(program: Command, io: CommandIo, setExitCode: SetExitCode): void {
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
    .option('--store-node <dir>', 'the running requestor node whose storage store:// inputs are read from', '.hearth/requestor')
    .option('--json', 'print one JSON report on stdout instead of a summary')
    .action(async (jobFile: string, options: { out: string; providers: number; bootstrap?: string[]; listen?: string[]; announce?: string[]; rpc?: string; deployment?: string; funderKeyFile?: string; dataDir: string; resume?: string; badProviders?: number; storeNode: string; json?: boolean }) => {
      const progress = createProgressPrinter(io.stderr, { stepsOnly: options.json === true })
      const network = await joinedNetwork(options)
      const { runJobFile } = await import('./run-job.ts')
      const { resolveStoreInputs } = await import('./store-inputs.ts')
      const inputs = await resolveStoreInputs(jobFile, options.storeNode)
      if (inputs.objects > 0) io.stderr.write(`read ${inputs.objects} inputs back from storage\n`)
      const report = await runJobFile({
        jobFile: inputs.jobFile,
        outDir: options.out,
        providers: options.providers,
        onEvent: progress.onEvent,
        ...(options.resume === undefined ? {} : { resume: options.resume }),
        ...(options.badProviders === undefined ? {} : { badProviders: options.badProviders }),
        ...(network === undefined ? {} : { network }),
      }).finally(() => inputs.cleanup())
      progress.done()
      io.stdout.write(options.json === true ? `${JSON.stringify(report)}\n` : formatRunReport(report))
      if (report.tasks.succeeded !== report.tasks.total || report.failures.length > 0) setExitCode(exitCodes.failed)
      // On a joined network a provider's other business moves its balance too: there the audit informs, it does not fail the run.
      if (network === undefined && !report.audit.balanced) setExitCode(exitCodes.failed)
    })
}

/**
 * `hearth run --bootstrap …` (and `hearth requestor start`): the network to join and the chain it settles on;
 * undefined for a local network.
 */
export async function joinedNetwork(options: { bootstrap?: string[]; listen?: string[]; announce?: string[]; rpc?: string; deployment?: string; funderKeyFile?: string; dataDir: string; resume?: string }): Promise<RequestorNodeInit | undefined> {
  if (options.bootstrap === undefined) {
    if (options.rpc !== undefined || options.deployment !== undefined) {
      throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', '--rpc and --deployment are for joining a running network, which needs --bootstrap too', {
        hint: 'add --bootstrap with a provider\'s multiaddr, or leave all three out to run on a local network',
      })
    }
    if (options.resume !== undefined) {
      throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', '--resume continues a job on a running network; a local network ends with the job that started it', {
        hint: 'run the job with --bootstrap, --rpc, --deployment and --data-dir, and resume it with the same options',
      })
    }
    return undefined
  }
  if (options.deployment === undefined) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', 'joining a network needs --deployment: the contracts this requestor pays through', { hint: 'hearth chain --deployment-out FILE writes one' })
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
  if (rpcUrl === undefined) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `--rpc is needed: ${options.deployment} names no JSON-RPC URL`, { hint: 'pass --rpc URL' })
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
