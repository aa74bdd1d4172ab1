/**
 * `hearth service deploy|ls|status|logs|scale|update|rm`: the owner's commands for services, each one call to the
 * local API of the requestor node running from --data-dir (`hearth requestor start`).
 *
 * A service file is JSON: the service spec's fields (see src/requestor/service-spec.ts and the README), where
 * `image` (docker: a `docker save` archive; its image id is read from it) and `package` (wasi: the module) are paths
 * relative to the file. The file is checked whole here first (exit code 2, nothing sent); the node reads the archive
 * or module from its absolute path.
 */
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { InvalidArgumentError, type Command } from 'commander'
import { HearthError } from '../errors.ts'
import type { ServiceStatus } from '../requestor/services.ts'
import type { CommandIo } from './chain-command.ts'
import { positiveInt } from './options.ts'
import { formatRemoved, formatService, formatServiceList } from './service-format.ts'

const defaultDataDir = '.hearth/requestor'
/** Deploys, updates and scales wait for replicas to be placed and started. */
const longCallMs = 30 * 60_000

export interface ServiceFileRequest {
  spec: Record<string, unknown>
  archivePath?: string
  packagePath?: string
}

/** Reads a service file: its spec, with `image` and `package` resolved next to the file and the image id read. */
export async function readServiceFile(path: string): Promise<ServiceFileRequest> {
  const invalid = (message: string, cause?: unknown): HearthError => new HearthError('HEARTH_ERR_SERVICE_INVALID', `${path}: ${message}`, { cause, hint: 'see the Services section of the README for the service file' })
  const text = await readFile(path, 'utf8').catch((cause: unknown) => {
    throw invalid('cannot read the service file', cause)
  })
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (cause) {
    throw invalid(`not valid JSON: ${(cause as Error).message}`, cause)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid('expected a JSON object of the service\'s fields')
  const { image, package: modulePath, ...spec } = parsed as Record<string, unknown>
  if (image !== undefined && typeof image !== 'string') throw invalid('image: expected the path of a docker save archive')
  if (modulePath !== undefined && typeof modulePath !== 'string') throw invalid('package: expected the path of a wasi module')
  const request: ServiceFileRequest = { spec }
  if (image !== undefined) {
    if (spec['runtime'] !== 'docker') throw invalid('image: only a docker service has an image archive')
    request.archivePath = resolve(dirname(path), image)
    const { archiveImageId } = await import('../exec/docker-images.ts')
    const id = await archiveImageId(request.archivePath).catch((cause: unknown) => {
      throw invalid(`image: ${request.archivePath} is not a docker save archive`, cause)
    })
    if (spec['imageId'] !== undefined && spec['imageId'] !== id) throw invalid(`imageId: ${String(spec['imageId'])} is not the image in ${image} (${id})`)
    spec['imageId'] = id
  }
  if (modulePath !== undefined) {
    if (spec['runtime'] !== 'wasi') throw invalid('package: only a wasi service has a module')
    request.packagePath = resolve(dirname(path), modulePath)
    await readFile(request.packagePath).catch((cause: unknown) => {
      throw invalid(`package: cannot read ${request.packagePath}`, cause)
    })
  }
  if (spec['runtime'] === 'wasi' && modulePath === undefined) throw invalid('package: a wasi service names its module')
  // Checked whole before the node is asked: every problem named by its field, exit code 2.
  const { parseServiceSpec } = await import('../requestor/service-spec.ts')
  parseServiceSpec(spec)
  return request
}

/** `--region eu=2` (repeatable) → { eu: 2 }. */
function regionCount(value: string, previous: Record<string, number> = {}): Record<string, number> {
  const match = /^([a-z0-9-]{1,32})=(\d{1,2})$/.exec(value)
  if (match === null || Number(match[2]) < 1) throw new InvalidArgumentError('expected REGION=N, e.g. eu=2')
  return { ...previous, [match[1]!]: Number(match[2]) }
}

interface Common {
  dataDir: string
  json?: boolean
}

async function call(flags: Common, command: string, body?: Record<string, unknown>, timeoutMs = 60_000): Promise<unknown> {
  const { callRequestorApi } = await import('../requestor/requestor-api.ts')
  return callRequestorApi(flags.dataDir, command as never, body, { timeoutMs })
}

export function registerServiceCommand(program: Command, io: CommandIo): void {
  const service = program.command('service').description('deploy and run services (long-running servers on providers) through a running requestor node')
  const common = (command: Command): Command =>
    command.option('--data-dir <dir>', 'the folder of the running requestor node (hearth requestor start)', defaultDataDir).option('--json', 'print JSON')
  const print = (flags: Common, value: unknown, human: string): void => void io.stdout.write(flags.json === true ? `${JSON.stringify(value)}\n` : human)

  common(service.command('deploy').description('deploy a service from a service file; waits until its replicas serve').argument('<file>', 'the service file (JSON)')).action(async (file: string, flags: Common) => {
    const request = await readServiceFile(file)
    const status = (await call(flags, 'service-deploy', { ...request }, longCallMs)) as ServiceStatus
    print(flags, status, formatService(status))
  })

  common(service.command('ls').description('the services this node runs')).action(async (flags: Common) => {
    const list = (await call(flags, 'service-ls')) as ServiceStatus[]
    print(flags, list, formatServiceList(list))
  })

  common(service.command('status').description('a service\'s replicas: region, provider, state, version, restarts').argument('<name>')).action(async (name: string, flags: Common) => {
    const status = (await call(flags, 'service-status', { name })) as ServiceStatus
    print(flags, status, formatService(status))
  })

  common(service.command('logs').description('the newest bytes of each replica\'s server log').argument('<name>'))
    .option('--replica <id>', 'only this replica')
    .option('--tail <bytes>', 'bytes from the end of each log', positiveInt('--tail', 16 * 1024 * 1024), 64 * 1024)
    .action(async (name: string, flags: Common & { replica?: string; tail: number }) => {
      const logs = (await call(flags, 'service-logs', { name, tailBytes: flags.tail, ...(flags.replica === undefined ? {} : { replica: flags.replica }) })) as { replica: string; log: string }[]
      print(flags, logs, logs.map((entry) => `== replica ${entry.replica} ==\n${entry.log}${entry.log.endsWith('\n') || entry.log === '' ? '' : '\n'}`).join(''))
    })

  common(service.command('scale').description('change how many replicas run: in total, or per region').argument('<name>'))
    .option('--total <n>', 'replicas in total, in any region', positiveInt('--total', 64))
    .option('--region <region=n>', 'replicas in a region (repeatable): --region eu=2 --region us=1', regionCount)
    .action(async (name: string, flags: Common & { total?: number; region?: Record<string, number> }) => {
      if ((flags.total === undefined) === (flags.region === undefined)) {
        throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', 'scale needs either --total N or --region R=N (one or more), not both')
      }
      const replicas = flags.total === undefined ? { perRegion: flags.region! } : { total: flags.total }
      const status = (await call(flags, 'service-scale', { name, replicas }, longCallMs)) as ServiceStatus
      print(flags, status, formatService(status))
    })

  common(service.command('update').description('roll a service to a new version from a service file, one replica at a time').argument('<name>').argument('<file>', 'the service file (JSON)'))
    .action(async (name: string, file: string, flags: Common) => {
      const request = await readServiceFile(file)
      const status = (await call(flags, 'service-update', { name, ...request }, longCallMs)) as ServiceStatus
      print(flags, status, formatService(status))
    })

  common(service.command('rm').description('stop every replica and settle every agreement; prints what each was paid').argument('<name>')).action(async (name: string, flags: Common) => {
    const paid = (await call(flags, 'service-rm', { name }, longCallMs)) as { agreementId: string; paidWei: string }[]
    print(flags, { name, paid }, formatRemoved(name, paid))
  })
}
