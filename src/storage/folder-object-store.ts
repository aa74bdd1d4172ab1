/**
 * An ObjectStore (object-store.ts) in a plain folder on disk: the reference implementation of the interface, behind
 * the S3 endpoint's tests and usable wherever a local store will do. Nothing is sealed or dispersed.
 *
 * Each bucket is a folder named `b-<hex of its name>` holding bucket.json (its name and creation time) and objects/.
 * An object is a data file and a JSON sidecar with its info, both named by the SHA-256 of its key (hex), so any key of
 * up to 1024 bytes of UTF-8, slashes included, gives a short, safe file name; the sidecar holds the key itself. A put
 * streams the body into a temporary file and commits by two renames under a per-key lock: the data file (named by a
 * random version id, so readers of the old one keep reading it) and then the sidecar, which makes the new version
 * visible at once. A body that fails leaves nothing behind.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { HearthError } from '../errors.ts'
import type { BucketInfo, ByteRange, ObjectInfo, ObjectStore, PutObjectInput } from './object-store.ts'
import { writeBody } from './write-body.ts'

interface Sidecar {
  info: ObjectInfo
  /** The data file's name in objects/. */
  data: string
}

const maxBucketNameBytes = 100

const isMissing = (error: unknown): boolean => (error as NodeJS.ErrnoException).code === 'ENOENT'

const noBucket = (name: string): HearthError =>
  new HearthError('HEARTH_ERR_STORAGE_NOT_FOUND', `there is no bucket ${JSON.stringify(name)}`, { hint: 'create the bucket first, or check its name (names are case-sensitive)' })

function bucketFolderName(name: string): string {
  const bytes = Buffer.from(name, 'utf8')
  if (bytes.length === 0 || bytes.length > maxBucketNameBytes) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `a bucket name must be 1 to ${maxBucketNameBytes} bytes of UTF-8 (got ${bytes.length})`)
  }
  return `b-${bytes.toString('hex')}`
}

const keyFileName = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex')

const compareUtf8 = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))


/** Runs `task` once every earlier task under `name` is done: one commit at a time per key. */
function keyLocks(): <T>(name: string, task: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>()
  return async (name, task) => {
    const before = tails.get(name) ?? Promise.resolve()
    const run = before.then(task, task)
    const tail = run.catch(() => undefined)
    tails.set(name, tail)
    try {
      return await run
    } finally {
      if (tails.get(name) === tail) tails.delete(name)
    }
  }
}

/** Removes what a crash left: temporary bucket folders, trash, and unfinished bodies. */
async function sweep(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (name.startsWith('.tmp-') || name.startsWith('.trash-')) await rm(join(dir, name), { recursive: true, force: true })
    else if (name.startsWith('b-')) {
      await rm(join(dir, name, 'tmp'), { recursive: true, force: true })
      await mkdir(join(dir, name, 'tmp'), { mode: 0o700 })
    }
  }
}

/** Opens (and makes, if missing) a folder-backed object store in `dir`. */
export async function openFolderObjectStore(dir: string): Promise<ObjectStore> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await sweep(dir)
  const locked = keyLocks()

  const bucketPath = async (name: string): Promise<string> => {
    const path = join(dir, bucketFolderName(name))
    try {
      await stat(join(path, 'bucket.json'))
    } catch (error) {
      if (isMissing(error)) throw noBucket(name)
      throw error
    }
    return path
  }

  const readSidecar = async (objects: string, key: string): Promise<Sidecar | undefined> => {
    try {
      const sidecar = JSON.parse(await readFile(join(objects, `${keyFileName(key)}.json`), 'utf8')) as Sidecar
      return sidecar.info.key === key ? sidecar : undefined
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  }

  return {
    async listBuckets() {
      const buckets: BucketInfo[] = []
      for (const name of await readdir(dir)) {
        if (!name.startsWith('b-')) continue
        try {
          buckets.push(JSON.parse(await readFile(join(dir, name, 'bucket.json'), 'utf8')) as BucketInfo)
        } catch (error) {
          if (!isMissing(error)) throw error
        }
      }
      return buckets.sort((a, b) => compareUtf8(a.name, b.name))
    },

    async createBucket(name) {
      const path = join(dir, bucketFolderName(name))
      const staging = join(dir, `.tmp-${randomBytes(8).toString('hex')}`)
      await mkdir(join(staging, 'objects'), { recursive: true, mode: 0o700 })
      await mkdir(join(staging, 'tmp'), { mode: 0o700 })
      const info: BucketInfo = { name, createdAtMs: Date.now() }
      await writeFile(join(staging, 'bucket.json'), JSON.stringify(info), { mode: 0o600 })
      try {
        await rename(staging, path)
      } catch (error) {
        await rm(staging, { recursive: true, force: true })
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'EEXIST' || code === 'ENOTEMPTY') throw new HearthError('HEARTH_ERR_STORAGE_STATE', `the bucket ${JSON.stringify(name)} exists already`, { hint: 'use it, or pick another name' })
        throw error
      }
    },

    async deleteBucket(name) {
      const path = await bucketPath(name)
      if ((await readdir(join(path, 'objects'))).some((file) => file.endsWith('.json'))) {
        throw new HearthError('HEARTH_ERR_STORAGE_STATE', `the bucket ${JSON.stringify(name)} is not empty`, { hint: 'delete its objects first' })
      }
      const trash = join(dir, `.trash-${randomBytes(8).toString('hex')}`)
      await rename(path, trash)
      await rm(trash, { recursive: true, force: true })
    },

    async hasBucket(name) {
      try {
        await bucketPath(name)
        return true
      } catch (error) {
        if (error instanceof HearthError && error.code === 'HEARTH_ERR_STORAGE_NOT_FOUND') return false
        throw error
      }
    },

    putObject: async (input) => putObject(await bucketPath(input.bucket), input, locked, readSidecar),

    async headObject(bucket, key) {
      return (await readSidecar(join(await bucketPath(bucket), 'objects'), key))?.info
    },

    getObject: async (bucket, key, range) => getObject(join(await bucketPath(bucket), 'objects'), key, range, readSidecar),

    async listObjects(bucket, prefix = '') {
      const objects = join(await bucketPath(bucket), 'objects')
      const names = (await readdir(objects)).filter((name) => name.endsWith('.json'))
      const infos: ObjectInfo[] = []
      for (let i = 0; i < names.length; i += 64) {
        const batch = await Promise.all(names.slice(i, i + 64).map((name) => readFile(join(objects, name), 'utf8').then((text) => (JSON.parse(text) as Sidecar).info, (error: unknown) => (isMissing(error) ? undefined : Promise.reject(error)))))
        for (const info of batch) if (info !== undefined && info.key.startsWith(prefix)) infos.push(info)
      }
      return infos.sort((a, b) => compareUtf8(a.key, b.key))
    },

    async deleteObject(bucket, key) {
      const objects = join(await bucketPath(bucket), 'objects')
      await locked(keyFileName(key), async () => {
        const sidecar = await readSidecar(objects, key)
        if (sidecar === undefined) return
        await rm(join(objects, `${keyFileName(key)}.json`), { force: true })
        await rm(join(objects, sidecar.data), { force: true })
      })
    },
  }
}

