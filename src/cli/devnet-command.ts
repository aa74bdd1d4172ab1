/**
 * `hearth devnet`: a local network (embedded chain served by JSON-RPC, providers) kept running for other processes and
 * hosts to join. The network's modules load only when the command runs.
 */
import type { Command } from 'commander'
import { HearthError } from '../errors.ts'
import type { CommandIo } from './chain-command.ts'
import { positiveInt, wholeNumber } from './options.ts'

export function registerDevnetCommand(program: Command, io: CommandIo): void {
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
        throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', '--host must be the address other hosts reach this one by, not a wildcard', { hint: 'pass this machine\'s address, e.g. --host 192.168.1.20' })
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
}
