/**
 * The provider's package cache: verified blobs by content id, bounded in total bytes and in count. When a new package
 * pushes it over either bound, the least recently used packages go first; packages in use are never removed.
 */
import { readdir, rm, stat, utimes } from 'node:fs/promises'
import { join } from 'node:path'

export interface PackageCacheInit {
  dir: string
  maxBytes: number
  maxEntries: number
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
    async evict() {
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
      for (const entry of entries) {
        if (bytes <= init.maxBytes && count <= init.maxEntries) break
        if (inUse.has(entry.contentId)) continue
        await rm(pathOf(entry.contentId), { force: true })
        bytes -= entry.bytes
        count--
        removed.push(entry.contentId)
      }
      return removed
    },
  }
}
