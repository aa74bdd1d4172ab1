/**
 * Writes that may wait a moment: records a node writes with every task (a requestor's accepted results and running
 * usage), where a transaction each would cost more than the task. They run together in one transaction once the
 * current turn of the event loop is over (setImmediate), or at once on flush(); of writes given the same key only the
 * latest runs. Reads of what they write flush first, and so does closing the store.
 */
import type { Db } from './database.ts'

export interface WriteBehind {
  /** Runs `write` soon, with the writes asked for meanwhile, in one transaction; it replaces a pending write of `key`. */
  soon(key: string, write: () => void): void
  /** Runs the pending writes now. Throws what the first failing write threw (the others still ran). */
  flush(): void
}

export function createWriteBehind(db: Db): WriteBehind {
  const pending = new Map<string, () => void>()
  let scheduled: NodeJS.Immediate | undefined

  function flush(): void {
    if (scheduled !== undefined) clearImmediate(scheduled)
    scheduled = undefined
    if (pending.size === 0 || !db.open) return
    const writes = [...pending.values()]
    pending.clear()
    try {
      db.transaction(() => {
        for (const write of writes) write()
      })()
    } catch {
      // One write failed and the transaction with it: each goes alone, so that the others are kept.
      let first: unknown
      for (const write of writes) {
        try {
          write()
        } catch (error) {
          first ??= error
        }
      }
      if (first !== undefined) throw first
    }
  }

  return {
    soon(key, write) {
      pending.delete(key)
      pending.set(key, write)
      scheduled ??= setImmediate(() => {
        try {
          flush()
        } catch (error) {
          // Nobody waits on a write made later: say so rather than end the process.
          process.emitWarning(`a deferred database write failed: ${(error as Error).message}`)
        }
      })
    },
    flush,
  }
}
