/**
 * The storage of a requestor node that keeps running (`hearth requestor start`): its storage key (made at the first
 * start, with the warning that losing it loses the data), its dispersed store with the manifest and holdings kept in
 * `<data dir>/storage`, the upkeep (audits, repair, holdings) running, and the API's storage commands.
 */
import { join } from 'node:path'
import type { ErasureParams } from '../storage/erasure.ts'
import { loadStorageKey, storageKeyWarning } from '../storage/storage-key.ts'
import { createDispersedStore } from './dispersed-store.ts'
import type { ReputationBook } from './reputation.ts'
import type { ReplicaDeps } from './service-replicas.ts'
import { createStorageApi, type StorageApi } from './storage-api.ts'
import { createStorageUpkeep, type UpkeepOptions } from './storage-upkeep.ts'

export interface NodeStorage {
  api: StorageApi
  stop(): Promise<void>
}

export async function startNodeStorage(deps: ReplicaDeps & { reputation?: ReputationBook }, dataDir: string, log: (line: string) => void, options: { code?: ErasureParams; regions?: string[]; maxPerGibHourWei?: bigint; constraints?: string; upkeep?: Partial<UpkeepOptions> } = {}): Promise<NodeStorage> {
  const keyPath = join(dataDir, 'storage.key')
  const { key, created } = await loadStorageKey(keyPath, { create: true })
  if (created) log(`made the storage key ${keyPath}. ${storageKeyWarning}`)
  const store = createDispersedStore({ ...deps, key, manifestPath: join(dataDir, 'storage', 'manifest.sealed'), log,
    ...(options.code === undefined ? {} : { code: options.code }),
    ...(options.regions === undefined ? {} : { regions: options.regions }),
    ...(options.maxPerGibHourWei === undefined ? {} : { maxPerGibHourWei: options.maxPerGibHourWei }),
    ...(options.constraints === undefined ? {} : { constraints: options.constraints }),
  })
  await store.open()
  const running = createStorageUpkeep(store.context, options.upkeep)
  running.start()
  const api = createStorageApi({ dataDir, store, upkeep: running, log })
  return {
    api,
    async stop() {
      running.stop()
      await api.close()
      // Holdings stay live: providers keep the pieces while they are paid, and the node takes them up again.
      await store.close({ settle: false })
    },
  }
}
