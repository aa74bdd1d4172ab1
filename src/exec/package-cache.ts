/**
 * The provider's package cache: verified blobs by content id, bounded in total bytes and in count. When a new package
 * pushes it over either bound, the least recently used packages go first; packages in use are never removed. What was
 * made from a package goes with it through `onEvict` (an image archive's loaded image: LoadedImages.archiveEvicted).
 */
import { readdir, rm, stat, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { HearthError } from '../errors.ts'

export interface PackageCacheInit {
  dir: string
  maxBytes: number
  maxEntries: number
  /**
   * Told each evicted package's content id once its file is gone. Awaited, one at a time; a hook that fails does not
   * stop the eviction, and evict() throws once it is done.
   */
  onEvict?: (contentId: string) => unknown
}

export interface PackageCache {
  /** Where the package with this content id lives (whether or not it is there yet). */
  pathOf(contentId: string): string
  /** Marks a package used now (least recently used goes first). */
  touch(contentId: string): Promise<void>
  /** Keeps a package from eviction while `use` runs. */
  using<T>(contentId: string, use: () => Promise<T>): Promise<T>
  /** Removes least recently used packages until both bounds hold; returns the content ids removed. */
  evict(): Promise<string[]>
}

export function createPackageCache(init: PackageCacheInit): PackageCache {
  const inUse = new Map<string, number>()
  const fileName = (contentId: string): string => contentId.replace(':', '-')
  const pathOf = (contentId: string): string => join(init.dir, fileName(contentId))
  // One eviction at a time: two at once would both count a file the other is removing, and tell onEvict twice.
  let evicting: Promise<unknown> = Promise.resolve()

  async function evictNow(): Promise<string[]> {
    const names = (await readdir(init.dir).catch(() => [] as string[])).filter((name) => /^sha256-[0-9a-f]{64}$/.test(name))
    const entries = (
      await Promise.all(
        names.map(async (name) => {
          const info = await stat(join(init.dir, name)).catch(() => undefined)
          return info === undefined ? undefined : { contentId: name.replace('-', ':'), bytes: info.size, usedMs: info.mtimeMs }
        }),
      )
    ).filter((entry) => entry !== undefined)
    entries.sort((a, b) => a.usedMs - b.usedMs)
    let bytes = entries.reduce((sum, entry) => sum + entry.bytes, 0)
    let count = entries.length
    const removed: string[] = []
    const failures: { contentId: string; error: unknown }[] = []
    for (const entry of entries) {
      if (bytes <= init.maxBytes && count <= init.maxEntries) break
      if (inUse.has(entry.contentId)) continue
      await rm(pathOf(entry.contentId), { force: true })
      bytes -= entry.bytes
      count--
      removed.push(entry.contentId)
      try {
        await init.onEvict?.(entry.contentId)
      } catch (error) {
        failures.push({ contentId: entry.contentId, error })
      }
    }
    if (failures.length > 0) {
      const first = failures[0]!
      throw new HearthError('HEARTH_ERR_EXEC_FAILED', `evicted ${removed.length} package(s), but releasing what ${failures.map((failure) => failure.contentId).join(', ')} left behind failed: ${(first.error as Error)?.message ?? String(first.error)}`, {
        hint: 'the packages are gone; check the container engine (loaded images are retried at the next eviction)',
        details: { removed, failed: failures.map((failure) => failure.contentId) },
        cause: first.error,
      })
    }
    return removed
  }

  return {
    pathOf,
    async touch(contentId) {
      const now = new Date()
      await utimes(pathOf(contentId), now, now).catch(() => undefined)
    },
    async using(contentId, use) {
      inUse.set(contentId, (inUse.get(contentId) ?? 0) + 1)
      try {
        return await use()
      } finally {
        const left = (inUse.get(contentId) ?? 1) - 1
        if (left === 0) inUse.delete(contentId)
        else inUse.set(contentId, left)
      }
    },
    evict() {
      const run = evicting.then(evictNow)
      evicting = run.catch(() => undefined)
      return run
    },
  }
}
