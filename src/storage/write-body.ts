/** Writing a streamed body to a file, for the folders the storage side keeps (staged parts, spooled bodies, objects). */
import type { FileHandle } from 'node:fs/promises'

/** Writes `body` to `handle` in writes of about 1 MiB (few round trips to the disk); resolves with its length. */
export async function writeBody(handle: FileHandle, body: AsyncIterable<Uint8Array>, onChunk: (chunk: Uint8Array) => void = () => undefined): Promise<number> {
  let pending: Uint8Array[] = []
  let pendingBytes = 0
  let total = 0
  const flush = async (): Promise<void> => {
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes)
    pending = []
    pendingBytes = 0
    for (let offset = 0; offset < data.length; ) offset += (await handle.write(data, offset, data.length - offset)).bytesWritten
  }
  for await (const chunk of body) {
    onChunk(chunk)
    pending.push(chunk)
    pendingBytes += chunk.length
    total += chunk.length
    if (pendingBytes >= 1024 * 1024) await flush()
  }
  if (pendingBytes > 0) await flush()
  return total
}
