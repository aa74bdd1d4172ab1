/**
 * The services a requestor node owns, one JSON document each (see requestor/service-store.ts for its shape): written
 * whenever a service's replicas change, read when the node starts again, deleted when the service is removed.
 */
import type { Db } from './database.ts'

export interface ServiceRecord {
  name: string
  document: unknown
  updatedAtMs: number
}

interface ServiceRow {
  name: string
  document: string
  updated_at_ms: number
}

export function createServiceRepository(db: Db) {
  const upsert = db.prepare(
    `INSERT INTO services (name, document, updated_at_ms) VALUES (@name, @document, @updatedAtMs)
     ON CONFLICT (name) DO UPDATE SET document = excluded.document, updated_at_ms = excluded.updated_at_ms`,
  )
  const all = db.prepare<[], ServiceRow>('SELECT * FROM services ORDER BY name')
  const remove = db.prepare<[string]>('DELETE FROM services WHERE name = ?')
  return {
    save(name: string, document: unknown, updatedAtMs = Date.now()): void {
      upsert.run({ name, document: JSON.stringify(document), updatedAtMs })
    },
    list(): ServiceRecord[] {
      return all.all().map((row) => ({ name: row.name, document: JSON.parse(row.document) as unknown, updatedAtMs: row.updated_at_ms }))
    },
    delete(name: string): void {
      remove.run(name)
    },
  }
}
