/**
 * `hearth store put|get|ls|rm|status|s3|restore|key`: the owner's commands for storage, each one call to the local API
 * of the requestor node running from --data-dir (`hearth requestor start`), which seals, disperses, audits and
 * repairs. Objects are named `bucket/key`. `key export` and `key import` work on the data directory's storage key
 * itself (the node need not run): the key alone gives every stored file back on a new machine.
 */
import { resolve } from 'node:path'
import { InvalidArgumentError, type Command } from 'commander'
import { HearthError } from '../errors.ts'
import type { CommandIo } from './chain-command.ts'

const defaultDataDir = '.hearth/requestor'
/** Puts and gets of large files take as long as the data takes to cross. */
const longCallMs = 6 * 3600_000

interface Common {
  dataDir: string
  json?: boolean
}

/** `bucket/key/with/slashes` → its bucket and key (the key may be absent where `optionalKey`). */
export function objectName(value: string, optionalKey = false): { bucket: string; key?: string } {
  const slash = value.indexOf('/')
  const bucket = slash < 0 ? value : value.slice(0, slash)
  const key = slash < 0 ? '' : value.slice(slash + 1)
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new InvalidArgumentError(`"${bucket}" is not a bucket name: 3 to 63 lower-case letters, digits, dots and dashes`)
  if (key === '' && !optionalKey) throw new InvalidArgumentError('expected BUCKET/KEY, e.g. photos/2026/beach.jpg')
  return key === '' ? { bucket } : { bucket, key }
}

/** `A-B` (bytes A to B, both included), `A-` or `-N` (the last N). */
function byteRange(value: string): { start?: number; end?: number; last?: number } {
  const match = /^(\d*)-(\d*)$/.exec(value)
  if (match === null || (match[1] === '' && match[2] === '')) throw new InvalidArgumentError('expected a byte range: A-B, A- or -N')
  if (match[1] === '') return { last: Number(match[2]) }
  return { start: Number(match[1]), ...(match[2] === '' ? {} : { end: Number(match[2]) }) }
}

async function call(flags: Common, command: string, body?: Record<string, unknown>, timeoutMs = 60_000): Promise<unknown> {
  const { callRequestorApi } = await import('../requestor/requestor-api.ts')
  return callRequestorApi(flags.dataDir, command as never, body, { timeoutMs })
}

