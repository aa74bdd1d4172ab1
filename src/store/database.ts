/**
 * store/ owns each node's SQLite database: opening it, migrating it to the current schema, and the repositories that
 * read and write one aggregate each. Nothing above this layer writes SQL.
 */
import Database from 'better-sqlite3'
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import { HearthError } from '../errors.ts'
import { migrations as defaultMigrations } from './migrations.ts'

export type Db = Database.Database

export interface OpenDatabaseInit {
  /** File path, or ':memory:' for a throwaway database. */
  path: string
  /** Override for tests of the migration runner itself. */
  migrations?: readonly string[]
}

export function openDatabase(init: OpenDatabaseInit): Db {
  const migrations = init.migrations ?? defaultMigrations
  let db: Db
  try {
    if (init.path !== ':memory:') {
      mkdirSync(dirname(init.path), { recursive: true, mode: 0o700 })
      // Agreements, vouchers and earnings are the owner's business: the file is the owner's alone whatever the umask,
      // and SQLite gives its -wal and -shm files the database file's mode.
      closeSync(openSync(init.path, 'a', 0o600))
      chmodSync(init.path, 0o600)
    }
    db = new Database(init.path)
    db.pragma('journal_mode = WAL')
    // With WAL, NORMAL syncs at checkpoints rather than at every commit: a crash of the process loses nothing, a
    // power cut may lose the last commits (never corrupts). Signed documents are also held by the other side.
    db.pragma('synchronous = NORMAL')
    db.pragma('foreign_keys = ON')
    db.pragma('busy_timeout = 5000')
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_STORE_MIGRATION', `cannot open the node database at ${init.path}`, {
      hint: 'check that the data directory exists, is writable, and is not used by another Hearth version',
      cause,
    })
  }
  migrate(db, migrations, init.path)
  return db
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number
}

function migrate(db: Db, migrations: readonly string[], path: string): void {
  const current = schemaVersion(db)
  if (current > migrations.length) {
    db.close()
    throw new HearthError(
      'HEARTH_ERR_STORE_MIGRATION',
      `the node database at ${path} has schema version ${current}, newer than this Hearth knows (${migrations.length})`,
      { hint: 'upgrade Hearth, or point it at another data directory' },
    )
  }
  for (let version = current + 1; version <= migrations.length; version++) {
    // Each migration and its version bump commit together, so a crash never leaves a half-migrated schema.
    const step = db.transaction(() => {
      db.exec(migrations[version - 1]!)
      db.pragma(`user_version = ${version}`)
    })
    try {
      step()
    } catch (cause) {
      db.close()
      throw new HearthError('HEARTH_ERR_STORE_MIGRATION', `migration ${version} of ${path} failed`, { cause })
    }
  }
}
