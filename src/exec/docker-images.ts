/**
 * Images for the docker runtime, by content hash: an image a requestor sends travels as an archive in `docker save`
 * format, whose manifest names its config blob; the image id is the SHA-256 of that config, which is checked here
 * before and after the engine loads it, so a task that names an id runs exactly the image it means.
 */
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { HearthError } from '../errors.ts'
import { apiError } from './docker-api.ts'
import { imageIdPattern } from './docker-runtime.ts'
import type { DockerRuntime } from './docker-runtime.ts'

const blockBytes = 512
/** manifest.json and an image config are small; anything bigger is not an image archive Hearth accepts. */
const maxMetadataBytes = 4 << 20
const loadTimeoutMs = 300_000

/** The files of a tar archive, read lazily: name → (offset, size) of its content. */
async function tarIndex(handle: FileHandle): Promise<Map<string, { offset: number; size: number }>> {
  const entries = new Map<string, { offset: number; size: number }>()
  const header = Buffer.alloc(blockBytes)
  let offset = 0
  let longName: string | undefined
  for (;;) {
    const { bytesRead } = await handle.read(header, 0, blockBytes, offset)
    if (bytesRead < blockBytes || header.every((byte) => byte === 0)) break
    const field = (start: number, length: number): string => header.subarray(start, start + length).toString('utf8').replace(/\0.*$/s, '')
    const size = parseInt(field(124, 12).trim() || '0', 8)
    const type = field(156, 1)
    const prefix = field(345, 155)
    let name = longName ?? (prefix === '' ? field(0, 100) : `${prefix}/${field(0, 100)}`)
    longName = undefined
    const contentOffset = offset + blockBytes
    if (type === 'L' || type === 'x') {
      // GNU long name or a pax header: the next entry's name may live here.
      if (size <= maxMetadataBytes) {
        const body = Buffer.alloc(size)
        await handle.read(body, 0, size, contentOffset)
        const text = body.toString('utf8')
        if (type === 'L') longName = text.replace(/\0.*$/s, '')
        else longName = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(text)?.[1]
      }
    } else if (type === '0' || type === '' || type === '7') {
      name = name.replace(/^\.\//, '')
      entries.set(name, { offset: contentOffset, size })
    }
    offset = contentOffset + Math.ceil(size / blockBytes) * blockBytes
  }
  return entries
}

async function readEntry(handle: FileHandle, entry: { offset: number; size: number }): Promise<Buffer> {
  if (entry.size > maxMetadataBytes) throw invalidArchive(`an image metadata file of ${entry.size} bytes is too large`)
  const body = Buffer.alloc(entry.size)
  await handle.read(body, 0, entry.size, entry.offset)
  return body
}

function invalidArchive(message: string): HearthError {
  return new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `not a usable image archive: ${message}`, {
    hint: 'send one image saved with `docker save` or `podman save --format docker-archive`',
  })
}

/** The image id an archive (docker save format, one image) holds: the SHA-256 of its config, as computed here. */
export async function archiveImageId(tarPath: string): Promise<string> {
  const handle = await open(tarPath, 'r')
  try {
    const entries = await tarIndex(handle)
    const manifestEntry = entries.get('manifest.json')
    if (manifestEntry === undefined) throw invalidArchive('it has no manifest.json')
    let manifest: unknown
    try {
      manifest = JSON.parse((await readEntry(handle, manifestEntry)).toString('utf8'))
    } catch (error) {
      if (error instanceof HearthError) throw error
      throw invalidArchive('its manifest.json is not JSON')
    }
    if (!Array.isArray(manifest) || manifest.length !== 1 || typeof (manifest[0] as { Config?: unknown }).Config !== 'string') {
      throw invalidArchive('its manifest must list exactly one image with a Config')
    }
    const configName = ((manifest[0] as { Config: string }).Config).replace(/^\.\//, '')
    const configEntry = entries.get(configName)
    if (configEntry === undefined) throw invalidArchive(`its config ${configName} is missing`)
    return `sha256:${createHash('sha256').update(await readEntry(handle, configEntry)).digest('hex')}`
  } finally {
    await handle.close()
  }
}

/**
 * Loads an image archive (POST /images/load) and returns its id. With `expectedId`, an archive holding another image
 * is refused before the engine sees it. The engine must then hold exactly that id.
 */
export async function loadImageArchive(runtime: DockerRuntime, tarPath: string, expectedId?: string): Promise<string> {
  const id = await archiveImageId(tarPath)
  if (expectedId !== undefined && id !== expectedId) {
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the image archive holds ${id}, not the expected ${expectedId}`, { details: { expected: expectedId, actual: id } })
  }
  if (await runtime.hasImage(id)) return id
  const answer = await runtime.api.call({ method: 'POST', path: '/images/load', query: { quiet: true }, file: tarPath, contentType: 'application/x-tar', timeoutMs: loadTimeoutMs })
  if (answer.status !== 200) throw apiError('load the image archive', answer)
  // A load reports failure inside a 200 stream ({"error": …}) on some engines.
  const failure = /"error(?:Detail)?"\s*:\s*"([^"]*)"/.exec(answer.body.toString('utf8'))
  if (failure !== null) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `the engine could not load the image archive: ${failure[1]}`)
  if (!(await runtime.hasImage(id))) {
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the engine loaded the archive but does not hold ${id} (its config hash)`, { details: { id } })
  }
  return id
}

/**
 * Imports a root filesystem tarball as a one-layer image (POST /images/create?fromSrc=-, what `docker import` does)
 * and returns its id. For images built on the provider itself, e.g. the test image from busybox; no registry involved.
 */
export async function importRootfsArchive(runtime: DockerRuntime, tarPath: string, repository = 'hearth-import'): Promise<string> {
  const answer = await runtime.api.call({
    method: 'POST',
    path: '/images/create',
    query: { fromSrc: '-', repo: repository, tag: 'latest' },
    file: tarPath,
    contentType: 'application/x-tar',
    timeoutMs: loadTimeoutMs,
  })
  if (answer.status !== 200) throw apiError('import the root filesystem', answer)
  const text = answer.body.toString('utf8')
  const failure = /"error(?:Detail)?"\s*:\s*"([^"]*)"/.exec(text)
  if (failure !== null) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `the engine could not import the root filesystem: ${failure[1]}`)
  // Docker answers {"status":"sha256:…"}, podman {"status":…,"id":"sha256:…"}: the last id-shaped value is the image.
  const ids = [...text.matchAll(/sha256:[0-9a-f]{64}/g)].map((match) => match[0])
  const id = ids.at(-1)
  if (id === undefined || !imageIdPattern.test(id) || !(await runtime.hasImage(id))) {
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', `the engine imported the root filesystem but named no image id: ${text.slice(0, 300)}`)
  }
  return id
}

/** Writes the image as a `docker save` archive (GET /images/{id}/get): what a requestor sends to providers. */
export async function saveImageArchive(runtime: DockerRuntime, id: string, tarPath: string): Promise<void> {
  await runtime.api.download({ method: 'GET', path: `/images/${id}/get`, timeoutMs: loadTimeoutMs }, tarPath, `save image ${id}`)
}
