/**
 * Images for the docker runtime, by content hash: an image a requestor sends travels as an archive in `docker save`
 * format, whose manifest names its config blob; the image id is the SHA-256 of that config, which is checked here
 * before and after the engine loads it, so a task that names an id runs exactly the image it means.
 *
 * Images are referred to by id only, and loading one never creates or moves a tag: the engine is sent a copy of the
 * archive, written as it streams, that holds only the config and the layers under fixed names and a manifest.json
 * without RepoTags; no `repositories` file, no OCI index.json (podman reads an OCI layout before manifest.json and
 * names the image after its `ref.name` annotation). Otherwise a requestor's archive that claims `busybox:latest` would
 * take that tag from the owner's image on a shared engine.
 *
 * Images this provider loaded are recorded in a small JSON file beside the package cache (createLoadedImages), so
 * that when the cache evicts the archive that loaded one, the image goes too: only if this provider loaded it, no tag
 * names it and no container uses it, and never by force.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname, posix } from 'node:path'
import { Readable } from 'node:stream'
import { HearthError } from '../errors.ts'
import { apiError, apiMessage } from './docker-api.ts'
import { imageIdPattern } from './docker-runtime.ts'
import type { DockerRuntime } from './docker-runtime.ts'

const blockBytes = 512
/** manifest.json and an image config are small; anything bigger is not an image archive Hearth accepts. */
const maxMetadataBytes = 4 << 20
/** More layers than any engine stacks (overlayfs stops near 128). */
const maxLayers = 512
/** A ustar size field holds 11 octal digits. */
const maxEntryBytes = 8 ** 11 - 1
const loadTimeoutMs = 300_000
const removeTimeoutMs = 120_000

interface TarEntry {
  offset: number
  size: number
}

interface TarIndex {
  files: Map<string, TarEntry>
  /** Hard links name another entry of the archive; symbolic links are relative to their own folder. */
  links: Map<string, { target: string; hard: boolean }>
}

/** A path inside the archive in one spelling: no `./`, no leading or trailing slash. */
function entryName(name: string): string {
  return posix.normalize(name).replace(/^(?:\.\/)+/, '').replace(/^\/+/, '').replace(/\/+$/, '')
}

function paxRecords(text: string): Map<string, string> {
  const records = new Map<string, string>()
  let at = 0
  while (at < text.length) {
    const space = text.indexOf(' ', at)
    const length = Number(text.slice(at, space))
    if (space < 0 || !Number.isInteger(length) || length <= 0) break
    const record = text.slice(space + 1, at + length - 1)
    const equals = record.indexOf('=')
    if (equals > 0) records.set(record.slice(0, equals), record.slice(equals + 1))
    at += length
  }
  return records
}

/** The files and links of a tar archive, read lazily: name → (offset, size) of its content. */
async function tarIndex(handle: FileHandle): Promise<TarIndex> {
  const files = new Map<string, TarEntry>()
  const links = new Map<string, { target: string; hard: boolean }>()
  const header = Buffer.alloc(blockBytes)
  let offset = 0
  let longName: string | undefined
  let longLink: string | undefined
  for (;;) {
    const { bytesRead } = await handle.read(header, 0, blockBytes, offset)
    if (bytesRead < blockBytes || header.every((byte) => byte === 0)) break
    // ustar, pax and GNU headers all carry this magic (Docker and podman write them); without it the sizes are noise.
    if (header.toString('latin1', 257, 262) !== 'ustar') throw invalidArchive('it is not a tar archive')
    const field = (start: number, length: number): string => header.subarray(start, start + length).toString('utf8').replace(/\0.*$/s, '')
    const size = parseInt(field(124, 12).trim() || '0', 8)
    if (!Number.isSafeInteger(size) || size < 0) throw invalidArchive('a tar header has no readable size')
    const type = field(156, 1)
    const prefix = field(345, 155)
    const name = entryName(longName ?? (prefix === '' ? field(0, 100) : `${prefix}/${field(0, 100)}`))
    const linkName = longLink ?? field(157, 100)
    longName = undefined
    longLink = undefined
    const contentOffset = offset + blockBytes
    if (type === 'L' || type === 'K' || type === 'x') {
      // GNU long names and pax headers: the next entry's name or link target may live here.
      if (size <= maxMetadataBytes) {
        const body = Buffer.alloc(size)
        await handle.read(body, 0, size, contentOffset)
        const text = body.toString('utf8')
        if (type === 'L') longName = text.replace(/\0.*$/s, '')
        else if (type === 'K') longLink = text.replace(/\0.*$/s, '')
        else {
          const records = paxRecords(text)
          longName = records.get('path')
          longLink = records.get('linkpath')
        }
      }
    } else if (type === '0' || type === '' || type === '7') {
      files.set(name, { offset: contentOffset, size })
    } else if (type === '1' || type === '2') {
      links.set(name, { target: linkName, hard: type === '1' })
    }
    offset = contentOffset + Math.ceil(size / blockBytes) * blockBytes
  }
  return { files, links }
}

