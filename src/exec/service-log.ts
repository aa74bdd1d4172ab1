/**
 * A served program's log: its stdout and stderr in one host file, in the order they come, kept under a bound. When a
 * write would pass the bound, the older half is dropped first: the file's newest bytes are moved to its start, in
 * place and in small pieces, so that neither the log nor its kept half is ever held in memory.
 */
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'

/** The piece size of the in-place move that drops the older half. */
const moveChunkBytes = 64 << 10
/** Writes queued but not yet on disk past which write() asks its source to pause. */
const highWaterBytes = 1 << 20

export class BoundedLog {
  private size = 0
  private queued = 0
  private chain: Promise<void> = Promise.resolve()
  private failure: unknown
  private drainWaiters: (() => void)[] = []
  private closing: Promise<void> | undefined
  private closedTail: string | undefined
  /** Bytes dropped so far to keep the bound. */
  dropped = 0

  private constructor(
    private readonly handle: FileHandle,
    readonly maxBytes: number,
  ) {}

  /** Creates or truncates the file at `path`. */
  static async open(path: string, maxBytes: number): Promise<BoundedLog> {
    // Read too: dropping the older half moves the newest bytes within the file.
    return new BoundedLog(await open(path, 'w+', 0o600), maxBytes)
  }

  /** Bytes on disk now (once queued writes are done). */
  get bytes(): number {
    return this.size
  }

  /**
   * Queues `chunk` (written in order). Returns false when enough is queued that the source should pause until
   * onDrain's callback. A failed write (a full disk) drops the rest silently: the log is best effort, the server runs on.
   */
  write(chunk: Buffer): boolean {
    if (chunk.length === 0 || this.maxBytes <= 0 || this.closing !== undefined) return true
    this.queued += chunk.length
    this.chain = this.chain
      .then(() => (this.failure === undefined ? this.append(chunk) : undefined))
      .catch((error: unknown) => {
        this.failure = error
      })
      .finally(() => {
        this.queued -= chunk.length
        if (this.queued < highWaterBytes / 2) for (const waiter of this.drainWaiters.splice(0)) waiter()
      })
    return this.queued < highWaterBytes
  }

  /** Calls `callback` once the queue has drained below half the high-water mark. */
  onDrain(callback: () => void): void {
    if (this.queued < highWaterBytes / 2) callback()
    else this.drainWaiters.push(callback)
  }

  /** Resolves when every queued write is on disk. */
  async flush(): Promise<void> {
    await this.chain
  }

  /** The file's last `maxLines` lines (of at most its last `maxBytes` bytes), for error messages. */
  async tail(maxLines: number, maxBytes = 2048): Promise<string> {
    await this.chain
    if (this.closedTail !== undefined) return lastLines(this.closedTail, maxLines)
    const length = Math.min(this.size, maxBytes)
    if (length === 0) return ''
    const buffer = Buffer.alloc(length)
    await this.handle.read(buffer, 0, length, this.size - length)
    return lastLines(buffer.toString('utf8'), maxLines)
  }

  /** Closes the file, keeping its last lines for tail(). Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closedTail = await this.tail(50).catch(() => '')
      await this.handle.close().catch(() => undefined)
    })()
    return this.closing
  }

  private async append(chunk: Buffer): Promise<void> {
    if (this.size + chunk.length > this.maxBytes) await this.dropOlderHalf(chunk.length)
    const part = chunk.length > this.maxBytes - this.size ? chunk.subarray(chunk.length - (this.maxBytes - this.size)) : chunk
    await this.handle.write(part, 0, part.length, this.size)
    this.size += part.length
    this.dropped += chunk.length - part.length
  }

  /**
   * Keeps the file's newest bytes so that with `incoming` more it holds half its bound; a chunk larger than that
   * replaces the whole file (append then writes as much of its end as the bound takes).
   */
  private async dropOlderHalf(incoming: number): Promise<void> {
    const half = Math.floor(this.maxBytes / 2)
    const keep = Math.max(0, Math.min(this.size, half - incoming))
    const from = this.size - keep
    if (keep > 0 && from > 0) {
      // Forward copy to a lower offset: the source of each piece lies ahead of everything written so far.
      const buffer = Buffer.alloc(Math.min(moveChunkBytes, keep))
      for (let offset = 0; offset < keep; offset += buffer.length) {
        const length = Math.min(buffer.length, keep - offset)
        const { bytesRead } = await this.handle.read(buffer, 0, length, from + offset)
        await this.handle.write(buffer, 0, bytesRead, offset)
      }
    }
    await this.handle.truncate(keep)
    this.dropped += from
    this.size = keep
  }
}

function lastLines(text: string, maxLines: number): string {
  return text.trimEnd().split('\n').slice(-maxLines).join('\n')
}
