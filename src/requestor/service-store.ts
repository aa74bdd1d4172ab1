/**
 * What a requestor node keeps of the services it owns, so that after a restart it takes them up where they were: each
 * service's spec, the packages its replicas run (as files in the node's `services/` folder, by digest), and each
 * replica's placement (agreement, the provider's signed offer as it was, region) and activity. Saved whenever a
 * replica changes; the node reads it back at start (services.ts `restore`).
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import type { Agreement } from '../market/agreement.ts'
import type { Offer } from '../market/offer.ts'
import type { Store } from '../store/store.ts'
import type { Placement, ServicePackage } from './service-replicas.ts'
import { parseServiceSpec } from './service-spec.ts'

/** A replica as saved: where it runs and under which agreement, and its activity if it had one. */
export interface SavedReplica {
  id: string
  region: string | undefined
  placement: Placement
  pkg: ServicePackage
  activityId: string | undefined
  restarts: number
}

/** A service as saved. */
export interface SavedService {
  current: ServicePackage
  replicas: SavedReplica[]
  usedAgreements: string[]
}

const documentSchema = z.object({
  current: z.string(),
  packages: z.record(z.string(), z.object({ spec: z.unknown(), file: z.string().optional() })),
  replicas: z.array(z.object({
    id: z.string(),
    region: z.string().optional(),
    package: z.string(),
    agreementId: z.string(),
    offer: z.unknown(),
    activityId: z.string().optional(),
    restarts: z.number().int().nonnegative(),
  })),
  usedAgreements: z.array(z.string()),
})

type ServiceDocument = z.output<typeof documentSchema>

/** A package's key: the digest of its spec and bytes, so that two versions never share a file. */
function packageKey(pkg: ServicePackage): string {
  const hash = createHash('sha256').update(JSON.stringify(pkg.spec))
  if (pkg.bytes !== undefined) hash.update(pkg.bytes)
  return hash.digest('hex').slice(0, 32)
}

/** Writes a package's bytes once (a new file is renamed into place, so a crash never leaves half of one). */
async function keepPackage(dir: string, key: string, pkg: ServicePackage): Promise<string | undefined> {
  if (pkg.bytes === undefined) return undefined
  const file = `${key}.pkg`
  const path = join(dir, file)
  if (!existsSync(path)) {
    await mkdir(dir, { recursive: true })
    await writeFile(`${path}.part`, pkg.bytes, { mode: 0o600 })
    await rename(`${path}.part`, path)
  }
  return file
}

/** Saves a service: its packages in `dir`, the rest in the store. */
export async function saveService(store: Store, dir: string, name: string, service: SavedService): Promise<void> {
  const packages: ServiceDocument['packages'] = {}
  const keyOf = async (pkg: ServicePackage): Promise<string> => {
    const key = packageKey(pkg)
    if (packages[key] === undefined) {
      const file = await keepPackage(dir, key, pkg)
      packages[key] = { spec: pkg.spec, ...(file === undefined ? {} : { file }) }
    }
    return key
  }
  const document: ServiceDocument = {
    current: await keyOf(service.current),
    packages,
    replicas: [],
    usedAgreements: service.usedAgreements,
  }
  for (const replica of service.replicas) {
    document.replicas.push({
      id: replica.id,
      ...(replica.region === undefined ? {} : { region: replica.region }),
      package: await keyOf(replica.pkg),
      agreementId: replica.placement.agreement.id,
      offer: replica.placement.offer,
      ...(replica.activityId === undefined ? {} : { activityId: replica.activityId }),
      restarts: replica.restarts,
    })
  }
  store.services.save(name, document)
}

/**
 * The services saved in the store, with their packages read back from `dir`. A service whose document or package no
 * longer reads is left out and reported through `log` (its replicas run until their agreements end).
 */
export async function loadServices(store: Store, dir: string, log: (line: string) => void): Promise<SavedService[]> {
  const loaded: SavedService[] = []
  for (const record of store.services.list()) {
    try {
      loaded.push(await loadService(store, dir, documentSchema.parse(record.document)))
    } catch (error) {
      log(`service ${record.name} could not be taken up again: ${(error as Error).message}`)
    }
  }
  return loaded
}

async function loadService(store: Store, dir: string, document: ServiceDocument): Promise<SavedService> {
  const packages = new Map<string, ServicePackage>()
  const packageOf = async (key: string): Promise<ServicePackage> => {
    const known = packages.get(key)
    if (known !== undefined) return known
    const saved = document.packages[key]
    if (saved === undefined) throw new Error(`its package ${key} is not in its record`)
    const pkg: ServicePackage = { spec: parseServiceSpec(saved.spec), ...(saved.file === undefined ? {} : { bytes: new Uint8Array(await readFile(join(dir, saved.file))) }) }
    packages.set(key, pkg)
    return pkg
  }
  const replicas: SavedReplica[] = []
  for (const saved of document.replicas) {
    const agreement = store.agreements.get(saved.agreementId)?.document as Agreement | undefined
    if (agreement === undefined) throw new Error(`replica ${saved.id}'s agreement ${saved.agreementId} is not in the store`)
    replicas.push({
      id: saved.id,
      region: saved.region,
      placement: { agreement, offer: saved.offer as Offer, region: saved.region },
      pkg: await packageOf(saved.package),
      activityId: saved.activityId,
      restarts: saved.restarts,
    })
  }
  return { current: await packageOf(document.current), replicas, usedAgreements: document.usedAgreements }
}
