/**
 * Activities as each side keeps them: the provider that runs one and the requestor that created it. State changes are
 * written as they happen, so after a restart a node knows which activities were running when it went down.
 */
import type { Db } from './database.ts'

export type ActivityRole = 'requestor' | 'provider'

export interface ActivityRecord {
  role: ActivityRole
  id: string
  agreementId: string
  /** The other side's address. */
  peer: string
  state: string
  batchIds: string[]
  /** Metered so far: golem.usage.duration_sec and golem.usage.cpu_sec. */
  usage: { durationSec: number; cpuSec: number } | null
  lastError: string | null
  createdAtMs: number
  updatedAtMs: number
}

interface ActivityRow {
  role: ActivityRole
  id: string
  agreement_id: string
  peer: string
  state: string
  batch_ids: string
  usage: string | null
  last_error: string | null
  created_at_ms: number
  updated_at_ms: number
}

const fromRow = (row: ActivityRow): ActivityRecord => ({
  role: row.role,
  id: row.id,
  agreementId: row.agreement_id,
  peer: row.peer,
  state: row.state,
  batchIds: JSON.parse(row.batch_ids) as string[],
  usage: row.usage === null ? null : (JSON.parse(row.usage) as ActivityRecord['usage']),
  lastError: row.last_error,
  createdAtMs: row.created_at_ms,
  updatedAtMs: row.updated_at_ms,
})

export function createActivityRepository(db: Db) {
  const insert = db.prepare(
    `INSERT INTO activities (role, id, agreement_id, peer, state, batch_ids, usage, last_error, created_at_ms, updated_at_ms)
     VALUES (@role, @id, @agreementId, @peer, @state, '[]', NULL, NULL, @createdAtMs, @createdAtMs)`,
  )
  const byId = db.prepare<[ActivityRole, string], ActivityRow>('SELECT * FROM activities WHERE role = ? AND id = ?')
  const byState = db.prepare<[ActivityRole, string], ActivityRow>('SELECT * FROM activities WHERE role = ? AND state = ? ORDER BY created_at_ms')
  const byAgreement = db.prepare<[ActivityRole, string], ActivityRow>('SELECT * FROM activities WHERE role = ? AND agreement_id = ? ORDER BY created_at_ms')
  const updateState = db.prepare(
    `UPDATE activities SET state = @state, last_error = COALESCE(@lastError, last_error), updated_at_ms = @nowMs WHERE role = @role AND id = @id`,
  )
  const updateUsage = db.prepare('UPDATE activities SET usage = @usage, updated_at_ms = @nowMs WHERE role = @role AND id = @id')
  const appendBatch = db.prepare(
    `UPDATE activities SET batch_ids = json_insert(batch_ids, '$[#]', @batchId), updated_at_ms = @nowMs WHERE role = @role AND id = @id`,
  )
  const markUnfinished = db.prepare(
    `UPDATE activities SET state = @state, last_error = @reason, updated_at_ms = @nowMs
     WHERE role = @role AND state NOT IN ('Terminated', 'Unresponsive')`,
  )
  const unfinished = db.prepare<[ActivityRole], ActivityRow>(
    `SELECT * FROM activities WHERE role = ? AND state NOT IN ('Terminated', 'Unresponsive') ORDER BY created_at_ms`,
  )

  return {
    create(record: { role: ActivityRole; id: string; agreementId: string; peer: string; state: string; createdAtMs: number }): void {
      insert.run(record)
    },
    get(role: ActivityRole, id: string): ActivityRecord | undefined {
      const row = byId.get(role, id)
      return row === undefined ? undefined : fromRow(row)
    },
    list(role: ActivityRole, filter: { state?: string; agreementId?: string } = {}): ActivityRecord[] {
      if (filter.agreementId !== undefined) {
        return byAgreement.all(role, filter.agreementId).map(fromRow).filter((r) => filter.state === undefined || r.state === filter.state)
      }
      if (filter.state !== undefined) return byState.all(role, filter.state).map(fromRow)
      return db.prepare<[ActivityRole], ActivityRow>('SELECT * FROM activities WHERE role = ? ORDER BY created_at_ms').all(role).map(fromRow)
    },
    setState(role: ActivityRole, id: string, state: string, lastError?: string, nowMs = Date.now()): void {
      updateState.run({ role, id, state, lastError: lastError ?? null, nowMs })
    },
    setUsage(role: ActivityRole, id: string, usage: { durationSec: number; cpuSec: number }, nowMs = Date.now()): void {
      updateUsage.run({ role, id, usage: JSON.stringify(usage), nowMs })
    },
    addBatch(role: ActivityRole, id: string, batchId: string, nowMs = Date.now()): void {
      appendBatch.run({ role, id, batchId, nowMs })
    },
    /** Activities not yet ended, e.g. those that were running when the node stopped. */
    unfinished(role: ActivityRole): ActivityRecord[] {
      return unfinished.all(role).map(fromRow)
    },
    /** Marks every unfinished activity of `role` as ended in `state` (after a restart); returns how many there were. */
    endUnfinished(role: ActivityRole, state: string, reason: string, nowMs = Date.now()): number {
      return markUnfinished.run({ role, state, reason, nowMs }).changes
    },
  }
}