/** The regular file a name leads to, following links inside the archive (docker's legacy layout links repeated layers). */
function lookup(index: TarIndex, name: string): TarEntry | undefined {
  let current = entryName(name)
  for (let hops = 0; hops < 16; hops++) {
    const file = index.files.get(current)
    if (file !== undefined) return file
    const link = index.links.get(current)
    if (link === undefined) return undefined
    current = entryName(link.hard || link.target.startsWith('/') ? link.target : posix.join(posix.dirname(current), link.target))
    if (current === '..' || current.startsWith('../')) return undefined
  }
  return undefined
}

async function readEntry(handle: FileHandle, entry: TarEntry): Promise<Buffer> {
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

/** What the engine is sent of an archive: its config (hashed here: the image id) and its layers, in order. */
interface ImageArchive {
  id: string
  config: Buffer
  layers: TarEntry[]
}

async function readImageArchive(tarPath: string): Promise<ImageArchive> {
  const handle = await open(tarPath, 'r')
  try {
    const index = await tarIndex(handle)
    const manifestEntry = lookup(index, 'manifest.json')
    if (manifestEntry === undefined) throw invalidArchive('it has no manifest.json')
    let manifest: unknown
    try {
      manifest = JSON.parse((await readEntry(handle, manifestEntry)).toString('utf8'))
    } catch (error) {
      if (error instanceof HearthError) throw error
      throw invalidArchive('its manifest.json is not JSON')
    }
    const image = (Array.isArray(manifest) && manifest.length === 1 ? manifest[0] : undefined) as { Config?: unknown; Layers?: unknown } | undefined
    if (typeof image?.Config !== 'string') throw invalidArchive('its manifest must list exactly one image with a Config')
    if (!Array.isArray(image.Layers) || !image.Layers.every((layer) => typeof layer === 'string') || image.Layers.length > maxLayers) {
      throw invalidArchive(`its manifest must list the image's layers (at most ${maxLayers})`)
    }
    const configEntry = lookup(index, image.Config)
    if (configEntry === undefined) throw invalidArchive(`its config ${image.Config} is missing`)
    const config = await readEntry(handle, configEntry)
    const layers = (image.Layers as string[]).map((name) => {
      const layer = lookup(index, name)
      if (layer === undefined) throw invalidArchive(`its layer ${name} is missing`)
      if (layer.size > maxEntryBytes) throw invalidArchive(`its layer ${name} is larger than a tar entry may be`)
      return layer
    })
    return { id: `sha256:${createHash('sha256').update(config).digest('hex')}`, config, layers }
  } finally {
    await handle.close()
  }
}

/** The image id an archive (docker save format, one image) holds: the SHA-256 of its config, as computed here. */
export async function archiveImageId(tarPath: string): Promise<string> {
  return (await readImageArchive(tarPath)).id
}

/** A ustar header for a regular file owned by root, dated 1970: nothing of the original's metadata travels. */
function tarHeader(name: string, size: number): Buffer {
  const header = Buffer.alloc(blockBytes)
  header.write(name, 0, 100, 'utf8')
  header.write('0000644\0', 100, 'latin1')
  header.write('0000000\0', 108, 'latin1')
  header.write('0000000\0', 116, 'latin1')
  header.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1')
  header.write('00000000000\0', 136, 'latin1')
  header.write('        ', 148, 'latin1')
  header.write('0', 156, 'latin1')
  header.write('ustar\0', 257, 'latin1')
  header.write('00', 263, 'latin1')
  let sum = 0
  for (const byte of header) sum += byte
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1')
  return header
}

const padding = (size: number): Buffer => Buffer.alloc((blockBytes - (size % blockBytes)) % blockBytes)

async function* untaggedChunks(tarPath: string, image: ImageArchive): AsyncGenerator<Buffer> {
  // A layer the manifest names twice (or through a link) is sent once.
  const names = new Map<number, string>()
  const unique: { name: string; entry: TarEntry }[] = []
  const layerNames = image.layers.map((entry) => {
    let name = names.get(entry.offset)
    if (name === undefined) {
      name = `layer-${names.size}.tar`
      names.set(entry.offset, name)
      unique.push({ name, entry })
    }
    return name
  })
  const manifest = Buffer.from(JSON.stringify([{ Config: 'config.json', RepoTags: null, Layers: layerNames }]))
  for (const [name, body] of [['manifest.json', manifest], ['config.json', image.config]] as const) {
    yield tarHeader(name, body.length)
    yield body
    yield padding(body.length)
  }
  for (const { name, entry } of unique) {
    yield tarHeader(name, entry.size)
    if (entry.size > 0) yield* createReadStream(tarPath, { start: entry.offset, end: entry.offset + entry.size - 1 })
    yield padding(entry.size)
  }
  yield Buffer.alloc(2 * blockBytes)
}

/**
 * The archive as the engine gets it, streamed (no second copy on disk): manifest.json with no RepoTags, config.json
 * (the bytes hashed for the id) and the layers, nothing else. What any tag the original claims cannot survive.
 */
export async function untaggedImageArchive(tarPath: string): Promise<Readable> {
  return Readable.from(untaggedChunks(tarPath, await readImageArchive(tarPath)), { objectMode: false })
}

/** The engine's view of an image: undefined when it does not hold exactly this id. */
export interface ImageInspection {
  id: string
  /** Names that point at it (`repo:tag`), [] when none. */
  tags: string[]
}

export async function inspectImage(runtime: DockerRuntime, id: string): Promise<ImageInspection | undefined> {
  if (!imageIdPattern.test(id)) return undefined
  const answer = await runtime.api.call({ method: 'GET', path: `/images/${id}/json` })
  if (answer.status === 404) return undefined
  if (answer.status !== 200) throw apiError(`look up image ${id}`, answer)
  const image = JSON.parse(answer.body.toString('utf8')) as { Id?: string; RepoTags?: string[] | null }
  // An engine resolves names and short ids too: only the exact id counts. Old Dockers call no tag `<none>:<none>`.
  if (image.Id !== id) return undefined
  return { id, tags: (image.RepoTags ?? []).filter((tag) => tag !== '<none>:<none>') }
}

async function loadArchive(runtime: DockerRuntime, tarPath: string, expectedId: string | undefined): Promise<{ id: string; loaded: boolean }> {
  const image = await readImageArchive(tarPath)
  const { id } = image
  if (expectedId !== undefined && id !== expectedId) {
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the image archive holds ${id}, not the expected ${expectedId}`, { details: { expected: expectedId, actual: id } })
  }
  if (await runtime.hasImage(id)) return { id, loaded: false }
  const answer = await runtime.api.call({
    method: 'POST',
    path: '/images/load',
    query: { quiet: true },
    body: Readable.from(untaggedChunks(tarPath, image), { objectMode: false }),
    contentType: 'application/x-tar',
    timeoutMs: loadTimeoutMs,
  })
  if (answer.status !== 200) throw apiError('load the image archive', answer)
  // A load reports failure inside a 200 stream ({"error": …}) on some engines.
  const failure = /"error(?:Detail)?"\s*:\s*"([^"]*)"/.exec(answer.body.toString('utf8'))
  if (failure !== null) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `the engine could not load the image archive: ${failure[1]}`)
  const held = await inspectImage(runtime, id)
  if (held === undefined) {
    throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_HASH', `the engine loaded the archive but does not hold ${id} (its config hash)`, { details: { id } })
  }
  // The archive named no tag; an engine that still made one has moved a name the owner may rely on: say so loudly.
  if (held.tags.length > 0) {
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', `the engine tagged image ${id} (${held.tags.join(', ')}) while loading an archive that names no tag`, {
      hint: 'check those names on the engine; use an engine that loads untagged archives untagged (Docker, podman 4 and later do)',
      details: { id, tags: held.tags },
    })
  }
  return { id, loaded: true }
}

/**
 * Loads an image archive (POST /images/load) and returns its id. With `expectedId`, an archive holding another image
 * is refused before the engine sees it. The engine must then hold exactly that id, untagged: the archive's tags are
 * never sent. An image the engine already holds is not loaded again.
 */
export async function loadImageArchive(runtime: DockerRuntime, tarPath: string, expectedId?: string): Promise<string> {
  return (await loadArchive(runtime, tarPath, expectedId)).id
}

/** What became of an image on removal: only `removed` took it off the engine. */
export interface ImageRemoval {
  image: string
  outcome: 'removed' | 'absent' | 'tagged' | 'in-use' | 'held' | 'refused'
  detail?: string
}

/** Containers, running or stopped, made from the image. */
async function containersUsing(runtime: DockerRuntime, id: string): Promise<string[]> {
  const containers = await runtime.api.json<{ Id: string; Image?: string; ImageID?: string }[]>(
    { method: 'GET', path: '/containers/json', query: { all: true } },
    'list containers',
  )
  const hex = id.slice('sha256:'.length)
  return (containers ?? []).filter((container) => [container.ImageID, container.Image].some((named) => named === id || named === hex)).map((container) => container.Id)
}

/**
 * Removes an image the caller loaded (LoadedImages decides that), unless a tag names it or a container uses it. Never
 * forced: the engine itself still refuses while any container, even one its API does not list, holds the image; and
 * an engine asked to remove a tagged image by id would drop the tag with it, hence the check first.
 */
export async function removeLoadedImage(runtime: DockerRuntime, id: string): Promise<ImageRemoval> {
  const held = await inspectImage(runtime, id)
  if (held === undefined) return { image: id, outcome: 'absent' }
  if (held.tags.length > 0) return { image: id, outcome: 'tagged', detail: held.tags.join(', ') }
  const users = await containersUsing(runtime, id)
  if (users.length > 0) return { image: id, outcome: 'in-use', detail: `containers ${users.map((user) => user.slice(0, 12)).join(', ')}` }
  const answer = await runtime.api.call({ method: 'DELETE', path: `/images/${id}`, query: { force: false, noprune: true }, timeoutMs: removeTimeoutMs })
  if (answer.status === 404) return { image: id, outcome: 'absent' }
  // 409: in use after all (a container made since, or outside this API), or children of it.
  if (answer.status === 409) return { image: id, outcome: 'refused', detail: apiMessage(answer) }
  if (answer.status !== 200) throw apiError(`remove image ${id}`, answer)
  return { image: id, outcome: 'removed' }
}

export interface LoadedImagesInit {
  runtime: DockerRuntime
  /** The record, a JSON file beside the package cache (e.g. `<packages dir>/loaded-images.json`): it survives restarts. */
  file: string
}

/** Images this provider put on the engine, each with the archives (package content ids) that load it. */
export interface LoadedImages {
  /**
   * loadImageArchive, recording the image when this load put it on the engine (or it is one of ours already). An
   * image the engine held before is not recorded, so it is never removed.
   */
  load(archiveId: string, tarPath: string, expectedId: string): Promise<string>
  /**
   * Keeps an image on the engine while a task or activity needs it, until the returned release is called. Take it
   * before asking whether the engine holds the image: it waits for a removal already under way to finish.
   */
  hold(imageId: string): Promise<() => void>
  /**
   * For the package cache's onEvict: the archive is gone, so an image no other cached archive loads is removed
   * (removeLoadedImage). Images that could not go yet (in use, held) are retried at the next eviction; an image the
   * owner has since tagged has become theirs and leaves the record.
   */
  archiveEvicted(archiveId: string): Promise<ImageRemoval[]>
  /** The record now: image id → archive ids. */
  list(): Promise<Map<string, string[]>>
}

/** The record of loaded images in its file: image id → the archives that load it, read once and written on change. */
interface ImageRecord {
  /**
   * Read-modify-write of the record, one at a time, written atomically (a crash leaves the old or the new one) and
   * only when it changed (every eviction asks, most about packages that loaded nothing).
   */
  update<T>(change: (images: Map<string, Set<string>>) => T): Promise<T>
  /** An image's archives in the record as last read or changed, without waiting for changes under way. */
  archivesOf(image: string): Set<string> | undefined
}

function serializeRecord(images: Map<string, Set<string>>): string {
  const sorted = Object.fromEntries([...images].sort(([a], [b]) => a.localeCompare(b)).map(([image, archives]) => [image, [...archives].sort()]))
  return `${JSON.stringify({ version: 1, images: sorted }, null, 2)}\n`
}

async function readRecord(file: string): Promise<Map<string, Set<string>>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
    throw error
  }
  try {
    const parsed = JSON.parse(text) as { version?: unknown; images?: Record<string, unknown> }
    if (parsed.version !== 1 || typeof parsed.images !== 'object' || parsed.images === null) throw new Error('not a version 1 record')
    const images = new Map<string, Set<string>>()
    for (const [image, archives] of Object.entries(parsed.images)) {
      if (!imageIdPattern.test(image) || !Array.isArray(archives) || !archives.every((archive) => typeof archive === 'string' && imageIdPattern.test(archive))) {
        throw new Error(`a malformed entry for ${image}`)
      }
      images.set(image, new Set(archives as string[]))
    }
    return images
  } catch {
    // Kept aside for a person to read; the images it named stay on the engine (nothing is removed unless proven ours).
    await rename(file, `${file}.invalid`).catch(() => undefined)
    return new Map()
  }
}

function imageRecord(file: string): ImageRecord {
  let record: Map<string, Set<string>> | undefined
  /** The record as last read or written (no file reads as an empty record). */
  let written: string | undefined
  let queue: Promise<unknown> = Promise.resolve()
  return {
    update<T>(change: (images: Map<string, Set<string>>) => T): Promise<T> {
      const next = queue.then(async () => {
        if (record === undefined) {
          record = await readRecord(file)
          written = serializeRecord(record)
        }
        const result = change(record)
        const text = serializeRecord(record)
        if (text === written) return result
        await mkdir(dirname(file), { recursive: true })
        const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`
        await writeFile(temporary, text)
        await rename(temporary, file)
        written = text
        return result
      })
      queue = next.catch(() => undefined)
      return next
    },
    archivesOf(image) {
      return record?.get(image)
    },
  }
}

