import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { openDatabase, schemaVersion } from './database.ts'
import { migrations } from './migrations.ts'

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'hearth-store-'))
}

test('a new database is migrated to the latest version and reopening runs nothing twice', () => {
  const dir = tempDir()
  try {
    const path = join(dir, 'node.db')
    const db = openDatabase({ path })
    assert.equal(schemaVersion(db), migrations.length)
    db.prepare("INSERT INTO agreements VALUES ('0x1', 'provider', '0xr', '0xp', 'approved', '{}', 1, 1)").run()
    db.close()
    const again = openDatabase({ path })
    assert.equal(schemaVersion(again), migrations.length)
    assert.equal((again.prepare('SELECT count(*) AS n FROM agreements').get() as { n: number }).n, 1)
    again.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a later migration runs on an existing database and keeps its rows', () => {
  const dir = tempDir()
  try {
    const path = join(dir, 'node.db')
    openDatabase({ path, migrations: ['CREATE TABLE t (x INTEGER)'] }).exec('INSERT INTO t VALUES (7)')
    const db = openDatabase({ path, migrations: ['CREATE TABLE t (x INTEGER)', 'ALTER TABLE t ADD COLUMN y TEXT'] })
    assert.equal(schemaVersion(db), 2)
    assert.deepEqual(db.prepare('SELECT x, y FROM t').all(), [{ x: 7, y: null }])
    db.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a failing migration leaves the previous version intact and says which one failed', () => {
  const dir = tempDir()
  try {
    const path = join(dir, 'node.db')
    openDatabase({ path, migrations: ['CREATE TABLE t (x INTEGER)'] }).close()
    assert.throws(
      () => openDatabase({ path, migrations: ['CREATE TABLE t (x INTEGER)', 'CREATE TABLE u (a); NOT SQL'] }),
      (error) => isHearthError(error, 'HEARTH_ERR_STORE_MIGRATION') && /migration 2/.test(error.message),
    )
    const db = openDatabase({ path, migrations: ['CREATE TABLE t (x INTEGER)'] })
    assert.equal(schemaVersion(db), 1)
    assert.equal(db.prepare("SELECT name FROM sqlite_master WHERE name = 'u'").get(), undefined)
    db.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a database from a newer Hearth is refused rather than damaged', () => {
  const dir = tempDir()
  try {
    const path = join(dir, 'node.db')
    openDatabase({ path, migrations: ['CREATE TABLE a (x)', 'CREATE TABLE b (x)'] }).close()
    assert.throws(
      () => openDatabase({ path, migrations: ['CREATE TABLE a (x)'] }),
      (error) => isHearthError(error, 'HEARTH_ERR_STORE_MIGRATION') && /newer than this Hearth knows/.test(error.message),
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the database file is readable by its owner only, whatever the umask, and an existing file is tightened', () => {
  const dir = tempDir()
  const umask = process.umask(0o022)
  try {
    const fresh = join(dir, 'fresh.db')
    openDatabase({ path: fresh }).close()
    assert.equal(statSync(fresh).mode & 0o777, 0o600)
    const loose = join(dir, 'loose.db')
    writeFileSync(loose, '', { mode: 0o644 })
    const db = openDatabase({ path: loose })
    db.prepare("INSERT INTO agreements VALUES ('0x1', 'provider', '0xr', '0xp', 'approved', '{}', 1, 1)").run()
    assert.equal(statSync(loose).mode & 0o777, 0o600)
    assert.equal(statSync(`${loose}-wal`).mode & 0o777, 0o600)
    db.close()
  } finally {
    process.umask(umask)
    rmSync(dir, { recursive: true, force: true })
  }
})

test('vouchers stored before amounts were sortable get their sort key from the migration', () => {
  const dir = tempDir()
  try {
    const path = join(dir, 'old.db')
    const old = openDatabase({ path, migrations: migrations.slice(0, 5) })
    old.prepare("INSERT INTO agreements VALUES ('0x1', 'provider', '0xr', '0xp', 'approved', '{}', 1, 1)").run()
    for (const amount of ['9', '10', '100']) old.prepare("INSERT INTO vouchers VALUES ('0x1', ?, '{}', 1, NULL)").run(amount)
    old.close()
    const db = openDatabase({ path })
    const top = db.prepare("SELECT cumulative_wei FROM vouchers WHERE agreement_id = '0x1' ORDER BY amount_key DESC LIMIT 1").get() as { cumulative_wei: string }
    assert.equal(top.cumulative_wei, '100')
    db.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
