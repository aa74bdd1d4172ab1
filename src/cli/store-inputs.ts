/**
 * Job inputs read from storage: a job file may name `store://bucket/key` (or, in a map-reduce job's `inputs`,
 * `store://bucket/prefix/` and `store://bucket/prefix*` for every object under a prefix) wherever it names a local
 * input file. Before the job runs, the requestor node that keeps the storage (`--store-node`) reads each object back,
 * checked and decrypted, into a private folder beside the job file, and the job runs on those files as ordinary task
 * inputs: the compute providers see them, as they see every input (see the threat model). The folder is removed after.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { HearthError } from '../errors.ts'

const scheme = 'store://'

export interface ResolvedJobFile {
  /** The job file to run: the given one, or a copy naming the objects' local files. */
  jobFile: string
  /** Objects read back. */
  objects: number
  /** Removes the objects' files and the copy. */
  cleanup(): Promise<void>
}

function parseRef(ref: string): { bucket: string; key: string } {
  const rest = ref.slice(scheme.length)
  const slash = rest.indexOf('/')
  if (slash <= 0) throw new HearthError('HEARTH_ERR_JOB_INVALID', `${ref} names no object: expected store://BUCKET/KEY`)
  return { bucket: rest.slice(0, slash), key: rest.slice(slash + 1) }
}

/** Reads the objects a job file names by `store://` through the node at `storeNode`; the job file itself when none. */
export async function resolveStoreInputs(jobFile: string, storeNode: string): Promise<ResolvedJobFile> {
  const unchanged: ResolvedJobFile = { jobFile, objects: 0, cleanup: () => Promise.resolve() }
  // A file that cannot be read or is not JSON is left to the job file's own checks, which say what is wrong with it.
  const text = await readFile(jobFile, 'utf8').catch(() => undefined)
  if (text === undefined || !text.includes(scheme)) return unchanged
  let job: Record<string, unknown>
  try {
    job = JSON.parse(text) as Record<string, unknown>
  } catch {
    return unchanged
  }
  const { callRequestorApi } = await import('../requestor/requestor-api.ts')
  const folder = await mkdtemp(join(dirname(resolve(jobFile)), '.hearth-store-inputs-'))
  let objects = 0
  const fetch = async (bucket: string, key: string): Promise<string> => {
    const path = join(folder, String(objects++).padStart(6, '0'), basename(key) || 'object')
    await callRequestorApi(storeNode, 'store-get', { bucket, key, path }, { timeoutMs: 6 * 3600_000 })
    return path
  }
  /** One reference: its file; with `many`, a prefix (ending in / or *) is every object under it. */
  const expand = async (ref: string, many: boolean): Promise<string[]> => {
    const { bucket, key } = parseRef(ref)
    if (!many || !(key === '' || key.endsWith('/') || key.endsWith('*'))) return [await fetch(bucket, key)]
    const prefix = key.endsWith('*') ? key.slice(0, -1) : key
    const listed = (await callRequestorApi(storeNode, 'store-ls', { bucket, prefix })) as { objects: { key: string }[] }
    if (listed.objects.length === 0) throw new HearthError('HEARTH_ERR_JOB_INPUT_MISSING', `${ref} names no stored object`, { hint: 'see hearth store ls' })
    return Promise.all(listed.objects.map((object) => fetch(bucket, object.key)))
  }
  try {
    if (Array.isArray(job['inputs'])) {
      const inputs: unknown[] = []
      for (const input of job['inputs'] as unknown[]) inputs.push(...(typeof input === 'string' && input.startsWith(scheme) ? await expand(input, true) : [input]))
      job['inputs'] = inputs
    }
    const mapObject = async (inputs: unknown): Promise<unknown> => {
      if (inputs === null || typeof inputs !== 'object' || Array.isArray(inputs)) return inputs
      const entries = await Promise.all(Object.entries(inputs).map(async ([guest, host]) => [guest, typeof host === 'string' && host.startsWith(scheme) ? (await expand(host, false))[0] : host]))
      return Object.fromEntries(entries)
    }
    job['inputs'] = await mapObject(job['inputs'])
    if (Array.isArray(job['tasks'])) job['tasks'] = await Promise.all((job['tasks'] as Record<string, unknown>[]).map(async (task) => ({ ...task, inputs: await mapObject(task['inputs']) })))
    const copy = join(dirname(resolve(jobFile)), `.hearth-store-${basename(folder)}.json`)
    await writeFile(copy, JSON.stringify(job), { mode: 0o600 })
    return {
      jobFile: copy,
      objects,
      async cleanup() {
        await rm(folder, { recursive: true, force: true })
        await rm(copy, { force: true })
      },
    }
  } catch (error) {
    await rm(folder, { recursive: true, force: true })
    throw error
  }
}
