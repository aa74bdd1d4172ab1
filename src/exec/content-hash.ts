/**
 * Content ids for blobs (packages, inputs, results): 'sha256:<64 lowercase hex>'.
 * The algorithm is part of the id so that a later algorithm can coexist with old ids.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { HearthError } from '../errors.ts'

export const contentIdPrefix = 'sha256:'

const contentIdPattern = /^sha256:[0-9a-f]{64}$/

/** The content id of some bytes. */
export function sha256Hex(bytes: Uint8Array | string): string {
  return contentIdPrefix + createHash('sha256').update(bytes).digest('hex')
}

/** The content id of a file, read as a stream so that large files never sit in memory whole. */
export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256')
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT'
    throw new HearthError(missing ? 'HEARTH_ERR_JOB_INPUT_MISSING' : 'HEARTH_ERR_INTERNAL', `cannot read ${path} to hash it`, {
      hint: 'check that the file exists and is readable',
      details: { path },
      cause: error,
    })
  }
  return contentIdPrefix + hash.digest('hex')
}

export function isContentId(value: string): boolean {
  return contentIdPattern.test(value)
}
