/**
 * Task directories for one-shot tasks, one task at a time each. Making and removing a folder for every task of a
 * millisecond costs more than the task (on ext4 the inode allocator grows slower the more inodes were freed lately),
 * so a directory the task left exactly as it got it is kept for the next task of the same group (an agreement, so
 * never another requestor's): still empty, with the same modification and change times, mode, size and link count as
 * when it was made. A task that created, removed or changed anything in it, or its times or mode, gets its directory
 * removed with whatever is in it; so nothing a task does reaches a later one through its directory. Kept directories
 * are removed after a few idle seconds, and all of them on close().
 */
import { lstatSync, mkdirSync, readdirSync, rmdirSync, type BigIntStats } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { removeTaskDir } from './task-core.ts'

export interface TaskDirs {
  /** An empty directory of its own for one task under the base folder; reused only within `group`. */
  take(group: string): string
  /** The task's directory back: kept for the group's next task when untouched, else removed with what it holds. */
  give(group: string, dir: string): Promise<void>
  /** Removes the kept directories; directories given back later are removed at once. */
  close(): Promise<void>
}

export interface TaskDirsInit {
  /** Where the directories are made (it must exist). */
  base: string
  /** Start of each directory's name. */
  prefix?: string
  /** Directories kept per group (default 16). */
  keepPerGroup?: number
  /** A kept directory unused this long is removed (default 10 s). */
  idleMs?: number
}

/** What must not have changed in a directory for it to be kept (its access time may: reading it sets that). */
function fingerprint(stats: BigIntStats): string {
  return [stats.ino, stats.mode, stats.nlink, stats.size, stats.uid, stats.gid, stats.mtimeNs, stats.ctimeNs].join(':')
}

interface Kept {
  dir: string
  timer: NodeJS.Timeout
}

export function createTaskDirs(init: TaskDirsInit): TaskDirs {
  const keepPerGroup = init.keepPerGroup ?? 16
  const idleMs = init.idleMs ?? 10_000
  /** How each directory handed out looked when it was made. */
  const made = new Map<string, string>()
  const kept = new Map<string, Kept[]>()
  let closed = false

  function discard(dir: string): void {
    made.delete(dir)
    try {
      rmdirSync(dir)
    } catch {
      // gone already, or not empty after all: the recursive removal below takes it
      void removeTaskDir(dir).catch(() => undefined)
    }
  }

  return {
    take(group) {
      const entry = kept.get(group)?.pop()
      if (entry !== undefined) {
        clearTimeout(entry.timer)
        if (kept.get(group)!.length === 0) kept.delete(group)
        return entry.dir
      }
      const dir = join(init.base, `${init.prefix ?? ''}${randomUUID()}`)
      mkdirSync(dir)
      made.set(dir, fingerprint(lstatSync(dir, { bigint: true })))
      return dir
    },

    async give(group, dir) {
      const original = made.get(dir)
      const list = kept.get(group) ?? []
      if (original !== undefined && !closed && list.length < keepPerGroup) {
        try {
          if (readdirSync(dir).length === 0 && fingerprint(lstatSync(dir, { bigint: true })) === original) {
            const entry: Kept = {
              dir,
              timer: setTimeout(() => {
                const current = kept.get(group)
                const index = current?.indexOf(entry) ?? -1
                if (index >= 0) current!.splice(index, 1)
                if (current?.length === 0) kept.delete(group)
                discard(dir)
              }, idleMs),
            }
            entry.timer.unref()
            list.push(entry)
            kept.set(group, list)
            return
          }
        } catch {
          // unreadable or gone: removed below
        }
      }
      made.delete(dir)
      await removeTaskDir(dir)
    },

    async close() {
      closed = true
      for (const list of kept.values()) {
        for (const entry of list) {
          clearTimeout(entry.timer)
          discard(entry.dir)
        }
      }
      kept.clear()
    },
  }
}
