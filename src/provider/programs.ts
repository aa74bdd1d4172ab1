/**
 * What a task runs, resolved on this provider: a wasi module fetched from the requestor into the package cache (and
 * checked by content id), a native program the owner allows by name, or a docker image, loaded from the requestor's
 * archive when the engine does not hold it. The package cache, its transfers in flight and the loaded images are
 * shared with ExeScript activities (activity-service.ts).
 */
import { lstat, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { HearthError } from '../errors.ts'
import { maxBlobChunkBytes, type RunTaskRequest } from '../exec/task-protocols.ts'
import { createLoadedImages, type LoadedImages } from '../exec/docker-images.ts'
import type { DockerRuntime } from '../exec/docker-runtime.ts'
import type { NativeRuntime } from '../exec/native-runtime.ts'
import { createPackageCache, type PackageCache } from '../exec/package-cache.ts'
import type { Runtime } from '../exec/runtime.ts'
import { blobSource, fetchResumable } from '../exec/transfer.ts'
import type { Host } from '../net/host.ts'
import type { PeerTarget } from '../net/dial-target.ts'

/** Runtimes besides wasi: `native` programs the owner allows (name → absolute path) and `docker`. */
export interface ProviderRuntimes {
  native?: { runtime: NativeRuntime; programs: Record<string, string> }
  docker?: { runtime: DockerRuntime }
}

export interface ProgramsInit {
  host: Host
  /** Packages live in `packages` under here. */
  workDir: string
  wasi: Runtime<Uint8Array>
  runtimes: ProviderRuntimes | undefined
  /** Bounds on the package cache (default 8 GiB and 256 packages). */
  packageCache: { maxBytes?: number; maxEntries?: number } | undefined
}

/** A task's program: the runtime that runs it, what it runs, and the argv before the request's args. */
/** wasi modules kept in memory between tasks: at most this many, this large each and all together. */
const maxKeptModules = 16
const maxKeptModuleBytes = 32 * 1024 * 1024
const maxKeptModulesBytes = 128 * 1024 * 1024

export interface ResolvedProgram {
  runtime: Runtime<unknown>
  program: unknown
  /** The program's content id, where it is a package the cache checked (see RunSpec.programId). */
  programId?: string
  argv0: string[]
  /** Lets go of what the task holds (its image) once it has run. */
  release?: () => void
}

export interface Programs {
  readonly packages: PackageCache
  /** Transfers in flight by content id: a package is fetched once, whoever needs it first. */
  readonly fetching: Map<string, Promise<string>>
  readonly loadedImages: LoadedImages | undefined
  /** What the request asks to run, resolved on this provider (fetched from `from` when not held). */
  programFor(request: RunTaskRequest, from: PeerTarget): Promise<ResolvedProgram>
}

/** Largest package (module or image archive) a provider takes. */
const maxPackageBytes = 2 * 1024 * 1024 * 1024

export function createPrograms(init: ProgramsInit): Programs {
  const { host } = init
  const packagesDir = join(init.workDir, 'packages')
  // Images loaded from requestors' archives leave with those archives (only ours, only unused, never forced).
  const loadedImages = init.runtimes?.docker === undefined ? undefined : createLoadedImages({ runtime: init.runtimes.docker.runtime, file: join(packagesDir, 'loaded-images.json') })
  const packages = createPackageCache({
    dir: packagesDir,
    maxBytes: init.packageCache?.maxBytes ?? 8 * 1024 ** 3,
    maxEntries: init.packageCache?.maxEntries ?? 256,
    onEvict: async (contentId) => void (await loadedImages?.archiveEvicted(contentId)),
  })
  const fetching = new Map<string, Promise<string>>()
  /** wasi modules read from the cache, by content id, most recently used last: one read for a job's many tasks. */
  const modules = new Map<string, Uint8Array>()

  /** The wasi module of `packageId`: kept in memory after its first read (a few, small enough), else read again. */
  async function moduleOf(packageId: string, from: PeerTarget): Promise<Uint8Array> {
    const known = modules.get(packageId)
    if (known !== undefined) {
      modules.delete(packageId)
      modules.set(packageId, known)
      return known
    }
    const module = await packages.using(packageId, async () => readFile(await packageFile(packageId, from)))
    if (module.byteLength <= maxKeptModuleBytes) {
      modules.set(packageId, module)
      let kept = 0
      for (const bytes of modules.values()) kept += bytes.byteLength
      for (const [id, bytes] of modules) {
        if (modules.size <= maxKeptModules && kept <= maxKeptModulesBytes) break
        modules.delete(id)
        kept -= bytes.byteLength
      }
    }
    return module
  }

  /** The blob named by content id: from the package cache, else fetched from the requestor and checked. */
  function packageFile(contentId: string, from: PeerTarget): Promise<string> {
    // fetch-blob/4 (the rest of the blob on one stream), or chunks over /3 or /2 from a requestor that does not speak /4.
    return cachedBlob({ packages, fetching }, contentId, { maxBytes: maxPackageBytes, chunkBytes: maxBlobChunkBytes, ...blobSource(host, from, contentId) })
  }

  async function programFor(request: RunTaskRequest, from: PeerTarget): Promise<ResolvedProgram> {
    if (request.runtime === 'wasi') {
      if (request.packageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'a wasi task names no package')
      // argv[0] is the program's name; the request carries only what follows it.
      const packageId = request.packageId
      return { runtime: init.wasi, program: await moduleOf(packageId, from), programId: packageId, argv0: ['program'] }
    }
    if (request.runtime === 'native') {
      const native = init.runtimes?.native
      const path = request.program === undefined ? undefined : native?.programs[request.program]
      if (native === undefined || path === undefined) {
        throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this provider does not offer the native program ${request.program ?? '(none named)'}`)
      }
      return { runtime: native.runtime, program: path, argv0: [path] }
    }
    const docker = init.runtimes?.docker
    if (docker === undefined) throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', 'this provider does not offer docker')
    if (request.imageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'a docker task names no image')
    // Held while the task runs, so that an eviction cannot remove the image between its load and the container.
    const release = await loadedImages!.hold(request.imageId)
    try {
      if (!(await docker.runtime.hasImage(request.imageId))) {
        if (request.packageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_IMAGE_MISSING', `this provider does not hold image ${request.imageId} and no archive was named`)
        // The archive is checked twice: by content id on arrival, and by image id when the engine loads it (untagged).
        const { packageId, imageId } = request
        await packages.using(packageId, async () => loadedImages!.load(packageId, await packageFile(packageId, from), imageId))
      }
    } catch (error) {
      release()
      throw error
    }
    // The container's command is the whole argv: the request's args, command first.
    return { runtime: docker.runtime, program: { image: request.imageId }, argv0: [], release }
  }

  return { packages, fetching, loadedImages, programFor }
}

/**
 * A blob by content id, as a file of the package cache: the cached file when it is there, else fetched (resumable,
 * checked against its id) with `fetch`. Callers that need the same blob at once share one transfer. A new blob may push
 * the cache past its bounds: the least recently used others, none in use, make room.
 */
export function cachedBlob(
  cache: { packages: PackageCache; fetching: Map<string, Promise<string>> },
  contentId: string,
  fetch: Pick<Parameters<typeof fetchResumable>[0], 'maxBytes' | 'chunkBytes' | 'fetchChunk' | 'fetchRange'>,
): Promise<string> {
  const { packages, fetching } = cache
  const running = fetching.get(contentId)
  if (running !== undefined) return running
  const path = packages.pathOf(contentId)
  const fetched = (async () => {
    if ((await lstat(path).catch(() => undefined))?.isFile() === true) {
      await packages.touch(contentId)
      return path
    }
    await fetchResumable({ contentId, path, ...fetch })
    void packages.evict().catch(() => undefined)
    return path
  })().finally(() => fetching.delete(contentId))
  fetching.set(contentId, fetched)
  return fetched
}