const mib = (bytes: number): string => (bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${bytes} B`)

interface StatusAnswer {
  code: { k: number; m: number }
  holdings: { provider: string; region: string | null; bytes: number; live: boolean }[]
  objects: { bucket: string; key: string; bytes: number; k: number; n: number; pieces: { piece: number; provider: string; region: string | null; audits: { passed: number; failed: number; lastError: string | null } | null }[] }[]
}

function formatStatus(answer: StatusAnswer): string {
  const lines = [`code ${answer.code.k} of ${answer.code.k + answer.code.m}; ${answer.holdings.length} holdings (${answer.holdings.filter((h) => h.live).length} live)`]
  for (const object of answer.objects) {
    lines.push(`${object.bucket}/${object.key}  ${mib(object.bytes)}  ${object.pieces.length} of ${object.n} pieces (any ${object.k} give it back)`)
    for (const piece of object.pieces) {
      const audits = piece.audits === null ? 'not audited yet' : `audits ${piece.audits.passed} passed, ${piece.audits.failed} failed${piece.audits.lastError === null ? '' : ` (last: ${piece.audits.lastError})`}`
      lines.push(`  piece ${piece.piece}  ${piece.provider}  ${piece.region ?? '-'}  ${audits}`)
    }
  }
  return `${lines.join('\n')}\n`
}

export function registerStoreCommand(program: Command, io: CommandIo): void {
  const store = program.command('store').description('store files encrypted and dispersed over providers, through a running requestor node')
  const common = (command: Command): Command =>
    command.option('--data-dir <dir>', 'the folder of the running requestor node (hearth requestor start)', defaultDataDir).option('--json', 'print JSON')
  const print = (flags: Common, value: unknown, human: string): void => void io.stdout.write(flags.json === true ? `${JSON.stringify(value)}\n` : human)

  common(store.command('put').description('seal a file, cut it into pieces and disperse them; the bucket is made if missing').argument('<file>').argument('<bucket/key>', 'where to store it', (v) => objectName(v)))
    .option('--content-type <type>', 'what the object is, for S3 clients')
    .action(async (file: string, name: { bucket: string; key: string }, flags: Common & { contentType?: string }) => {
      const info = (await call(flags, 'store-put', { ...name, path: resolve(file), ...(flags.contentType === undefined ? {} : { contentType: flags.contentType }) }, longCallMs)) as { size: number; etag: string; pieces: number }
      print(flags, info, `stored ${name.bucket}/${name.key}: ${mib(info.size)} in ${info.pieces} pieces\n`)
    })

  common(store.command('get').description('read an object back from any k of its pieces, checked, into a file').argument('<bucket/key>', 'the object', (v) => objectName(v)).argument('<file>'))
    .option('--range <A-B>', 'only bytes A to B (both included), A- or -N (the last N)', byteRange)
    .action(async (name: { bucket: string; key: string }, file: string, flags: Common & { range?: { start?: number; end?: number; last?: number } }) => {
      let range = flags.range
      if (range?.last !== undefined) {
        const head = (await call(flags, 'store-ls', { bucket: name.bucket, prefix: name.key })) as { objects: { key: string; size: number }[] }
        const size = head.objects.find((o) => o.key === name.key)?.size
        if (size === undefined) throw new HearthError('HEARTH_ERR_STORAGE_NOT_FOUND', `there is no object ${name.bucket}/${name.key}`, { hint: 'see hearth store ls' })
        range = { start: Math.max(0, size - range.last), end: size - 1 }
      }
      const info = (await call(flags, 'store-get', { ...name, path: resolve(file), ...range }, longCallMs)) as { bytes: number }
      print(flags, info, `wrote ${mib(info.bytes)} of ${name.bucket}/${name.key} to ${file}\n`)
    })

  common(store.command('ls').description('the buckets, or the objects in a bucket (under a prefix)').argument('[bucket/prefix]')).action(async (where: string | undefined, flags: Common) => {
    if (where === undefined) {
      const { buckets } = (await call(flags, 'store-ls', {})) as { buckets: { name: string }[] }
      print(flags, buckets, buckets.map((b) => `${b.name}\n`).join(''))
      return
    }
    const { bucket, key } = objectName(where, true)
    const { objects } = (await call(flags, 'store-ls', { bucket, ...(key === undefined ? {} : { prefix: key }) })) as { objects: { key: string; size: number; lastModifiedMs: number }[] }
    print(flags, objects, objects.map((o) => `${new Date(o.lastModifiedMs).toISOString()}  ${String(o.size).padStart(12)}  ${o.key}\n`).join(''))
  })

  common(store.command('rm').description('remove an object and its pieces, or an empty bucket').argument('<bucket[/key]>')).action(async (where: string, flags: Common) => {
    const answer = await call(flags, 'store-rm', objectName(where, true), longCallMs)
    print(flags, answer, `removed ${where}\n`)
  })

  common(store.command('status').description('each object\'s pieces: providers, regions, audit record').argument('[bucket/key]')).action(async (where: string | undefined, flags: Common) => {
    const answer = (await call(flags, 'store-status', where === undefined ? {} : objectName(where, true))) as StatusAnswer
    print(flags, answer, formatStatus(answer))
  })

  common(store.command('s3').description('serve the store to S3 clients (on 127.0.0.1 unless told otherwise); prints the endpoint and credentials'))
    .option('--listen <host:port>', 'where to listen', '127.0.0.1:0')
    .action(async (flags: Common & { listen: string }) => {
      const match = /^(.+):(\d{1,5})$/.exec(flags.listen)
      if (match === null) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `--listen ${flags.listen} is not HOST:PORT`)
      const answer = (await call(flags, 'store-s3', { host: match[1]!, port: Number(match[2]) })) as { url: string; region: string; accessKeyId: string; secretAccessKey: string }
      print(flags, answer, `S3 endpoint ${answer.url} (region ${answer.region}, path-style)\naccess key ${answer.accessKeyId}\nsecret key ${answer.secretAccessKey}\n`)
    })

  common(store.command('repair').description('audit every piece now and rebuild what is missing (the node also does so every --audit-every)')).action(async (flags: Common) => {
    const answer = (await call(flags, 'store-repair', {}, longCallMs)) as { audited: number; failed: number; lost: string[]; rebuilt: number }
    print(flags, answer, `audited ${answer.audited} pieces: ${answer.failed} failed${answer.lost.length === 0 ? '' : `, providers lost: ${answer.lost.join(', ')}`}; rebuilt ${answer.rebuilt} pieces\n`)
  })

  common(store.command('restore').description('find the manifest in the network by the storage key alone (on a new machine, after key import)'))
    .option('--adopt', 'then store every object again under this node\'s agreements (needed when this node\'s wallet key is not the one that stored them)')
    .action(async (flags: Common & { adopt?: boolean }) => {
      const answer = (await call(flags, 'store-restore', flags.adopt === true ? { adopt: true } : {}, longCallMs)) as { objects: number }
      print(flags, answer, `the manifest lists ${answer.objects} objects${flags.adopt === true ? ', each stored again under this node\'s agreements' : ''}\n`)
    })

  const key = store.command('key').description('the storage key: export it to keep a copy, import it on a new machine')
  key.command('export').description('print the storage key (keep it safe: it decrypts everything you stored)').option('--data-dir <dir>', 'the requestor node\'s folder', defaultDataDir)
    .action(async (flags: { dataDir: string }) => {
      const { formatStorageKey, loadStorageKey, storageKeyWarning } = await import('../storage/storage-key.ts')
      const { key: loaded } = await loadStorageKey(resolve(flags.dataDir, 'storage.key'))
      io.stderr.write(`${storageKeyWarning}\n`)
      io.stdout.write(`${formatStorageKey(loaded)}\n`)
    })
  key.command('import').description('use an exported storage key here (only where this folder has none yet)').argument('<file>', 'a file holding the key (64 hex digits)').option('--data-dir <dir>', 'the requestor node\'s folder', defaultDataDir)
    .action(async (file: string, flags: { dataDir: string }) => {
      const { importStorageKey } = await import('../storage/storage-key.ts')
      await importStorageKey(resolve(file), resolve(flags.dataDir, 'storage.key'))
      io.stdout.write(`storage key imported into ${resolve(flags.dataDir, 'storage.key')}; start the node, then hearth store restore\n`)
    })
}