type ReadSidecar = (objects: string, key: string) => Promise<Sidecar | undefined>

async function putObject(path: string, input: PutObjectInput, locked: ReturnType<typeof keyLocks>, readSidecar: ReadSidecar): Promise<ObjectInfo> {
  const version = randomBytes(8).toString('hex')
  const temporary = join(path, 'tmp', `${version}.data`)
  const handle = await open(temporary, 'wx', 0o600)
  const md5 = input.etag === undefined ? createHash('md5') : undefined
  let size = 0
  try {
    try {
      size = await writeBody(handle, input.body, (chunk) => md5?.update(chunk))
    } finally {
      await handle.close()
    }
    const info: ObjectInfo = {
      bucket: input.bucket,
      key: input.key,
      size,
      etag: input.etag === undefined ? md5!.digest('hex') : input.etag(),
      lastModifiedMs: Date.now(),
      ...(input.contentType === undefined ? {} : { contentType: input.contentType }),
      metadata: { ...input.metadata },
    }
    const objects = join(path, 'objects')
    const hashed = keyFileName(input.key)
    const sidecar: Sidecar = { info, data: `${hashed}.${version}.data` }
    await locked(hashed, async () => {
      const previous = await readSidecar(objects, input.key)
      const sidecarTemporary = join(path, 'tmp', `${version}.json`)
      try {
        await rename(temporary, join(objects, sidecar.data))
        await writeFile(sidecarTemporary, JSON.stringify(sidecar), { mode: 0o600 })
        await rename(sidecarTemporary, join(objects, `${hashed}.json`))
      } catch (error) {
        await rm(join(objects, sidecar.data), { force: true })
        await rm(sidecarTemporary, { force: true })
        throw error
      }
      if (previous !== undefined && previous.data !== sidecar.data) await rm(join(objects, previous.data), { force: true })
    })
    return info
  } catch (error) {
    await rm(temporary, { force: true })
    throw error
  }
}

async function getObject(objects: string, key: string, range: ByteRange | undefined, readSidecar: ReadSidecar): Promise<{ info: ObjectInfo; body: AsyncIterable<Uint8Array> } | undefined> {
  // The data file of the version read may be replaced and removed between reading its sidecar and opening it: then
  // the sidecar names the newer one.
  for (let attempt = 0; attempt < 5; attempt++) {
    const sidecar = await readSidecar(objects, key)
    if (sidecar === undefined) return undefined
    const { info } = sidecar
    if (range !== undefined && !(Number.isInteger(range.start) && Number.isInteger(range.end) && range.start >= 0 && range.start <= range.end && range.end < info.size)) {
      throw new HearthError('HEARTH_ERR_API_MISUSE', `the range ${range.start}-${range.end} is not within the ${info.size} bytes of ${JSON.stringify(key)}`)
    }
    let handle: FileHandle
    try {
      handle = await open(join(objects, sidecar.data), 'r')
    } catch (error) {
      if (isMissing(error)) continue
      throw error
    }
    const body = handle.createReadStream({ start: range?.start ?? 0, ...(range === undefined ? {} : { end: range.end }), highWaterMark: 256 * 1024 })
    return { info, body }
  }
  throw new HearthError('HEARTH_ERR_STORAGE_UNAVAILABLE', `the object ${JSON.stringify(key)} kept changing while it was opened`, { hint: 'read it again' })
}