export function createLoadedImages(init: LoadedImagesInit): LoadedImages {
  const { runtime, file } = init
  const { update, archivesOf } = imageRecord(file)
  const imageLocks = new Map<string, Promise<unknown>>()
  const holds = new Map<string, number>()

  /** One load or removal of an image at a time, so a removal never races a load that is about to use it. */
  function withImage<T>(image: string, action: () => Promise<T>): Promise<T> {
    const next = (imageLocks.get(image) ?? Promise.resolve()).then(action)
    const settled = next.catch(() => undefined)
    imageLocks.set(image, settled)
    void settled.then(() => {
      if (imageLocks.get(image) === settled) imageLocks.delete(image)
    })
    return next
  }

  return {
    async load(archiveId, tarPath, expectedId) {
      if (!imageIdPattern.test(archiveId)) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', `an archive's content id is sha256:<64 hex>, got ${JSON.stringify(archiveId)}`)
      return withImage(expectedId, async () => {
        const { id, loaded } = await loadArchive(runtime, tarPath, expectedId)
        await update((images) => {
          const archives = images.get(id)
          if (archives !== undefined) archives.add(archiveId)
          else if (loaded) images.set(id, new Set([archiveId]))
        })
        return id
      })
    },

    async hold(imageId) {
      holds.set(imageId, (holds.get(imageId) ?? 0) + 1)
      let released = false
      const release = (): void => {
        if (released) return
        released = true
        const left = (holds.get(imageId) ?? 1) - 1
        if (left === 0) holds.delete(imageId)
        else holds.set(imageId, left)
      }
      // A removal that began before this hold may still take the image: once it is done, hasImage tells the truth.
      await imageLocks.get(imageId)
      return release
    },

    async archiveEvicted(archiveId) {
      // Every image no cached archive loads any more: this archive's, and earlier ones that could not go then.
      const orphans = await update((images) => {
        for (const archives of images.values()) archives.delete(archiveId)
        return [...images].filter(([, archives]) => archives.size === 0).map(([image]) => image)
      })
      const results: ImageRemoval[] = []
      for (const image of orphans) {
        const removal = await withImage(image, async (): Promise<ImageRemoval | undefined> => {
          // Only while still recorded and orphaned: a load may have given it an archive again while this waited, or
          // another eviction removed it (or left it to the owner).
          const archives = archivesOf(image)
          if (archives === undefined || archives.size > 0) return undefined
          if (holds.has(image)) return { image, outcome: 'held' }
          return removeLoadedImage(runtime, image)
        })
        if (removal === undefined) continue
        if (removal.outcome === 'removed' || removal.outcome === 'absent' || removal.outcome === 'tagged') {
          await update((images) => {
            if (images.get(image)?.size === 0) images.delete(image)
          })
        }
        results.push(removal)
      }
      return results
    },

    async list() {
      return update((images) => new Map([...images].map(([image, archives]) => [image, [...archives].sort()])))
    },
  }
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
