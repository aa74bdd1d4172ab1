/**
 * The storage commands of the requestor node's local API (`hearth store put|get|ls|rm|status|s3`), answered from its
 * dispersed store. As with service packages, the caller and the node share a machine and the data directory's key:
 * files are named by absolute path and read or written by the node, so gigabytes never pass through JSON.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, isAbsolute, join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { command, type CommandTable } from '../net/local-api-server.ts'
import { storageResults } from './api-schemas.ts'
import { describeIssues } from '../net/describe-issues.ts'
import { startS3Server } from '../storage/s3-server.ts'
import { checkBucketName } from '../storage/s3-server.ts'
import type { DispersedStore } from './dispersed-store.ts'
import { pieceIdOf } from './dispersed-store.ts'
import type { StorageUpkeep } from './storage-upkeep.ts'

export const storageCommands = ['store-put', 'store-get', 'store-ls', 'store-rm', 'store-status', 'store-s3', 'store-restore', 'store-repair'] as const
export type StorageCommand = (typeof storageCommands)[number]

const absolutePath = z.string().refine((path) => isAbsolute(path), 'expected an absolute path')
const bucket = z.string().min(3).max(63)
const key = z.string().min(1).max(1024)
export const storageBodies = {
  'store-put': z.strictObject({ bucket, key, path: absolutePath, contentType: z.string().max(256).optional() }),
  'store-get': z.strictObject({ bucket, key, path: absolutePath, start: z.number().int().nonnegative().optional(), end: z.number().int().nonnegative().optional() }),
  'store-ls': z.strictObject({ bucket: bucket.optional(), prefix: z.string().max(1024).optional() }),
  'store-rm': z.strictObject({ bucket, key: key.optional() }),
  'store-status': z.strictObject({ bucket: bucket.optional(), key: key.optional() }),
  'store-restore': z.strictObject({ adopt: z.boolean().optional() }),
  'store-repair': z.strictObject({}),
  'store-s3': z.strictObject({ host: z.string().max(255).optional(), port: z.number().int().min(0).max(65535).optional() }),
}

function parseBody<K extends StorageCommand>(command: K, body: unknown): z.output<(typeof storageBodies)[K]> {
  const parsed = storageBodies[command].safeParse(body)
  if (!parsed.success) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `${command}: ${describeIssues(parsed.error).text}`)
  return parsed.data as z.output<(typeof storageBodies)[K]>
}

export interface StorageApiInit {
  dataDir: string
  store: DispersedStore
  upkeep: StorageUpkeep
  log(line: string): void
}

export interface StorageApi {
  answer(command: StorageCommand, body: Record<string, unknown>): Promise<unknown>
  close(): Promise<void>
}

/** The S3 endpoint's credentials: made once (mode 0600) in the data directory, the same at every start. */
async function s3Credentials(dataDir: string): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  const path = join(dataDir, 's3-credentials.json')
  const existing = await readFile(path, 'utf8').catch(() => undefined)
  if (existing !== undefined) return JSON.parse(existing) as { accessKeyId: string; secretAccessKey: string }
  const made = { accessKeyId: `HEARTH${randomBytes(7).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(30).toString('base64url') }
  await writeFile(path, JSON.stringify(made), { mode: 0o600 })
  return made
}

/** Each object's pieces: where, in which region, and how its audits went. */
function status(init: StorageApiInit, filter: { bucket?: string | undefined; key?: string | undefined }): unknown {
  const records = init.upkeep.records()
  const entries = init.store.context.manifest().entries.filter((e) => (filter.bucket === undefined || e.bucket === filter.bucket) && (filter.key === undefined || e.key === filter.key))
  return {
    code: init.store.context.code,
    holdings: init.store.context.holdings.map((h) => ({ provider: h.offer.provider, region: h.region ?? null, agreementId: h.agreement.id, bytes: h.bytes, live: h.activity !== undefined, expiresAtSec: h.agreement.terms.expiresAtSec })),
    objects: entries.map((entry) => ({
      bucket: entry.bucket,
      key: entry.key,
      bytes: entry.layout.plainBytes,
      k: entry.layout.k,
      n: entry.layout.k + entry.layout.m,
      pieces: entry.placements.map((place) => {
        const record = records.get(pieceIdOf(entry.layout, place.piece))
        return { piece: place.piece, provider: place.provider, region: place.region ?? null, audits: record === undefined ? null : { passed: record.passed, failed: record.failed, lastMs: record.lastMs, lastError: record.lastError ?? null } }
      }),
    })),
  }
}

export function createStorageApi(init: StorageApiInit): StorageApi {
  const { store } = init
  let s3: { url: string; close(): Promise<void> } | undefined

  async function answer(command: StorageCommand, body: Record<string, unknown>): Promise<unknown> {
    switch (command) {
      case 'store-put': {
        const request = parseBody(command, body)
        checkBucketName(request.bucket)
        const size = (await stat(request.path).catch((cause: unknown) => {
          throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `cannot read ${request.path}`, { cause, hint: 'the path is read by the requestor node: it must exist on its machine' })
        })).size
        if (!(await store.hasBucket(request.bucket))) await store.createBucket(request.bucket)
        const info = await store.putObject({ bucket: request.bucket, key: request.key, body: createReadStream(request.path), size, ...(request.contentType === undefined ? {} : { contentType: request.contentType }) })
        return { ...info, pieces: store.context.manifest().entries.find((e) => e.bucket === request.bucket && e.key === request.key)?.placements.length ?? 0 }
      }
      case 'store-get': {
        const request = parseBody(command, body)
        const info = await store.headObject(request.bucket, request.key)
        if (info === undefined) throw new HearthError('HEARTH_ERR_STORAGE_NOT_FOUND', `there is no object ${request.bucket}/${request.key}`, { hint: 'see hearth store ls' })
        const range = request.start === undefined && request.end === undefined ? undefined : { start: request.start ?? 0, end: Math.min(request.end ?? info.size - 1, info.size - 1) }
        const got = await store.getObject(request.bucket, request.key, range)
        await mkdir(dirname(request.path), { recursive: true })
        // Written beside the target and moved in place once whole and checked: a failed read leaves no half file.
        const temp = `${request.path}.hearth-partial`
        try {
          await pipeline(Readable.from(got!.body), createWriteStream(temp, { mode: 0o600 }))
          await rename(temp, request.path)
        } catch (error) {
          await rm(temp, { force: true })
          throw error
        }
        return { ...info, path: request.path, bytes: range === undefined ? info.size : range.end - range.start + 1 }
      }
      case 'store-ls': {
        const request = parseBody(command, body)
        if (request.bucket === undefined) return { buckets: await store.listBuckets() }
        return { bucket: request.bucket, objects: await store.listObjects(request.bucket, request.prefix ?? '') }
      }
      case 'store-rm': {
        const request = parseBody(command, body)
        if (request.key === undefined) await store.deleteBucket(request.bucket)
        else await store.deleteObject(request.bucket, request.key)
        return { removed: request.key === undefined ? request.bucket : `${request.bucket}/${request.key}` }
      }
      case 'store-status':
        return status(init, parseBody(command, body))
      case 'store-restore': {
        const request = parseBody(command, body)
        return { objects: await store.restore(request.adopt === true ? { adopt: true } : {}) }
      }
      case 'store-repair': {
        // One upkeep round now, instead of at its next turn: holdings, an audit of every piece, repair.
        parseBody(command, body)
        await init.upkeep.keepHoldings()
        const audit = await init.upkeep.audit()
        return { ...audit, rebuilt: await init.upkeep.repair() }
      }
      case 'store-s3': {
        const request = parseBody(command, body)
        const credentials = await s3Credentials(init.dataDir)
        if (s3 === undefined) {
          const server = await startS3Server({ store, credentials, stagingDir: join(init.dataDir, 'storage', 's3-staging'), host: request.host ?? '127.0.0.1', ...(request.port === undefined ? {} : { port: request.port }), log: init.log })
          s3 = server
          init.log(`S3 endpoint at ${server.url} (access key ${credentials.accessKeyId})`)
        }
        return { url: s3.url, region: 'us-east-1', ...credentials }
      }
    }
  }

  return {
    answer,
    async close() {
      await s3?.close()
      s3 = undefined
    },
  }
}

const storageSummaries: Record<StorageCommand, string> = {
  'store-put': 'seal, code and place a file (read by the node from an absolute path) as an object',
  'store-get': 'read an object (or a byte range of it) back into a file the node writes',
  'store-ls': 'the buckets, or the objects of one bucket under a prefix',
  'store-rm': 'remove an object, or an empty bucket',
  'store-status': 'the holdings, and each object\'s pieces: where, in which region, and how their audits went',
  'store-s3': 'start (once) the S3 endpoint over the store and give its address and credentials',
  'store-restore': 'read the manifest back from the providers (after a loss of this node\'s data)',
  'store-repair': 'one upkeep round now: renew holdings, audit every piece, rebuild what is lost',
}

/** The storage commands as the local API's table, each with its body and result schemas. */
export function storageCommandTable(api: StorageApi): CommandTable {
  return Object.fromEntries(
    storageCommands.map((name) => [
      name,
      command({ summary: storageSummaries[name], body: storageBodies[name] as z.ZodType<Record<string, unknown>>, invalidCode: 'HEARTH_ERR_CLI_ARGUMENT_INVALID', result: storageResults[name], handle: (body) => api.answer(name, body) }),
    ]),
  )
}
